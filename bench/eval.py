"""Answer quality, abstention and emergency recall: ``hotline-bot eval`` / ``python -m bench.eval``.

(a) the project's held-out paraphrases of its own KB (never indexed): P@1 and what the bot
    DOES with them (right / wrong direct answers, did-you-mean, not covered), a confusion table;
(b) the project's out-of-KB test split (bench/data/out_of_kb_test.yml): share answered;
(c) the project's emergency test split (bench/data/emergency_test.yml): recall, and false alarms
    on the KB held-out questions;
(d) the external sets in ../shared/eval when present, zero-shot with the default configuration
    (their own FAQs indexed the way our KB is, our decision model applied, nothing trained on their
    queries): CovidFAQ, Stanford OVAL (incl. its unanswerable questions), Tianchi sentence pairs,
    deepset question similarity. Prints one report with every target beside its measured value.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score

from bench.heldout import DATA_DIR, load_heldout
from bench.metrics import mean, ndcg_at_k, precision_at_1, reciprocal_rank
from bot.config import PROJECT_ROOT, Settings
from bot.encoders import encode
from bot.index import build_retrievers, train_topic_classifier
from bot.retrieval import HybridRetriever, KnownQuestions
from bot.retrieval.entry_classifier import EntryClassifier
from bot.scope import Vocabulary, load_out_of_kb, scope_evidence
from bot.text import detect_language, normalise

DEFAULT_EXTERNAL = PROJECT_ROOT.parent / "shared" / "eval"  # a source checkout's neighbour; absent in a wheel


def load_bot(settings: Settings):
    """The understanding half only: evaluation never writes conversations."""
    from bot.engine import Bot

    return Bot.load(settings)


class ForeignFAQ:
    """Someone else's FAQ indexed exactly the way our KB is (questions dense + lexical, answers
    lexical, an entry classifier over its questions, a vocabulary for the scope model), with our
    tokenizer, encoder, weights and scope model. Nothing is fitted on the queries."""

    def __init__(self, bot, items: list[tuple[str, str]], answers: dict[str, str] | None = None):
        self.bot = bot
        ids = [i for i, _ in items]
        texts = [normalise(q) for _, q in items]
        answers = {k: normalise(v) for k, v in (answers or {}).items() if v and k in set(ids)}
        vectors = encode(bot.encoder, texts)
        lexical, dense = build_retrievers(texts, vectors, bot.tokenizer, list(answers.values()))
        tokens = [bot.tokenizer.tokens(t) for t in texts]
        answer_ids = list(answers)
        answer_examples = ([answers[k] for k in answer_ids], [bot.tokenizer.tokens(answers[k]) for k in answer_ids],
                           answer_ids, encode(bot.encoder, [answers[k] for k in answer_ids])) if answers else None
        classifier = (EntryClassifier.train(texts, tokens, ids, vectors, answers=answer_examples)
                      if len(set(ids)) > 1 else None)
        t = bot.settings.thresholds
        self.retriever = HybridRetriever(ids, lexical, dense, t.dense_weight, t.lexical_saturation,
                                         lexical_entry_ids=ids + list(answers), classifier=classifier,
                                         classifier_weight=t.classifier_weight,
                                         known=KnownQuestions(ids, texts))
        words: dict[str, set[str]] = {}
        for entry_id, text in [*zip(ids, texts), *answers.items()]:
            words.setdefault(entry_id, set()).update(bot.tokenizer.words(text))
        self.vocabulary = Vocabulary(words)
        texts_by_id: dict[str, list[str]] = {}
        for entry_id, text in [*zip(ids, texts), *answers.items()]:
            texts_by_id.setdefault(entry_id, []).append(text)
        self.entry_texts = {k: "\n".join(v) for k, v in texts_by_id.items()}
        # The default configuration's topic classifier: this FAQ's questions vs our out-of-KB training
        # questions (exactly what index build does for our KB). Some of those may be answered by this
        # FAQ, which only makes the measurement harder for us.
        negatives = [normalise(t) for t in load_out_of_kb(bot.settings.knowledge_dir)]
        self.topic = None
        if negatives:
            self.topic = train_topic_classifier(texts, vectors, negatives, encode(bot.encoder, negatives))

    def run(self, queries: list[str], k: int = 10):
        """[(candidates, P(top answers it) or None, other subjects named)] per query."""
        normalised = [normalise(q) for q in queries]
        vectors = encode(self.bot.encoder, normalised)
        out = []
        for q, v in zip(normalised, vectors):
            words = self.bot.tokenizer.words(q)  # one jieba pass, as Bot.understand does
            candidates = self.retriever.run(self.bot.tokenizer.tokens(q, words), v, top_k=k, text=q)
            p = None
            if self.bot.scope_model is not None:
                in_kb = self.topic.probability(q, v) if self.topic is not None else 1.0
                p = self.bot.scope_model.probability(
                    scope_evidence(candidates, words, self.vocabulary, detect_language(q), in_kb, self.bot.gazetteer.get))
            other = self.bot.other_subjects.find(q, self.entry_texts.get(candidates[0].entry_id, ""),
                                                 words=words) if candidates else ()
            out.append((candidates, p, other))
        return out


def faq_retriever(bot, items: list[tuple[str, str]]) -> HybridRetriever:
    return ForeignFAQ(bot, items).retriever


def rank_queries(bot, retriever: HybridRetriever, queries: list[str], k: int = 10):
    normalised = [normalise(q) for q in queries]
    vectors = encode(bot.encoder, normalised)
    return [retriever.run(bot.tokenizer.tokens(q), v, top_k=k, text=q) for q, v in zip(normalised, vectors)]


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

def decide(bot, text: str):
    """What the bot would do with this text as the first message of a conversation (no region known)."""
    u = bot.understand(text)
    return u, bot.decision_for(u, EVAL_DAY, region=u.region)


# Entries' valid_until dates are checked against a fixed day, so numbers never depend on today's date.
EVAL_DAY = dt.date(2026, 12, 1)


def eval_heldout(bot, split: str | None) -> tuple[dict, dict, list[dict], list[dict], dict]:
    questions = load_heldout(split)
    answerable = [q for q in questions if q.expected]
    unanswerable = [q for q in questions if not q.expected]
    ranked, relevant, scores, correct, outcomes = [], [], [], [], Counter()
    mistakes: Counter = Counter()
    examples: dict = {}
    emergencies = 0
    for q in questions:
        u, decision = decide(bot, q.text)
        emergencies += int(bool(u.emergency))
        ids = [c.entry_id for c in u.candidates]
        if q.expected:
            ranked.append(ids)
            relevant.append({q.expected})
            scores.append(u.scope if u.scope is not None else (u.candidates[0].score if u.candidates else 0.0))
            correct.append(bool(ids) and ids[0] == q.expected)
            if decision.action in ("answer", "ask_region"):
                right = decision.entry_id == q.expected
                outcomes["answered right" if right else "answered WRONG"] += 1
                got = decision.entry_id
            elif decision.action == "did_you_mean":
                right = q.expected in decision.options
                outcomes["did-you-mean incl. right" if right else "did-you-mean WRONG"] += 1
                got = "did-you-mean: " + (decision.options[0] if decision.options else "-")
            else:
                right = False
                outcomes[decision.action if decision.action != "handoff" else f"handoff ({decision.reason})"] += 1
                got = f"{decision.action}" + (f" (top {ids[0]})" if ids else "")
            if not (decision.action in ("answer", "ask_region") and right):
                key = (q.expected, got)
                mistakes[key] += 1
                examples.setdefault(key, q.text)
        else:
            outcomes["unanswerable answered" if decision.action == "answer" else "unanswerable declined"] += 1
    row = ranking_row(f"KB held-out ({split or 'all'})", ranked, relevant)
    by_lang = defaultdict(list)
    for q, r in zip(answerable, ranked):
        by_lang[q.lang].append(precision_at_1(r, {q.expected}))
    row["notes"] = ", ".join(f"P@1 {lang} {mean(v):.3f}" for lang, v in sorted(by_lang.items()))
    decisions = dict(outcomes) | {"answerable": len(answerable), "unanswerable": len(unanswerable),
                                  "emergency false alarms": emergencies, "questions": len(questions)}
    confusion = [{"expected": e, "bot did": g, "n": n, "example": examples[(e, g)]}
                 for (e, g), n in mistakes.most_common(20)]
    return row, decisions, coverage_curve(scores, correct, (0.0, 0.2, 0.4, 0.6, 0.8, 0.9)), confusion, {}


def eval_out_of_kb(bot) -> dict:
    """The project's out-of-KB TEST split: how often the bot answers anyway."""
    rows = yaml.safe_load((DATA_DIR / "out_of_kb_test.yml").read_text(encoding="utf-8")) or []
    outcomes, by_lang, by_batch = Counter(), defaultdict(Counter), defaultdict(Counter)
    answered_examples = []
    for r in rows:
        u, decision = decide(bot, r["text"])
        outcomes[decision.action] += 1
        by_lang[r["lang"]][decision.action == "answer"] += 1
        by_batch[r.get("batch", 1)][decision.action == "answer"] += 1
        if decision.action == "answer":
            answered_examples.append(f"{r['text']} → {decision.entry_id}")
    n = len(rows)
    return {"n": n, "answered": outcomes["answer"], "answered_rate": outcomes["answer"] / max(n, 1),
            "outcomes": dict(outcomes),
            "by_lang": {lang: c[True] / max(sum(c.values()), 1) for lang, c in sorted(by_lang.items())},
            "by_batch": {b: (c[True], sum(c.values())) for b, c in sorted(by_batch.items())},
            "answered_examples": answered_examples}


