"""Fuses lexical, dense and learned evidence into one score per KB entry.

hybrid = w·cosine + (1−w)·bm25/(bm25+s), the best paraphrase of each entry
counting; both parts live in [0, 1]. With an entry classifier (the adapter
learned from the KB's paraphrases, ``entry_classifier.py``) the score is
a·P(entry | text) + (1−a)·hybrid. ``w``, ``s`` and ``a`` are chosen on the
held-out dev half (``bench/calibrate.py``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from bot.retrieval.dense import DenseRetriever
from bot.retrieval.entry_classifier import EntryClassifier
from bot.retrieval.lexical import LexicalRetriever


@dataclass(frozen=True)
class Candidate:
    entry_id: str
    score: float
    dense: float
    lexical: float
    prob: float = 0.0  # the entry classifier's probability (0 without a classifier)
    # The question is, word for word (case, width, script, spacing and punctuation aside), one of this entry's
    # own paraphrases: the KB's editors answered it. See ``HybridRetriever.run``.
    known: bool = False


_NOT_WORD = re.compile(r"[\W_]+")


def question_key(normalised: str) -> str:
    """What two wordings of one question share once ``normalise``d: no spaces, no punctuation."""
    return _NOT_WORD.sub("", normalised)


class KnownQuestions:
    """The KB's paraphrases by ``question_key``: which entry a question is word for word one of.

    Built once per document list: at 10,000 entries (193k paraphrases) it takes 0.43 s, and a publish that
    keeps the paraphrases (an answer edit) keeps the index's document list, so the new version reuses it."""

    def __init__(self, doc_entry_ids: Sequence[str], doc_texts: Sequence[str],
                 strip: Callable[[str], str] | None = None):
        """``strip``: the question as the KB inbox turns it into a paraphrase (clauses of personal data dropped):
        a question found only so is known too. The editor adds "宠物狗需要做核酸吗?" from "我叫***,宠物狗需要做核酸吗?
        电话***"; the citizen who asks again with the name and number must get the answer at once, and the
        provisional index of a publish (the entry classifier not yet retrained) scored it P 0.30 (round 6)."""
        if len(doc_texts) != len(doc_entry_ids):
            raise ValueError("document texts and document list disagree in size")
        self.doc_entry_ids, self.doc_texts = doc_entry_ids, doc_texts
        self._strip = strip
        self._entries: dict[str, str | None] = {}  # question key -> its entry (None: the KB has it under two)
        for text, entry_id in zip(doc_texts, doc_entry_ids):
            key = question_key(text)
            self._entries[key] = entry_id if self._entries.get(key, entry_id) == entry_id else None

    def entry(self, normalised: str) -> str | None:
        found = self._entries.get(question_key(normalised))
        if found is None and self._strip is not None:
            stripped = self._strip(normalised)
            if stripped != normalised:
                found = self._entries.get(question_key(stripped))
        return found


def prefer_specific(candidates: list[Candidate], covers: Mapping[str, frozenset[str]], tie: float) -> list[Candidate]:
    """A general entry within ``tie`` of an entry it covers (the KB's ``covers``) leaves the list: the question
    matches the specific answer as well as the general one, and the specific one is exact.

    Why: "码黄了以后要怎么弄才能变回绿的" scored 0.512 for health_code.back_to_green (the remedy for any colour) and
    0.504 for health_code.yellow_to_green; the scope model reads such a near-tie as doubt and the citizen got "not
    covered" (P 0.17), though both answers were right. A general question ("健康码怎么转绿") puts the general entry
    far ahead and keeps it. A ``known`` candidate (the citizen's words are the entry's own paraphrase) stays."""
    if not covers:
        return candidates
    score = {c.entry_id: c.score for c in candidates}
    general = {c.entry_id for c in candidates if not c.known
               and any(abs(c.score - score[s]) < tie for s in covers.get(c.entry_id, ()) if s in score)}
    return [c for c in candidates if c.entry_id not in general] if general else candidates


