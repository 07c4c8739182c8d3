"""The bot's fixed bilingual replies, kept as data in ``knowledge/responses.yml``."""
from __future__ import annotations

from bot.yaml_files import load_yaml

from pathlib import Path


REQUIRED_KEYS = (
    "emergency", "handoff", "handoff_waiting", "handoff_after_failures", "rephrase", "did_you_mean",
    "none_of_these", "talk_to_person", "policy_changed", "greet", "goodbye", "thanks", "complaint",
    "out_of_scope", "answer_footer", "related", "choose_number", "menu_intro", "text_only", "too_long", "busy",
    "call_120", "already_waiting", "desk_claimed", "desk_resolved", "desk_returned", "desk_transferred", "too_many",
    "emergency_mental_health", "call_12356", "not_covered", "ask_region", "region_elsewhere", "variant_default", "menu",
)


class Responses:
    def __init__(self, templates: dict[str, dict[str, str]]):
        for key in REQUIRED_KEYS:
            for lang in ("zh", "en"):
                if not isinstance(templates.get(key, {}).get(lang), str):
                    raise ValueError(f"responses.yml: entry {key}: field {lang}: missing text")
        self._templates = templates

    @classmethod
    def from_file(cls, path: Path) -> "Responses":
        return cls(load_yaml(path) or {})

    def __call__(self, key: str, language: str, **values: object) -> str:
        return self._templates[key]["en" if language == "en" else "zh"].format(**values)

    def get(self, key: str, language: str, default: str) -> str:
        """An optional template (e.g. ``topic_<category>``), or ``default`` when the KB has none."""
        if key not in self._templates:
            return default
        return self(key, language)
