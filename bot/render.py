"""One renderer per channel kind, so an answer looks the same wherever it goes.

- rich (web widget, ``/api/v1``): ``Reply.to_dict()``: text, buttons, source and date as fields
- text + buttons (Rasa REST): the source footer folded into the text, buttons kept
- numbered text (WeChat): one text, buttons as numbered lines; "2" picks the second

The source footer has exactly one implementation (``with_footer``), worded in
``knowledge/responses.yml``. Tap-to-call buttons (``tel:``) exist only where a
tap can dial: text channels already carry the number in the emergency text.
"""
from __future__ import annotations

import unicodedata
from typing import Any

from bot import commands
from bot.kb import Entry, KnowledgeBase
from bot.messages import Button, Reply, ReplyMessage
from bot.responses import Responses

MENU_CATEGORIES = ("testing", "health_code", "quarantine", "vaccination", "travel")
MAX_OPTIONS = 9


def _dialable(button: Button) -> bool:
    return button.payload.startswith("tel:")


def with_footer(message: ReplyMessage, language: str, responses: Responses) -> str:
    """The text as plain-text channels show it: an answer carries its source and date."""
    if not message.source:
        return message.text
    footer = responses("answer_footer", language, source=f"{message.source['name']} {message.source['url']}",
                       updated=message.updated or "")
    return f"{message.text}\n\n{footer}"


def render_text_messages(reply: Reply, responses: Responses) -> list[dict[str, Any]]:
    """Rasa REST: one item per message, ``{text, buttons?}``."""
    out = []
    for message in reply.replies:
        item: dict[str, Any] = {"text": with_footer(message, reply.language, responses)}
        buttons = [b for b in message.buttons if not _dialable(b)]
        if buttons:
            item["buttons"] = [{"title": b.title, "payload": b.payload} for b in buttons]
        out.append(item)
    return out


def render_numbered(reply: Reply, responses: Responses, max_bytes: int) -> tuple[str, list[str]]:
    """WeChat: one text for all reply messages and the payloads of its numbered options."""
    parts: list[str] = []
    titles: list[str] = []
    payloads: list[str] = []
    for message in reply.replies:
        parts.append(with_footer(message, reply.language, responses))
        for button in message.buttons:
            if len(payloads) < MAX_OPTIONS and not _dialable(button):
                titles.append(button.title)
                payloads.append(button.payload)
    body = "\n\n".join(p for p in parts if p)
    if titles:
        block = options_block(responses, titles, reply.language)
        body = truncate(body, max_bytes - len(block.encode()) - 2) + "\n\n" + block
    return truncate(body, max_bytes), payloads


def options_block(responses: Responses, titles: list[str], language: str) -> str:
    lines = [responses("choose_number", language)] + [f"{i}. {title}" for i, title in enumerate(titles, 1)]
    return "\n".join(lines)


def welcome(kb: KnowledgeBase, responses: Responses, language: str, max_bytes: int) -> tuple[str, list[str]]:
    """Greeting plus a numbered menu: one popular question per main category, then a human."""
    titles, payloads = [], []
    for category in MENU_CATEGORIES:
        entry = next((e for e in kb.entries.values() if e.category == category), None)
        if entry is not None:
            titles.append(entry.title(language))
            payloads.append(commands.faq_button(entry.title(language), entry.id).payload)
    titles.append(responses("talk_to_person", language))
    payloads.append("/" + commands.ASK_HUMAN)
    lines = [responses("greet", language), "", responses("menu_intro", language)]
    lines += [f"{i}. {title}" for i, title in enumerate(titles, 1)]
    return truncate("\n".join(lines), max_bytes), payloads


def option_payload(user_text: str, options: list[str]) -> str | None:
    """"2" (or "２", " 2 ") picks the second option last shown; anything else is a question."""
    stripped = unicodedata.normalize("NFKC", user_text).strip().rstrip(".。")
    if stripped.isdigit() and len(stripped) <= 2:
        index = int(stripped) - 1
        if 0 <= index < len(options):
            return options[index]
    return None


def split(value: str, max_bytes: int) -> list[str]:
    """Consecutive pieces of at most ``max_bytes`` UTF-8 bytes, cut at line ends when possible."""
    pieces: list[str] = []
    rest = value
    while len(rest.encode("utf-8")) > max_bytes:
        head = rest.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
        cut = head.rfind("\n")
        if cut > len(head) // 2:
            head = head[:cut + 1]
        pieces.append(head.rstrip())
        rest = rest[len(head):]
    if rest.strip() or not pieces:
        pieces.append(rest.strip())
    return [p for p in pieces if p]


def truncate(value: str, max_bytes: int) -> str:
    """Cut at a character boundary so the UTF-8 text fits the channel's limit."""
    if max_bytes <= 0:
        return ""
    raw = value.encode("utf-8")
    if len(raw) <= max_bytes:
        return value
    return raw[:max(0, max_bytes - 3)].decode("utf-8", "ignore") + "…"


def kb_item(entry: Entry, language: str, score: float | None = None) -> dict[str, Any]:
    """A KB entry as staff see it (search results, candidates of a ticket)."""
    return {"entry_id": entry.id, "title": entry.title(language), "score": score,
            "answer": entry.answer.en if language == "en" else entry.answer.zh,
            "source": {"name": entry.source.name, "url": str(entry.source.url)},
            "updated": entry.updated.isoformat(), "category": entry.category, "region": entry.region}
