"""HTTP side of the citizen widget.

The widget talks only to ``/web/api`` (CORS-enabled, no cookies), so it can be
embedded on any site. Replies carry turn ids, which feedback and resuming after
a reconnect need; agent messages arrive by long polling ``.../turns?after=<id>``
(bounded wait, so waitress threads are never held for long).
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Literal

from flask import Blueprint, Flask, current_app, jsonify, request, send_from_directory
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot import commands
from bot.desk import AgentDesk
from bot.messages import Message
from bot.store import Conversation
from connectors.agents.wiring import install_desk
from connectors.errors import ApiError, parse_json_body, query_int, query_seconds

STATIC = Path(__file__).parent / "static"

web = Blueprint("web", __name__, static_folder="static", static_url_path="/web/static")

# key -> (zh title, en title, KB category); "human" sends /ask_human
TOPICS = [("testing", "核酸检测", "COVID testing", "testing"),
          ("health_code", "健康码", "Health code", "health_code"),
          ("quarantine", "隔离政策", "Quarantine rules", "quarantine"),
          ("human", "联系人工", "Talk to a person", None)]
TOPIC_ENTRIES = 6


class WebSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOTLINE_WEB_", env_file="hotline.env", extra="ignore")

    allowed_origins: str = "*"  # comma-separated origins allowed to embed the widget
    long_poll_seconds: float = 20.0


class WebMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: StrictStr | None = Field(default=None, max_length=64)
    user_id: StrictStr = Field(min_length=1, max_length=128)
    text: StrictStr
    language: Literal["zh", "en"] | None = None
    after: StrictInt = Field(default=0, ge=0)


class FeedbackIn(BaseModel):
    conversation_id: StrictStr = Field(min_length=1, max_length=64)
    user_id: StrictStr = Field(min_length=1, max_length=128)
    turn_id: StrictInt = Field(ge=1)
    value: Literal["up", "down"]


class CallbackIn(BaseModel):
    conversation_id: StrictStr | None = Field(default=None, max_length=64)
    user_id: StrictStr | None = Field(default=None, max_length=128)
    phone: StrictStr = Field(min_length=1, max_length=32)
    name: StrictStr | None = Field(default=None, max_length=64)
    note: StrictStr = Field(default="", max_length=1000)
    language: Literal["zh", "en"] = "zh"


def desk() -> AgentDesk:
    return current_app.extensions["hotline_desk"]


def bot():
    return current_app.extensions["hotline_bot"]


def _settings() -> WebSettings:
    return current_app.extensions["hotline_web_settings"]


# -- pages and assets ----------------------------------------------------------------

@web.get("/")
def demo_page():
    return send_from_directory(STATIC, "demo.html")


@web.get("/web/widget.js")
def widget_js():
    return send_from_directory(STATIC, "widget.js", mimetype="text/javascript")


# -- CORS for embedding on other sites ------------------------------------------------

@web.after_request
def _cors(response):
    if request.path.startswith("/web/"):
        allowed = [o.strip() for o in _settings().allowed_origins.split(",") if o.strip()]
        origin = request.headers.get("Origin")
        if "*" in allowed:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


# -- API -------------------------------------------------------------------------------

def _owned_conversation(conversation_id: str | None, user_id: str) -> str | None:
    """The id when it exists and is this user's; None for a new conversation; 403 otherwise."""
    if not conversation_id:
        return None
    with bot().store.transaction() as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None:
            return None  # e.g. the database was reset: start afresh, the widget notices the new id
        if conv.user_id != user_id:
            raise ApiError(403, "this conversation belongs to another user", "conversation_id")
        return conv.id


def _pin_language(conversation_id: str | None, user_id: str, language: str) -> str:
    """Button payloads carry no language: answer them in the language the widget shows."""
    store = bot().store
    with store.transaction() as session:
        conv = store.conversation_for_update(session, conversation_id or uuid.uuid4().hex, user_id, "web", language)
        conv.language = language
        return conv.id


