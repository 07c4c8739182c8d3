"""Intent classifier trained at index time from Rasa-format NLU data.

Classes are the intents in ``knowledge/intents.yml`` plus ``faq`` (every KB
question paraphrase), so the model learns where chit-chat ends and a real
question begins. Features: sentence embedding ⊕ character n-gram TF-IDF.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

FAQ_INTENT = "faq"


def tfidf_row(vectorizer: TfidfVectorizer, doc) -> tuple[np.ndarray, np.ndarray]:
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


def warm_model(model: LogisticRegression, labels, previous: LogisticRegression | None,
               old_layout: list, new_layout: list) -> LogisticRegression:
    """Start ``model`` from a previous fit (a publish that changed a few paraphrases): lbfgs then
    needs a handful of iterations instead of a cold start (entry classifier measured 11.7 s -> 2.7 s,
    same predictions on every training text). A layout lists the feature blocks in column order: an
    int (a dense block of that width) or a fitted vocabulary (term -> column); columns of terms the
    previous model did not know start at 0. Nothing happens when the classes differ."""
    if previous is None or not hasattr(previous, "coef_"):
        return model
    classes = np.unique(np.asarray(labels))
    if len(previous.classes_) != len(classes) or not np.array_equal(previous.classes_, classes):
        return model
    width = sum(b if isinstance(b, int) else len(b) for b in new_layout)
    old_coef = np.asarray(previous.coef_)
    coef = np.zeros((old_coef.shape[0], width))
    old_at = new_at = 0
    for old, new in zip(old_layout, new_layout):
        if isinstance(new, int):
            if not isinstance(old, int) or old != new:
                return model
            coef[:, new_at:new_at + new] = old_coef[:, old_at:old_at + old]
        else:
            for term, j in new.items():
                i = old.get(term)
                if i is not None:
                    coef[:, new_at + j] = old_coef[:, old_at + i]
        old_at += old if isinstance(old, int) else len(old)
        new_at += new if isinstance(new, int) else len(new)
    model.set_params(warm_start=True)
    model.coef_, model.intercept_, model.classes_ = coef, np.array(previous.intercept_, copy=True), previous.classes_
    return model


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
        return e / e.sum()


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    confidence: float


class IntentClassifier:
    def __init__(self, vectorizer: TfidfVectorizer, model: LogisticRegression):
        self._vectorizer = vectorizer
        self._model = model

    @classmethod
    def train(cls, texts: list[str], labels: list[str], vectors: np.ndarray,
              previous: "IntentClassifier | None" = None) -> "IntentClassifier":
        if len(set(labels)) < 2:
            raise ValueError("need at least two intents to train a classifier")
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=1, sublinear_tf=True)
        char_features = vectorizer.fit_transform(texts)
        model = LogisticRegression(C=8.0, max_iter=2000, class_weight="balanced")
        if previous is not None:
            dim = vectors.shape[1]
            warm_model(model, labels, previous._model, [previous._vectorizer.vocabulary_, dim],
                       [vectorizer.vocabulary_, dim])
        model.fit(cls._features(char_features, vectors), labels)
        return cls(vectorizer, model)

    @staticmethod
    def _features(char_features, vectors: np.ndarray):
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
        joblib.dump({"vectorizer": self._vectorizer, "model": self._model}, path)

    @classmethod
    def load(cls, path: Path) -> "IntentClassifier":
        data = joblib.load(path)
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
    def train(cls, texts: list[str], labels: list[int], vectors: np.ndarray, C: float = 4.0, previous=None):
        if set(labels) != {0, 1}:
            raise ValueError("a binary classifier needs positive (1) and negative (0) examples")
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
        features = sparse.hstack([sparse.csr_matrix(vectors), vectorizer.fit_transform(texts)]).tocsr()
        model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
        if previous is not None:
            dim = vectors.shape[1]
            warm_model(model, labels, previous._model, [dim, previous._vectorizer.vocabulary_],
                       [dim, vectorizer.vocabulary_])
        model.fit(features, labels)
        return cls(vectorizer, model)

    def probability(self, normalised_text: str, vector: np.ndarray) -> float:
        fast = self.__dict__.get("_fast")
        if fast is None:
            fast = self._fast = FastLinear(self._model, len(vector), [len(self._vectorizer.vocabulary_)])
        return float(fast.probabilities(vector, tfidf_row(self._vectorizer, normalised_text))[self._positive])

    def save(self, path: Path) -> None:
        joblib.dump({"vectorizer": self._vectorizer, "model": self._model}, path)

    @classmethod
    def load(cls, path: Path):
        data = joblib.load(path)
        return cls(data["vectorizer"], data["model"])
