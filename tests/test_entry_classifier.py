"""The entry classifier learns from the entries' answers too: a question worded like the answer ("医保报销吗")
and like no paraphrase still finds its entry. Real sklearn models on hand-made texts; the sentence vectors are
zero so only the text features decide."""
import numpy as np

from bot.retrieval.entry_classifier import EntryClassifier

TEXTS = ["核酸检测多少钱", "做核酸收费吗", "核酸在哪里做", "采样点在哪里"]
LABELS = ["fee", "fee", "sites", "sites"]
ANSWERS = ["核酸检测免费，费用由医保统一支付", "采样点可以在小程序地图上查看"]


def _tokens(text):
    return list(text)


def _classifier(with_answers: bool) -> EntryClassifier:
    answers = (ANSWERS, [_tokens(a) for a in ANSWERS], ["fee", "sites"], np.zeros((2, 4))) if with_answers else None
    return EntryClassifier.train(TEXTS, [_tokens(t) for t in TEXTS], LABELS, np.zeros((4, 4)), answers=answers)


def _p(classifier: EntryClassifier, text: str, entry: str) -> float:
    probabilities = classifier.probabilities(text, _tokens(text), np.zeros(4))
    return float(probabilities[classifier.classes.index(entry)])


def test_answers_are_examples_of_their_entry():
    query = "医保统一支付吗"
    assert _p(_classifier(True), query, "fee") > 0.5
    assert _p(_classifier(True), query, "fee") > _p(_classifier(False), query, "fee")


def test_without_answers_it_trains_on_paraphrases_only():
    classifier = _classifier(False)
    assert classifier.classes == ["fee", "sites"]
    assert _p(classifier, "做核酸收费吗", "fee") > 0.5
