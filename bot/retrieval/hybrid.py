"""Fuses lexical and dense evidence into one calibrated score per KB entry.

Score = w·cosine + (1−w)·bm25/(bm25+s), the best paraphrase of each entry
counting. Both parts live in [0, 1], so the thresholds in
``knowledge/thresholds/<encoder>.yml`` keep their meaning across queries; ``w`` and ``s``
are calibrated by ``bench/calibrate.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.retrieval.dense import DenseRetriever
from bot.retrieval.lexical import LexicalRetriever


@dataclass(frozen=True)
class Candidate:
    entry_id: str
    score: float
    dense: float
    lexical: float


class HybridRetriever:
    def __init__(self, doc_entry_ids: list[str], lexical: LexicalRetriever, dense: DenseRetriever,
                 dense_weight: float, lexical_saturation: float, lexical_entry_ids: list[str] | None = None):
        """``doc_entry_ids`` maps each dense document to its entry; the lexical
        index may hold more documents (answer texts too): ``lexical_entry_ids``."""
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError("dense_weight must be within [0, 1]")
        if lexical_saturation <= 0:
            raise ValueError("lexical_saturation must be > 0")
        if dense.size != len(doc_entry_ids):
            raise ValueError("dense index and document list disagree in size")
        self.dense_weight = dense_weight
        self.lexical_saturation = lexical_saturation
        self._lexical = lexical
        self._dense = dense
        lexical_entry_ids = doc_entry_ids if lexical_entry_ids is None else lexical_entry_ids
        self._entry_ids = sorted(set(doc_entry_ids) | set(lexical_entry_ids))
        position = {entry_id: i for i, entry_id in enumerate(self._entry_ids)}
        self._dense_entry = np.array([position[e] for e in doc_entry_ids], dtype=np.int64)
        self._lexical_entry = np.array([position[e] for e in lexical_entry_ids], dtype=np.int64)

    def run(self, tokens: list[str], query_vector: np.ndarray, top_k: int = 10,
            exclude: frozenset[str] = frozenset()) -> list[Candidate]:
        """Best ``top_k`` entries, best first."""
        dense_per_entry = self._max_per_entry(self._dense.scores(query_vector), self._dense_entry)
        raw_lexical = self._max_per_entry(self._lexical.scores(tokens), self._lexical_entry)
        lexical_per_entry = raw_lexical / (raw_lexical + self.lexical_saturation)
        fused = self.dense_weight * dense_per_entry + (1.0 - self.dense_weight) * lexical_per_entry
        order = np.argsort(-fused, kind="stable")
        out: list[Candidate] = []
        for i in order:
            entry_id = self._entry_ids[i]
            if entry_id in exclude:
                continue
            out.append(Candidate(entry_id, float(fused[i]), float(dense_per_entry[i]), float(lexical_per_entry[i])))
            if len(out) == top_k:
                break
        return out

    def _max_per_entry(self, doc_scores: np.ndarray, doc_entry: np.ndarray) -> np.ndarray:
        per_entry = np.full(len(self._entry_ids), -np.inf, dtype=np.float32)
        np.maximum.at(per_entry, doc_entry, doc_scores.astype(np.float32))
        return np.maximum(per_entry, 0.0)
