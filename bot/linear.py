"""Fitted TF-IDF and logistic-regression models reduced to the arrays one prediction needs.

Training uses scikit-learn; serving does not import it. A saved index holds these plain
objects (a vocabulary dict and numpy arrays), so a worker loads without importing sklearn and
scipy (2.0 s of a 3.6 s ``import bot.engine`` on the loaded 2-core box, ``-X importtime``), and
one prediction is the same arithmetic as sklearn's ``transform`` + ``predict_proba`` without its
per-call machinery (~1.5–2.3 ms per call there, ~0.1 ms here; equality is tested).
"""
from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np

__all__ = ["FastLinear", "TfidfRows", "fit_logistic"]

_WHITE_SPACES = re.compile(r"\s\s+")  # sklearn's _VectorizerMixin._white_spaces


class _Grams:
    """One id per n-gram or token of every fitted vocabulary in the process. A question's grams are looked up
    here once, and each model maps those ids to its own columns with one numpy gather: the six models (intents,
    entries, emergency, crisis kind, aspect, topic) each looked every gram up in their own dict, ~730 lookups a
    message. Ids are never reused; a retrained model's new grams get new ids."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.lock = threading.Lock()

    def register(self, words: Sequence[str]) -> np.ndarray:
        """The ids of ``words`` (new ones added)."""
        with self.lock:
            ids = self.ids
            return np.fromiter((ids.setdefault(w, len(ids)) for w in words), dtype=np.int64, count=len(words))

    def lookup(self, counted: Counter[str]) -> tuple[np.ndarray, np.ndarray]:
        """(ids, counts) of the grams any model knows; the others are no column of any model."""
        ids = self.ids
        hits = [(j, n) for gram, n in counted.items() if (j := ids.get(gram)) is not None]
        if not hits:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        found, numbers = zip(*hits)
        return np.array(found, dtype=np.int64), np.array(numbers, dtype=np.int64)


_GRAMS = _Grams()
Analyzer = Literal["char_wb", "tokens"]


class TfidfRows:
    """One document's TF-IDF row as (column indices, values), as a fitted ``TfidfVectorizer`` with
    ``analyzer="char_wb"`` (lowercased) or a callable analyzer over pre-tokenised lists computes it."""

    def __init__(self, analyzer: Analyzer, vocabulary: dict[str, int], idf: np.ndarray | None,
                 sublinear_tf: bool, norm: str | None, ngram_range: tuple[int, int] = (1, 3),
                 lowercase: bool = True):
        if analyzer not in ("char_wb", "tokens"):
            raise ValueError(f"analyzer: 'char_wb' or 'tokens', got {analyzer!r}")
        if norm not in ("l1", "l2", None):
            raise ValueError(f"norm: 'l1', 'l2' or None, got {norm!r}")
        if idf is not None and len(idf) != len(vocabulary):
            raise ValueError("idf and vocabulary disagree in size")
        self.analyzer, self.vocabulary, self.idf = analyzer, vocabulary, idf
        self.sublinear_tf, self.norm = sublinear_tf, norm
        self.ngram_range, self.lowercase = ngram_range, lowercase

    @classmethod
    def from_sklearn(cls, vectorizer: Any) -> TfidfRows:
        """From a fitted ``TfidfVectorizer`` (char_wb, or a callable analyzer = pre-tokenised input)."""
        if callable(vectorizer.analyzer):
            analyzer: Analyzer = "tokens"
        elif vectorizer.analyzer == "char_wb" and vectorizer.preprocessor is None \
                and vectorizer.strip_accents is None:
            analyzer = "char_wb"
        else:
            raise ValueError(f"unsupported vectorizer: analyzer={vectorizer.analyzer!r}")
        idf = np.asarray(vectorizer.idf_, dtype=np.float64) if vectorizer.use_idf else None
        return cls(analyzer, dict(vectorizer.vocabulary_), idf, bool(vectorizer.sublinear_tf), vectorizer.norm,
                   tuple(vectorizer.ngram_range), bool(vectorizer.lowercase))

    def __len__(self) -> int:
        return len(self.vocabulary)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_columns", None)  # process-local gram ids: rebuilt on first use
        return state

    def _column_of(self) -> np.ndarray:
        """Column of each global gram id (-1: not in this vocabulary), built on first use."""
        columns: np.ndarray | None = self.__dict__.get("_columns")
        if columns is None:
            words = list(self.vocabulary)
            ids = _GRAMS.register(words)
            columns = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, dtype=np.int32)
            columns[ids] = np.fromiter((self.vocabulary[w] for w in words), dtype=np.int32, count=len(words))
            self._columns = columns
        return columns

    def row(self, doc: str | Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        columns = self._column_of()
        if self.analyzer == "tokens":
            ids, counts = _GRAMS.lookup(Counter(doc))
        else:
            ids, counts = _char_wb_ids(str(doc), *self.ngram_range, self.lowercase, len(_GRAMS.ids))
        if len(ids) and ids.max() >= len(columns):  # grams of models registered after this one
            inside = ids < len(columns)
            ids, counts = ids[inside], counts[inside]
        found = columns[ids]
        mine = found >= 0
        indices = found[mine]
        if not len(indices):
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        tf = counts[mine].astype(np.float64)
        if self.sublinear_tf:
            tf = 1.0 + np.log(tf)
        values = tf * self.idf[indices] if self.idf is not None else tf
        if self.norm == "l2":
            values = values / (np.sqrt(np.dot(values, values)) or 1.0)
        elif self.norm == "l1":
            values = values / (np.abs(values).sum() or 1.0)
        return indices, values


def _char_wb_ngrams(text: str, low: int, high: int, lowercase: bool) -> list[str]:
    """sklearn's ``_char_wb_ngrams`` (after its lowercasing and white-space folding)."""
    text = _WHITE_SPACES.sub(" ", text.lower() if lowercase else text)
    grams: list[str] = []
    for word in text.split():
        w = " " + word + " "
        size = len(w)
        for n in range(low, high + 1):
            offset = 0
            grams.append(w[offset:offset + n])
            while offset + n < size:
                offset += 1
                grams.append(w[offset:offset + n])
            if offset == 0:  # a short word (len < n) counts once
                break
    return grams


