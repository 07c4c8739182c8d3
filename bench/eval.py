"""Retrieval quality: ``hotline-bot eval`` / ``python -m bench.eval``.

(a) the project's held-out paraphrases of its own KB (never indexed), and
(b) the external sets in ../shared/eval when present: CovidFAQ, Stanford OVAL,
Tianchi sentence pairs, deepset question similarity. Prints one table.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from bench.heldout import load_heldout
from bench.metrics import mean, ndcg_at_k, precision_at_1, reciprocal_rank
from bot.config import PROJECT_ROOT, Settings
from bot.encoders import encode
from bot.index import build_retrievers
from bot.retrieval import HybridRetriever
from bot.text import normalise

DEFAULT_EXTERNAL = PROJECT_ROOT.parent / "shared" / "eval"  # a source checkout's neighbour; absent in a wheel


def load_bot(settings: Settings):
    """The understanding half only: evaluation never writes conversations."""
    from bot.engine import Bot

    return Bot.load(settings)


def faq_retriever(bot, items: list[tuple[str, str]]) -> HybridRetriever:
    """A hybrid retriever over someone else's FAQ, with our tokenizer, encoder and weights."""
    texts = [normalise(q) for _, q in items]
    lexical, dense = build_retrievers(texts, encode(bot.encoder, texts), bot.tokenizer)
    t = bot.settings.thresholds
    return HybridRetriever([i for i, _ in items], lexical, dense, t.dense_weight, t.lexical_saturation)


def rank_queries(bot, retriever: HybridRetriever, queries: list[str], k: int = 10):
    normalised = [normalise(q) for q in queries]
    vectors = encode(bot.encoder, normalised)
    return [retriever.run(bot.tokenizer.tokens(q), v, top_k=k) for q, v in zip(normalised, vectors)]


def ranking_row(name: str, ranked: list[list[str]], relevant: list[set[str]]) -> dict:
    return {
        "set": name, "n": len(ranked),
        "P@1": mean([precision_at_1(r, g) for r, g in zip(ranked, relevant)]),
        "MRR": mean([reciprocal_rank(r, g) for r, g in zip(ranked, relevant)]),
        "NDCG@10": mean([ndcg_at_k(r, g) for r, g in zip(ranked, relevant)]),
    }


def coverage_curve(scores: list[float], correct: list[bool], thresholds=(0.0, 0.4, 0.5, 0.6, 0.7, 0.8)) -> list[dict]:
    rows = []
    for t in thresholds:
        covered = [c for s, c in zip(scores, correct) if s >= t]
        rows.append({"threshold": t, "coverage": len(covered) / len(scores) if scores else 0.0,
                     "accuracy": mean([float(c) for c in covered]) if covered else float("nan")})
    return rows


# -- (a) own KB ------------------------------------------------------------------

def eval_heldout(bot, split: str | None) -> tuple[dict, dict, list[dict]]:
    questions = load_heldout(split)
    answerable = [q for q in questions if q.expected]
    unanswerable = [q for q in questions if not q.expected]
    ranked, relevant, scores, correct, outcomes = [], [], [], [], Counter()
    for q in questions:
        u = bot.understand(q.text)
        decision = bot.policy.run(emergency=u.emergency, intent=u.intent, candidates=u.candidates, failures=0)
        ids = [c.entry_id for c in u.candidates]
        if q.expected:
            ranked.append(ids)
            relevant.append({q.expected})
            scores.append(u.candidates[0].score if u.candidates else 0.0)
            correct.append(bool(ids) and ids[0] == q.expected)
            if decision.action == "answer":
                outcomes["answered right" if decision.entry_id == q.expected else "answered WRONG"] += 1
            elif decision.action == "did_you_mean":
                outcomes["did-you-mean incl. right" if q.expected in decision.options else "did-you-mean WRONG"] += 1
            else:
                outcomes[f"{decision.action}"] += 1
        else:
            outcomes["unanswerable answered" if decision.action == "answer" else "unanswerable declined"] += 1
    row = ranking_row(f"KB held-out ({split or 'all'})", ranked, relevant)
    by_lang = defaultdict(list)
    for q, r in zip(answerable, ranked):
        by_lang[q.lang].append(precision_at_1(r, {q.expected}))
    row["notes"] = ", ".join(f"P@1 {lang} {mean(v):.3f}" for lang, v in sorted(by_lang.items()))
    decisions = dict(outcomes) | {"answerable": len(answerable), "unanswerable": len(unanswerable)}
    return row, decisions, coverage_curve(scores, correct)


# -- (b) external sets ---------------------------------------------------------------

def eval_covidfaq(bot, root: Path) -> tuple[dict, list[dict]] | None:
    path = root / "bertfaq_covidfaq" / "query_answer_pairs.json"
    if not path.exists():
        return None
    rows = json.loads(path.read_text(encoding="utf-8"))
    faqs = [r for r in rows if r["query_type"] == "faq"]
    queries = [r for r in rows if r["query_type"] == "user_query"]
    by_answer = defaultdict(set)
    for r in faqs:
        by_answer[r["answer"].strip()].add(r["id"])
    retriever = faq_retriever(bot, [(r["id"], r["question"]) for r in faqs])
    results = rank_queries(bot, retriever, [r["question"] for r in queries])
    ranked = [[c.entry_id for c in res] for res in results]
    relevant = [by_answer[r["answer"].strip()] for r in queries]
    scores = [res[0].score for res in results]
    correct = [rk[0] in g for rk, g in zip(ranked, relevant)]
    return ranking_row("CovidFAQ (68 FAQ, 1,387 queries)", ranked, relevant), coverage_curve(scores, correct)


