"""Decision policy branches, on the real KB with hand-made evidence."""
import datetime as dt

import pytest

from bot.config import PROJECT_ROOT, Thresholds
from bot.intents import IntentPrediction
from bot.kb import load_knowledge_base
from bot.policy import DecisionPolicy
from bot.retrieval import Candidate

T = Thresholds(answer=0.6, suggest=0.4, margin=0.05, intent=0.5)


@pytest.fixture(scope="module")
def policy():
    return DecisionPolicy(load_knowledge_base(PROJECT_ROOT / "knowledge"), T, max_failures=2)


def faq(p=0.9):
    return IntentPrediction("faq", p)


def cands(*pairs):
    return [Candidate(e, s, s, s) for e, s in pairs]


def test_confident_single_answer(policy):
    d = policy.run(emergency=None, intent=faq(), candidates=cands(("testing.pcr_fee", 0.8), ("testing.pcr_sites", 0.5)),
                   failures=0)
    assert (d.action, d.entry_id) == ("answer", "testing.pcr_fee")


def test_close_top_two_asks_did_you_mean(policy):
    d = policy.run(emergency=None, intent=faq(),
                   candidates=cands(("testing.pcr_fee", 0.8), ("testing.pcr_sites", 0.78), ("testing.pcr_hours", 0.3)),
                   failures=0)
    assert d.action == "did_you_mean" and d.options == ["testing.pcr_fee", "testing.pcr_sites"]


def test_middle_confidence_offers_up_to_three(policy):
    d = policy.run(emergency=None, intent=faq(),
                   candidates=cands(("testing.pcr_fee", 0.5), ("testing.pcr_sites", 0.45), ("testing.pcr_hours", 0.42),
                                    ("testing.antigen_buy", 0.41)), failures=0)
    assert d.action == "did_you_mean" and len(d.options) == 3


def test_low_confidence_rephrase_then_handoff(policy):
    low = cands(("testing.pcr_fee", 0.2))
    first = policy.run(emergency=None, intent=faq(), candidates=low, failures=0)
    assert first.action == "rephrase" and first.counts_as_failure
    second = policy.run(emergency=None, intent=faq(), candidates=low, failures=1)
    assert (second.action, second.reason) == ("handoff", "low_confidence")


def test_emergency_cannot_be_overridden_by_a_confident_answer(policy):
    d = policy.run(emergency="呼吸困难", intent=faq(0.99), candidates=cands(("testing.pcr_fee", 0.99)), failures=0)
    assert (d.action, d.reason, d.urgent) == ("handoff", "emergency", True)


def test_ask_human_and_smalltalk(policy):
    d = policy.run(emergency=None, intent=IntentPrediction("ask_human", 0.9), candidates=cands(("testing.pcr_fee", 0.9)),
                   failures=0)
    assert (d.action, d.reason) == ("handoff", "user_request")
    d = policy.run(emergency=None, intent=IntentPrediction("greet", 0.9), candidates=cands(("testing.pcr_fee", 0.2)),
                   failures=0)
    assert (d.action, d.intent) == ("smalltalk", "greet")
    # a greeting wrapped around a real question still gets the answer
    d = policy.run(emergency=None, intent=IntentPrediction("greet", 0.6), candidates=cands(("testing.pcr_fee", 0.9)),
                   failures=0)
    assert d.action == "answer"


def test_expired_entry_is_never_served(policy):
    entry = policy.kb.entries["testing.pcr_fee"]
    assert entry.valid_until is not None
    later = entry.valid_until + dt.timedelta(days=1)
    d = policy.run(emergency=None, intent=faq(), candidates=cands(("testing.pcr_fee", 0.9)), failures=0, today=later)
    assert d.action == "policy_changed"


def test_thresholds_are_validated():
    with pytest.raises(ValueError):
        DecisionPolicy(load_knowledge_base(PROJECT_ROOT / "knowledge"), Thresholds(answer=0.3, suggest=0.5))
