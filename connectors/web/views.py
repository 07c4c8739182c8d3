"""HTTP side of the citizen widget: the ``web`` channel.

The widget talks only to ``/web/api`` (CORS for the sites allowed to embed it, no
cookies). Its user is either the anonymous id the widget keeps on the device
(a random bearer secret of ≥16 characters) or, on a host site with logged-in
users, ``identify({userId, signature})`` with an HMAC from the host's server.
Conversations of other channels (Rasa, WeChat, API) can never be read here.
Agent messages arrive by long polling ``.../turns?after=<id>&wait=20``; waits
park no request thread (see ``connectors/waits.py``).
"""
from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path
from typing import Literal

from flask import Blueprint, jsonify, request, send_from_directory
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from bot import commands
from bot.messages import Message
from connectors.api import handle_message
from connectors.context import services
from connectors.errors import MAX_ID, ApiError, parse_json_body, query_int, query_seconds, query_text
from connectors.waits import long_poll

STATIC = Path(__file__).parent / "static"
ANONYMOUS_ID = re.compile(r"^[A-Za-z0-9_-]{16,128}$")

web = Blueprint("web", __name__, static_folder="static", static_url_path="/web/static")

# key -> (zh title, en title, KB category); "human" sends /ask_human
TOPICS = [("testing", "核酸检测", "COVID testing", "testing"),
          ("health_code", "健康码", "Health code", "health_code"),
          ("quarantine", "隔离政策", "Quarantine rules", "quarantine"),
          ("vaccination", "疫苗接种", "Vaccination", "vaccination"),
          ("travel", "出行政策", "Travel", "travel"),
          ("human", "联系人工", "Talk to a person", None)]
TOPIC_ENTRIES = 6


class Identity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: StrictStr = Field(min_length=1, max_length=128)
    signature: StrictStr = Field(min_length=64, max_length=64)


class CitizenIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: StrictStr = Field(min_length=1, max_length=128)
    identity: Identity | None = None


class WebMessageIn(CitizenIn):
    text: StrictStr
    conversation_id: StrictStr | None = Field(default=None, max_length=64)
    client_message_id: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    new_conversation: StrictBool = False
    language: Literal["zh", "en"] | None = None
    after: StrictInt = Field(default=0, ge=0, le=MAX_ID)


class FeedbackIn(CitizenIn):
    conversation_id: StrictStr = Field(min_length=1, max_length=64)
    turn_id: StrictInt = Field(ge=1, le=MAX_ID)
    value: Literal["up", "down"]
    reason: Literal["wrong", "outdated", "unclear", "human"] | None = None


class RatingIn(CitizenIn):
    conversation_id: StrictStr = Field(min_length=1, max_length=64)
    handoff_id: StrictInt = Field(ge=1, le=MAX_ID)
    score: StrictInt = Field(ge=1, le=5)
    comment: StrictStr = Field(default="", max_length=1000)


class CallbackIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: StrictStr | None = Field(default=None, max_length=64)
    user_id: StrictStr | None = Field(default=None, max_length=128)
    identity: Identity | None = None
    phone: StrictStr = Field(min_length=1, max_length=32)
    name: StrictStr | None = Field(default=None, max_length=64)
    note: StrictStr = Field(default="", max_length=1000)
    language: Literal["zh", "en"] = "zh"


def identity_signature(secret: str, user_id: str) -> str:
    """What the host site's server computes for ``HotlineBot.identify``: hex HMAC-SHA256 of the user id."""
    return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()


def web_user(user_id: str | None, identity: Identity | None) -> str:
    """The verified external user of the ``web`` channel."""
    if identity is not None:
        secret = services().settings.web.identify_secret
        if not secret:
            raise ApiError(400, "identity: this server does not accept identified users", "identity")
        # bytes: compare_digest refuses str with non-ASCII characters (a TypeError was a 500, "please retry")
        if not hmac.compare_digest(identity_signature(secret, identity.user_id).encode(),
                                   identity.signature.lower().encode("utf-8", "replace")):
            raise ApiError(403, "identity.signature: does not match the user id", "identity.signature")
        return f"u:{identity.user_id}"
    if not user_id or not ANONYMOUS_ID.match(user_id):
        raise ApiError(400, "user_id: 16-128 letters, digits, '-' or '_' (a random id kept by the widget)",
                       "user_id")
    return f"a:{user_id}"


def _query_identity() -> Identity | None:
    uid, sig = request.args.get("uid"), request.args.get("sig")
    if uid is None and sig is None:
        return None
    if not uid or not sig or len(uid) > 128 or len(sig) != 64:
        raise ApiError(400, "uid and sig: both required for an identified user", "uid")
    return Identity(user_id=uid, signature=sig)


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
        allowed = services().settings.web.allowed_origins
        origin = request.headers.get("Origin")
        if "*" in allowed:
            response.headers["Access-Control-Allow-Origin"] = "*"
        elif origin and origin in allowed:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type, Idempotency-Key"
        response.headers["Access-Control-Max-Age"] = "600"
    return response


