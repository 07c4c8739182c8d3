"""rasa-sdk custom actions that delegate FAQ questions to hotline-bot.

An existing Rasa assistant calls ``action_hotline_answer`` (e.g. from an
``faq``/fallback rule); the action forwards the user's latest message to
hotline-bot's ``POST /api/v1/messages`` and utters its replies. The
hotline-bot conversation id lives in the slot ``hotline_conversation_id`` so
follow-up questions continue the same conversation; a handoff ticket id is
stored in ``hotline_handoff_id``.

Optional integration: nothing in hotline-bot imports this module.
"""
from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from typing import Any

import httpx
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

logger = logging.getLogger(__name__)

DEFAULT_URL = "http://127.0.0.1:8000"
CONVERSATION_SLOT = "hotline_conversation_id"
HANDOFF_SLOT = "hotline_handoff_id"
MAX_USER_ID_CHARS = 160  # hotline-bot rejects longer user ids

APOLOGY = ("抱歉，热线问答服务暂时无法使用，请稍后再试。\n"
           "Sorry, the hotline FAQ service is temporarily unavailable. Please try again later.")
FOOTER = {
    "zh": "来源：{source}（更新于 {updated}）",
    "en": "Source: {source} (updated {updated})",
}


def hotline_url() -> str:
    """Base URL of hotline-bot, read per call from ``HOTLINE_BOT_URL``."""
    return os.environ.get("HOTLINE_BOT_URL", DEFAULT_URL).rstrip("/")


def hotline_timeout() -> float:
    """Seconds to wait for hotline-bot (``HOTLINE_BOT_TIMEOUT``, default 10)."""
    try:
        return float(os.environ.get("HOTLINE_BOT_TIMEOUT", "10"))
    except ValueError:
        return 10.0


def render(reply: dict[str, Any], language: str) -> str:
    """Reply text, with the source and updated date under answers (as the Rasa REST channel does)."""
    text = reply.get("text", "")
    source = reply.get("source")
    if source:
        name = " ".join(part for part in (source.get("name"), source.get("url")) if part)
        footer = FOOTER["en" if language == "en" else "zh"]
        text = f"{text}\n\n{footer.format(source=name, updated=reply.get('updated') or '')}"
    return text


class HotlineAction(Action, ABC):
    """Shared logic: send one text to hotline-bot and utter what it says.

    Abstract, so rasa-sdk's action discovery skips it.
    """

    @abstractmethod
    def text_for(self, tracker: Tracker) -> str:
        """The text to send to hotline-bot."""

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker,
                  domain: dict[str, Any]) -> list[dict[str, Any]]:
        text = (self.text_for(tracker) or "").strip()
        if not text:
            logger.warning("%s: no user text to forward", self.name())
            return []
        # hotline-bot's own API channel: the Rasa sender is this integration's user id
        body: dict[str, Any] = {"user_id": str(tracker.sender_id)[:MAX_USER_ID_CHARS], "text": text}
        conversation_id = tracker.get_slot(CONVERSATION_SLOT)
        if conversation_id:
            body["conversation_id"] = str(conversation_id)
        try:
            async with httpx.AsyncClient(timeout=hotline_timeout()) as client:
                response = await client.post(f"{hotline_url()}/api/v1/messages", json=body)
            response.raise_for_status()
            data = response.json()
            replies = data["replies"]
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            logger.error("%s: hotline-bot at %s failed: %r", self.name(), hotline_url(), exc)
            dispatcher.utter_message(text=APOLOGY)
            return []

        language = data.get("language") or "zh"
        for reply in replies:
            buttons = [{"title": b["title"], "payload": b["payload"]} for b in reply.get("buttons") or []]
            dispatcher.utter_message(text=render(reply, language), buttons=buttons)
        events: list[dict[str, Any]] = []
        if data.get("conversation_id"):
            events.append(SlotSet(CONVERSATION_SLOT, data["conversation_id"]))
        if data.get("handoff"):
            events.append(SlotSet(HANDOFF_SLOT, data["handoff"]["id"]))
        return events


class ActionHotlineAnswer(HotlineAction):
    """Answer the user's latest message from hotline-bot's knowledge base."""

    def name(self) -> str:
        return "action_hotline_answer"

    def text_for(self, tracker: Tracker) -> str:
        return (tracker.latest_message or {}).get("text") or ""


class ActionHotlineHandoff(HotlineAction):
    """Ask hotline-bot to hand the conversation to a human agent."""

    def name(self) -> str:
        return "action_hotline_handoff"

    def text_for(self, tracker: Tracker) -> str:
        return "/ask_human"
