"""Emergency red flags: a keyword safety net that runs before anything else.

Retrieval and the classifier can add an emergency but can never remove one
found here: a citizen who types 呼吸困难 gets 120 guidance whatever the KB says.
Patterns live in ``knowledge/safety.yml`` so clinicians can review them.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml


class EmergencyDetector:
    def __init__(self, patterns: list[str]):
        if not patterns:
            raise ValueError("the emergency safety net needs at least one pattern")
        self._patterns = [re.compile(p, re.IGNORECASE) for p in patterns]

    @classmethod
    def from_file(cls, path: Path) -> "EmergencyDetector":
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls([str(p) for p in data.get("emergency_patterns") or []])

    def run(self, normalised_text: str) -> str | None:
        """The matched red-flag phrase, or None."""
        for pattern in self._patterns:
            match = pattern.search(normalised_text)
            if match:
                return match.group(0)
        return None