@web.post("/web/api/messages")
def post_message():
    body = parse_json_body(request, WebMessageIn)
    conversation_id = _owned_conversation(body.conversation_id, body.user_id)
    after = body.after if conversation_id else 0
    if body.language and commands.parse_command(body.text):
        conversation_id = _pin_language(conversation_id, body.user_id, body.language)
    reply = bot().handle(Message(user_id=body.user_id, text=body.text, channel="web",
                                 conversation_id=conversation_id))
    state = desk().turns_after(reply.conversation_id, after, body.user_id)
    return jsonify(state | {"reply": reply.to_dict(), "new_conversation": conversation_id is None})


def _state_key(state: dict) -> str:
    handoff = state.get("handoff") or {}
    return f"{state['status']}:{handoff.get('status')}:{handoff.get('queue_position')}:{state['agents_on_duty'] > 0}"


@web.get("/web/api/conversations/<conversation_id>/turns")
def get_turns(conversation_id: str):
    """Turns after ``after``; with ``wait`` > 0, long-polls until a turn arrives or ``state`` changes."""
    user_id = request.args.get("user_id", "")
    if not user_id:
        raise ApiError(400, "user_id: query parameter is required", "user_id")
    after = query_int("after", 0)
    wait = min(query_seconds("wait"), _settings().long_poll_seconds)
    known = request.args.get("state")

    def read() -> dict | None:
        state = desk().turns_after(conversation_id, after, user_id)
        if state is not None:
            state["state"] = _state_key(state)
        return state

    def ready(state: dict | None) -> bool:
        return state is None or bool(state["turns"]) or (known is not None and known != state["state"])

    # Woken by a commit in any process (Redis), or by the notifier's slow safety poll.
    state = bot().store.notifier.poll(conversation_id, read, ready, wait)
    if state is None:
        raise ApiError(404, f"no conversation {conversation_id!r} for this user")
    return jsonify(state)


@web.post("/web/api/feedback")
def post_feedback():
    body = parse_json_body(request, FeedbackIn)
    if _owned_conversation(body.conversation_id, body.user_id) is None:
        raise ApiError(404, f"no conversation {body.conversation_id!r}", "conversation_id")
    return jsonify(desk().feedback(body.conversation_id, body.turn_id, body.value))


@web.post("/web/api/callbacks")
def post_callback():
    body = parse_json_body(request, CallbackIn)
    conversation_id = None
    if body.conversation_id and body.user_id:
        conversation_id = _owned_conversation(body.conversation_id, body.user_id)
    ticket = desk().leave_callback(body.phone, conversation_id=conversation_id, name=body.name,
                                   note=body.note, language=body.language)
    return jsonify({"id": ticket["id"], "phone": ticket["phone"], "status": ticket["status"]}), 201


@web.get("/web/api/status")
def get_status():
    return jsonify({"agents_on_duty": desk().agents_on_duty(), "kb_version": bot().kb.version})


@web.get("/web/api/topics")
def get_topics():
    """The topic menu, with a few entries per topic, for people who don't know what to type."""
    language = "en" if request.args.get("lang") == "en" else "zh"
    kb = bot().kb
    topics = []
    for key, zh, en, category in TOPICS:
        entries = [e for e in kb.entries.values() if category and e.category == category][:TOPIC_ENTRIES]
        topics.append({
            "key": key, "title": en if language == "en" else zh,
            "payload": commands.simple_button("", commands.ASK_HUMAN).payload if key == "human" else None,
            "entries": [{"entry_id": e.id, "title": e.title(language),
                         "payload": commands.faq_button(e.title(language), e.id).payload} for e in entries],
        })
    return jsonify({"language": language, "topics": topics})


def register(app: Flask) -> None:
    install_desk(app)
    app.extensions["hotline_web_settings"] = WebSettings()
    app.register_blueprint(web)