def eval_emergency(bot, heldout_false_alarms: int, heldout_n: int) -> dict:
    data = yaml.safe_load((DATA_DIR / "emergency_test.yml").read_text(encoding="utf-8")) or {}
    positives = data.get("emergency") or []
    negatives = data.get("not_emergency") or []
    missed, regex_hits, kind_right = [], 0, 0
    for r in positives:
        u = bot.understand(r["text"])
        if not u.emergency:
            missed.append(r["text"])
        else:
            regex_hits += int(not u.emergency.startswith("learned:"))
            kind_right += int(u.crisis_kind == r.get("kind", "medical"))
    flagged_hard = [r["text"] for r in negatives if bot.understand(r["text"]).emergency]
    n = len(positives)
    return {"n": n, "recall": (n - len(missed)) / max(n, 1), "missed": missed, "regex_only_recall": regex_hits / max(n, 1),
            "kind_accuracy": kind_right / max(n - len(missed), 1),
            "hard_negatives": len(negatives), "hard_negatives_flagged": flagged_hard,
            "false_alarm_rate": heldout_false_alarms / max(heldout_n, 1), "false_alarms": heldout_false_alarms,
            "heldout_n": heldout_n}


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
    faq = ForeignFAQ(bot, [(r["id"], r["question"]) for r in faqs], {r["id"]: r["answer"] for r in faqs})
    results = [c for c, _, _ in faq.run([r["question"] for r in queries])]
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
        rows = [r for r in csv.DictReader(f) if r.get("Question")]
    with open(base / "validation.csv", encoding="utf-8") as f:
        val = list(csv.DictReader(f))
    faq = ForeignFAQ(bot, [(r["ID"], r["Question"]) for r in rows], {r["ID"]: r.get("Answer") or "" for r in rows})
    results = faq.run([r["Question"] for r in val])
    t = bot.settings.thresholds
    ranked, relevant, wrongly_answered, unanswerable, answered_right, answered_wrong = [], [], 0, 0, 0, 0
    for r, (res, p, other) in zip(val, results):
        gold = {x.strip() for x in r["Answer"].split(",") if x.strip()}
        answers = ((p >= t.scope_answer) if p is not None else res[0].score >= t.answer) and not other
        if gold == {"-1"}:
            unanswerable += 1
            wrongly_answered += int(answers)
        else:
            ranked.append([c.entry_id for c in res])
            relevant.append(gold)
            if answers:
                answered_right += int(res[0].entry_id in gold)
                answered_wrong += int(res[0].entry_id not in gold)
    row = ranking_row("Stanford OVAL (answerable)", ranked, relevant)
    row["unanswerable_answered"] = wrongly_answered / max(unanswerable, 1)
    row["notes"] = (f"unanswerable answered: {wrongly_answered}/{unanswerable} "
                    f"({wrongly_answered / max(unanswerable, 1):.1%}); answerable answered directly: "
                    f"{answered_right} right, {answered_wrong} wrong of {len(ranked)}")
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


