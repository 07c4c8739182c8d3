"""Abuse limits (Flask-Limiter over the ``limits`` library).

Per IP, per citizen and per conversation on messages; per IP on callbacks and
logins; per IP on opened handoffs (counted only when a message actually opened
one). Storage is Redis when ``HOTLINE_REDIS_URL`` is set — every process and
host shares the counts — and each process's memory otherwise. Every limit is a
setting (``HOTLINE_LIMITS__*``); a refused citizen gets a 429 whose body carries
a friendly bilingual text the widget shows as the bot's reply.

Per-IP limits assume the client's real address: behind a reverse proxy set
``HOTLINE_SERVER__TRUSTED_PROXIES``. Mobile carriers put many citizens behind one
address (CGNAT), so per-IP defaults are generous; per-citizen limits are tight.
"""
from __future__ import annotations

import json
from collections.abc import Callable

from flask import Flask, current_app, request
from flask_limiter import Limiter
from limits import parse_many

from bot.config import Settings
from bot.services import Services
from connectors.context import client_ip, services

LIMITER = "hotline_limiter"


def _body_field(name: str) -> str:
    try:
        data = json.loads(request.get_data(cache=True) or b"{}")
    except (ValueError, RecursionError):
        return ""
    value = data.get(name) if isinstance(data, dict) else None
    return value[:160] if isinstance(value, str) else ""


def by_user() -> str:
    return f"user:{_body_field('user_id') or _body_field('sender') or client_ip()}"


def by_conversation() -> str:
    return f"conv:{_body_field('conversation_id')}"


def _no_conversation() -> bool:
    """A first message has no conversation yet: only the per-citizen and per-IP limits apply."""
    return not _body_field("conversation_id")


def _limits(name: str) -> Callable[[], str]:
    return lambda: getattr(services().settings.limits, name)


def limiter() -> Limiter:
    return current_app.extensions[LIMITER]


def allow(limit: str, *keys: str) -> bool:
    """Count one hit against ``limit`` for ``keys``; False once it is exceeded (for checks
    inside a view, e.g. a WeChat openid known only after decryption)."""
    ext = limiter()
    if not ext.enabled:
        return True
    # the limits library's strategy adds no prefix of its own: the keys get Flask-Limiter's
    prefix = _key_prefix(current_app._get_current_object(), services().settings)
    return all(ext.limiter.hit(item, prefix, *keys) for item in parse_many(limit))


def would_allow(limit: str, *keys: str) -> bool:
    ext = limiter()
    if not ext.enabled:
        return True
    prefix = _key_prefix(current_app._get_current_object(), services().settings)
    return all(ext.limiter.test(item, prefix, *keys) for item in parse_many(limit))


def _key_prefix(app: Flask, settings: Settings) -> str:
    """Every counter's prefix: the deployment's in Redis (its processes count together), this app's in memory."""
    return settings.limits.key_prefix if settings.redis_url else f"hotline-{id(app)}"


def init_limits(app: Flask, svc: Services) -> Limiter:
    settings = svc.settings
    ext = Limiter(key_func=client_ip, app=app, enabled=settings.limits.enabled, headers_enabled=True,
                  storage_uri=settings.redis_url or "memory://", strategy="moving-window",
                  key_prefix=_key_prefix(app, settings), swallow_errors=True)  # a Redis outage must not take the bot down
    app.extensions[LIMITER] = ext
    return ext


def apply_limits(app: Flask) -> None:
    """Attach the configured limits to the routes (called after blueprints are registered)."""
    ext: Limiter = app.extensions[LIMITER]

    def limit(endpoint: str, *rules: tuple) -> None:
        view = app.view_functions[endpoint]
        for name, key, *options in rules:
            exempt, deduct = (options + [None, None])[:2]
            # shared: a citizen's (or an address's) messages count once, whichever channel route they use
            view = ext.shared_limit(_limits(name), scope=name, key_func=key, override_defaults=False,
                                    exempt_when=exempt, deduct_when=deduct)(view)
        app.view_functions[endpoint] = view

    message_rules = (("messages_per_ip", client_ip), ("messages_per_user", by_user),
                     ("messages_per_conversation", by_conversation, _no_conversation))
    for endpoint in ("web.post_message", "api.post_message", "rasa_rest.webhook"):
        limit(endpoint, *message_rules)
    limit("web.post_callback", ("callbacks_per_ip", client_ip, None, lambda response: response.status_code == 201))
    limit("agents.login", ("logins_per_ip", client_ip, None, lambda response: response.status_code != 200))