class HybridRetriever:
    def __init__(self, doc_entry_ids: list[str], lexical: LexicalRetriever, dense: DenseRetriever,
                 dense_weight: float, lexical_saturation: float, lexical_entry_ids: list[str] | None = None,
                 classifier: EntryClassifier | None = None, classifier_weight: float = 0.0,
                 known: KnownQuestions | None = None, covers: Mapping[str, frozenset[str]] | None = None,
                 tie: float = 0.0):
        """``doc_entry_ids`` maps each dense document to its entry; the lexical
        index may hold more documents (answer texts too): ``lexical_entry_ids``. ``known``: the documents'
        texts, to mark a question that is one of them word for word (``Candidate.known``). ``covers`` (general
        entry → the entries it covers) and ``tie``: see ``prefer_specific``."""
        if tie < 0:
            raise ValueError("tie must be >= 0")
        if not 0.0 <= dense_weight <= 1.0:
            raise ValueError("dense_weight must be within [0, 1]")
        if not 0.0 <= classifier_weight <= 1.0:
            raise ValueError("classifier_weight must be within [0, 1]")
        if lexical_saturation <= 0:
            raise ValueError("lexical_saturation must be > 0")
        if dense.size != len(doc_entry_ids):
            raise ValueError("dense index and document list disagree in size")
        self.dense_weight = dense_weight
        self.lexical_saturation = lexical_saturation
        self.classifier_weight = classifier_weight if classifier is not None else 0.0
        self._lexical = lexical
        self._dense = dense
        self._classifier = classifier
        lexical_entry_ids = doc_entry_ids if lexical_entry_ids is None else lexical_entry_ids
        self._entry_ids = sorted(set(doc_entry_ids) | set(lexical_entry_ids))
        position = {entry_id: i for i, entry_id in enumerate(self._entry_ids)}
        self._dense_entry = _Grouping(np.array([position[e] for e in doc_entry_ids], dtype=np.int64),
                                      len(self._entry_ids))
        self._lexical_entry = _Grouping(np.array([position[e] for e in lexical_entry_ids], dtype=np.int64),
                                        len(self._entry_ids))
        self._classifier_entry = None
        if classifier is not None:
            missing = set(classifier.classes) - set(position)
            if missing:
                raise ValueError(f"entry classifier knows entries the index does not: {sorted(missing)[:3]}")
            self._classifier_entry = np.array([position[e] for e in classifier.classes], dtype=np.int64)
        if known is not None and len(known.doc_entry_ids) != len(doc_entry_ids):
            raise ValueError("known questions and document list disagree in size")
        self.known = known
        self.covers = dict(covers or {})
        self.tie = tie

    def run(self, tokens: list[str], query_vector: np.ndarray, top_k: int = 10,
            exclude: frozenset[str] = frozenset(), text: str | None = None) -> list[Candidate]:
        """Best ``top_k`` entries, best first. ``text`` (normalised) feeds the entry classifier and is
        looked up among the paraphrases: the entry whose paraphrase it is comes back ``known`` (last in
        place of the ``top_k``-th if it did not rank). Why: a paraphrase an editor adds (from the inbox: the
        question a citizen asked and the bot failed) must answer the next citizen who asks it at once, not
        after the models are retrained (issue 9), and a model may rank its own training text second."""
        dense_per_entry = self._max_per_entry(self._dense.scores(query_vector), self._dense_entry)
        raw_lexical = self._max_per_entry(self._lexical.scores(tokens), self._lexical_entry)
        lexical_per_entry = raw_lexical / (raw_lexical + self.lexical_saturation)
        fused = self.dense_weight * dense_per_entry + (1.0 - self.dense_weight) * lexical_per_entry
        probs = np.zeros(len(self._entry_ids), dtype=np.float32)
        if self._classifier is not None and text is not None and self.classifier_weight > 0:
            probs[self._classifier_entry] = self._classifier.probabilities(text, tokens, query_vector)
            fused = self.classifier_weight * probs + (1.0 - self.classifier_weight) * fused
        order = np.argsort(-fused, kind="stable")
        out: list[Candidate] = []
        for i in order:
            entry_id = self._entry_ids[i]
            if entry_id in exclude:
                continue
            out.append(Candidate(entry_id, float(fused[i]), float(dense_per_entry[i]), float(lexical_per_entry[i]),
                                 float(probs[i])))
            if len(out) == top_k:
                break
        known = self.known.entry(text) if text is not None and self.known is not None else None
        if known is not None and known not in exclude:
            at = next((n for n, c in enumerate(out) if c.entry_id == known), None)
            if at is not None:
                out[at] = replace(out[at], known=True)
            elif out:
                i = self._entry_ids.index(known)
                out[-1] = Candidate(known, float(fused[i]), float(dense_per_entry[i]), float(lexical_per_entry[i]),
                                    float(probs[i]), known=True)
        return prefer_specific(out, self.covers, self.tie)

    def _max_per_entry(self, doc_scores: np.ndarray, doc_entry: "_Grouping") -> np.ndarray:
        best: np.ndarray = np.maximum(doc_entry.max(doc_scores.astype(np.float32)), 0.0)
        return best


class _Grouping:
    """Max of document scores per entry via one sort at build time and ``np.maximum.reduceat`` per query
    (``np.maximum.at`` cost ~3 ms per query on ~4,000 documents; this ~0.05 ms)."""

    def __init__(self, doc_entry: np.ndarray, n_entries: int):
        self.order = np.argsort(doc_entry, kind="stable")
        sorted_entries = doc_entry[self.order]
        self.present, self.starts = np.unique(sorted_entries, return_index=True)
        self.n_entries = n_entries

    def max(self, doc_scores: np.ndarray) -> np.ndarray:
        out = np.full(self.n_entries, -np.inf, dtype=np.float32)
        if len(self.order):
            out[self.present] = np.maximum.reduceat(doc_scores[self.order], self.starts)
        return out
