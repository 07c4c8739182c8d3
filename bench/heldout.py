"""The project's own held-out paraphrase set (bench/data/heldout_*.yml).

Written for evaluation only: never indexed. A stable hash splits it into a
``dev`` half (threshold calibration) and a ``test`` half (reported numbers).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

DATA_DIR = Path(__file__).resolve().parent / "data"


@dataclass(frozen=True)
class HeldOutQuestion:
    text: str
    lang: str
    expected: str | None

    @property
    def split(self) -> str:
        return "dev" if int(hashlib.sha1(self.text.encode()).hexdigest(), 16) % 2 == 0 else "test"


def load_heldout(split: str | None = None, data_dir: Path = DATA_DIR) -> list[HeldOutQuestion]:
    items: list[HeldOutQuestion] = []
    for path in sorted(data_dir.glob("heldout_*.yml")):
        for row in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            items.append(HeldOutQuestion(str(row["text"]), str(row["lang"]), row.get("expected")))
    return [q for q in items if split is None or q.split == split]