@lru_cache(maxsize=256)
def _char_wb_ids(text: str, low: int, high: int, lowercase: bool, known: int) -> tuple[np.ndarray, np.ndarray]:
    """A text's n-grams as (global ids, counts), once for every model reading the same text; ``known``: how many
    grams the registry held (a model registered since brings grams an older entry would miss)."""
    return _GRAMS.lookup(_char_wb_counts(text, low, high, lowercase))


@lru_cache(maxsize=256)
def _char_wb_counts(text: str, low: int, high: int, lowercase: bool) -> Counter[str]:
    """One text's n-grams, counted once for every model: the intent, emergency, crisis-kind, aspect, topic and
    entry models each read a character 1–3-gram row of the same question, and each cut and counted its n-grams
    again (0.24 ms of a message's ~1.7 ms of understanding; shared: see the README's benchmarks). Callers
    only read the Counter."""
    return Counter(_char_wb_ngrams(text, low, high, lowercase))


class FastLinear:
    """A fitted LogisticRegression over [dense vector ⊕ TF-IDF blocks], evaluated without building a
    stacked sparse row: dense weights @ vector + the weights of the few non-zero TF-IDF columns.
    With ``TfidfRows`` this took the intent, entry, emergency, topic, aspect and crisis-kind models
    from ~2–9 ms each to well under 1 ms (measured on the 2-core machine)."""

    def __init__(self, coef: np.ndarray, intercept: np.ndarray, classes: Sequence[Any], dense_dim: int,
                 block_sizes: list[int], dense_first: bool = True):
        coef = np.asarray(coef, dtype=np.float64)
        dense, rest = (coef[:, :dense_dim], coef[:, dense_dim:]) if dense_first else (coef[:, -dense_dim:],
                                                                                        coef[:, :-dense_dim])
        if rest.shape[1] != sum(block_sizes):
            raise ValueError("model and vectorizers disagree in size")
        self.dense = np.ascontiguousarray(dense.T)
        self.sparse = np.ascontiguousarray(rest.T)
        self.offsets = np.cumsum([0, *block_sizes[:-1]])
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.classes = list(classes)
        self.binary = coef.shape[0] == 1 and len(self.classes) == 2

    @classmethod
    def from_sklearn(cls, model: Any, dense_dim: int, block_sizes: list[int], dense_first: bool = True) -> FastLinear:
        return cls(model.coef_, model.intercept_, [c.item() if hasattr(c, "item") else c for c in model.classes_],
                   dense_dim, block_sizes, dense_first)

    def probabilities(self, vector: np.ndarray, *rows: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Class probabilities in ``classes`` order (sklearn's predict_proba, one row)."""
        z = vector.astype(np.float64) @ self.dense + self.intercept
        for offset, (indices, values) in zip(self.offsets, rows):
            if len(indices):
                z = z + values @ self.sparse[indices + offset]
        if self.binary:
            p = 1.0 / (1.0 + np.exp(-z[0]))
            return np.array([1.0 - p, p])
        z = z - z.max()
        e = np.exp(z)
        result: np.ndarray = e / e.sum()
        return result


# A Gram matrix of this many samples is 8 bytes × n² (6,000: 288 MB, plus its Cholesky factor); above
# it ``fit_logistic`` fits over the features themselves.
ROW_SPACE_MAX_SAMPLES = 6_000
# Below this many weights (coefficient rows × features) the direct fit is cheaper: setting up the row space
# (X Xᵀ and its Cholesky factor, ~1.5 s at n ≈ 3,000 on one thread) cost more than the whole warm-started
# fit of a binary or 9-class model (0 iterations: a publish retrained in 10.3 s instead of ~4 s). A cold fit
# runs tens of iterations, and the row space pays from ~200k weights (12-class aspects: 5.2 s instead of
# 9.9 s; 9-class intents 2.4 s instead of 3.1 s; binary models ~0.5 s either way).
ROW_SPACE_MIN_WEIGHTS = 2_000_000
ROW_SPACE_MIN_WEIGHTS_COLD = 200_000
# The dtype of the n x n features L handed to sklearn. float32 (2026-12-02, today's KB, same process): the
# entry classifier's fit 9.1 -> 6.1 s of CPU, the whole index build 14.7 -> 11.4 s wall; the same 25
# iterations, coefficients within 9e-6 (relative) and probabilities within 3e-5 of the float64 fit, and
# `hotline-bot eval` unchanged in every row. The index build is on the critical path of every test worker.
ROW_SPACE_DTYPE: Any = np.float32


def fit_logistic(model: Any, vectors: np.ndarray, blocks: Sequence[Any], labels: Sequence[Any],
                 dense_first: bool = True) -> Any:
    """Fit sklearn's L2 ``LogisticRegression`` ``model`` on [vectors ⊕ sparse blocks] (or [blocks ⊕ vectors]):
    the same solution as ``model.fit`` on the stacked features, found in the samples' row space.

    Why: the entry classifier has 147 classes × 62,976 features = 9.2M weights, and L-BFGS-B's own
    Fortran update over that vector (24 s) plus sklearn's array work on it (7 s) cost more than the
    data products (11 s): 43–58 s for 25 iterations cold. An L2-penalised optimum lies in the row
    space of X (representer theorem), so with K = X Xᵀ = L Lᵀ (Cholesky, n = 3,128 samples) the fit
    runs on the n × n features L: W = Xᵀ L⁻ᵀ V maps V isometrically onto that row space
    (‖W‖ = ‖V‖, X W = L V), so the objective, the L-BFGS iterates and the iteration count are
    the same: 25 iterations, coefficients within 6.5e-7 (relative) and logits within 1e-5 of the
    direct fit, in 10 s instead of 58 s (measured 2026-12-01). A warm start set on ``model`` (``warm_model``)
    is mapped into the row space first. K gets a jitter of 1e-6 × its mean diagonal so that duplicate
    texts do not make it singular; without a Cholesky factor (or with more samples than
    ``ROW_SPACE_MAX_SAMPLES``, fewer weights than ``ROW_SPACE_MIN_WEIGHTS`` (warm) or ``…_COLD``, or fewer
    features than samples) it is the plain fit."""
    from scipy import linalg, sparse

    vectors = np.asarray(vectors, dtype=np.float64)
    blocks = [sparse.csr_matrix(b, dtype=np.float64) for b in blocks]
    n, width = vectors.shape[0], vectors.shape[1] + sum(b.shape[1] for b in blocks)
    parts = [sparse.csr_matrix(vectors), *blocks] if dense_first else [*blocks, sparse.csr_matrix(vectors)]
    factor = None
    rows = len(set(labels)) if len(set(labels)) > 2 else 1  # coefficient rows: one for a binary model
    warm = getattr(model, "warm_start", False) and getattr(model, "coef_", None) is not None
    if n <= ROW_SPACE_MAX_SAMPLES and n < width \
            and rows * width >= (ROW_SPACE_MIN_WEIGHTS if warm else ROW_SPACE_MIN_WEIGHTS_COLD):
        gram = vectors @ vectors.T
        for block in blocks:
            gram += (block @ block.T).toarray()
        gram[np.diag_indices(n)] += 1e-6 * float(np.trace(gram)) / n
        try:
            factor = np.linalg.cholesky(gram)
        except np.linalg.LinAlgError:
            factor = None
        del gram
    if factor is None:
        return model.fit(sparse.hstack(parts).tocsr(), labels)

    def times(coef_t: np.ndarray) -> np.ndarray:  # X @ coef_t, coef_t: (width, k)
        out = np.zeros((n, coef_t.shape[1]))
        at = 0
        for part in parts:
            out += part @ coef_t[at:at + part.shape[1]]
            at += part.shape[1]
        return out

    if warm:
        model.coef_ = linalg.solve_triangular(factor, times(np.asarray(model.coef_, dtype=np.float64).T),
                                              lower=True).T
    model.fit(factor.astype(ROW_SPACE_DTYPE, copy=False), labels)
    back = linalg.solve_triangular(factor, model.coef_.T, lower=True, trans="T")  # L⁻ᵀ V: (n, k)
    model.coef_ = np.hstack([np.asarray(part.T @ back).T for part in parts])
    model.n_features_in_ = width
    return model