def eval_stanford(bot, root: Path) -> dict | None:
    base = root / "stanford_oval_covidfaq"
    if not (base / "faq_db.csv").exists():
        return None
    with open(base / "faq_db.csv", encoding="utf-8") as f:
        faq = [(r["ID"], r["Question"]) for r in csv.DictReader(f) if r.get("Question")]
    with open(base / "validation.csv", encoding="utf-8") as f:
        val = list(csv.DictReader(f))
    retriever = faq_retriever(bot, faq)
    results = rank_queries(bot, retriever, [r["Question"] for r in val])
    answer_threshold = bot.settings.thresholds.answer
    ranked, relevant, wrongly_answered, unanswerable = [], [], 0, 0
    for r, res in zip(val, results):
        gold = {x.strip() for x in r["Answer"].split(",") if x.strip()}
        if gold == {"-1"}:
            unanswerable += 1
            wrongly_answered += int(res[0].score >= answer_threshold)
        else:
            ranked.append([c.entry_id for c in res])
            relevant.append(gold)
    row = ranking_row("Stanford OVAL (answerable)", ranked, relevant)
    row["notes"] = (f"unanswerable answered anyway: {wrongly_answered}/{unanswerable} "
                    f"({wrongly_answered / max(unanswerable, 1):.1%}) at answer threshold {answer_threshold}")
    return row


def _pair_scores(bot, a: list[str], b: list[str]) -> np.ndarray:
    va = encode(bot.encoder, [normalise(x) for x in a])
    vb = encode(bot.encoder, [normalise(x) for x in b])
    return np.sum(va * vb, axis=1)


def eval_tianchi(bot, root: Path) -> dict | None:
    base = root / "tianchi_covid_sentence_pair"
    if not (base / "dev_20200228.csv").exists():
        return None

    def read(name):
        with open(base / name, encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f) if r.get("label") in ("0", "1")]
        return rows

    train, dev = read("train_20200228.csv"), read("dev_20200228.csv")
    train_scores = _pair_scores(bot, [r["query1"] for r in train], [r["query2"] for r in train])
    train_labels = np.array([int(r["label"]) for r in train])
    # the decision threshold is fitted on the train split, never on dev
    candidates = np.unique(np.round(train_scores, 3))
    best = max(candidates, key=lambda t: np.mean((train_scores >= t) == train_labels))
    dev_scores = _pair_scores(bot, [r["query1"] for r in dev], [r["query2"] for r in dev])
    dev_labels = np.array([int(r["label"]) for r in dev])
    return {"set": "Tianchi sentence pairs (dev)", "n": len(dev),
            "accuracy": float(np.mean((dev_scores >= best) == dev_labels)),
            "AUC": float(roc_auc_score(dev_labels, dev_scores)),
            "notes": f"threshold {best:.3f} fitted on train ({len(train)} pairs)"}


def eval_deepset(bot, root: Path) -> dict | None:
    path = root / "deepset_covidqa_qsim" / "eval_question_similarity_en.csv"
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r.get("similar") in ("0", "1")]
    scores = _pair_scores(bot, [r["question_1"] for r in rows], [r["question_2"] for r in rows])
    labels = [int(r["similar"]) for r in rows]
    return {"set": "deepset question similarity", "n": len(rows), "AUC": float(roc_auc_score(labels, scores))}


# -- report ------------------------------------------------------------------------------

def _fmt(value) -> str:
    if isinstance(value, float):
        return "—" if value != value else f"{value:.3f}"
    return str(value)


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in columns}
    print("| " + " | ".join(c.ljust(widths[c]) for c in columns) + " |")
    print("|" + "|".join("-" * (widths[c] + 2) for c in columns) + "|")
    for r in rows:
        print("| " + " | ".join(_fmt(r.get(c, "")).ljust(widths[c]) for c in columns) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hotline-bot eval")
    parser.add_argument("--external", type=Path, default=DEFAULT_EXTERNAL, help="folder of external eval sets")
    parser.add_argument("--split", choices=["dev", "test", "all"], default="test",
                        help="held-out half to report (dev is used for calibration)")
    parser.add_argument("--skip-external", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    bot = load_bot(Settings())
    split = None if args.split == "all" else args.split
    ranking, pairs, curves = [], [], []
    row, decisions, curve = eval_heldout(bot, split)
    ranking.append(row)
    curves.append(("KB held-out", curve))
    if not args.skip_external and args.external.exists():
        covid = eval_covidfaq(bot, args.external)
        if covid:
            ranking.append(covid[0])
            curves.append(("CovidFAQ", covid[1]))
        for fn, target in ((eval_stanford, ranking), (eval_tianchi, pairs), (eval_deepset, pairs)):
            result = fn(bot, args.external)
            if result:
                target.append(result)
    print(f"\nencoder={bot.settings.encoder} KB={bot.kb.version} thresholds={bot.settings.thresholds.model_dump()}\n")
    print_table(ranking, ["set", "n", "P@1", "MRR", "NDCG@10", "notes"])
    if pairs:
        print()
        print_table(pairs, ["set", "n", "accuracy", "AUC", "notes"])
    print("\nKB held-out decisions:", ", ".join(f"{k}: {v}" for k, v in sorted(decisions.items())))
    for name, curve in curves:
        print(f"\ncoverage vs accuracy (top-1 score ≥ threshold), {name}:")
        print_table(curve, ["threshold", "coverage", "accuracy"])
    print(f"\n({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
