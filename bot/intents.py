"""Intent classifier trained at index time from Rasa-format NLU data.

Classes are the intents in ``knowledge/intents.yml`` plus ``faq`` (every KB
question paraphrase), so the model learns where chit-chat ends and a real
question begins. Features: sentence embedding ⊕ character n-gram TF-IDF.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np

from bot.linear import FastLinear, TfidfRows, fit_logistic

__all__ = ["FAQ_INTENT", "BinaryTextClassifier", "IntentClassifier", "IntentPrediction", "load_model", "save_model",
           "warm_model"]

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


def warm_model(model: Any, labels: Any, previous: FastLinear | None, dense_first: bool,
               old_vocabularies: list[dict[str, int]], new_vocabularies: list[dict[str, int]], dense_dim: int) -> Any:
    """Start sklearn ``model`` from a previous fit (a publish that changed a few paraphrases): lbfgs then
    needs a handful of iterations instead of a cold start (entry classifier measured 11.7 s -> 2.7 s,
    same predictions on every training text). The previous coefficients are put back in sklearn's
    column order ([dense ⊕ blocks] or [blocks ⊕ dense]) and remapped by vocabulary term; terms the
    previous model did not know start at 0. Nothing happens when the classes differ."""
    if previous is None:
        return model
    classes = np.unique(np.asarray(labels))
    if len(previous.classes) != len(classes) or list(previous.classes) != list(classes) \
            or previous.dense.shape[0] != dense_dim:
        return model
    old_sparse = previous.sparse.T  # (classes, sum of old block sizes)
    widths = [len(v) for v in new_vocabularies]
    new_sparse = np.zeros((old_sparse.shape[0], sum(widths)))
    old_at = new_at = 0
    for old, new in zip(old_vocabularies, new_vocabularies):
        for term, j in new.items():
            i = old.get(term)
            if i is not None:
                new_sparse[:, new_at + j] = old_sparse[:, old_at + i]
        old_at += len(old)
        new_at += len(new)
    dense = previous.dense.T
    coef = np.hstack([dense, new_sparse]) if dense_first else np.hstack([new_sparse, dense])
    model.set_params(warm_start=True)
    model.coef_, model.intercept_ = coef, np.array(previous.intercept, copy=True)
    model.classes_ = np.asarray(previous.classes)
    return model


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    confidence: float


class IntentClassifier:
    """Softmax over the intents; features: character n-gram TF-IDF ⊕ sentence embedding."""

    def __init__(self, rows: TfidfRows, linear: FastLinear):
        self._rows = rows
        self._linear = linear

    @property
    def classes(self) -> list[Any]:
        return self._linear.classes

    @classmethod
    def train(cls, texts: list[str], labels: list[str], vectors: np.ndarray,
              previous: "IntentClassifier | None" = None) -> "IntentClassifier":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if len(set(labels)) < 2:
            raise ValueError("need at least two intents to train a classifier")
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=1, sublinear_tf=True)
        char_features = vectorizer.fit_transform(texts)
        model = LogisticRegression(C=8.0, max_iter=2000, class_weight="balanced")
        if previous is not None:  # a publish: start from the previous fit
            warm_model(model, labels, previous._linear, False, [previous._rows.vocabulary], [vectorizer.vocabulary_],
                       vectors.shape[1])
        fit_logistic(model, vectors, [char_features], labels, dense_first=False)
        return cls(TfidfRows.from_sklearn(vectorizer),  # char n-grams first (dense_first=False)
                   FastLinear.from_sklearn(model, vectors.shape[1], [len(vectorizer.vocabulary_)], dense_first=False))

    def run(self, normalised_text: str, vector: np.ndarray) -> IntentPrediction:
        probabilities = self._linear.probabilities(vector, self._rows.row(normalised_text))
        best = int(np.argmax(probabilities))
        return IntentPrediction(str(self._linear.classes[best]), float(probabilities[best]))

    def save(self, path: Path) -> None:
        save_model({"rows": self._rows, "linear": self._linear}, path)

    @classmethod
    def load(cls, path: Path) -> "IntentClassifier":
        data = load_model(path)
        return cls(data["rows"], data["linear"])


class BinaryTextClassifier:
    """P(positive | text) from the sentence embedding ⊕ character 1–3-gram TF-IDF, balanced classes.

    Used for the learned emergency detector and for the scope model's "is this a topic the KB
    covers at all" feature."""

    def __init__(self, rows: TfidfRows, linear: FastLinear):
        self._rows = rows
        self._linear = linear
        self._positive = linear.classes.index(1)

    @classmethod
    def train(cls, texts: list[str], labels: list[int], vectors: np.ndarray, C: float = 4.0,
              previous: "BinaryTextClassifier | None" = None) -> Self:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if set(labels) != {0, 1}:
            raise ValueError("a binary classifier needs positive (1) and negative (0) examples")
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
        char_features = vectorizer.fit_transform(texts)
        model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
        if previous is not None:  # a publish: start from the previous fit
            warm_model(model, labels, previous._linear, True, [previous._rows.vocabulary], [vectorizer.vocabulary_],
                       vectors.shape[1])
        fit_logistic(model, vectors, [char_features], labels)
        return cls(TfidfRows.from_sklearn(vectorizer),
                   FastLinear.from_sklearn(model, vectors.shape[1], [len(vectorizer.vocabulary_)]))

    def probability(self, normalised_text: str, vector: np.ndarray) -> float:
        return float(self._linear.probabilities(vector, self._rows.row(normalised_text))[self._positive])

    def save(self, path: Path) -> None:
        save_model({"rows": self._rows, "linear": self._linear}, path)

    @classmethod
    def load(cls, path: Path) -> Self:
        data = load_model(path)
        return cls(data["rows"], data["linear"])
