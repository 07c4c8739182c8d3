"""HTTP side of the staff console: the agent desk, callbacks, canned replies, accounts.

Sessions are server-side (``bot.conversations.staff``): the cookie is a random
token (HttpOnly, SameSite=Strict, Secure unless ``HOTLINE_COOKIE_SECURE=0``);
logout, disabling an account or a password reset revoke it. Every state-changing
request must be JSON and carry the session's CSRF token in ``X-CSRF-Token``: a
cross-site form can do neither. Roles decide what a member may do (agent: the
desk; editor: the knowledge base; supervisor: desk + dashboard; admin: all).
The console learns about changes by long polling ``/agents/api/updates``; waits
park no request thread.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, g, jsonify, make_response, request, send_from_directory
from pydantic import BaseModel, Field, StrictBool, StrictStr

from bot.conversations.staff import LockedOut
from bot.render import kb_item
from connectors.context import (SESSION_COOKIE, require_json_post, services, staff_from_cookie,
                                staff_required)
from connectors.errors import ApiError, parse_json_body, query_int, query_seconds, query_text
from connectors.waits import long_poll

STATIC = Path(__file__).parent / "static"
LONG_POLL_SECONDS = 20.0
KB_RESULTS = 5

agents = Blueprint("agents", __name__, url_prefix="/agents", static_folder="static", static_url_path="/static")


class LoginIn(BaseModel):
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=256)


class TextIn(BaseModel):
    text: StrictStr = Field(min_length=1, max_length=4000)


class DutyIn(BaseModel):
    on_duty: StrictBool


class TransferIn(BaseModel):
    to_agent: StrictStr | None = Field(default=None, max_length=64)  # None: back to the queue


class CannedIn(BaseModel):
    title: StrictStr = Field(min_length=1, max_length=80)
    zh: StrictStr = Field(min_length=1, max_length=4000)
    en: StrictStr = Field(min_length=1, max_length=4000)


class AccountIn(BaseModel):
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=256)
    display_name: StrictStr | None = Field(default=None, max_length=64)
    role: StrictStr = "agent"


class AccountChangeIn(BaseModel):
    disabled: StrictBool | None = None
    role: StrictStr | None = None
    password: StrictStr | None = Field(default=None, max_length=256)


def _push(scope) -> dict:
    """What an agent action returns: the new turns (pushed to the citizen's channel by the outbox)."""
    return {"turns": [t.to_dict() for t in scope.turns], "status": scope.conversation.status}


# -- pages -------------------------------------------------------------------------------

@agents.get("/")
def console():
    response = make_response(send_from_directory(STATIC, "console.html"))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- session -----------------------------------------------------------------------------

@agents.post("/api/login")
def login():
    require_json_post()
    body = parse_json_body(LoginIn)
    svc = services()
    try:
        member = svc.staff.authenticate(body.username, body.password)
    except LockedOut as exc:
        raise ApiError(429, exc.message, extra={"retry_after": int(exc.seconds) + 1}) from None
    if member is None:
        raise ApiError(401, "wrong username or password")
    token, csrf = svc.staff.start_session(member)
    response = jsonify(_me(member, csrf))
    response.set_cookie(SESSION_COOKIE, token, httponly=True, secure=svc.settings.cookie_secure, samesite="Strict",
                        path="/", max_age=int(svc.settings.session_hours * 3600))
    return response


@agents.get("/api/me")
@staff_required("desk")
def me():
    return jsonify(_me(g.member, staff_from_cookie()[1]))


@agents.get("/api/session")
def session_info():
    """Who is logged in, whatever the role (the console picks its sections from ``rights``)."""
    found = staff_from_cookie()
    if found is None:
        raise ApiError(401, "not logged in")
    return jsonify(_me(*found))


def _me(member, csrf: str) -> dict:
    on_duty = services().desk.heartbeat(member) if member.can("desk") else False
    return {"agent": member.to_dict(), "csrf_token": csrf, "on_duty": on_duty}


@agents.post("/api/logout")
def logout():
    require_json_post()
    found = staff_from_cookie()
    svc = services()
    if found is not None:
        member, csrf = found
        if request.headers.get("X-CSRF-Token", "") != csrf:
            raise ApiError(403, "missing or wrong X-CSRF-Token header")
        if member.can("desk"):
            svc.desk.set_on_duty(member, False)
        svc.staff.end_session(request.cookies.get(SESSION_COOKIE, ""))
    response = jsonify({"ok": True})
    response.delete_cookie(SESSION_COOKIE, path="/", secure=svc.settings.cookie_secure, samesite="Strict")
    return response


@agents.post("/api/duty")
@staff_required("desk")
def duty():
    body = parse_json_body(DutyIn)
    services().desk.set_on_duty(g.member, body.on_duty)
    return jsonify({"on_duty": body.on_duty})


# -- queue and tickets --------------------------------------------------------------------

@agents.get("/api/updates")
@staff_required("desk")
def updates():
    """Long poll: returns when the queue changes (``sig``) or the open ticket has new turns."""
    handoff_id = query_int("handoff", None)
    after = query_int("after", 0)
    wait = min(query_seconds("wait"), LONG_POLL_SECONDS)
    known = query_text("sig", 64)
    member = g.member
    desk = services().desk
    conversation_id = desk.handoff(handoff_id, member)["conversation_id"] if handoff_id else None
    on_duty = desk.heartbeat(member)

    def read() -> tuple[str, list]:
        turns = desk.new_turns(conversation_id, after) if conversation_id else []
        return desk.queue_signature(member), turns

    def ready(result) -> bool:
        sig, turns = result
        return sig != known or bool(turns)

    (sig, turns), headers = long_poll(conversation_id or "", read, ready, wait)
    handoff_turns = {"conversation_id": conversation_id, "turns": turns,
                     "last_id": max([after] + [t["id"] for t in turns])} if conversation_id else None
    return jsonify({"sig": sig, "queue": desk.queue(member), "callbacks": desk.callbacks("open"),
                    "on_duty": on_duty, "agents_on_duty": desk.agents_on_duty(),
                    "handoff_turns": handoff_turns}), 200, headers


@agents.get("/api/handoffs/<int:handoff_id>")
@staff_required("desk")
def handoff_detail(handoff_id: int):
    svc = services()
    detail = svc.desk.handoff(handoff_id, g.member)
    kb = svc.bot.kb
    detail["candidates"] = [kb_item(kb.get(c["entry_id"]), detail["language"], c.get("score"))
                            for c in detail.get("candidates") or [] if kb.get(str(c.get("entry_id")))][:3]
    status = svc.extras.get("channel_status", {}).get(detail["channel"])
    detail["channel_status"] = status(detail["conversation_id"]) if status else None
    return jsonify(detail)


@agents.post("/api/handoffs/<int:handoff_id>/claim")
@staff_required("desk")
def claim(handoff_id: int):
    scope = services().desk.claim(handoff_id, g.member)
    return jsonify(_push(scope) | {"handoff": services().desk.handoff(handoff_id, g.member)})


@agents.post("/api/handoffs/<int:handoff_id>/reply")
@staff_required("desk")
def reply(handoff_id: int):
    body = parse_json_body(TextIn)
    return jsonify(_push(services().desk.reply(handoff_id, g.member, body.text))), 201


@agents.post("/api/handoffs/<int:handoff_id>/notes")
@staff_required("desk")
def note(handoff_id: int):
    body = parse_json_body(TextIn)
    return jsonify(_push(services().desk.note(handoff_id, g.member, body.text))), 201


@agents.post("/api/handoffs/<int:handoff_id>/resolve")
@staff_required("desk")
def resolve(handoff_id: int):
    return jsonify(_push(services().desk.resolve(handoff_id, g.member)))


@agents.post("/api/handoffs/<int:handoff_id>/hand_back")
@staff_required("desk")
def hand_back(handoff_id: int):
    return jsonify(_push(services().desk.hand_back(handoff_id, g.member)))


@agents.post("/api/handoffs/<int:handoff_id>/transfer")
@staff_required("desk")
def transfer(handoff_id: int):
    body = parse_json_body(TransferIn)
    return jsonify(_push(services().desk.transfer(handoff_id, g.member, body.to_agent)))


@agents.get("/api/colleagues")
@staff_required("desk")
def colleagues():
    return jsonify({"agents": services().desk.colleagues(g.member)})


# -- knowledge base --------------------------------------------------------------------------

@agents.get("/api/kb/search")
@staff_required("desk")
def kb_search():
    query = query_text("q", 500, required=True)
    language = "en" if request.args.get("lang") == "en" else "zh"
    bot = services().bot
    candidates = bot.understand(query, top_k=KB_RESULTS).candidates
    return jsonify({"results": [kb_item(bot.kb.get(c.entry_id), language, round(c.score, 4))
                                for c in candidates if bot.kb.get(c.entry_id)]})


# -- canned replies ----------------------------------------------------------------------------

@agents.get("/api/canned")
@staff_required("desk")
def canned():
    return jsonify({"replies": services().desk.canned_replies()})


@agents.post("/api/canned")
@staff_required("accounts")
def canned_create():
    body = parse_json_body(CannedIn)
    return jsonify(services().desk.save_canned_reply(g.member, body.title, body.zh, body.en)), 201


@agents.post("/api/canned/<int:reply_id>")
@staff_required("accounts")
def canned_update(reply_id: int):
    body = parse_json_body(CannedIn)
    return jsonify(services().desk.save_canned_reply(g.member, body.title, body.zh, body.en, reply_id))


@agents.post("/api/canned/<int:reply_id>/delete")
@staff_required("accounts")
def canned_delete(reply_id: int):
    services().desk.delete_canned_reply(g.member, reply_id)
    return jsonify({"ok": True})


# -- callbacks --------------------------------------------------------------------------------

@agents.get("/api/callbacks")
@staff_required("desk")
def callbacks():
    status = request.args.get("status", "open")
    if status not in {"open", "done", "all"}:
        raise ApiError(400, "status: must be one of open, done, all", "status")
    return jsonify({"callbacks": services().desk.callbacks(None if status == "all" else status)})


@agents.post("/api/callbacks/<int:ticket_id>/reveal")
@staff_required("desk")
def callback_reveal(ticket_id: int):
    return jsonify({"phone": services().desk.reveal_phone(ticket_id, g.member)})


@agents.post("/api/callbacks/<int:ticket_id>/done")
@staff_required("desk")
def callback_done(ticket_id: int):
    return jsonify(services().desk.callback_done(ticket_id, g.member))


# -- accounts (admin) ---------------------------------------------------------------------------

@agents.get("/api/accounts")
@staff_required("accounts")
def accounts():
    return jsonify({"accounts": services().staff.list()})


@agents.post("/api/accounts")
@staff_required("accounts")
def account_create():
    body = parse_json_body(AccountIn)
    member = services().staff.create(body.username, body.password, body.display_name, body.role,
                                     actor=g.member.username)
    return jsonify(member.to_dict()), 201


@agents.post("/api/accounts/<username>")
@staff_required("accounts")
def account_change(username: str):
    body = parse_json_body(AccountChangeIn)
    staff = services().staff
    if body.role is not None:
        staff.set_role(username, body.role, g.member.username)
    if body.password is not None:
        staff.reset_password(username, body.password, g.member.username)
    if body.disabled is True:
        if username == g.member.username:
            raise ApiError(400, "disabled: you cannot disable your own account", "disabled")
        staff.disable(username, g.member.username)
    elif body.disabled is False:
        staff.enable(username, g.member.username)
    return jsonify({"accounts": staff.list()})
