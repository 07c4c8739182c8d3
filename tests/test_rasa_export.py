"""The KB -> Rasa 3.x export used by bench/rasa (checked without installing Rasa).

The structure checks follow Rasa 3.x's training-data format: ``version``, an
``nlu`` list of ``intent`` + ``examples: |`` blocks of ``- `` lines, retrieval
intents ``faq/<key>`` each with an ``utter_faq/<key>`` response in the domain,
and a rule sending the ``faq`` intent to ``utter_faq``.
"""
from __future__ import annotations

import re

import pytest
import yaml

from bench.rasa.export import RETRIEVAL_INTENT, build_project, export
from bot.config import PROJECT_ROOT
from bot.kb import load_knowledge_base

# Rasa's entity annotation in examples: [text](entity) or [text]{"entity": ...}; a KB question that
# looked like one would silently lose words and gain an entity.
ENTITY_MARKUP = re.compile(r"\[[^\]]+\](\(|\{)")


@pytest.fixture(scope="module")
def kb():
    return load_knowledge_base(PROJECT_ROOT / "knowledge")


@pytest.fixture(scope="module")
def exported(kb, tmp_path_factory):
    out = export(kb, tmp_path_factory.mktemp("rasa") / "project", epochs=7)
    return out, {name: yaml.safe_load((out / name).read_text(encoding="utf-8"))
                 for name in ("config.yml", "domain.yml", "data/nlu.yml", "data/rules.yml")}


def _examples(block: dict) -> list[str]:
    text = block["examples"]
    assert isinstance(text, str) and text.endswith("\n")
    lines = text.splitlines()
    assert all(line.startswith("- ") for line in lines), lines
    return [line[2:] for line in lines]


def test_one_retrieval_intent_per_entry_with_all_its_questions(kb, exported):
    _, files = exported
    nlu = files["data/nlu.yml"]
    assert nlu["version"] == "3.1"
    blocks = {block["intent"]: block for block in nlu["nlu"]}
    assert len(blocks) == len(nlu["nlu"]), "an intent is listed twice"
    faq = {name for name in blocks if name.startswith(RETRIEVAL_INTENT + "/")}
    assert faq == {f"faq/{entry_id}" for entry_id in kb.entries}
    for entry in kb.entries.values():
        assert _examples(blocks[f"faq/{entry.id}"]) == entry.questions.zh + entry.questions.en
    for name, examples in kb.intent_examples.items():
        assert _examples(blocks[name]) == examples
    for block in nlu["nlu"]:
        for example in _examples(block):
            assert example.strip() == example and example, block["intent"]
            assert not ENTITY_MARKUP.search(example), (block["intent"], example)


def test_domain_has_a_response_for_every_entry_and_intent(kb, exported):
    _, files = exported
    domain = files["domain.yml"]
    assert domain["version"] == "3.1"
    assert domain["intents"][0] == RETRIEVAL_INTENT
    assert set(domain["intents"]) == {RETRIEVAL_INTENT, *kb.intent_examples}
    responses = domain["responses"]
    for entry in kb.entries.values():
        texts = [variation["text"] for variation in responses[f"utter_faq/{entry.id}"]]
        assert texts == [f"{entry.answer.zh}\n\n{entry.answer.en}"]
    for name in kb.intent_examples:
        (variation,) = responses[f"utter_{name}"]
        assert variation["text"].strip() and "{" not in variation["text"]  # no unfillable slot placeholders
    assert len(responses) == len(kb.entries) + len(kb.intent_examples)


def test_rules_route_every_intent_to_its_response(kb, exported):
    _, files = exported
    rules = files["data/rules.yml"]
    assert rules["version"] == "3.1"
    routes = {}
    for rule in rules["rules"]:
        assert rule["rule"] and len(rule["steps"]) == 2
        routes[rule["steps"][0]["intent"]] = rule["steps"][1]["action"]
    assert routes == {RETRIEVAL_INTENT: "utter_faq"} | {name: f"utter_{name}" for name in kb.intent_examples}


def test_config_is_issue_13s_pipeline_with_the_kb_user_dictionary(kb, exported):
    out, files = exported
    config = files["config.yml"]
    assert config["recipe"] == "default.v1" and config["language"] == "zh"
    names = [component["name"] for component in config["pipeline"]]
    assert names == ["JiebaTokenizer", "CountVectorsFeaturizer", "CountVectorsFeaturizer", "DIETClassifier",
                     "ResponseSelector"]
    tokenizer, words, chars, diet, selector = config["pipeline"]
    assert (out / tokenizer["dictionary_path"] / "userdict.txt").read_bytes() == kb.userdict_path.read_bytes()
    assert "analyzer" not in words
    assert (chars["analyzer"], chars["min_ngram"], chars["max_ngram"]) == ("char_wb", 1, 4)
    assert diet["epochs"] == selector["epochs"] == 7
    assert selector["retrieval_intent"] == RETRIEVAL_INTENT
    assert [policy["name"] for policy in config["policies"]] == ["RulePolicy"]


def test_epochs_must_be_positive(kb):
    with pytest.raises(ValueError, match="epochs"):
        build_project(kb, epochs=0)
