"""In-process ``Bot.handle`` latency with COLD query vectors: ``python -m bench.handle_latency``.

Every message is a text the bot has never encoded (held-out and out-of-KB questions, each with a
distinct ordinal appended, and a query-vector cache that keeps nothing), so each call pays the
encoder, retrieval, the entry classifier, the scope model, the emergency detector and the SQLite
writes of one transaction. Target (issue 7): p50 ≤ 15 ms, p99 ≤ 40 ms on the 2-core machine.
Machines here are shared and noisy: the script runs several rounds and reports the median of each
statistic across rounds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from bench.heldout import DATA_DIR, load_heldout
from bot.config import Settings
from bot.messages import Message
from bot.store import Store


def texts(n: int) -> list[str]:
    base = [q.text for q in load_heldout()]
    base += [r["text"] for r in yaml.safe_load((DATA_DIR / "out_of_kb_test.yml").read_text(encoding="utf-8"))]
    return [f"{base[i % len(base)]} {i}" for i in range(n)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.handle_latency")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    from bot.engine import Bot, _VectorCache

    # As `hotline-bot serve` does (connectors/serve.py): one BLAS thread per request thread.
    threadpool_limits(limits=Settings().encoder_threads, user_api="blas")
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'latency.db'}")
        store.create_schema()
        bot = Bot.from_settings(Settings(), store=store)

        class _NoCache(_VectorCache):
            def get(self, key):  # every query vector is computed: the cold path
                return None

            def put(self, key, vector):
                pass

        bot._vectors = _NoCache()
        for text in texts(20):  # warm up the code paths, not the cache
            bot.handle(Message("warmup", text))
        rounds = []
        all_texts = texts(args.rounds * args.messages + 20)[20:]
        for r in range(args.rounds):
            timings = []
            for i, text in enumerate(all_texts[r * args.messages:(r + 1) * args.messages]):
                started = time.perf_counter()
                bot.handle(Message(f"user-{r}-{i}", text))
                timings.append((time.perf_counter() - started) * 1000)
            p50, p99 = float(np.percentile(timings, 50)), float(np.percentile(timings, 99))
            rounds.append((p50, p99))
            print(f"round {r + 1}: {len(timings)} messages, p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                  f"mean {statistics.mean(timings):.1f} ms", flush=True)
        p50 = statistics.median(r[0] for r in rounds)
        p99 = statistics.median(r[1] for r in rounds)
        print(f"\nencoder={bot.settings.encoder}: median of {args.rounds} rounds: p50 {p50:.1f} ms (target ≤ 15), "
              f"p99 {p99:.1f} ms (target ≤ 40), cold query vectors, SQLite file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
