"""Button payloads, in the Rasa convention ``/intent`` or ``/intent{"key": "value"}``.

Quick-reply buttons send their payload back as the message text, so Rasa
widgets and our own widget both drive did-you-mean and follow-ups this way.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from bot.messages import Button

_COMMAND = re.compile(r"^/([a-z_]+)(\{.*\})?$", re.DOTALL)
MAX_ARGS_CHARS = 500  # real payloads are a few dozen characters

FAQ = "faq"
NONE_OF_THESE = "none_of_these"
ASK_HUMAN = "ask_human"
TOPIC = "topic"    # /topic{"category": "testing"}: the menu's topic buttons
REGION = "region"  # /region{"name": "北京市", "entry": "..."}: the answer to "which city?"


@dataclass(frozen=True)
class Command:
    name: str
    args: dict[str, Any] = field(default_factory=dict)


def parse_command(text: str) -> Command | None:
    match = _COMMAND.match(text.strip())
    if not match:
        return None
    args = {}
    if match.group(2):
        if len(match.group(2)) > MAX_ARGS_CHARS:
            return None
        try:
            args = json.loads(match.group(2))
        except (ValueError, RecursionError):  # e.g. JSON nested ~990 deep: not a payload of ours
            return None
        if not isinstance(args, dict):
            return None
    return Command(match.group(1), args)


def faq_button(title: str, entry_id: str) -> Button:
    return Button(title=title, payload="/faq" + json.dumps({"entry": entry_id}, ensure_ascii=False))


def simple_button(title: str, name: str) -> Button:
    return Button(title=title, payload="/" + name)


def topic_button(title: str, category: str) -> Button:
    return Button(title=title, payload="/" + TOPIC + json.dumps({"category": category}, ensure_ascii=False))


def region_button(title: str, region: str, entry_id: str | None = None) -> Button:
    args = {"name": region} | ({"entry": entry_id} if entry_id else {})
    return Button(title=title, payload="/" + REGION + json.dumps(args, ensure_ascii=False))
