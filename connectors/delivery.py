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
# status(app, conversation_id) -> what the agent must know before replying (e.g. WeChat's
# 48-hour / 5-message window), or None
StatusProvider = Callable[[Flask, str], "dict[str, Any] | None"]


def register_sender(app: Flask, channel: str, sender: Sender) -> None:
    app.extensions.setdefault("hotline_senders", {})[channel] = sender


def deliver(app: Flask, conversation: dict[str, Any], turn: dict[str, Any]) -> bool:
    """True when a push sender took the message (or none is needed for this channel)."""
    sender = app.extensions.get("hotline_senders", {}).get(conversation["channel"])
    if sender is None:
        return True
    sender(app, conversation, turn)
    return True


def register_status(app: Flask, channel: str, provider: StatusProvider) -> None:
    app.extensions.setdefault("hotline_channel_status", {})[channel] = provider


def channel_status(app: Flask, channel: str, conversation_id: str) -> dict[str, Any] | None:
    """The channel's delivery constraints for this conversation, shown to the agent."""
    provider = app.extensions.get("hotline_channel_status", {}).get(channel)
    return provider(app, conversation_id) if provider is not None else None
