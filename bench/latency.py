"""End-to-end latency, throughput, CPU and memory of a real ``hotline-bot serve``.

    python -m bench.latency                      # the whole HTTP suite (≈ 30 min on 2 busy cores)
    python -m bench.latency --quick              # one repeat, short runs: checks the instrument works
    python -m bench.latency --in-process         # Bot.handle p50/p99 and a per-stage breakdown, no HTTP
    python -m bench.latency --only closed --levels 1,10,50 --requests 1500   # the old closed-loop run

What it measures, and why each number is honest:

- Questions are *distinct* texts the server has never seen (bench/questions.py), so the query-vector
  cache misses as it does on a hotline ("vector cache cold"), or a fixed pool of 200 held-out questions
  sent once before measuring ("vector cache warm"). Every table row says which.
- Closed loop: 1/10/50 clients, each sending its next message when the reply arrives.
- Open loop: Poisson arrivals at 20/50/100/200 msg/s; latency from each message's intended arrival,
  errors (timeouts included) and the rate achieved.
- Server CPU per message: utime + stime of the server's whole process tree (workers included, from
  /proc) over the run, after the server is idle again, divided by the messages sent. RSS and PSS
  of the tree. The load generator's own CPU is reported beside it.
- Cold start: spawn → /healthz 200 → first answered message, with a saved index and with an index build.

Repeats: each figure is the median over ``--repeats`` runs (the machine is shared and noisy); the
repeats of different levels are interleaved. Traffic goes to 127.0.0.1 only; every run is bounded
in requests and time.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from bench.live import LOAD_GENERATOR_ENV, LiveServer, start_server, stop_server, tree_usage
from bench.loadgen import HotlineTarget, RunResult, median_result, run, wait_idle
from bench.questions import QuestionStream, repeated_questions

DISTINCT = "distinct (vector cache cold)"
REPEATED = "repeated (vector cache warm)"

# Issue 13's targets, printed beside the numbers.
TARGETS = {
    "server_cpu_ms": 4.0,  # per message, distinct questions
    "handle_p50_ms": 5.0,  # in-process Bot.handle
    "open100_p99_ms": 50.0,  # open loop 100 msg/s, with 0 errors
    "cold_start_s": 3.0,  # spawn -> first answered message, saved index
    "rss_mb": 400.0,  # per worker
}


def machine_note() -> str:
    """Cores and load: the machine is shared, and other work on it shows up in every figure."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.1f} (1 min) / {five:.1f} (5 min) when the report was written"


def _fmt(value: float, digits: int = 1) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


# -- cold start ------------------------------------------------------------------------------------


def first_answer(server: LiveServer, text: str) -> float:
    """Seconds from spawn to the first answered message."""
    response = httpx.post(server.url + "/api/v1/messages", json={"user_id": "cold-start", "text": text}, timeout=120)
    response.raise_for_status()
    return time.perf_counter() - server.started_at


def cold_starts(data_root: Path, env: dict[str, str], repeats: int, stream: QuestionStream) -> dict[str, list]:
    """``repeats`` starts that build the index (fresh data dir) and as many that load it."""
    rows: dict[str, list] = {"build": [], "saved": []}
    for i in range(repeats):
        data_dir = data_root / f"cold-{i}"
        for kind in ("build", "saved"):
            server = start_server(data_dir, env)
            try:
                healthy = server.healthy_at - server.started_at
                answered = first_answer(server, next(stream))
                usage = tree_usage(server.pid)
                rows[kind].append((healthy, answered, usage.rss_mb))
            finally:
                stop_server(server)
        shutil.rmtree(data_dir, ignore_errors=True)
    return rows


# -- load ------------------------------------------------------------------------------------------


def warm_up(target: HotlineTarget, texts: list[str]) -> None:
    """Send each text once (not measured): the vector cache then holds them all."""
    run(target, "closed", 4, texts, REPEATED, prefix="warmup")


