"""Intent classifier trained at index time from Rasa-format NLU data.

Classes are the intents in ``knowledge/intents.yml`` plus ``faq`` (every KB
question paraphrase), so the model learns where chit-chat ends and a real
question begins. Features: sentence embedding ⊕ character n-gram TF-IDF.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import pickle
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

FAQ_INTENT = "faq"


def save_model(data: dict[str, Any], path: Path) -> None:
    """Fitted models as a plain pickle (protocol 5). joblib's unpickler is the pure-Python one:
    loading the six models of an index took 2.0 s of a 4.3 s profiled ``Bot.load`` with it."""
    with open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=5)


def load_model(path: Path) -> dict[str, Any]:
    """What ``save_model`` wrote (only ever files this process's index builder wrote itself)."""
    with open(path, "rb") as handle:
        data: dict[str, Any] = pickle.load(handle)  # noqa: S301 - our own artifact
    return data


def tfidf_row(vectorizer: TfidfVectorizer, doc: str | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """One document's TF-IDF row as (column indices, values) from a FITTED vectorizer: its own
    analyzer, vocabulary and idf; sublinear tf and l2 norm as configured. sklearn's ``transform``
    spends ~1.5–2.3 ms per call in per-call machinery for a one-line text, and a message goes
    through six such models; this is the same arithmetic in ~0.1 ms (equality is tested)."""
    analyzer = vectorizer.__dict__.get("_row_analyzer")
    if analyzer is None:
        analyzer = vectorizer._row_analyzer = vectorizer.build_analyzer()
    counts: dict[int, int] = {}
    vocabulary = vectorizer.vocabulary_
    for feature in analyzer(doc):
        j = vocabulary.get(feature)
        if j is not None:
            counts[j] = counts.get(j, 0) + 1
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    indices = np.fromiter(counts, dtype=np.int64, count=len(counts))
    tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    if vectorizer.sublinear_tf:
        tf = 1.0 + np.log(tf)
    values = tf * vectorizer.idf_[indices] if vectorizer.use_idf else tf
    if vectorizer.norm == "l2":
        values = values / (np.sqrt(np.dot(values, values)) or 1.0)
    elif vectorizer.norm == "l1":
        values = values / (np.abs(values).sum() or 1.0)
    return indices, values


class FastLinear:
    """A fitted LogisticRegression over [dense vector ⊕ TF-IDF blocks], evaluated without building a
    stacked sparse row: dense weights @ vector + the weights of the few non-zero TF-IDF columns.
    With ``tfidf_row`` this took the intent, entry, emergency, topic, aspect and crisis-kind models
    from ~2–9 ms each to well under 1 ms (measured on the 2-core machine)."""

    def __init__(self, model: LogisticRegression, dense_dim: int, block_sizes: list[int], dense_first: bool = True):
        coef = np.asarray(model.coef_, dtype=np.float64)
        dense, rest = (coef[:, :dense_dim], coef[:, dense_dim:]) if dense_first else (coef[:, -dense_dim:],
                                                                                        coef[:, :-dense_dim])
        if rest.shape[1] != sum(block_sizes):
            raise ValueError("model and vectorizers disagree in size")
        self.dense = np.ascontiguousarray(dense.T)
        self.sparse = np.ascontiguousarray(rest.T)
        self.offsets = np.cumsum([0, *block_sizes[:-1]])
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        self.binary = coef.shape[0] == 1 and len(model.classes_) == 2

    def probabilities(self, vector: np.ndarray, *rows: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Class probabilities in the model's ``classes_`` order (sklearn's predict_proba, one row)."""
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


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    confidence: float


class IntentClassifier:
    def __init__(self, vectorizer: TfidfVectorizer, model: LogisticRegression):
        self._vectorizer = vectorizer
        self._model = model

    @classmethod
    def train(cls, texts: list[str], labels: list[str], vectors: np.ndarray) -> "IntentClassifier":
        if len(set(labels)) < 2:
            raise ValueError("need at least two intents to train a classifier")
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=1, sublinear_tf=True)
        char_features = vectorizer.fit_transform(texts)
        model = LogisticRegression(C=8.0, max_iter=2000, class_weight="balanced")
        model.fit(cls._features(char_features, vectors), labels)
        return cls(vectorizer, model)

    @staticmethod
    def _features(char_features: Any, vectors: np.ndarray) -> Any:
        return sparse.hstack([char_features, sparse.csr_matrix(vectors)]).tocsr()

    def run(self, normalised_text: str, vector: np.ndarray) -> IntentPrediction:
        fast = self.__dict__.get("_fast")
        if fast is None:
            fast = self._fast = FastLinear(self._model, len(vector), [len(self._vectorizer.vocabulary_)],
                                           dense_first=False)  # see _features: char n-grams first
        probabilities = fast.probabilities(vector, tfidf_row(self._vectorizer, normalised_text))
        best = int(np.argmax(probabilities))
        return IntentPrediction(str(self._model.classes_[best]), float(probabilities[best]))

    def save(self, path: Path) -> None:
        save_model({"vectorizer": self._vectorizer, "model": self._model}, path)

    @classmethod
    def load(cls, path: Path) -> "IntentClassifier":
        data = load_model(path)
        return cls(data["vectorizer"], data["model"])


class BinaryTextClassifier:
    """P(positive | text) from the sentence embedding ⊕ character 1–3-gram TF-IDF, balanced classes.

    Used for the learned emergency detector and for the scope model's "is this a topic the KB
    covers at all" feature."""

    def __init__(self, vectorizer: TfidfVectorizer, model: LogisticRegression):
        self._vectorizer = vectorizer
        self._model = model
        self._positive = list(model.classes_).index(1)

    @classmethod
    def train(cls, texts: list[str], labels: list[int], vectors: np.ndarray, C: float = 4.0) -> Self:
        if set(labels) != {0, 1}:
            raise ValueError("a binary classifier needs positive (1) and negative (0) examples")
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
        features = sparse.hstack([sparse.csr_matrix(vectors), vectorizer.fit_transform(texts)]).tocsr()
        model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
        model.fit(features, labels)
        return cls(vectorizer, model)

    def probability(self, normalised_text: str, vector: np.ndarray) -> float:
        fast = self.__dict__.get("_fast")
        if fast is None:
            fast = self._fast = FastLinear(self._model, len(vector), [len(self._vectorizer.vocabulary_)])
        return float(fast.probabilities(vector, tfidf_row(self._vectorizer, normalised_text))[self._positive])

    def save(self, path: Path) -> None:
        save_model({"vectorizer": self._vectorizer, "model": self._model}, path)

    @classmethod
    def load(cls, path: Path) -> Self:
        data = load_model(path)
        return cls(data["vectorizer"], data["model"])
