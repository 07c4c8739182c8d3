"""hotline-bot and Rasa 3.6 side by side: same texts, same client, interleaved runs.

    python -m bench.rasa.env setup && python -m bench.rasa.env train --epochs 300   # once (cached)
    python -m bench.rasa.compare --epochs 300 [--repeats 3] [--database-url ...]

Both servers run at the same time on this machine, each started fresh (empty
caches). For every level the *same* distinct, never-seen texts
(bench/questions.py) go to hotline-bot's API and to Rasa's REST channel, one
server after the other, alternating which goes first; each figure is the
median of ``--repeats`` such pairs, and each ratio is computed inside one pair
before taking the median. Server CPU and memory are read from each server's
process tree. Accuracy: P@1 of both on the KB held-out test half
(bench/data, never trained on), Rasa's from ``/model/parse`` (its
ResponseSelector's top response), ours from ``bench.eval``.
"""
from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.heldout import load_heldout
from bench.latency import DISTINCT, _fmt, machine_note
from bench.live import LOAD_GENERATOR_ENV, start_server, stop_server, tree_usage
from bench.loadgen import HotlineTarget, RasaRestTarget, RunResult, run, wait_idle
from bench.questions import QuestionStream
from bench.rasa.env import RasaServer, model_path, start_rasa, stop_rasa_process
from bench.rasa.export import DEFAULT_EPOCHS, RETRIEVAL_INTENT


def rasa_accuracy(rasa: RasaServer, split: str = "test") -> dict:
    """P@1 of Rasa's ResponseSelector on the held-out split, and how often it would answer wrongly
    (intent ``faq`` with the wrong response: a plain Rasa bot has no abstention threshold)."""
    answerable = [q for q in load_heldout(split) if q.expected]
    right = wrong_answers = 0
    with httpx.Client(timeout=60) as client:
        for q in answerable:
            parsed = client.post(rasa.url + "/model/parse", json={"text": q.text}).json()
            selector = parsed.get("response_selector", {}).get(RETRIEVAL_INTENT, {})
            key = selector.get("response", {}).get("intent_response_key") or ""
            hit = key == f"{RETRIEVAL_INTENT}/{q.expected}"
            right += hit
            if parsed.get("intent", {}).get("name") == RETRIEVAL_INTENT and not hit:
                wrong_answers += 1
    return {"n": len(answerable), "p_at_1": right / len(answerable), "answered_wrong": wrong_answers}


def hotline_accuracy(split: str = "test", bot: Any = None) -> dict:
    """P@1 and wrong answers on the held-out ``split``, by ``bot`` or one loaded over a freshly built index."""
    from bench.eval import eval_heldout, load_bot
    from bot.config import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="hotline-compare-eval-"))
    try:
        row, decisions, *_ = eval_heldout(bot or load_bot(Settings(data_dir=data_dir)), split)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"n": row["n"], "p_at_1": row["P@1"], "answered_wrong": decisions.get("answered WRONG", 0)}


