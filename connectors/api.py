"""``/api/v1``: the bot's own JSON API (messages, transcripts, handoff tickets)."""
from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, StrictStr

from bot.messages import Message
from connectors.errors import ApiError, parse_json_body

api = Blueprint("api", __name__, url_prefix="/api/v1")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversation_id: StrictStr | None = None
    user_id: StrictStr
    text: StrictStr
    channel: StrictStr = "web"


def bot():
    return current_app.extensions["hotline_bot"]


STAFF_ENDPOINTS = {"api.get_conversation", "api.list_handoffs", "api.get_handoff"}


@api.before_request
def _staff_only():
    """Transcripts and tickets hold citizens' personal data: with ``HOTLINE_API_TOKEN``
    set, reading them needs ``Authorization: Bearer <token>``."""
    token = current_app.extensions["hotline_settings"].api_token
    if token is None or request.endpoint not in STAFF_ENDPOINTS:
        return None
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(401, "this endpoint needs 'Authorization: Bearer <HOTLINE_API_TOKEN>'")
    return None


@api.post("/messages")
def post_message():
    body = parse_json_body(request, MessageIn)
    reply = bot().handle(Message(user_id=body.user_id, text=body.text, channel=body.channel,
                                 conversation_id=body.conversation_id))
    return jsonify(reply.to_dict())


@api.get("/conversations/<conversation_id>")
def get_conversation(conversation_id: str):
    conversation = bot().store.conversation(conversation_id)
    if conversation is None:
        raise ApiError(404, f"no conversation {conversation_id!r}")
    return jsonify(conversation)


@api.get("/handoffs")
def list_handoffs():
    status = request.args.get("status")
    if status is not None and status not in {"open", "claimed", "resolved", "returned"}:
        raise ApiError(400, "status must be one of open, claimed, resolved, returned", "status")
    return jsonify({"handoffs": bot().store.list_handoffs(status=status)})


@api.get("/handoffs/<int:handoff_id>")
def get_handoff(handoff_id: int):
    handoff = bot().store.handoff(handoff_id)
    if handoff is None:
        raise ApiError(404, f"no handoff {handoff_id}")
    return jsonify(handoff)
