"""Rasa REST channel compatibility, so existing Rasa web widgets work unchanged.

``POST /webhooks/rest/webhook`` {sender, message} → [{recipient_id, text, buttons?}].
The Rasa sender id is the user; which conversation it continues is the channel's
own identity record (``rasa``, sender), as Rasa keys a tracker by sender.
"""
from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from bot.messages import Message
from bot.render import render_text_messages
from connectors.api import handle_message
from connectors.context import services
from connectors.errors import parse_json_body

rasa_rest = Blueprint("rasa_rest", __name__, url_prefix="/webhooks/rest")


class RasaMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sender: StrictStr = Field(min_length=1, max_length=160)
    message: StrictStr


@rasa_rest.get("/")
def health():
    return jsonify({"status": "ok"})


@rasa_rest.post("/webhook")
def webhook():
    body = parse_json_body(RasaMessageIn)
    svc = services()
    reply = handle_message(Message(user_id=body.sender, text=body.message, channel="rasa"))
    return jsonify([{"recipient_id": body.sender} | item
                    for item in render_text_messages(reply, svc.bot.responses)])
