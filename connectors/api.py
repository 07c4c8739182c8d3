"""``/api/v1``: the bot's own JSON API (messages, transcripts, handoff tickets)."""
from __future__ import annotations

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
