"""``/api/v1``: the bot's own JSON channel (``api``) and the staff read API.

Identity belongs to the channel: messages posted here are always channel ``api``
(a ``channel`` field naming another channel is refused), conversation ids are
minted by the server, and a conversation can only be continued by the user it
belongs to. Transcripts and tickets are staff data: a staff session, the bearer
token (``HOTLINE_API_TOKEN``) or, for development only, ``HOTLINE_OPEN_READ_API=1``.
"""
from __future__ import annotations

from typing import Literal

from flask import Blueprint, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from bot.messages import Message
from connectors.context import client_ip, services, staff_read_allowed
from connectors.errors import ApiError, parse_json_body, query_int
from connectors.limits import allow, would_allow
from connectors.metrics import count_message

api = Blueprint("api", __name__, url_prefix="/api/v1")


class MessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: StrictStr = Field(min_length=1, max_length=160)
    text: StrictStr
    conversation_id: StrictStr | None = Field(default=None, max_length=64)
    client_message_id: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    new_conversation: StrictBool = False
    channel: Literal["api"] = "api"  # other channels have their own connectors and identities


def handle_message(message: Message):
    """Shared by the message-posting channels: the handoff budget per IP, then the bot."""
    svc = services()
    ip = client_ip()
    if not would_allow(svc.settings.limits.handoffs_per_ip, "handoffs", ip):
        raise ApiError(429, "too many handoffs from this address; please call the hotline",
                       extra={"text": {"zh": svc.bot.responses("too_many", "zh"),
                                       "en": svc.bot.responses("too_many", "en")}})
    reply = svc.bot.handle(message)
    count_message(message.channel, reply)
    if reply.handoff_opened:
        allow(svc.settings.limits.handoffs_per_ip, "handoffs", ip)
    return reply


@api.post("/messages")
def post_message():
    body = parse_json_body(MessageIn)
    key = request.headers.get("Idempotency-Key") or body.client_message_id
    reply = handle_message(Message(user_id=body.user_id, text=body.text, channel="api",
                                   conversation_id=body.conversation_id, new_conversation=body.new_conversation,
                                   client_message_id=key))
    return jsonify(reply.to_dict())


@api.before_request
def _staff_only():
    if request.endpoint in {"api.get_conversation", "api.list_handoffs", "api.get_handoff"} \
            and not staff_read_allowed():
        raise ApiError(401, "staff only: log in to the console, or send 'Authorization: Bearer <HOTLINE_API_TOKEN>'")


@api.get("/conversations/<conversation_id>")
def get_conversation(conversation_id: str):
    conversation = services().desk.transcript(conversation_id) if conversation_id.isalnum() else None
    if conversation is None:
        raise ApiError(404, f"no conversation {conversation_id!r}")
    return jsonify(conversation)


@api.get("/handoffs")
def list_handoffs():
    status = request.args.get("status")
    if status is not None and status not in {"waiting", "claimed", "resolved", "returned", "abandoned"}:
        raise ApiError(400, "status: must be one of waiting, claimed, resolved, returned, abandoned", "status")
    limit = min(query_int("limit", 100), 1000)
    return jsonify({"handoffs": services().desk.list_handoffs(status=status, limit=limit)})


@api.get("/handoffs/<int:handoff_id>")
def get_handoff(handoff_id: int):
    return jsonify(services().desk.handoff(handoff_id))
