"""The canonical YAML form of FAQ files: what ``hotline-bot kb export`` writes.

The shipped ``knowledge/faq/*.yml`` files are written in exactly this form, so
export after import reproduces them byte for byte (tested). An entry an editor
changed in the console is written in the same form; a file written by hand in
another style (different key order, quoting, comments) is imported fine but
exported in this canonical form.

The form: ``category: X`` and ``entries:``, entries separated by one blank line,
keys in the order the file had them (schema order for new entries), plain scalars where YAML reads them back unchanged
(double-quoted otherwise), answers as ``|-`` blocks, ``follow_ups`` and ``covers`` as flow lists.
"""
from __future__ import annotations

import datetime as dt
import functools
import json
from typing import TYPE_CHECKING, Any

import yaml

from bot.yaml_files import load_yaml

if TYPE_CHECKING:
    from bot.kb.schema import Contact, Entry

ENTRY_KEYS = ("id", "aspect", "category", "questions", "answer", "source", "updated", "valid_until", "region",
              "variants", "follow_ups", "covers")
VARIANT_KEYS = ("region", "answer", "source", "updated")
SOURCE_KEYS = ("name", "name_en", "url")
DATE_KEYS = ("updated", "valid_until")


def _date(value: Any) -> str:
    """Dates unquoted (YAML reads ``2026-10-15`` as a date, which the schema wants)."""
    return value.isoformat() if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)).isoformat()


def _load(text: str) -> object:
    """libyaml's parser (bot/yaml_files): ~20x faster on a publish's 3,000 scalars."""
    data: object = load_yaml(text)
    return data


# Sized for a 10,000-entry KB (~200k distinct questions and names, ~20k answers): a publish writes the whole
# KB, and with 65,536 and 8,192 these caches were cycled through and never hit (11 s of a 26 s publish).
@functools.lru_cache(maxsize=2 ** 19)
def _plain_ok(text: str) -> bool:
    if not text or text != text.strip() or "\n" in text or "#" in text:
        return False
    try:
        return _load(f"k: {text}") == {"k": text} and _load(f"- {text}") == [text]
    except yaml.YAMLError:
        return False


def scalar(value: Any) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    text = str(value)
    return text if _plain_ok(text) else json.dumps(text, ensure_ascii=False)


@functools.lru_cache(maxsize=2 ** 16)
def _block(text: str, indent: str) -> str:
    """``|-`` block when YAML reads it back unchanged, a quoted scalar otherwise."""
    if text and not text.endswith("\n") and all(line == line.rstrip() for line in text.split("\n")) \
            and not text.startswith((" ", "\t")) and "\t" not in text:
        lines = "\n".join(indent + "  " + line if line else "" for line in text.split("\n"))
        candidate = "|-\n" + lines
        try:
            if _load("k: " + candidate.replace("\n" + indent + "  ", "\n  ")) == {"k": text}:
                return candidate
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def _answer(answer: dict[str, Any], indent: str) -> list[str]:
    return [f"{indent}{lang}: {_block(answer[lang], indent)}" for lang in ("zh", "en") if lang in answer]


def _source(source: dict[str, Any], indent: str) -> list[str]:
    return [f"{indent}{key}: {scalar(source[key])}" for key in SOURCE_KEYS if key in source]


def entry_lines(entry: dict[str, Any]) -> list[str]:
    """One entry (a plain dict as the schema dumps it, None fields left out) as YAML lines."""
    lines: list[str] = []
    for key in entry:
        value = entry.get(key)
        if value is None or (key in ("variants", "follow_ups", "covers") and not value):
            continue
        head = "  - " if not lines else "    "
        if key == "questions":
            lines.append(head + "questions:")
            for lang in ("zh", "en"):
                lines.append(f"      {lang}:")
                lines.extend(f"        - {scalar(q)}" for q in value.get(lang, []))
        elif key == "answer":
            lines.append(head + "answer:")
            lines.extend(_answer(value, "      "))
        elif key == "source":
            lines.append(head + "source:")
            lines.extend(_source(value, "      "))
        elif key in ("follow_ups", "covers"):
            lines.append(head + f"{key}: [" + ", ".join(scalar(v) for v in value) + "]")
        elif key == "variants":
            lines.append(head + "variants:")
            for variant in value:
                first = True
                for vkey in VARIANT_KEYS:
                    if variant.get(vkey) is None:
                        continue
                    vhead = "      - " if first else "        "
                    first = False
                    if vkey == "answer":
                        lines.append(vhead + "answer:")
                        lines.extend(_answer(variant["answer"], "          "))
                    elif vkey == "source":
                        lines.append(vhead + "source:")
                        lines.extend(_source(variant["source"], "          "))
                    elif vkey in DATE_KEYS:
                        lines.append(f"{vhead}{vkey}: {_date(variant[vkey])}")
                    else:
                        lines.append(f"{vhead}{vkey}: {scalar(variant[vkey])}")
        elif key in DATE_KEYS:
            lines.append(f"{head}{key}: {_date(value)}")
        else:
            lines.append(f"{head}{key}: {scalar(value)}")
    return lines


def faq_file(category: str, entries: list[dict[str, Any]]) -> str:
    """A whole ``faq/<category>.yml`` in canonical form."""
    blocks = ["\n".join(entry_lines(e)) for e in entries]
    return f"category: {scalar(category)}\nentries:\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def entry_dict(entry: Entry, order: list[str] | None = None) -> dict[str, Any]:
    """A validated ``Entry`` as the plain JSON-able dict stored in the database, keys in
    ``order`` (the order the imported file had them; schema order for the rest)."""
    data = entry.model_dump(mode="json", exclude_none=True)
    rank: dict[str, int] = {}
    for key in [*(order or []), *ENTRY_KEYS]:
        rank.setdefault(key, len(rank))
    return {key: data[key] for key in sorted(data, key=lambda k: rank.get(k, len(rank)))}


CONTACT_KEYS = ("id", "kind", "name", "name_en", "region", "phone", "hours", "hours_en", "address", "address_en",
                "source", "last_verified")


def contacts_file(contacts: list[dict[str, Any]]) -> str:
    """``contacts.yml`` in canonical form (the shipped file is written in it)."""
    blocks = []
    for contact in contacts:
        lines: list[str] = []
        for key, value in contact.items():
            if value is None:
                continue
            head = "  - " if not lines else "    "
            lines.append(f"{head}{key}: {_date(value) if key == 'last_verified' else scalar(value)}")
        blocks.append("\n".join(lines))
    return "contacts:\n" + "\n\n".join(blocks) + ("\n" if blocks else "")


def contact_dict(contact: Contact, order: list[str] | None = None) -> dict[str, Any]:
    data = contact.model_dump(mode="json", exclude_none=True)
    rank: dict[str, int] = {}
    for key in [*(order or []), *CONTACT_KEYS]:
        rank.setdefault(key, len(rank))
    return {key: data[key] for key in sorted(data, key=lambda k: rank.get(k, len(rank)))}
