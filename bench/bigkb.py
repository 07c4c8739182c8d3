"""A large synthetic KB for the scale targets of issue 13 (10,000 entries: validate ≤ 10 s, index ≤ 60 s).

Every entry is one of the shipped entries under a new id, its questions and answers marked with the
entry's number so that no question repeats across entries (the validator would flag it); follow-ups
and regional variants are dropped (they would point at entries that do not exist). The shipped KB's
other files (intents, responses, regions, scope data) are copied unchanged.

    python -m bench.bigkb --entries 10000 --out var/bigkb            # generate + time kb validate
    python -m bench.bigkb --entries 10000 --out var/bigkb --index    # ... a full index build, saved where
                                                                     # a server with this KB finds it, then
                                                                     # one entry changed and re-indexed

Query latency at that size: ``HOTLINE_KNOWLEDGE_DIR=var/bigkb/knowledge HOTLINE_DATA_DIR=var/bigkb/var
python -m bench.latency --in-process`` (it loads the saved index).
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import yaml

from bot.config import Settings
from bot.kb import KnowledgeBase, load_knowledge_base
from bot.kb.loader import forget_parsed_files, inspect_knowledge_base

_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _entry(base: Any, number: int) -> dict[str, Any]:
    mark_zh, mark_en = f"（第{number}号）", f" (no. {number})"
    data: dict[str, Any] = {
        "id": f"{base.id}_{number}", "category": base.category,
        "questions": {"zh": [q + mark_zh for q in base.questions.zh], "en": [q + mark_en for q in base.questions.en]},
        "answer": {"zh": base.answer.zh + mark_zh, "en": base.answer.en + mark_en},
        "source": {"name": base.source.name, "name_en": base.source.name_en, "url": str(base.source.url)},
        "updated": base.updated,
    }
    if base.aspect:
        data["aspect"] = base.aspect
    return data


def generate(entries: int, out: Path, source: KnowledgeBase | None = None) -> Path:
    """Write a KB of ``entries`` entries to ``out/knowledge``; returns that folder."""
    source = source or load_knowledge_base(Settings().knowledge_dir)
    root = out / "knowledge"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(source.root, root, ignore=shutil.ignore_patterns("faq", "__pycache__", "*.py"))
    shipped = sorted(source.entries.values(), key=lambda e: e.id)
    by_category: dict[str, list[dict[str, Any]]] = {}
    for number in range(entries):
        base = shipped[number % len(shipped)]
        by_category.setdefault(base.category, []).append(_entry(base, number))
    (root / "faq").mkdir()
    for category, rows in by_category.items():
        text = yaml.dump({"category": category, "entries": rows}, Dumper=_DUMPER, allow_unicode=True,
                         sort_keys=False, width=1000)
        (root / "faq" / f"{category}.yml").write_text(text, encoding="utf-8")
    return root


def _one_entry_changed(kb, index, tokenizer, encoder, memo, update_index, retrain_index) -> None:
    """A publish of one changed entry at this size: an answer edit, then a paraphrase added."""
    import dataclasses

    entry = next(iter(kb.entries.values()))
    answer = entry.answer.model_copy(update={"zh": entry.answer.zh + "（已更新）"})
    edited = dataclasses.replace(kb, entries={**kb.entries, entry.id: entry.model_copy(update={"answer": answer})},
                                 version=kb.version + "-a")
    questions = entry.questions.model_copy(update={"zh": [*entry.questions.zh, "这个问题的一个新问法（第一号）"]})
    rephrased = dataclasses.replace(edited, entries={**edited.entries,
                                                     entry.id: entry.model_copy(update={"questions": questions,
                                                                                        "answer": answer})},
                                    version=kb.version + "-q")
    tokens: dict[str, list[str]] = {}  # a server's token memo starts empty (the lexical index keeps counts)
    started = time.perf_counter()
    answer_index = update_index(edited, tokenizer, encoder, index, kb, memo, tokens, quick=True)
    print(f"one answer edited: re-indexed in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    quick = update_index(rephrased, tokenizer, encoder, answer_index, edited, memo, tokens, quick=True)
    print(f"one paraphrase added: served (provisional) after {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    retrain_index(rephrased, tokenizer, encoder, quick, memo, tokens)
    print(f"... retrained in {time.perf_counter() - started:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("var/bigkb"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--index", action="store_true", help="also time a full index build (minutes of CPU)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # the index build's steps
    for noisy in ("bm25s", "faiss", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root = generate(args.entries, args.out)
    times, kb = [], None
    for _ in range(args.repeats):
        forget_parsed_files()  # each repeat as cold as a `kb validate` process
        started = time.perf_counter()
        kb, problems = inspect_knowledge_base(root)
        times.append(time.perf_counter() - started)
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise SystemExit(f"generated KB has problems: {errors[:3]}")
    assert kb is not None
    questions = sum(len(e.questions.zh) + len(e.questions.en) for e in kb.entries.values())
    print(f"| KB | entries | questions | kb validate (median of {args.repeats}) |")
    print("| --- | --- | --- | --- |")
    print(f"| {root} | {len(kb.entries):,} | {questions:,} | {statistics.median(times):.2f} s |")
    if args.index:
        from bot.encoders import build_encoder
        from bot.index import VectorMemo, artifact_dir, build_index, retrain_index, save_index, update_index
        from bot.text import DomainTokenizer, SynonymMap

        settings = Settings(knowledge_dir=root, data_dir=args.out / "var")
        threads = os.cpu_count() or 1
        encoder = build_encoder(settings.encoder, threads, settings.models_dir)
        tokenizer = DomainTokenizer(kb.userdict_path, SynonymMap.from_file(kb.synonyms_path))
        started, cpu = time.perf_counter(), time.process_time()
        index = build_index(kb, tokenizer, encoder)
        print(f"full index build: {time.perf_counter() - started:.1f} s wall, {time.process_time() - cpu:.1f} s CPU "
              f"({threads} BLAS threads; entry classifier: {'yes' if index.entries else 'none, too large'})")
        save_index(index, artifact_dir(settings.index_dir, kb.version, settings.encoder_key))
        _one_entry_changed(kb, index, tokenizer, encoder, VectorMemo(), update_index, retrain_index)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
