"""HTTP side of the agent console.

Sessions are Flask's signed cookie (HttpOnly, SameSite=Lax). Every state-changing
POST must be JSON and carry the session's CSRF token in ``X-CSRF-Token``: a
cross-site form can do neither. The console learns about new handoffs by long
polling ``/agents/api/updates`` (bounded wait; doubles as the on-duty heartbeat).
"""
from __future__ import annotations

import hmac
import logging
import secrets
from functools import wraps
from pathlib import Path

from flask import Blueprint, Flask, current_app, g, jsonify, request, send_from_directory, session
from pydantic import BaseModel, Field, StrictBool, StrictStr

from bot.desk import AgentDesk, AgentInfo
from connectors.agents.wiring import install_desk, session_secret
from connectors.delivery import channel_status, deliver
from connectors.errors import ApiError, parse_json_body, query_int, query_seconds

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
LONG_POLL_SECONDS = 20.0
KB_RESULTS = 5

agents = Blueprint("agents", __name__, url_prefix="/agents", static_folder="static",
                   static_url_path="/static")


class LoginIn(BaseModel):
    username: StrictStr = Field(min_length=1, max_length=64)
    password: StrictStr = Field(min_length=1, max_length=256)


class ReplyIn(BaseModel):
    text: StrictStr = Field(min_length=1, max_length=4000)


class DutyIn(BaseModel):
    on_duty: StrictBool


def desk() -> AgentDesk:
    return current_app.extensions["hotline_desk"]


def bot_store():
    return current_app.extensions["hotline_bot"].store


