"""What every blueprint needs from the request context: the app's Services, the staff
member behind a console session, and the checks that guard staff routes."""
from __future__ import annotations

import hmac
from collections.abc import Callable
from functools import wraps

from flask import current_app, g, request

from bot.conversations.staff import StaffMember
from bot.services import Services
from connectors.errors import ApiError

SESSION_COOKIE = "hotline_staff"
EXTENSION = "hotline"


def services() -> Services:
    return current_app.extensions[EXTENSION]


def client_ip() -> str:
    return request.remote_addr or "?"


def staff_from_cookie() -> tuple[StaffMember, str] | None:
    if "staff" not in g:
        g.staff = services().staff.session(request.cookies.get(SESSION_COOKIE))
    return g.staff


def require_json_post() -> None:
    """State-changing staff requests must be JSON: a cross-site form (text/plain,
    urlencoded, multipart) can never send that without a CORS preflight we refuse."""
    if request.mimetype != "application/json":
        raise ApiError(415, "Content-Type must be application/json")


def staff_required(right: str) -> Callable:
    """401 without a session, 403 without ``right``; POSTs also need JSON and the
    session's CSRF token in ``X-CSRF-Token``."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            found = staff_from_cookie()
            if found is None:
                raise ApiError(401, "not logged in")
            member, csrf = found
            if request.method not in ("GET", "HEAD", "OPTIONS"):
                require_json_post()
                given = request.headers.get("X-CSRF-Token", "").encode("utf-8", "replace")
                if not hmac.compare_digest(given, csrf.encode()):  # bytes: a non-ASCII str raised (a 500)
                    raise ApiError(403, "missing or wrong X-CSRF-Token header")
            if not member.can(right):
                raise ApiError(403, f"your role ({member.role}) cannot do this")
            g.member = member
            return view(*args, **kwargs)

        return wrapper

    return decorate


def staff_read_allowed() -> bool:
    """The staff read API: a staff session with desk rights, the bearer token, or the
    development switch ``HOTLINE_OPEN_READ_API=1``."""
    settings = services().settings
    if settings.open_read_api:
        return True
    given = request.headers.get("Authorization", "")
    if settings.api_token and given.startswith("Bearer ") and \
            hmac.compare_digest(given.removeprefix("Bearer ").strip().encode(), settings.api_token.encode()):
        return True
    found = staff_from_cookie()
    return found is not None and found[0].can("desk")
