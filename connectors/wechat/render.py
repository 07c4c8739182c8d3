"""Engine replies as WeChat text: answer, source footer, buttons as numbered options.

WeChat text has no buttons that work for every account type, so options are
numbered lines; the payloads are stored per user and a reply of "1", "2", …
is mapped back to the payload (``option_payload``).
"""
from __future__ import annotations

import unicodedata

from bot.messages import Reply

MENU_CATEGORIES = ("testing", "health_code", "quarantine", "vaccination", "travel")
MAX_OPTIONS = 9


def text(bot, key: str, language: str) -> str:
    """A fixed reply from ``knowledge/responses.yml``, where KB editors can reword it."""
    return bot.responses(key, language)


def options_block(bot, titles: list[str], language: str) -> str:
    lines = [text(bot, "choose_number", language)] + [f"{i}. {title}" for i, title in enumerate(titles, 1)]
    return "\n".join(lines)


def render_reply(bot, reply: Reply, max_bytes: int) -> tuple[str, list[str]]:
    """One text for all reply messages (a passive reply carries one message) and the option payloads."""
    parts: list[str] = []
    titles: list[str] = []
    payloads: list[str] = []
    for message in reply.replies:
        parts.append(bot.responses.with_footer(message, reply.language))
        for button in message.buttons:
            if len(payloads) < MAX_OPTIONS:
                titles.append(button.title)
                payloads.append(button.payload)
    body = "\n\n".join(p for p in parts if p)
    if titles:
        block = options_block(bot, titles, reply.language)
        body = truncate(body, max_bytes - len(block.encode()) - 2) + "\n\n" + block
    return truncate(body, max_bytes), payloads


def welcome(bot, language: str, max_bytes: int) -> tuple[str, list[str]]:
    """Greeting plus a numbered menu: one popular question per main category, then a human."""
    from bot import commands

    titles, payloads = [], []
    for category in MENU_CATEGORIES:
        entry = next((e for e in bot.kb.entries.values() if e.category == category), None)
        if entry is not None:
            titles.append(entry.title(language))
            payloads.append(commands.faq_button(entry.title(language), entry.id).payload)
    titles.append(bot.responses("talk_to_person", language))
    payloads.append("/" + commands.ASK_HUMAN)
    lines = [bot.responses("greet", language), "", text(bot, "menu_intro", language)]
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
    """Cut at a character boundary so the UTF-8 text fits WeChat's limit."""
    if max_bytes <= 0:
        return ""
    raw = value.encode("utf-8")
    if len(raw) <= max_bytes:
        return value
    return raw[:max(0, max_bytes - 3)].decode("utf-8", "ignore") + "…"
