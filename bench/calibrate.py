"""Calibrates retrieval weights and decision thresholds on held-out data.

Writes ``knowledge/thresholds/<encoder>.yml`` (run once per encoder:
``HOTLINE_ENCODER=e5 python -m bench.calibrate``). Uses only the ``dev`` half of the
held-out paraphrases (the ``test`` half is what ``bench/eval.py`` reports) and
cross-validation on ``knowledge/intents.yml`` for the intent threshold.

    python -m bench.calibrate            # print and write
    python -m bench.calibrate --dry-run  # print only
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys

import numpy as np
import yaml
from sklearn.model_selection import StratifiedKFold

from bench.eval import load_bot
from bench.heldout import load_heldout
from bench.metrics import mean, precision_at_1, reciprocal_rank
from bot.config import Settings
from bot.encoders import encode
from bot.intents import FAQ_INTENT, IntentClassifier
from bot.retrieval import HybridRetriever
from bot.text import normalise

TARGET_ANSWER_PRECISION = 0.95  # a wrong health answer costs more than a clarifying question
TARGET_SUGGEST_RECALL = 0.95    # share of in-scope questions that must not be told to rephrase
MAX_UNANSWERABLE_ANSWERED = 0.10  # out-of-scope questions that may still get a (wrong) answer
INTENT_PRECISION = 0.95


def retrieval_grid(bot, questions):
    normalised = [normalise(q.text) for q in questions]
    vectors = encode(bot.encoder, normalised)
    tokens = [bot.tokenizer.tokens(q) for q in normalised]
    best = None
    for weight in (0.4, 0.5, 0.6, 0.7, 0.8):
        for saturation in (1.0, 2.0, 4.0, 8.0):
            retriever = HybridRetriever(bot.index.doc_entry_ids, bot.index.lexical, bot.index.dense, weight,
                                        saturation, lexical_entry_ids=bot.index.lexical_entry_ids)
            results = [retriever.run(t, v, top_k=10) for t, v in zip(tokens, vectors)]
            answerable = [(q, r) for q, r in zip(questions, results) if q.expected]
            mrr = mean([reciprocal_rank([c.entry_id for c in r], {q.expected}) for q, r in answerable])
            p1 = mean([precision_at_1([c.entry_id for c in r], {q.expected}) for q, r in answerable])
            if best is None or (mrr, p1) > best[0]:
                best = ((mrr, p1), weight, saturation, results)
    return best


def answer_thresholds(questions, results):
    """The (answer, margin) answering the most in-scope questions such that
    answers are right >= TARGET_ANSWER_PRECISION of the time and at most
    MAX_UNANSWERABLE_ANSWERED of out-of-scope questions get an answer."""
    unanswerable = sum(1 for q in questions if not q.expected)
    best = None
    for margin in (0.0, 0.02, 0.04, 0.06, 0.08):
        for answer in np.arange(0.40, 0.95, 0.01):
            answered = correct = wrongly_answered = 0
            for q, r in zip(questions, results):
                top, second = r[0].score, (r[1].score if len(r) > 1 else 0.0)
                if top >= answer and top - second >= margin:
                    if q.expected:
                        answered += 1
                        correct += int(q.expected == r[0].entry_id)
                    else:
                        wrongly_answered += 1
            if answered == 0 or wrongly_answered > MAX_UNANSWERABLE_ANSWERED * unanswerable:
                continue
            precision = correct / answered
            if precision >= TARGET_ANSWER_PRECISION and (best is None or answered > best[0]):
                best = (answered, round(float(answer), 2), margin, precision, wrongly_answered)
    return best


def suggest_threshold(questions, results) -> float:
    scores = sorted(r[0].score for q, r in zip(questions, results) if q.expected)
    return round(float(scores[int(len(scores) * (1 - TARGET_SUGGEST_RECALL))]), 2)


def intent_threshold(bot) -> tuple[float, float]:
    """5-fold CV of the intent classifier; lowest threshold with INTENT_PRECISION on non-FAQ intents."""
    texts, labels = [], []
    for entry in bot.kb.entries.values():
        for q in [*entry.questions.zh, *entry.questions.en]:
            texts.append(normalise(q))
            labels.append(FAQ_INTENT)
    for intent, examples in bot.kb.intent_examples.items():
        for example in examples:
            texts.append(normalise(example))
            labels.append(intent)
    vectors = encode(bot.encoder, texts)
    labels_arr = np.array(labels)
    predictions: list[tuple[str, float, str]] = []
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(texts, labels_arr):
        model = IntentClassifier.train([texts[i] for i in train], [labels[i] for i in train], vectors[train])
        for i in test:
            p = model.run(texts[i], vectors[i])
            predictions.append((p.intent, p.confidence, labels[i]))
    for threshold in np.arange(0.30, 0.95, 0.05):
        fired = [(pred, gold) for pred, conf, gold in predictions if pred != FAQ_INTENT and conf >= threshold]
        if fired and mean([float(pred == gold) for pred, gold in fired]) >= INTENT_PRECISION:
            return round(float(threshold), 2), mean([float(pred == gold) for pred, gold in fired])
    return 0.9, float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.calibrate")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    settings = Settings()
    bot = load_bot(settings)
    dev = load_heldout("dev")
    (mrr, p1), weight, saturation, results = retrieval_grid(bot, dev)
    answerable = [(q, r) for q, r in zip(dev, results) if q.expected]
    answered, answer, margin, precision, wrongly_answered = answer_thresholds(dev, results)
    suggest = min(suggest_threshold(dev, results), answer)
    intent, intent_precision = intent_threshold(bot)
    unanswerable = [r for q, r in zip(dev, results) if not q.expected]
    values = {"answer": answer, "suggest": suggest, "margin": margin, "dense_weight": weight,
              "lexical_saturation": saturation, "intent": intent}
    header = (
        f"# Written by bench/calibrate.py on {dt.date.today()} (encoder {settings.encoder}, KB {bot.kb.version}).\n"
        f"# Dev half of the held-out set: {len(answerable)} answerable, {len(unanswerable)} unanswerable questions.\n"
        f"# Retrieval grid best: MRR {mrr:.3f}, P@1 {p1:.3f}.\n"
        f"# answer/margin: most coverage with >= {TARGET_ANSWER_PRECISION:.0%} precision "
        f"({answered}/{len(answerable)} in-scope auto-answered, precision {precision:.3f}; "
        f"{wrongly_answered}/{len(unanswerable)} out-of-scope answered, limit {MAX_UNANSWERABLE_ANSWERED:.0%}).\n"
        f"# suggest: {TARGET_SUGGEST_RECALL:.0%} of in-scope questions score above it; "
        f"unanswerable above it: {sum(r[0].score >= suggest for r in unanswerable)}/{len(unanswerable)}.\n"
        f"# intent: 5-fold CV on intents.yml + KB questions, precision {intent_precision:.3f} at this threshold.\n"
        f"# Override one value with HOTLINE_THRESHOLD_<NAME>.\n"
    )
    text = header + yaml.safe_dump(values, sort_keys=False)
    print(text)
    if not args.dry_run:
        path = settings.knowledge_dir / "thresholds" / f"{settings.encoder_key}.yml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
