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
    def _features(char_features, vectors: np.ndarray):
        return sparse.hstack([char_features, sparse.csr_matrix(vectors)]).tocsr()

    def run(self, normalised_text: str, vector: np.ndarray) -> IntentPrediction:
        features = self._features(self._vectorizer.transform([normalised_text]), vector.reshape(1, -1))
        probabilities = self._model.predict_proba(features)[0]
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
    def train(cls, texts: list[str], labels: list[int], vectors: np.ndarray, C: float = 4.0):
        if set(labels) != {0, 1}:
            raise ValueError("a binary classifier needs positive (1) and negative (0) examples")
        vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
        features = sparse.hstack([sparse.csr_matrix(vectors), vectorizer.fit_transform(texts)]).tocsr()
        model = LogisticRegression(C=C, max_iter=3000, class_weight="balanced")
        model.fit(features, labels)
        return cls(vectorizer, model)

    def probability(self, normalised_text: str, vector: np.ndarray) -> float:
        features = sparse.hstack([sparse.csr_matrix(vector.reshape(1, -1)),
                                  self._vectorizer.transform([normalised_text])]).tocsr()
        return float(self._model.predict_proba(features)[0][self._positive])

    def save(self, path: Path) -> None:
        joblib.dump({"vectorizer": self._vectorizer, "model": self._model}, path)

    @classmethod
    def load(cls, path: Path):
        data = joblib.load(path)
        return cls(data["vectorizer"], data["model"])