def target_rows(heldout: dict, decisions: dict, out_of_kb: dict, emergency: dict, external: dict) -> list[dict]:
    """Every target of issue 7 with the measured value and met / NOT met."""
    answerable = decisions["answerable"]
    rows = []

    def add(name, value, target, ok, fmt="{:.3f}"):
        shown = "—" if value is None else fmt.format(value)
        rows.append({"target": name, "measured": shown, "goal": target,
                     "status": "—" if value is None else ("met" if ok(value) else "NOT met")})

    add("KB held-out test P@1", heldout["P@1"], "≥ 0.92", lambda v: v >= 0.92)
    add("wrong direct answers (% of answerable)", 100 * decisions.get("answered WRONG", 0) / answerable, "≤ 2%",
        lambda v: v <= 2.0, "{:.1f}%")
    add("right answer given directly (% of answerable)", 100 * decisions.get("answered right", 0) / answerable,
        "≥ 88%", lambda v: v >= 88.0, "{:.1f}%")
    add("out-of-KB test split answered", 100 * out_of_kb["answered_rate"], "≤ 5%", lambda v: v <= 5.0, "{:.1f}%")
    oval = external.get("oval")
    add("Stanford OVAL unanswerable answered", 100 * oval["unanswerable_answered"] if oval else None, "≤ 10%",
        lambda v: v <= 10.0, "{:.1f}%")
    add("Stanford OVAL answerable P@1", oval["P@1"] if oval else None, "≥ 0.75", lambda v: v >= 0.75)
    covid = external.get("covid")
    add("CovidFAQ NDCG@10 (zero-shot, default config)", covid["NDCG@10"] if covid else None, "≥ 0.85",
        lambda v: v >= 0.85)
    tianchi = external.get("tianchi")
    add("Tianchi dev pair accuracy", tianchi["accuracy"] if tianchi else None, "≥ 0.88", lambda v: v >= 0.88)
    deepset = external.get("deepset")
    add("deepset question-similarity AUC", deepset["AUC"] if deepset else None, "≥ 0.97", lambda v: v >= 0.97)
    add("emergency test split recall", 100 * emergency["recall"], "≥ 98%", lambda v: v >= 98.0, "{:.1f}%")
    add("emergency false alarms on KB held-out questions", 100 * emergency["false_alarm_rate"], "≤ 0.5%",
        lambda v: v <= 0.5, "{:.2f}%")
    return rows


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
    ranking, pairs, curves, external = [], [], [], {}
    row, decisions, curve, confusion, _ = eval_heldout(bot, split)
    ranking.append(row)
    curves.append(("KB held-out (scope P or top score)", curve))
    out_of_kb = eval_out_of_kb(bot)
    emergency = eval_emergency(bot, decisions["emergency false alarms"], decisions["questions"])
    if not args.skip_external and args.external.exists():
        covid = eval_covidfaq(bot, args.external)
        if covid:
            ranking.append(covid[0])
            external["covid"] = covid[0]
            curves.append(("CovidFAQ (top score)", covid[1]))
        for key, fn, target in (("oval", eval_stanford, ranking), ("tianchi", eval_tianchi, pairs),
                                ("deepset", eval_deepset, pairs)):
            result = fn(bot, args.external)
            if result:
                target.append(result)
                external[key] = result
    t = bot.settings.thresholds.model_dump()
    t["scope_coef"] = "[...]"
    print(f"\nencoder={bot.settings.encoder} KB={bot.kb.version} split={args.split} thresholds={t}\n")
    print_table(target_rows(row, decisions, out_of_kb, emergency, external), ["target", "measured", "goal", "status"])
    print()
    print_table(ranking, ["set", "n", "P@1", "MRR", "NDCG@10", "notes"])
    if pairs:
        print()
        print_table(pairs, ["set", "n", "accuracy", "AUC", "notes"])
    print("\nKB held-out decisions:", ", ".join(f"{k}: {v}" for k, v in sorted(decisions.items())))
    print(f"\nout-of-KB test split ({out_of_kb['n']}): {out_of_kb['outcomes']}; answered by language "
          + ", ".join(f"{k} {v:.1%}" for k, v in out_of_kb["by_lang"].items()))
    print("   answered by batch (1: round-1 test split, 2: round-2 fresh batch, 3: round-3 test split): "
          + ", ".join(f"{b}: {a}/{n} = {a / max(n, 1):.1%}" for b, (a, n) in out_of_kb["by_batch"].items()))
    for example in out_of_kb["answered_examples"]:
        print("   answered:", example)
    print(f"\nemergency test split: {emergency['n']} red flags, recall {emergency['recall']:.1%} "
          f"(regex floor alone {emergency['regex_only_recall']:.1%}), crisis kind right {emergency['kind_accuracy']:.1%}; "
          f"hard non-emergency flagged {len(emergency['hard_negatives_flagged'])}/{emergency['hard_negatives']}; "
          f"KB held-out false alarms {emergency['false_alarms']}/{emergency['heldout_n']}")
    for text in emergency["missed"]:
        print("   missed:", text)
    for text in emergency["hard_negatives_flagged"]:
        print("   flagged:", text)
    print("\ntop mistakes on the KB held-out questions (expected entry → what the bot did):")
    print_table(confusion, ["expected", "bot did", "n", "example"])
    for name, curve in curves:
        print(f"\ncoverage vs accuracy of the top-1 entry as the threshold rises, {name}:")
        print_table(curve, ["threshold", "coverage", "accuracy"])
    print(f"\n({time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