# -- API -------------------------------------------------------------------------------

@web.post("/web/api/messages")
def post_message():
    body = parse_json_body(WebMessageIn)
    user = web_user(body.user_id, body.identity)
    key = request.headers.get("Idempotency-Key") or body.client_message_id
    reply = handle_message(Message(user_id=user, text=body.text, channel="web",
                                   conversation_id=body.conversation_id, new_conversation=body.new_conversation,
                                   client_message_id=key, language=body.language))
    new = reply.conversation_id != body.conversation_id
    state = services().desk.turns_after(reply.conversation_id, 0 if new else body.after, "web", user)
    return jsonify(state | {"state": _state_key(state), "reply": reply.to_dict(), "new_conversation": new})


def _state_key(state: dict) -> str:
    handoff = state.get("handoff") or {}
    callback = state.get("callback") or {}
    return (f"{state['status']}:{handoff.get('status')}:{handoff.get('queue_position')}:"
            f"{state['agents_on_duty'] > 0}:{state['service']['open_now']}:{callback.get('status')}:"
            f"{bool(state.get('rating_due'))}")


@web.get("/web/api/conversations/<conversation_id>/turns")
def get_turns(conversation_id: str):
    """Turns after ``after``; with ``wait`` > 0, long-polls until a turn arrives or ``state`` changes."""
    user = web_user(request.args.get("user_id"), _query_identity())
    after = query_int("after", 0)
    wait = min(query_seconds("wait"), services().settings.web.long_poll_seconds)
    known = query_text("state", 200)
    if not conversation_id.isalnum() or len(conversation_id) > 64:
        raise ApiError(404, "no such conversation for this user")
    desk = services().desk

    def read() -> dict | None:
        state = desk.turns_after(conversation_id, after, "web", user)
        if state is not None:
            state["state"] = _state_key(state)
        return state

    def ready(state: dict | None) -> bool:
        return state is None or bool(state["turns"]) or (known is not None and known != state["state"])

    state, headers = long_poll(conversation_id, read, ready, wait)
    if state is None:
        raise ApiError(404, "no such conversation for this user")
    return jsonify(state), 200, headers


def _owned(conversation_id: str, user: str) -> str:
    if not services().desk.owns(conversation_id, "web", user):
        raise ApiError(404, f"conversation_id: no conversation {conversation_id!r} for this user", "conversation_id")
    return conversation_id


@web.post("/web/api/feedback")
def post_feedback():
    body = parse_json_body(FeedbackIn)
    _owned(body.conversation_id, web_user(body.user_id, body.identity))
    return jsonify(services().desk.feedback(body.conversation_id, body.turn_id, body.value, body.reason))


@web.post("/web/api/ratings")
def post_rating():
    body = parse_json_body(RatingIn)
    _owned(body.conversation_id, web_user(body.user_id, body.identity))
    return jsonify(services().desk.rate(body.conversation_id, body.handoff_id, body.score, body.comment)), 201


@web.post("/web/api/callbacks")
def post_callback():
    body = parse_json_body(CallbackIn)
    conversation_id = None
    if body.conversation_id:
        conversation_id = _owned(body.conversation_id, web_user(body.user_id, body.identity))
    ticket = services().desk.leave_callback(body.phone, conversation_id=conversation_id, name=body.name,
                                            note=body.note, language=body.language)
    return jsonify({"id": ticket["id"], "phone": ticket["phone"], "status": ticket["status"]}), 201


@web.get("/web/api/status")
def get_status():
    svc = services()
    desk = svc.desk
    now = svc.clock()
    next_open = desk.hours.next_open(now)
    return jsonify({"agents_on_duty": desk.agents_on_duty(), "kb_version": svc.bot.kb.version,
                    "open_now": desk.hours.is_open(now), "hours": desk.hours.describe(),
                    "next_open": next_open.isoformat() if next_open else None})


@web.get("/web/api/topics")
def get_topics():
    """The topic menu, with a few entries per topic, for people who don't know what to type."""
    language = "en" if request.args.get("lang") == "en" else "zh"
    kb = services().bot.kb
    topics = []
    for key, zh, en, category in TOPICS:
        entries = [e for e in kb.entries.values() if category and e.category == category][:TOPIC_ENTRIES]
        topics.append({
            "key": key, "title": en if language == "en" else zh,
            "payload": "/" + commands.ASK_HUMAN if key == "human" else None,
            "entries": [{"entry_id": e.id, "title": e.title(language),
                         "payload": commands.faq_button(e.title(language), e.id).payload} for e in entries],
        })
    return jsonify({"language": language, "topics": topics})