def load_suite(server: LiveServer, args: argparse.Namespace, stream: QuestionStream) -> list[RunResult]:
    target = HotlineTarget(server.url, server.pid)
    pool = repeated_questions(200, seed=args.seed)
    warm_up(target, pool)
    modes = args.modes.split(",")
    plan: list[tuple[str, float]] = []
    if args.only in (None, "closed"):
        plan += [("closed", float(c)) for c in args.levels.split(",")]
    if args.only in (None, "open"):
        plan += [("open", float(r)) for r in args.rates.split(",")]
    runs: dict[tuple[str, float, str], list[RunResult]] = {}
    for repeat in range(args.repeats):
        for mode, level in plan:
            for questions in modes:
                n = args.requests if mode == "closed" else max(1, int(level * args.duration))
                if questions == "distinct":
                    texts, label = stream.take(n), DISTINCT
                else:
                    texts, label = [pool[i % len(pool)] for i in range(repeat * 7, repeat * 7 + n)], REPEATED
                result = run(target, mode, level, texts, label, seed=args.seed + repeat,
                             max_seconds=args.max_seconds, prefix=f"r{repeat}-{mode}{level:g}-{questions}")
                print(f"  repeat {repeat + 1}/{args.repeats} {mode} {level:g} {questions}: "
                      f"p50 {_fmt(result.p50_ms)} ms, p99 {_fmt(result.p99_ms)} ms, {_fmt(result.achieved_rps, 0)} msg/s, "
                      f"errors {result.errors}, server {_fmt(result.server_cpu_ms, 2)} ms CPU/msg, "
                      f"client {_fmt(result.client_cpu_ms, 2)} ms CPU/msg", file=sys.stderr, flush=True)
                runs.setdefault((mode, level, label), []).append(result)
    return [median_result(results) for results in runs.values()]


# -- reporting -------------------------------------------------------------------------------------


