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
from bot.linear import FastLinear, TfidfRows, fit_logistic


def _identity(tokens: list[str]) -> list[str]:
    return tokens


# The direct multinomial fit (the row space of bot/linear.fit_logistic only takes up to 6,000 samples) holds
# ~23 float64 copies of its classes × features weights (coefficients,
# gradient, L-BFGS history): 146 entries × 50,323 features = 7.3M weights fit in 23 s cold, 5 s
# warm; a 10,000-entry KB (bench/bigkb.py) had 13 GB resident after 11 min of fitting and was
# stopped. Above this many weights rare n-grams are dropped (min_df 2, then 3: on today's KB that
# costs 2 of 228 dev questions, so it is never done below the limit); a KB still over it, or with
# more entries than MAX_ENTRIES, gets no entry classifier: retrieval alone ranks it (dev P@1 0.877
# instead of 0.947 on today's KB; recalibrate its thresholds with bench.calibrate).
MAX_WEIGHTS = 20_000_000
MAX_ENTRIES = 1_000


class TooLarge(ValueError):
    """The KB is too large for the entry classifier (see MAX_WEIGHTS)."""


class EntryClassifier:
    @staticmethod
    def affordable(n_entries: int) -> bool:
        return n_entries <= MAX_ENTRIES

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
        n_classes = len(set(labels))
        for min_df in (1, 2, 3):
            char = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=min_df)
            token = TfidfVectorizer(analyzer=_identity, sublinear_tf=True, min_df=min_df)
            char_rows, token_rows = char.fit_transform(texts), token.fit_transform(tokens)
            n_weights = n_classes * (vectors.shape[1] + char_rows.shape[1] + token_rows.shape[1])
            if n_weights <= MAX_WEIGHTS:
                break
        else:
            raise TooLarge(f"{n_classes} entries x features = {n_weights:,} weights (limit {MAX_WEIGHTS:,})")
        model = LogisticRegression(C=C, max_iter=3000)
        if previous is not None:  # a publish: start from the previous fit (see intents.warm_model)
            from bot.intents import warm_model

            warm_model(model, labels, previous._linear, True, [previous._char.vocabulary, previous._tokens.vocabulary],
                       [char.vocabulary_, token.vocabulary_], vectors.shape[1])
        fit_logistic(model, vectors, [char_rows, token_rows], labels)
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
