"""Rasa REST channel compatibility, so existing Rasa web widgets work unchanged.

``POST /webhooks/rest/webhook`` {sender, message} → [{recipient_id, text, buttons?}].
The Rasa sender id is our user id; its conversation id is derived from it, as
Rasa keys a tracker by sender.
"""
from __future__ import annotations

from flask import Blueprint, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, StrictStr

from bot.messages import Message
from connectors.errors import parse_json_body

rasa_rest = Blueprint("rasa_rest", __name__, url_prefix="/webhooks/rest")


class RasaMessageIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    sender: StrictStr
    message: StrictStr


@rasa_rest.get("/")
def health():
    return jsonify({"status": "ok"})


@rasa_rest.post("/webhook")
def webhook():
    body = parse_json_body(request, RasaMessageIn)
    bot = current_app.extensions["hotline_bot"]
    reply = bot.handle(Message(user_id=body.sender, text=body.message, channel="rasa",
                               conversation_id=f"rasa-{body.sender}"[:64]))
    out = []
    for message in reply.replies:
        item = {"recipient_id": body.sender, "text": bot.responses.with_footer(message, reply.language)}
        if message.buttons:
            item["buttons"] = [{"title": b.title, "payload": b.payload} for b in message.buttons]
        out.append(item)
    return jsonify(out)