def closed_table(results: list[RunResult], database: str) -> list[str]:
    lines = ["| database | questions | clients | messages ok/sent (all runs) | errors (all runs) | p50 ms | p99 ms | msg/s "
             "| server CPU ms/msg | load-gen CPU ms/msg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.mode == "closed":
            lines.append(f"| {database} | {r.questions} | {r.level:g} | {r.ok}/{r.sent} | {r.errors} | {_fmt(r.p50_ms)} "
                         f"| {_fmt(r.p99_ms)} | {_fmt(r.achieved_rps, 0)} | {_fmt(r.server_cpu_ms, 2)} "
                         f"| {_fmt(r.client_cpu_ms, 2)} |")
    return lines


def open_table(results: list[RunResult], database: str) -> list[str]:
    lines = ["| database | questions | offered msg/s | achieved msg/s | p50 ms | p99 ms | errors (of offered, all runs) "
             "| server CPU ms/msg | server cores busy | load-gen CPU % of a core |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if r.mode == "open":
            client_core = r.client_cpu_cores * 100
            unsent = f", {r.unsent} never sent" if r.unsent else ""
            lines.append(f"| {database} | {r.questions} | {r.level:g} | {_fmt(r.achieved_rps, 0)} | {_fmt(r.p50_ms)} "
                         f"| {_fmt(r.p99_ms)} | {r.errors} ({r.sent}{unsent}) | {_fmt(r.server_cpu_ms, 2)} "
                         f"| {_fmt(r.server_cpu_cores, 2)} | {_fmt(client_core, 0)} % |")
    return lines


def cold_table(rows: dict[str, list]) -> list[str]:
    lines = ["| start | runs | spawn → /healthz 200 s | spawn → first answer s | RSS after first answer MB |",
             "|---|---|---|---|---|"]
    names = {"saved": "saved index", "build": "index build (fresh data dir)"}
    for kind in ("saved", "build"):
        values = rows.get(kind) or []
        if values:
            healthy, answered, rss = (float(np.median(column)) for column in zip(*values))
            lines.append(f"| {names[kind]} | {len(values)} | {healthy:.1f} | {answered:.1f} | {rss:.0f} |")
    return lines


def targets_summary(results: list[RunResult], cold: dict[str, list], memory: dict) -> list[str]:
    def pick(mode: str, level: float, questions: str) -> RunResult | None:
        return next((r for r in results if r.mode == mode and r.level == level and r.questions == questions), None)

    lines = ["| target (issue 13) | measured | met? |", "|---|---|---|"]
    cpu = [r.server_cpu_ms for r in results if r.mode == "closed" and r.questions == DISTINCT]
    if cpu:
        value = float(np.median(cpu))
        lines.append(f"| server CPU ≤ {TARGETS['server_cpu_ms']:g} ms/msg, distinct questions (closed loop, median over "
                     f"client counts) | {value:.1f} ms | {'yes' if value <= TARGETS['server_cpu_ms'] else 'no'} |")
    r100 = pick("open", 100.0, DISTINCT)
    if r100:
        met = r100.p99_ms <= TARGETS["open100_p99_ms"] and r100.errors == 0
        lines.append(f"| open loop 100 msg/s distinct: p99 ≤ 50 ms, 0 errors | p99 {_fmt(r100.p99_ms)} ms, "
                     f"{r100.errors} errors, {_fmt(r100.achieved_rps, 0)} msg/s achieved | {'yes' if met else 'no'} |")
    if cold.get("saved"):
        value = float(np.median([row[1] for row in cold["saved"]]))
        lines.append(f"| cold start → first answer ≤ 3 s (saved index) | {value:.1f} s "
                     f"| {'yes' if value <= TARGETS['cold_start_s'] else 'no'} |")
    if memory:
        per_worker = memory["after_load_pss_mb"] / max(memory["processes"], 1)
        lines.append(f"| RSS ≤ 400 MB per worker | {memory['after_load_rss_mb']:.0f} MB RSS "
                     f"({memory['processes']} process(es), PSS {per_worker:.0f} MB each) "
                     f"| {'yes' if per_worker <= TARGETS['rss_mb'] else 'no'} |")
    return lines


def http_suite(args: argparse.Namespace) -> dict:
    env = LOAD_GENERATOR_ENV | ({"DATABASE_URL": args.database_url} if args.database_url else {})
    database = "PostgreSQL (local)" if args.database_url else "SQLite"
    data_root = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    stream = QuestionStream(seed=args.seed)
    try:
        cold = {"build": [], "saved": []}
        if not args.no_cold_start:
            print("cold starts ...", file=sys.stderr, flush=True)
            cold = cold_starts(data_root, env, args.cold_repeats, stream)
        data_dir = data_root / "load"
        build = start_server(data_dir, env)  # builds the index once for the load server
        stop_server(build)
        server = start_server(data_dir, env)
        try:
            started = tree_usage(server.pid)
            results = load_suite(server, args, stream)
            wait_idle(server.pid)
            loaded = tree_usage(server.pid)
        finally:
            stop_server(server)
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    memory = {"processes": loaded.processes, "after_start_rss_mb": started.rss_mb, "after_load_rss_mb": loaded.rss_mb,
              "after_load_pss_mb": loaded.pss_mb}
    lines = [f"hotline-bot HTTP benchmark — {database}; load generator on the same machine; "
             f"medians of {args.repeats} run(s); server `hotline-bot serve` (its defaults); {machine_note()}", ""]
    if cold["saved"] or cold["build"]:
        lines += ["Cold start (medians of %d):" % args.cold_repeats, "", *cold_table(cold), ""]
    lines += [f"Memory of the server's process tree: RSS {started.rss_mb:.0f} MB after start, {loaded.rss_mb:.0f} MB "
              f"after the load (PSS {loaded.pss_mb:.0f} MB, {loaded.processes} process(es)).", ""]
    if any(r.mode == "closed" for r in results):
        lines += ["Closed loop:", "", *closed_table(results, database), ""]
    if any(r.mode == "open" for r in results):
        lines += [f"Open loop (Poisson arrivals, {args.duration:g} s per run; latency from each message's intended "
                  "arrival; an error is a reply not back within 10 s of sending, or a message not sent within 10 s "
                  "of its arrival because all 200 client connections were busy):", "",
                  *open_table(results, database), ""]
    lines += ["Against issue 13's targets:", "", *targets_summary(results, cold, memory)]
    report = "\n".join(lines)
    print(report)
    return {"database": database, "cold": cold, "memory": memory, "results": [r.as_dict() for r in results],
            "report": report}


# -- in process ------------------------------------------------------------------------------------


def in_process(args: argparse.Namespace) -> dict:
    """``Bot.handle`` without HTTP, distinct (cold vector) and repeated (warm), and where the time goes."""
    from threadpoolctl import threadpool_limits

    from bot.config import Settings
    from bot.encoders import encode
    from bot.messages import Message
    from bot.services import Services
    from bot.text import normalise

    data_dir = Path(tempfile.mkdtemp(prefix="hotline-bench-inproc-"))
    env_url = {"database_url": args.database_url} if args.database_url else {}
    try:
        settings = Settings(data_dir=data_dir, **env_url)
        threadpool_limits(limits=settings.encoder_threads, user_api="blas")  # as `serve` does
        services = Services.build(settings)
        bot = services.bot
        stream = QuestionStream(seed=args.seed)
        pool = repeated_questions(200, seed=args.seed)
        for text in pool[:20] + stream.take(20):  # first calls pay one-off costs (lazy weights, SQL statements)
            bot.handle(Message(user_id="warmup", text=text, channel="api"))
        for text in pool:
            bot.vector(normalise(text))

        def clock() -> tuple[float, float]:
            # Wall time shows what a caller waits; this thread's CPU time is what the work costs and
            # is far less disturbed by other jobs on a shared machine.
            return time.perf_counter(), time.thread_time()

        def timed_handles(texts: list[str]) -> tuple[list[float], list[float]]:
            wall, cpu = [], []
            for i, text in enumerate(texts):
                message = Message(user_id=f"inproc-{i // 5}", text=text, channel="api")
                w0, c0 = clock()
                bot.handle(message)
                w1, c1 = clock()
                wall.append(w1 - w0)
                cpu.append(c1 - c0)
            return wall, cpu

        n = args.inproc_requests
        rows: dict[str, list[tuple[float, ...]]] = {}
        for repeat in range(args.repeats):
            for label, texts in ((DISTINCT, stream.take(n)), (REPEATED, [pool[i % len(pool)] for i in range(n)])):
                wall, cpu = (np.array(values) * 1000 for values in timed_handles(texts))
                rows.setdefault(label, []).append((np.percentile(wall, 50), np.percentile(wall, 99),
                                                   np.percentile(cpu, 50), np.percentile(cpu, 99)))

        stages: dict[str, tuple[list[float], list[float]]] = {}
        tok = bot.tokenizer
        for i, text in enumerate(stream.take(n)):
            marks = [clock()]
            norm = normalise(text)
            marks.append(clock())
            vector = encode(bot.encoder, [norm])[0]
            marks.append(clock())
            bot._vectors.put(norm, vector)
            tokens = tok.tokens(norm)
            marks.append(clock())
            bot.retriever.run(tokens, vector, top_k=10)
            marks.append(clock())
            bot.index.intents.run(norm, vector)
            marks.append(clock())
            bot.safety.run(norm)
            marks.append(clock())
            bot.understand(text)
            marks.append(clock())
            bot.handle(Message(user_id=f"stages-{i // 5}", text=text, channel="api"))
            marks.append(clock())
            step = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(marks, marks[1:])]
            names = ["normalise + language", "encode (USE, cold vector)", "jieba tokens",
                     "retrieval (BM25 + dense + fusion)", "intents", "safety rules",
                     "understand, vector cached (the stages above but encode, in one call)", "handle, vector cached"]
            step.append((step[7][0] - step[6][0], step[7][1] - step[6][1]))
            names.append("policy + SQL + rendering (handle − understand)")
            for name, (wall_s, cpu_s) in zip(names, step):
                walls, cpus = stages.setdefault(name, ([], []))
                walls.append(wall_s * 1000)
                cpus.append(cpu_s * 1000)
        services.close()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)

    database = "PostgreSQL (local)" if args.database_url else "SQLite"
    lines = [f"In-process `Bot.handle` — {database}; encoder {settings.encoder}, {settings.encoder_threads} BLAS "
             f"thread(s); {n} messages per run, medians of {args.repeats} run(s); one thread, no HTTP; "
             f"{machine_note()}", "",
             "| questions | wall p50 ms | wall p99 ms | CPU p50 ms | CPU p99 ms | target p50 ≤ 5 ms |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for label, values in rows.items():
        p50, p99, cpu50, cpu99 = (float(np.median(column)) for column in zip(*values))
        summary[label] = {"p50_ms": p50, "p99_ms": p99, "cpu_p50_ms": cpu50, "cpu_p99_ms": cpu99}
        lines.append(f"| {label} | {p50:.2f} | {p99:.2f} | {cpu50:.2f} | {cpu99:.2f} "
                     f"| {'met' if p50 <= 5 else 'not met'} |")
    lines += ["", f"Where a message goes (distinct questions, {n} messages):", "",
              "| stage | wall p50 ms | wall p99 ms | CPU p50 ms |", "|---|---|---|---|"]
    for name, (walls, cpus) in stages.items():
        lines.append(f"| {name} | {np.percentile(walls, 50):.2f} | {np.percentile(walls, 99):.2f} "
                     f"| {np.percentile(cpus, 50):.2f} |")
    report = "\n".join(lines)
    print(report)
    return {"database": database, "handle": summary,
            "stages": {k: {"wall_p50_ms": float(np.median(w)), "cpu_p50_ms": float(np.median(c))}
                       for k, (w, c) in stages.items()}, "report": report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.latency", description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--in-process", action="store_true", help="Bot.handle without HTTP, with a stage breakdown")
    parser.add_argument("--quick", action="store_true", help="1 repeat, short runs (checks the instrument)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["closed", "open"], default=None)
    parser.add_argument("--modes", default="distinct,repeated", help="distinct and/or repeated questions")
    parser.add_argument("--levels", default="1,10,50", help="closed loop: concurrent clients")
    parser.add_argument("--requests", type=int, default=500, help="closed loop: messages per run")
    parser.add_argument("--rates", default="20,50,100,200", help="open loop: offered msg/s (Poisson)")
    parser.add_argument("--duration", type=float, default=10, help="open loop: seconds of arrivals per run")
    parser.add_argument("--max-seconds", type=float, default=120, help="time cap per closed-loop run")
    parser.add_argument("--cold-repeats", type=int, default=3)
    parser.add_argument("--no-cold-start", action="store_true")
    parser.add_argument("--inproc-requests", type=int, default=500)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100_000,
                        help="question stream seed (default: from the clock, so runs do not share texts)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.cold_repeats, args.requests, args.duration, args.inproc_requests = 1, 1, 100, 3, 100
    result = in_process(args) if args.in_process else http_suite(args)
    if args.json:
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