def first_answer(url: str, path: str, body: dict, started_at: float) -> float:
    httpx.post(url + path, json=body, timeout=300).raise_for_status()
    return time.perf_counter() - started_at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.rasa.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help="which cached model (bench.rasa.env train)")
    parser.add_argument("--model", type=Path, default=None, help="a Rasa model file instead")
    parser.add_argument("--database-url", default=None, help="hotline-bot's database (default: a fresh SQLite file)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--requests", type=int, default=300, help="closed loop: messages per run and server")
    parser.add_argument("--rates", default="20,50,100,200")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000)
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args(argv)
    model = args.model or model_path(args.epochs)
    if not model.exists():
        print(f"no Rasa model at {model}: run `python -m bench.rasa.env setup && python -m bench.rasa.env train "
              f"--epochs {args.epochs}`", file=sys.stderr)
        return 2

    stream = QuestionStream(seed=args.seed)
    data_dir = Path(tempfile.mkdtemp(prefix="hotline-compare-"))
    env = LOAD_GENERATOR_ENV | ({"DATABASE_URL": args.database_url} if args.database_url else {})
    results: dict[tuple[str, float], list[tuple[RunResult, RunResult]]] = {}
    try:
        stop_server(start_server(data_dir, env))  # build the index; the measured start loads it
        hotline = start_server(data_dir, env)
        cold_hotline = (hotline.healthy_at - hotline.started_at,
                        first_answer(hotline.url, "/api/v1/messages", {"user_id": "cold", "text": next(stream)},
                                     hotline.started_at))
        rasa = start_rasa(model, data_dir / "rasa")
        cold_rasa = (rasa.healthy_at - rasa.started_at,
                     first_answer(rasa.url, "/webhooks/rest/webhook", {"sender": "cold", "message": next(stream)},
                                  rasa.started_at))
        targets = [HotlineTarget(hotline.url, hotline.pid), RasaRestTarget(rasa.url, rasa.pid)]
        for target in targets:  # first requests pay one-off costs (lazy weights, graph warm-up)
            run(target, "closed", 2, stream.take(20), DISTINCT, prefix="warmup")
        plan = [("closed", float(c)) for c in args.levels.split(",")] + \
               [("open", float(r)) for r in args.rates.split(",")]
        for repeat in range(args.repeats):
            for position, (mode, level) in enumerate(plan):
                n = args.requests if mode == "closed" else max(1, int(level * args.duration))
                texts = stream.take(n)  # the same never-seen texts for both servers
                order = targets if (repeat + position) % 2 == 0 else targets[::-1]
                pair = {}
                for target in order:
                    pair[target.name] = run(target, mode, level, texts, DISTINCT, seed=args.seed + repeat,
                                            prefix=f"r{repeat}-{mode}{level:g}")
                    r = pair[target.name]
                    print(f"  repeat {repeat + 1}/{args.repeats} {mode} {level:g} {target.name}: "
                          f"{_fmt(r.achieved_rps, 0)} msg/s, p50 {_fmt(r.p50_ms)} ms, p99 {_fmt(r.p99_ms)} ms, "
                          f"errors {r.errors}, server {_fmt(r.server_cpu_ms, 2)} ms CPU/msg", file=sys.stderr, flush=True)
                results.setdefault((mode, level), []).append((pair["hotline-bot"], pair["rasa-rest"]))
        for target in targets:
            wait_idle(target.pid)
        memory = {"hotline-bot": tree_usage(hotline.pid), "rasa": tree_usage(rasa.pid)}
        accuracy = {}
        if not args.no_accuracy:
            accuracy["rasa"] = rasa_accuracy(rasa)
        stop_rasa_process(rasa.process)
        stop_server(hotline)
        if not args.no_accuracy:
            accuracy["hotline-bot"] = hotline_accuracy()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    def med(values) -> float:
        values = [v for v in values if not math.isnan(v)]
        return float(np.median(values)) if values else math.nan

    lines = [f"hotline-bot vs Rasa 3.6.21 ({model.name}) — same distinct never-seen texts (vector cache cold) "
             f"to both, same client, runs interleaved; medians of {args.repeats} pair(s), ratios taken within each "
             f"pair; {machine_note()}", "",
             "| closed loop clients | hotline-bot msg/s | Rasa msg/s | ratio | hotline-bot p50 / p99 ms "
             "| Rasa p50 / p99 ms | server CPU ms/msg hotline-bot / Rasa | errors hotline-bot / Rasa (all runs) |",
             "|---|---|---|---|---|---|---|---|"]
    saturation = {"hotline-bot": [], "rasa": []}
    for (mode, level), pairs in results.items():
        if mode != "closed":
            continue
        ours, theirs = zip(*pairs)
        ratio = med([a.achieved_rps / b.achieved_rps for a, b in pairs if b.achieved_rps])
        saturation["hotline-bot"].append(med([a.achieved_rps for a in ours]))
        saturation["rasa"].append(med([b.achieved_rps for b in theirs]))
        lines.append(f"| {level:g} | {_fmt(med([a.achieved_rps for a in ours]), 0)} "
                     f"| {_fmt(med([b.achieved_rps for b in theirs]), 0)} | {ratio:.2f}× "
                     f"| {_fmt(med([a.p50_ms for a in ours]))} / {_fmt(med([a.p99_ms for a in ours]))} "
                     f"| {_fmt(med([b.p50_ms for b in theirs]))} / {_fmt(med([b.p99_ms for b in theirs]))} "
                     f"| {_fmt(med([a.server_cpu_ms for a in ours]), 1)} / {_fmt(med([b.server_cpu_ms for b in theirs]), 1)} "
                     f"| {sum(a.errors for a in ours)} / {sum(b.errors for b in theirs)} |")
    lines += ["", f"| open loop offered msg/s ({args.duration:g} s) | hotline-bot achieved, p50 / p99 ms, errors "
                  "| Rasa achieved, p50 / p99 ms, errors |", "|---|---|---|"]
    for (mode, level), pairs in results.items():
        if mode != "open":
            continue
        cells = []
        for side in zip(*pairs):
            cells.append(f"{_fmt(med([r.achieved_rps for r in side]), 0)} msg/s, {_fmt(med([r.p50_ms for r in side]))} / "
                         f"{_fmt(med([r.p99_ms for r in side]))} ms, {sum(r.errors for r in side)} of "
                         f"{sum(r.sent for r in side)}")
        lines.append(f"| {level:g} | {cells[0]} | {cells[1]} |")
    ours_max, theirs_max = max(saturation["hotline-bot"], default=math.nan), max(saturation["rasa"], default=math.nan)
    lines += ["", "| | hotline-bot | Rasa 3.6 | target |", "|---|---|---|---|",
              f"| saturation throughput (best closed-loop level) | {_fmt(ours_max, 0)} msg/s | {_fmt(theirs_max, 0)} msg/s "
              f"| ≥ 10× Rasa: measured {ours_max / theirs_max:.2f}× |",
              f"| cold start: spawn → ready / → first answer | {cold_hotline[0]:.1f} s / {cold_hotline[1]:.1f} s "
              f"| {cold_rasa[0]:.1f} s / {cold_rasa[1]:.1f} s | ≤ 3 s (hotline-bot) |",
              f"| RSS (PSS) of the server's process tree after the load | {memory['hotline-bot'].rss_mb:.0f} "
              f"({memory['hotline-bot'].pss_mb:.0f}) MB | {memory['rasa'].rss_mb:.0f} ({memory['rasa'].pss_mb:.0f}) MB "
              f"| ≤ 400 MB per worker |"]
    if accuracy:
        ours_acc, theirs_acc = accuracy["hotline-bot"], accuracy["rasa"]
        lines.append(f"| P@1, KB held-out test half (n={theirs_acc['n']}) | {ours_acc['p_at_1']:.3f} "
                     f"| {theirs_acc['p_at_1']:.3f} | |")
        lines.append(f"| answered wrongly (of {theirs_acc['n']}) | {ours_acc['answered_wrong']} "
                     f"| {theirs_acc['answered_wrong']} (intent faq, wrong response; no abstention) | |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
