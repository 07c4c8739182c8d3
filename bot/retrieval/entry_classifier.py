"""A per-entry classifier learned from the KB's own paraphrases (the "adapter").

Nearest-paraphrase search only asks "which single paraphrase is closest"; a
multinomial logistic regression over all paraphrases of every entry learns
which features separate one entry from its neighbours ("为什么" vs "怎么转",
"要钱吗" vs "在哪"). Features: the sentence embedding ⊕ character 1–3-gram
TF-IDF ⊕ domain-token TF-IDF. Its weight in the fused score is chosen on the
held-out DEV half by ``bench/calibrate.py``: with USE, dev P@1 0.877 (retrieval
alone) → 0.939 at weight 0.5 (0.912 with the classifier alone). Each entry's answers are extra training
examples of it (they hold words citizens type that no paraphrase contains), with C=16: dev P@1 0.934 →
0.947 (C=4 with answers 0.934, C=16 without 0.930; measured 2026-11-30, round 2). Trained at
index time, so a KB edit retrains it; nothing from any external eval set is used.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from bot.intents import load_model, save_model
from bot.linear import FastLinear, TfidfRows


def _identity(tokens: list[str]) -> list[str]:
    return tokens


class EntryClassifier:
    def __init__(self, char: TfidfRows, tokens: TfidfRows, linear: FastLinear):
        self._char = char
        self._tokens = tokens
        self._linear = linear
        self.classes: list[str] = [str(c) for c in linear.classes]

    @classmethod
    def train(cls, texts: list[str], tokens: list[list[str]], labels: list[str], vectors: np.ndarray,
              C: float = 16.0, answers: tuple[list[str], list[list[str]], list[str], np.ndarray] | None = None,
              previous: "EntryClassifier | None" = None) -> "EntryClassifier":
        """``answers``: (texts, tokens, labels, vectors) of the entries' answers, extra examples of their entry."""
        from scipy import sparse
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        if answers is not None and len(answers[0]):
            a_texts, a_tokens, a_labels, a_vectors = answers
            texts, tokens, labels = [*texts, *a_texts], [*tokens, *a_tokens], [*labels, *a_labels]
            vectors = np.vstack([vectors, a_vectors])
        if len(set(labels)) < 2:
            raise ValueError("need at least two entries to train the entry classifier")
        if not (len(texts) == len(tokens) == len(labels) == len(vectors)):
            raise ValueError("texts, tokens, labels and vectors must have the same length")
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True)
        token = TfidfVectorizer(analyzer=_identity, sublinear_tf=True)
        features = sparse.hstack([sparse.csr_matrix(vectors), char.fit_transform(texts),
                                  token.fit_transform(tokens)]).tocsr()
        model = LogisticRegression(C=C, max_iter=3000)
        if previous is not None:  # a publish: start from the previous fit (see intents.warm_model)
            from bot.intents import warm_model

            warm_model(model, labels, previous._linear, True, [previous._char.vocabulary, previous._tokens.vocabulary],
                       [char.vocabulary_, token.vocabulary_], vectors.shape[1])
        model.fit(features, labels)
        return cls(TfidfRows.from_sklearn(char), TfidfRows.from_sklearn(token),
                   FastLinear.from_sklearn(model, vectors.shape[1], [len(char.vocabulary_), len(token.vocabulary_)]))

    def probabilities(self, text: str, tokens: list[str], vector: np.ndarray) -> np.ndarray:
        """P(entry | text) in the order of ``classes``."""
        return self._linear.probabilities(vector, self._char.row(text), self._tokens.row(tokens))

    def save(self, path: Path) -> None:
        save_model({"char": self._char, "tokens": self._tokens, "linear": self._linear}, path)

    @classmethod
    def load(cls, path: Path) -> "EntryClassifier":
        data = load_model(path)
        return cls(data["char"], data["tokens"], data["linear"])