def login_required(view):
    """401 without a session; for POSTs also JSON + matching X-CSRF-Token, else 403."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        username = session.get("agent")
        agent = desk().agent(username) if username else None
        if agent is None:
            raise ApiError(401, "not logged in")
        if request.method == "POST":
            token = request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(token, session.get("csrf", "")):
                raise ApiError(403, "missing or wrong X-CSRF-Token header")
        g.agent = agent
        return view(*args, **kwargs)

    return wrapper


def _deliver(conversation: dict, turn: dict) -> bool:
    """Push channels (WeChat) send now; a failed push is logged, the turn is stored anyway."""
    try:
        return deliver(current_app._get_current_object(), conversation, turn)
    except Exception:
        log.exception("delivery to %s conversation %s failed", conversation.get("channel"), conversation.get("id"))
        return False


# -- pages -------------------------------------------------------------------------------

@agents.get("/")
def console():
    return send_from_directory(STATIC, "console.html")


# -- session -----------------------------------------------------------------------------

@agents.post("/api/login")
def login():
    body = parse_json_body(request, LoginIn)
    agent = desk().authenticate(body.username, body.password)
    if agent is None:
        raise ApiError(401, "wrong username or password")
    session.clear()
    session["agent"] = agent.username
    session["csrf"] = secrets.token_urlsafe(32)
    return jsonify(_me(agent))


@agents.get("/api/me")
@login_required
def me():
    return jsonify(_me(g.agent))


def _me(agent: AgentInfo) -> dict:
    return {"agent": {"username": agent.username, "display_name": agent.display_name},
            "csrf_token": session["csrf"], "on_duty": desk().heartbeat(agent.username)}


@agents.post("/api/logout")
@login_required
def logout():
    desk().set_on_duty(g.agent.username, False)
    session.clear()
    return jsonify({"ok": True})


@agents.post("/api/duty")
@login_required
def duty():
    body = parse_json_body(request, DutyIn)
    desk().set_on_duty(g.agent.username, body.on_duty)
    return jsonify({"on_duty": body.on_duty})


# -- queue and tickets --------------------------------------------------------------------

@agents.get("/api/updates")
@login_required
def updates():
    """Long poll: returns when the queue changes (``sig``) or the open ticket has new turns."""
    handoff_id = query_int("handoff", None)
    after = query_int("after", 0)
    wait = min(query_seconds("wait"), LONG_POLL_SECONDS)
    known = request.args.get("sig")
    username = g.agent.username
    conversation_id = desk().handoff(handoff_id)["conversation_id"] if handoff_id else None
    on_duty = desk().heartbeat(username)

    def read() -> tuple[str, dict | None]:
        return (desk().queue_signature(username),
                desk().turns_after(conversation_id, after) if conversation_id else None)

    def ready(result: tuple[str, dict | None]) -> bool:
        sig, turns = result
        return sig != known or bool(turns and turns["turns"])

    # Queue moves and the open ticket's turns wake this at once (any process, via Redis).
    sig, turns = bot_store().notifier.poll(conversation_id or "", read, ready, wait)
    return jsonify({"sig": sig, "queue": desk().queue(username), "callbacks": desk().callbacks("open"),
                    "on_duty": on_duty, "agents_on_duty": desk().agents_on_duty(), "handoff_turns": turns})


@agents.get("/api/handoffs/<int:handoff_id>")
@login_required
def handoff_detail(handoff_id: int):
    detail = desk().handoff(handoff_id)
    detail["candidates"] = [_kb_item(c["entry_id"], detail["language"], c.get("score"))
                            for c in detail.get("candidates") or [] if _entry(c.get("entry_id"))][:3]
    detail["channel_status"] = channel_status(current_app, detail["channel"], detail["conversation_id"])
    return jsonify(detail)


@agents.post("/api/handoffs/<int:handoff_id>/claim")
@login_required
def claim(handoff_id: int):
    conversation, turn = desk().claim(handoff_id, g.agent)
    delivered = _deliver(conversation, turn)
    return jsonify({"handoff": desk().handoff(handoff_id), "delivered": delivered})


@agents.post("/api/handoffs/<int:handoff_id>/reply")
@login_required
def reply(handoff_id: int):
    body = parse_json_body(request, ReplyIn)
    conversation, turn = desk().reply(handoff_id, g.agent, body.text)
    delivered = _deliver(conversation, turn)
    return jsonify({"turn": turn, "delivered": delivered}), 201


@agents.post("/api/handoffs/<int:handoff_id>/resolve")
@login_required
def resolve(handoff_id: int):
    conversation, turn = desk().resolve(handoff_id, g.agent)
    return jsonify({"conversation": conversation, "delivered": _deliver(conversation, turn)})


@agents.post("/api/handoffs/<int:handoff_id>/hand_back")
@login_required
def hand_back(handoff_id: int):
    conversation, turn = desk().hand_back(handoff_id, g.agent)
    return jsonify({"conversation": conversation, "delivered": _deliver(conversation, turn)})


# -- knowledge base --------------------------------------------------------------------------

def _entry(entry_id):
    return current_app.extensions["hotline_bot"].kb.get(str(entry_id)) if entry_id else None


def _kb_item(entry_id: str, language: str, score: float | None = None) -> dict:
    entry = _entry(entry_id)
    return {"entry_id": entry.id, "title": entry.title(language), "score": score,
            "answer": entry.answer.en if language == "en" else entry.answer.zh,
            "source": {"name": entry.source.name, "url": str(entry.source.url)},
            "updated": entry.updated.isoformat()}


@agents.get("/api/kb/search")
@login_required
def kb_search():
    query = (request.args.get("q") or "").strip()
    if not query:
        raise ApiError(400, "q: query parameter is required", "q")
    if len(query) > 500:
        raise ApiError(400, "q: must be at most 500 characters", "q")
    language = "en" if request.args.get("lang") == "en" else "zh"
    bot = current_app.extensions["hotline_bot"]
    candidates = bot.understand(query, top_k=KB_RESULTS).candidates
    return jsonify({"results": [_kb_item(c.entry_id, language, round(c.score, 4))
                                for c in candidates if _entry(c.entry_id)]})


# -- callbacks --------------------------------------------------------------------------------

@agents.get("/api/callbacks")
@login_required
def callbacks():
    status = request.args.get("status", "open")
    if status not in {"open", "done", "all"}:
        raise ApiError(400, "status must be one of open, done, all", "status")
    return jsonify({"callbacks": desk().callbacks(None if status == "all" else status)})


@agents.post("/api/callbacks/<int:ticket_id>/done")
@login_required
def callback_done(ticket_id: int):
    return jsonify(desk().callback_done(ticket_id, g.agent))


def register(app: Flask) -> None:
    install_desk(app)
    if not app.secret_key:
        app.secret_key = session_secret(app)
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.register_blueprint(agents)
