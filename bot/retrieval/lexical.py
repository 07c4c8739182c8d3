"""BM25 over jieba words + Chinese character bigrams (bm25s)."""
from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np


class LexicalRetriever:
    """Scores every indexed document for a token list; one document per paraphrase."""

    def __init__(self, model: bm25s.BM25):
        self._model = model

    @classmethod
    def build(cls, documents: list[list[str]]) -> "LexicalRetriever":
        if not documents:
            raise ValueError("cannot build a lexical index over zero documents")
        model = bm25s.BM25()
        # bm25s drops empty documents from its vocabulary; keep positions aligned.
        model.index([doc or ["<empty>"] for doc in documents], show_progress=False)
        return cls(model)

    def scores(self, tokens: list[str]) -> np.ndarray:
        if not tokens:
            return np.zeros(self._model.scores["num_docs"], dtype=np.float32)
        return np.asarray(self._model.get_scores(tokens), dtype=np.float32)

    def save(self, directory: Path) -> None:
        self._model.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> "LexicalRetriever":
        return cls(bm25s.BM25.load(str(directory), show_progress=False))
