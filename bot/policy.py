"""Decides what the bot does with one understood message.

Pure function of the evidence (safety hit, intent, retrieval candidates) and
the conversation's failure count, so every branch is unit-testable without a
database or a model.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Literal

from bot.config import Thresholds
from bot.intents import FAQ_INTENT, IntentPrediction
from bot.kb import KnowledgeBase
from bot.retrieval import Candidate

Action = Literal["answer", "did_you_mean", "rephrase", "handoff", "smalltalk", "policy_changed"]

SMALLTALK_INTENTS = frozenset({"greet", "goodbye", "thanks", "out_of_scope"})


@dataclass(frozen=True)
class Decision:
    action: Action
    intent: str
    confidence: float
    entry_id: str | None = None
    options: list[str] = field(default_factory=list)
    reason: str | None = None  # handoff reason code
    urgent: bool = False
    counts_as_failure: bool = False


class DecisionPolicy:
    def __init__(self, kb: KnowledgeBase, thresholds: Thresholds, max_failures: int = 2):
        if not 0 <= thresholds.suggest <= thresholds.answer <= 1:
            raise ValueError("thresholds must satisfy 0 <= suggest <= answer <= 1")
        if max_failures < 1:
            raise ValueError("max_failures must be >= 1")
        self.kb = kb
        self.thresholds = thresholds
        self.max_failures = max_failures

    def run(self, *, emergency: str | None, intent: IntentPrediction, candidates: list[Candidate],
            failures: int, today: dt.date | None = None) -> Decision:
        today = today or dt.date.today()
        t = self.thresholds
        top = candidates[0] if candidates else None
        top_score = top.score if top else 0.0
        confident_intent = intent.confidence >= t.intent

        if emergency or (intent.intent == "emergency" and confident_intent):
            return Decision("handoff", "emergency", max(intent.confidence, 1.0 if emergency else 0.0),
                            reason="emergency", urgent=True)
        if intent.intent == "ask_human" and confident_intent:
            return Decision("handoff", "ask_human", intent.confidence, reason="user_request")
        if intent.intent == "complaint" and confident_intent and top_score < t.answer:
            return Decision("handoff", "complaint", intent.confidence, reason="complaint")
        if intent.intent in SMALLTALK_INTENTS and confident_intent and top_score < t.answer:
            return Decision("smalltalk", intent.intent, intent.confidence)

        if top is not None and top_score >= t.suggest:
            close = [c for c in candidates[1:3] if top_score - c.score < t.margin and c.score >= t.suggest]
            if top_score >= t.answer and not close:
                return self.answer(top.entry_id, top_score, today)
            # Confident but tied: offer the tied ones. Unsure: offer the best few.
            # A lone weak candidate is still offered: asking beats guessing.
            pool = close if top_score >= t.answer else [c for c in candidates[1:3] if c.score >= t.suggest]
            options = [top.entry_id] + [c.entry_id for c in pool]
            return Decision("did_you_mean", FAQ_INTENT, top_score, options=options)
        return self.failure(top_score, failures)

    def answer(self, entry_id: str, confidence: float, today: dt.date | None = None) -> Decision:
        entry = self.kb.get(entry_id)
        if entry is None:
            raise KeyError(entry_id)
        if entry.is_expired(today or dt.date.today()):
            return Decision("policy_changed", FAQ_INTENT, confidence, entry_id=entry_id)
        return Decision("answer", FAQ_INTENT, confidence, entry_id=entry_id)

    def failure(self, confidence: float, failures: int) -> Decision:
        """Rephrase prompt; the ``max_failures``-th failure in a row goes to a person."""
        if failures + 1 >= self.max_failures:
            return Decision("handoff", FAQ_INTENT, confidence, reason="low_confidence", counts_as_failure=True)
        return Decision("rephrase", FAQ_INTENT, confidence, counts_as_failure=True)
