"""Messages that name only a topic: "疫苗", "我想問一下疫苗的事", "I have a question about vaccines".

Such a message asks for a topic, not for one answer: it gets the topic's questions as buttons, as if the citizen
had tapped the topic in the menu. Before, retrieval picked an entry by score — "疫苗" was answered with
testing.after_vaccination, "核酸" with testing.pcr_fee, and "我想问一下疫苗的事" was "not covered" (P 0.23).
The lists are data (``knowledge/scope/topics.yml``); a topic is a KB category.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from bot.yaml_files import load_yaml

__all__ = ["TOPICS_FILE", "TopicOpeners"]

TOPICS_FILE = "scope/topics.yml"
_LATIN_WORD = re.compile(r"[a-z][a-z']*")
_NOT_TEXT = re.compile(r"[\s\W_]+")


class TopicOpeners:
    def __init__(self, topics: Mapping[str, Sequence[str]], fillers_zh: Sequence[str] = (),
                 fillers_en: Sequence[str] = ()):
        self._keywords: dict[str, str] = {}
        for topic, keywords in topics.items():
            for keyword in keywords:
                key = self._key(str(keyword).lower())
                if self._keywords.setdefault(key, topic) != topic:
                    raise ValueError(f"topics: keyword {keyword!r} is in two topics")
        zh = sorted({f for f in fillers_zh if f}, key=len, reverse=True)
        self._zh = re.compile("|".join(re.escape(f) for f in zh)) if zh else None
        self._en = frozenset(str(f).lower() for f in fillers_en)

    @classmethod
    def from_dir(cls, knowledge_dir: Path | str) -> "TopicOpeners":
        """The KB's lists, or none (nothing is a topic opener) when the KB ships no file."""
        path = Path(knowledge_dir) / TOPICS_FILE
        data = (load_yaml(path) or {}) if path.exists() else {}
        fillers = data.get("fillers") or {}
        return cls({str(k): [str(v) for v in vs or []] for k, vs in (data.get("topics") or {}).items()},
                   [str(f) for f in fillers.get("zh") or []], [str(f) for f in fillers.get("en") or []])

    @staticmethod
    def _key(text: str, drop: frozenset[str] = frozenset()) -> str:
        """Latin words (but ``drop``) joined by one space, everything else without spaces: "health  code",
        "健康 码". Keywords and messages are compared by this key."""
        words = [w for w in _LATIN_WORD.findall(text) if w not in drop]
        return " ".join(words) + "|" + _NOT_TEXT.sub("", _LATIN_WORD.sub(" ", text))

    def find(self, normalised: str) -> str | None:
        """The topic ``normalised`` (``bot.text.normalise``) names and nothing else, or None."""
        if not self._keywords or len(normalised) > 80:
            return None
        normalised = normalised.replace("’", "'")  # I’d, I’m
        text = self._zh.sub(" ", normalised) if self._zh is not None else normalised
        return self._keywords.get(self._key(text, self._en))  # nothing left ("|") is no keyword's key
