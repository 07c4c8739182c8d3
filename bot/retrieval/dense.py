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
        elif previous is not None and previous._keeps_lists(len(vectors), vectors.shape[1]):
            index = previous._empty_copy()  # the trained lists stay, the vectors go
        else:
            lists = int(LISTS_PER_ROOT * math.sqrt(len(vectors)))
            quantizer = faiss.IndexFlatIP(vectors.shape[1])
            index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
            index.cp.niter = TRAIN_ITERATIONS
            index.train(vectors[np.random.default_rng(0).permutation(len(vectors))[:lists * TRAIN_PER_LIST]])
        index.add(vectors)
        return cls(index)

    def _keeps_lists(self, size: int, dimension: int) -> bool:
        return isinstance(self._index, faiss.IndexIVF) and self._index.d == dimension \
            and 0.8 <= size / max(self.size, 1) <= 1.25

    def _empty_copy(self) -> faiss.IndexIVFFlat:
        """The same trained lists, no vectors (cloning the whole index copied every vector first)."""
        previous = self._index
        assert isinstance(previous, faiss.IndexIVF)
        return faiss.IndexIVFFlat(faiss.clone_index(previous.quantizer), previous.d, previous.nlist,
                                  previous.metric_type)

    def updated(self, rows: np.ndarray, added: np.ndarray) -> "DenseRetriever":
        """The index of a new document list: document ``i`` is this index's row ``rows[i]``, or (where
        ``rows[i]`` is -1) the next vector of ``added``, in order. A publish that adds or edits a few
        paraphrases: past ``EXACT_LIMIT`` the vectors are copied list by list, renumbered, and only the
        added ones are assigned to lists (a 10,000-entry KB: 2.5 s → ~0.3 s, where reading back 193k
        vectors, gathering them and assigning each to a list again was the time); searches give what a
        build over all the vectors gives (tested)."""
        rows = np.asarray(rows, dtype=np.int64)
        added = np.ascontiguousarray(added, dtype=np.float32).reshape(-1, self._index.d)
        fresh = np.flatnonzero(rows < 0)
        if len(fresh) != len(added):
            raise ValueError(f"{len(fresh)} new documents but {len(added)} vectors")
        kept_rows = rows[rows >= 0]
        if not self._keeps_lists(len(rows), self._index.d) or len(rows) <= EXACT_LIMIT \
                or len(np.unique(kept_rows)) != len(kept_rows):  # one vector twice (the same text in two entries)
            vectors = np.empty((len(rows), self._index.d), dtype=np.float32)
            kept = np.flatnonzero(rows >= 0)
            vectors[kept] = self.vectors()[rows[kept]]
            vectors[fresh] = added
            return DenseRetriever.build(vectors, self)
        previous, index = self._index, self._empty_copy()
        assert isinstance(previous, faiss.IndexIVF)
        renumber = np.full(previous.ntotal, -1, dtype=np.int64)  # previous row -> new document, or -1
        renumber[rows[rows >= 0]] = np.flatnonzero(rows >= 0)
        old_lists, new_lists, code_size = previous.invlists, index.invlists, previous.code_size
        assert old_lists is not None and new_lists is not None
        for number in range(previous.nlist):
            size = old_lists.list_size(number)
            if not size:
                continue
            ids = renumber[faiss.rev_swig_ptr(old_lists.get_ids(number), size)]
            codes = faiss.rev_swig_ptr(old_lists.get_codes(number), size * code_size).reshape(size, code_size)
            keep = ids >= 0
            if not keep.all():
                ids, codes = ids[keep], codes[keep]
            ids, codes = np.ascontiguousarray(ids), np.ascontiguousarray(codes)
            new_lists.add_entries(number, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        if len(added):
            assigned = index.quantizer.assign(added, 1).ravel()
            for number in np.unique(assigned):
                mine = assigned == number
                ids, codes = np.ascontiguousarray(fresh[mine]), np.ascontiguousarray(added[mine]).view(np.uint8)
                new_lists.add_entries(int(number), len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        index.ntotal = len(rows)
        return DenseRetriever(index)

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
