"""Inner-product search over unit vectors in a faiss index: exact up to ``EXACT_LIMIT`` vectors,
approximate (inverted lists) beyond."""
from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

# Up to this many paraphrases every query is scored against all of them (one matrix product:
# ~0.5 ms at today's ~1,800; it grows linearly: a 10,000-entry KB has 124,152 paraphrases, 254 MB
# of vectors read per query). Beyond it, an inverted-file index scores only the nearest lists.
EXACT_LIMIT = 50_000
TOP_K = 256  # approximate search: documents scored per query (the others count as 0, as if far away)
NPROBE = 32  # inverted lists visited per query
# Inverted lists: 2·√n, trained by k-means on 40 vectors a list for 10 iterations. 4·√n lists on 64 a list
# for faiss's default 25 took most of the dense step of a 10,000-entry build (193k vectors: ~2.4 T
# multiply-adds of k-means); this is ~1/20 of it, and a query still scans ~3.6% of the vectors.
LISTS_PER_ROOT = 2
TRAIN_PER_LIST = 40  # faiss asks for at least 39
TRAIN_ITERATIONS = 10


class DenseRetriever:
    """Cosine similarity of a query vector to the indexed paraphrases."""

    def __init__(self, index: faiss.Index):
        self._index = index
        # Exact search scores every paraphrase (a few thousand): one matrix product beats
        # faiss's full top-k sort by ~2 ms per query (measured), with identical scores.
        self._matrix: np.ndarray | None = None
        if isinstance(index, faiss.IndexIVF):
            index.nprobe = NPROBE
            index.make_direct_map()  # reconstruct(): a publish reuses the vectors of unchanged paraphrases
        else:
            self._matrix = np.ascontiguousarray(index.reconstruct_n(0, index.ntotal), dtype=np.float32) \
                if index.ntotal else np.zeros((0, index.d), dtype=np.float32)

    @classmethod
    def build(cls, vectors: np.ndarray, previous: "DenseRetriever | None" = None) -> "DenseRetriever":
        """``previous``: the index this one replaces (a publish). Past ``EXACT_LIMIT`` its trained lists are
        kept when the size has not changed by more than a quarter (a few edited paraphrases do not move
        the clusters), so a publish only refills the lists instead of running k-means again."""
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError("need a non-empty 2-D array of vectors")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(vectors) <= EXACT_LIMIT:
            index: faiss.Index = faiss.IndexFlatIP(vectors.shape[1])
        elif previous is not None and isinstance(previous._index, faiss.IndexIVF) \
                and previous._index.d == vectors.shape[1] and 0.8 <= len(vectors) / max(previous.size, 1) <= 1.25:
            index = faiss.clone_index(previous._index)
            index.reset()  # the trained lists stay, the vectors go
        else:
            lists = int(LISTS_PER_ROOT * math.sqrt(len(vectors)))
            quantizer = faiss.IndexFlatIP(vectors.shape[1])
            index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = TRAIN_ITERATIONS
            index.train(vectors[np.random.default_rng(0).permutation(len(vectors))[:lists * TRAIN_PER_LIST]])
        index.add(vectors)
        return cls(index)

    @property
    def size(self) -> int:
        return int(self._index.ntotal)

    def vectors(self) -> np.ndarray:
        """The indexed vectors, in document order (reused when only some documents change)."""
        if self._matrix is not None:
            return self._matrix
        return np.asarray(self._index.reconstruct_n(0, self._index.ntotal), dtype=np.float32)

    def scores(self, query_vector: np.ndarray) -> np.ndarray:
        """Similarity to every document, in document order (approximate search: 0 outside the top)."""
        query = query_vector.astype(np.float32).ravel()
        if self._matrix is not None:
            return self._matrix @ query
        found, ids = self._index.search(query.reshape(1, -1), TOP_K)
        out = np.zeros(self._index.ntotal, dtype=np.float32)
        keep = ids[0] >= 0
        out[ids[0][keep]] = found[0][keep]
        return out

    def save(self, path: Path) -> None:
        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> "DenseRetriever":
        return cls(faiss.read_index(str(path)))
