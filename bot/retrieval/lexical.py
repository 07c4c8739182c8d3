"""BM25 over jieba words + Chinese character bigrams (bm25s)."""
from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import bm25s
import numpy as np
from scipy import sparse

STATE_FILE = "counts.npz"  # beside bm25s's own files: what a publish needs to update the index in place
_SEPARATOR = "\x00"  # joins the documents' texts and the vocabulary in STATE_FILE (never inside a text)


def _counts(corpus_token_ids: Sequence[Sequence[int]], n_vocab: int) -> sparse.csr_matrix:
    """Term counts, documents × vocabulary (int32), with sorted columns in every row."""
    n_docs = len(corpus_token_ids)
    lengths = np.fromiter(map(len, corpus_token_ids), dtype=np.int64, count=n_docs)
    flat = np.fromiter(chain.from_iterable(corpus_token_ids), dtype=np.int64, count=int(lengths.sum()))
    docs = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    pairs, tf = np.unique(docs * n_vocab + flat, return_counts=True)
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(np.bincount(pairs // n_vocab, minlength=n_docs), out=indptr[1:])
    return sparse.csr_matrix((tf.astype(np.int32), (pairs % n_vocab).astype(np.int32), indptr),
                             shape=(n_docs, n_vocab))


def _score_matrix(counts: sparse.csr_matrix, k1: float, b: float, dtype: str, int_dtype: str) -> dict[str, Any]:
    """bm25s's Lucene BM25 (k1 1.5, b 0.75, Lucene idf) of a term-count matrix, in bm25s's layout: a CSC
    matrix documents × vocabulary. A vocabulary column no document uses scores nothing (as an unknown word)."""
    n_docs, n_vocab = counts.shape
    lengths = np.asarray(counts.sum(axis=1), dtype=np.int64).ravel()  # tokens per document
    vocab_idx = counts.indices
    df = np.bincount(vocab_idx, minlength=n_vocab)
    idf = np.log(1 + (n_docs - df + 0.5) / (df + 0.5)).astype(dtype)
    avg = lengths.mean()
    tf = counts.data.astype(dtype)
    tfc = tf / (k1 * ((1 - b) + b * np.repeat(lengths, np.diff(counts.indptr)) / avg) + tf)
    matrix = sparse.csr_matrix(((idf[vocab_idx] * tfc).astype(dtype), vocab_idx, counts.indptr),
                               shape=(n_docs, n_vocab)).tocsc()
    return {"data": matrix.data, "indices": matrix.indices.astype(int_dtype),
            "indptr": matrix.indptr.astype(np.int64), "num_docs": n_docs}


class _VectorisedBM25(bm25s.BM25):  # type: ignore[misc]  # bm25s ships no types
    """bm25s's own model, its scores built with array operations instead of a Python loop per document.

    ``build_index_from_ids`` is bm25s's documented extension point ("override this function if you want to
    build the index in a different way"). bm25s counts document frequencies and scores one document at a
    time: 10.6 of 14.2 s (profiled) of rebuilding the lexical index of a 10,000-entry KB (213k documents),
    which every publish does. The same Lucene BM25 (its defaults: k1 1.5, b 0.75, Lucene idf) over
    ``np.unique`` of (document, token) pairs gives the same score matrix, bit for bit (tested)."""

    def build_index_from_ids(self, unique_token_ids: list[int], corpus_token_ids: list[list[int]],
                             show_progress: bool = True, leave_progress: bool = False) -> dict[str, object]:
        if self.method != "lucene" or self.idf_method != "lucene":
            return dict(super().build_index_from_ids(unique_token_ids, corpus_token_ids, show_progress,
                                                     leave_progress))
        self.nonoccurrence_array = None
        return _score_matrix(_counts(corpus_token_ids, len(unique_token_ids)), self.k1, self.b, self.dtype,
                             self.int_dtype)

    def install(self, counts: sparse.csr_matrix, vocabulary: dict[str, int]) -> None:
        """Become the index of these term counts (what ``index()`` leaves behind, without its token loop)."""
        self.scores = _score_matrix(counts, self.k1, self.b, self.dtype, self.int_dtype)
        self.nonoccurrence_array = None
        self.vocab_dict = dict(vocabulary)
        if "" not in self.vocab_dict:  # bm25s's empty token, past the last column
            self.vocab_dict[""] = counts.shape[1]
        self.unique_token_ids_set = set(self.vocab_dict.values())


class _State:
    """What updating the index needs: each document's text (its key) and term counts, and the vocabulary
    (column order). Kept by the process that built the index, read from ``STATE_FILE`` for a loaded one."""

    def __init__(self, texts: list[str], counts: sparse.csr_matrix, vocabulary: dict[str, int]):
        self.texts, self.counts, self.vocabulary = texts, counts, vocabulary

    def save(self, path: Path) -> None:
        """Not written when a text holds the separator: that index is rebuilt in full by the next publish."""
        words = [""] * len(self.vocabulary)
        for word, column in self.vocabulary.items():
            words[column] = word
        texts, vocabulary = _SEPARATOR.join(self.texts), _SEPARATOR.join(words)
        if texts.count(_SEPARATOR) != len(self.texts) - 1 or vocabulary.count(_SEPARATOR) != len(words) - 1:
            return
        with open(path, "wb") as handle:  # np.savez appends ".npz" to a bare path name
            np.savez(handle, texts=np.frombuffer(texts.encode(), dtype=np.uint8),
                     words=np.frombuffer(vocabulary.encode(), dtype=np.uint8),
                     # counts are small (at most 10 at 10,000 entries): uint8 on disk, 20 → 5 MB there
                     data=self.counts.data.astype(np.min_scalar_type(int(self.counts.data.max(initial=0)))),
                     indices=self.counts.indices, indptr=self.counts.indptr,
                     shape=np.asarray(self.counts.shape, dtype=np.int64))

    @classmethod
    def load(cls, path: Path) -> "_State | None":
        """None when the file is missing or does not add up (an index saved before it existed)."""
        try:
            with np.load(path) as saved:  # one file: a folder replaced meanwhile cannot mix two versions
                texts = saved["texts"].tobytes().decode().split(_SEPARATOR)
                words = saved["words"].tobytes().decode().split(_SEPARATOR)
                shape = tuple(int(n) for n in saved["shape"])
                counts = sparse.csr_matrix((saved["data"].astype(np.int32), saved["indices"], saved["indptr"]),
                                           shape=shape)
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None
        if counts.shape != (len(texts), len(words)):
            return None
        return cls(texts, counts, {word: column for column, word in enumerate(words)})


class LexicalRetriever:
    """Scores every indexed document for a token list; one document per paraphrase (or answer)."""

    def __init__(self, model: bm25s.BM25, state: _State | None = None, state_path: Path | None = None):
        self._model = model
        self._state = state
        self._state_path = state_path  # a loaded index reads its state only when a publish needs it

    @classmethod
    def build(cls, texts: Sequence[str], tokens_of: Callable[[str], list[str]],
              previous: "LexicalRetriever | None" = None) -> "LexicalRetriever":
        """The index of ``texts`` (one document each, tokenised by ``tokens_of``). With ``previous`` (the
        index being replaced, by a publish), only texts it did not hold are tokenised and counted; the
        rest keep their counts and the scores are recomputed from the counts: the same scores as a fresh
        build (tested), 1.9 → 0.3 s for a 10,000-entry KB's 213k documents, where converting every token
        to its id in bm25s's Python loop was most of the time."""
        if not texts:
            raise ValueError("cannot build a lexical index over zero documents")
        texts = list(texts)
        state = previous.state() if previous is not None else None
        vocabulary = dict(state.vocabulary) if state is not None else {}
        rows = np.full(len(texts), -1, dtype=np.int64)  # each text's row in the previous counts, or -1
        if state is not None:
            position = {text: row for row, text in enumerate(state.texts)}
            rows = np.fromiter((position.get(text, -1) for text in texts), dtype=np.int64, count=len(texts))
        added = np.flatnonzero(rows < 0)
        added_ids = []
        for i in added:
            ids = []
            for token in tokens_of(texts[i]) or ["<empty>"]:  # bm25s drops empty documents: keep positions
                column = vocabulary.get(token)
                if column is None:
                    column = vocabulary[token] = len(vocabulary)
                ids.append(column)
            added_ids.append(ids)
        counts = _counts(added_ids, len(vocabulary))
        if state is not None:  # the previous rows (widened to the grown vocabulary), then the added ones
            old = state.counts
            rows[added] = old.shape[0] + np.arange(len(added))
            widened = sparse.csr_matrix((old.data, old.indices, old.indptr), shape=(old.shape[0], len(vocabulary)))
            counts = sparse.vstack([widened, counts], format="csr")[rows]
        model = _VectorisedBM25()
        model.install(counts, vocabulary)
        return cls(model, _State(texts, counts, vocabulary))

    def state(self) -> _State | None:
        if self._state is None and self._state_path is not None:
            self._state = _State.load(self._state_path)
            self._state_path = None
        return self._state

    def scores(self, tokens: list[str]) -> np.ndarray:
        if not tokens:
            return np.zeros(self._model.scores["num_docs"], dtype=np.float32)
        return np.asarray(self._model.get_scores(tokens), dtype=np.float32)

    def save(self, directory: Path) -> None:
        self._model.save(str(directory), show_progress=False)
        state = self.state()
        if state is not None:
            state.save(directory / STATE_FILE)

    @classmethod
    def load(cls, directory: Path) -> "LexicalRetriever":
        return cls(bm25s.BM25.load(str(directory), show_progress=False), state_path=directory / STATE_FILE)
