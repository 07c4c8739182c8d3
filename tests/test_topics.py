"""Messages that name only a topic get the topic's questions (bot/topics.py, knowledge/scope/topics.yml)."""
import datetime as dt

import pytest

from bot.config import PROJECT_ROOT
from bot.text import normalise
from bot.topics import TopicOpeners


@pytest.fixture(scope="module")
def shipped():
    return TopicOpeners.from_dir(PROJECT_ROOT / "knowledge")


@pytest.mark.parametrize("text,topic", [
    ("疫苗", "vaccination"),
    ("我想問一下疫苗的事", "vaccination"),          # Traditional, normalised first
    ("关于健康码我想咨询一下", "health_code"),
    ("咨询一下隔离的问题", "quarantine"),
    ("I have a question about vaccines", "vaccination"),
    ("Can you tell me about the health code?", "health_code"),
    ("我想问一下PCR的事", "testing"),               # mixed scripts
    ("Questions on quarantine", "quarantine"),       # "on" is a filler, not YAML's boolean (review)
    ("I’d like to know about travel", "travel"),     # a curly apostrophe
])
def test_a_message_naming_only_a_topic_names_it(shipped, text, topic):
    assert shipped.find(normalise(text)) == topic


@pytest.mark.parametrize("text", ["疫苗在哪打", "核酸多少钱", "健康码变黄了", "我想问问", "hello", "我密接",
                                  "How much is a PCR test?", "隔离 宠物", "I have a question about my dog"])
def test_a_question_or_an_opener_without_a_topic_is_not_a_topic(shipped, text):
    assert shipped.find(normalise(text)) is None


def test_a_keyword_in_two_topics_is_refused_and_no_file_means_no_topics(tmp_path):
    with pytest.raises(ValueError, match="two topics"):
        TopicOpeners({"testing": ["检测"], "vaccination": ["检测"]})
    assert TopicOpeners.from_dir(tmp_path).find("疫苗") is None


def test_the_policy_offers_the_topics_questions(policy_kb):
    from bot.config import Thresholds
    from bot.intents import IntentPrediction
    from bot.policy import DecisionPolicy
    from bot.retrieval import Candidate

    policy = DecisionPolicy(policy_kb, Thresholds(answer=0.6, suggest=0.4, margin=0.05, intent=0.5), max_failures=2)
    decision = policy.run(emergency=None, intent=IntentPrediction("faq", 0.9), failures=0, today=dt.date(2026, 12, 1),
                          candidates=[Candidate("testing.after_vaccination", 0.9, 0.9, 0.9)], scope=0.95,
                          topic="vaccination")
    assert decision.action == "topic" and decision.intent == "topic"
    assert decision.options and all(policy_kb.entries[e].category == "vaccination" for e in decision.options)
    emergency = policy.run(emergency="胸痛", intent=IntentPrediction("faq", 0.9), failures=0, today=dt.date(2026, 12, 1),
                           candidates=[], topic="vaccination")
    assert emergency.action == "handoff" and emergency.urgent  # a red flag first, always


@pytest.fixture(scope="module")
def policy_kb():
    from bot.kb import load_knowledge_base

    return load_knowledge_base(PROJECT_ROOT / "knowledge")
