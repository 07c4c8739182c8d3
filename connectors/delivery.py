"""Outbound delivery of agent messages to the citizen's channel.

The agent console writes an agent turn and calls ``deliver``; a channel that
pushes (WeChat's customer-service API) registers a sender for its channel name.
Channels that pull (the web widget polls / streams turns) need no sender: the
stored turn is the delivery.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

# sender(app, conversation: dict with id/channel/user_id/language, turn: dict) -> None
Sender = Callable[[Flask, dict[str, Any], dict[str, Any]], None]


def register_sender(app: Flask, channel: str, sender: Sender) -> None:
    app.extensions.setdefault("hotline_senders", {})[channel] = sender


def deliver(app: Flask, conversation: dict[str, Any], turn: dict[str, Any]) -> bool:
    """True when a push sender took the message (or none is needed for this channel)."""
    sender = app.extensions.get("hotline_senders", {}).get(conversation["channel"])
    if sender is None:
        return True
    sender(app, conversation, turn)
    return True
