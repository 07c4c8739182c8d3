"""Exact inner-product search over unit vectors in a faiss index."""
from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np


class DenseRetriever:
    """Cosine similarity of a query vector to every indexed paraphrase."""

    def __init__(self, index: faiss.Index):
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> "DenseRetriever":
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError("need a non-empty 2-D array of vectors")
        index = faiss.IndexFlatIP(vectors.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return cls(index)

    @property
    def size(self) -> int:
        return self._index.ntotal

    def scores(self, query_vector: np.ndarray) -> np.ndarray:
        """Similarity to every document, in document order."""
        sims, ids = self._index.search(query_vector.reshape(1, -1).astype(np.float32), self.size)
        out = np.zeros(self.size, dtype=np.float32)
        valid = ids[0] >= 0
        out[ids[0][valid]] = sims[0][valid]
        return out

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> "DenseRetriever":
        return cls(faiss.read_index(str(path)))
