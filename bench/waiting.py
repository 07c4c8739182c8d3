"""Waiting citizens vs everyone else (issue 8, row 4): ``python -m bench.waiting``.

Regression measured: 40 citizens long-polling for an agent pushed everyone else's
message latency to p50 16.8 s and ``/healthz`` to 16.8 s (baseline 15 ms): each
poll held one of 32 threads. Target: 2,000 waiting citizens while 50 msg/s are
posted, message p99 ≤ 100 ms and ``/healthz`` ≤ 50 ms.

One real ``hotline-bot serve`` (bench/live.py, SQLite by default). Setup: N
citizens ask for a person through the widget (``/ask_human``), so N tickets
wait in the queue. Then for each offered rate:

1. baseline: open-loop messages (bench/loadgen.py, Poisson arrivals, repeated
   questions so the encoder does not dominate) with nobody long-polling;
2. the same with all N citizens long-polling (``wait=20``, the widget's
   default, re-polling as soon as a poll returns) from a separate process
   (asyncio, one connection each), parked before the messages start.

``/healthz`` is timed 4 times a second during every run. Prints one table;
``--json FILE`` keeps the raw numbers. 127.0.0.1 only, bounded in time.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from bench.live import LOAD_GENERATOR_ENV, start_server, stop_server, tree_usage
from bench.loadgen import HotlineTarget, run
from bench.questions import repeated_questions


def _ask_for_a_person(url: str, count: int, prefix: str) -> list[dict]:
    """``count`` widget citizens waiting for an agent; their poll parameters."""

    def one(i: int) -> dict:
        user = f"{prefix}-{i:06d}"
        for attempt in range(5):
            try:
                reply = client.post("/web/api/messages", json={"user_id": user, "text": "/ask_human"})
            except httpx.HTTPError:
                time.sleep(1 + attempt)
                continue
            if reply.status_code == 200:
                state = reply.json()
                last = max([t["id"] for t in state.get("turns", [])], default=0)
                return {"user_id": user, "conversation_id": state["conversation_id"], "after": last,
                        "state": state["state"]}
            time.sleep(1 + attempt)
        raise RuntimeError(f"could not open a ticket for {user}: {reply.status_code} {reply.text[:200]}")

    with httpx.Client(base_url=url, timeout=30, limits=httpx.Limits(max_connections=20)) as client, \
            ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(one, range(count)))


async def _poll_forever(url: str, citizens: list[dict], wait: float, ready, stop, counts) -> None:
    limits = httpx.Limits(max_connections=len(citizens) + 50, max_keepalive_connections=len(citizens) + 50)
    async with httpx.AsyncClient(base_url=url, timeout=wait + 30, limits=limits) as client:
        parked = 0

        async def citizen(c: dict) -> None:
            nonlocal parked
            params = {"user_id": c["user_id"], "after": c["after"], "wait": wait, "state": c["state"]}
            first = True
            while not stop.is_set():
                request = client.get(f"/web/api/conversations/{c['conversation_id']}/turns", params=params)
                task = asyncio.ensure_future(request)
                if first:
                    parked += 1
                    first = False
                try:
                    response = await task
                    counts["polls"] += 1
                    if response.status_code != 200:
                        counts["errors"] += 1
                        await asyncio.sleep(1)
                    else:
                        body = response.json()
                        if body.get("turns"):
                            counts["with_turns"] += 1
                            params["after"] = max(t["id"] for t in body["turns"])
                        params["state"] = body.get("state", params["state"])
                except httpx.HTTPError:
                    counts["errors"] += 1
                    await asyncio.sleep(1)

        tasks = []
        for i, c in enumerate(citizens):  # spread the first polls over a second or two
            tasks.append(asyncio.ensure_future(citizen(c)))
            if i % 100 == 99:
                await asyncio.sleep(0.1)
        await asyncio.sleep(3)  # the last ones reach the server
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _poller_process(url: str, citizens: list[dict], wait: float, ready, stop, result) -> None:
    counts = {"polls": 0, "errors": 0, "with_turns": 0}
    asyncio.run(_poll_forever(url, citizens, wait, ready, stop, counts))
    result.update(counts)


def _time_healthz(url: str, stop: threading.Event, out: list[float], errors: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                status = client.get("/healthz").status_code
                if status != 200:
                    errors.append(str(status))
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
            out.append(time.perf_counter() - started)
            stop.wait(0.25)


def _measure(server, rate: float, seconds: float, texts: list[str], label: str, seed: int) -> dict:
    stop, healthz, health_errors = threading.Event(), [], []
    prober = threading.Thread(target=_time_healthz, args=(server.url, stop, healthz, health_errors), daemon=True)
    prober.start()
    before, began = tree_usage(server.pid), time.perf_counter()
    try:  # no pid: loadgen would wait for an idle server, and 2,000 pollers never let it idle
        result = run(HotlineTarget(server.url, None), "open", rate, texts[:int(rate * seconds)],
                     "repeated (vector cache warm)", seed=seed, prefix=f"{label}-{seed}")
    finally:
        stop.set()
        prober.join()
    cores = (tree_usage(server.pid).cpu_seconds - before.cpu_seconds) / (time.perf_counter() - began)
    h = np.array(healthz) * 1000
    return {"rate": rate, "messages": result.sent, "ok": result.ok, "errors": result.errors,
            "error_kinds": result.error_kinds, "p50_ms": round(result.p50_ms, 1), "p99_ms": round(result.p99_ms, 1),
            "achieved_rps": round(result.achieved_rps, 1), "server_cpu_cores": round(cores, 2),
            "healthz_p50_ms": round(float(np.percentile(h, 50)), 1) if len(h) else None,
            "healthz_p99_ms": round(float(np.percentile(h, 99)), 1) if len(h) else None,
            "healthz_max_ms": round(float(h.max()), 1) if len(h) else None, "healthz_errors": len(health_errors)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--waiting", type=int, default=2000, help="citizens long-polling for an agent")
    parser.add_argument("--rates", default="20,50", help="offered msg/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each measured run")
    parser.add_argument("--wait", type=float, default=20.0, help="long-poll wait the citizens ask for")
    parser.add_argument("--database-url", help="PostgreSQL instead of the default SQLite file")
    parser.add_argument("--data-dir", type=Path, help="server data dir (index, model cache); temp by default")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hotline-waiting-"))
    env = {**LOAD_GENERATOR_ENV, "HOTLINE_WEB__LONG_POLL_SECONDS": str(args.wait)}
    database_file = data_dir / "waiting.db"
    database_file.unlink(missing_ok=True)
    env["DATABASE_URL"] = args.database_url or f"sqlite:///{database_file}"
    server = start_server(data_dir, env, timeout=240)
    texts = repeated_questions(200, seed=1)
    rows = []
    try:
        answered = []
        with httpx.Client(base_url=server.url, timeout=30) as client:  # warm the vector cache
            for i, text in enumerate(texts):
                reply = client.post("/api/v1/messages", json={"user_id": f"warm-{i}", "text": text}).json()
                if reply.get("entry_id") and not reply.get("handoff") and reply.get("status") == "bot":
                    answered.append(text)
        # Only questions the bot answers: a handoff (an emergency goes first in the queue) moves
        # every waiting citizen's queue position, and then all of them are answered at once;
        # that is the desk's normal work, not what this benchmark isolates.
        pool = answered * (1 + int(max(rates) * args.seconds) // max(len(answered), 1))
        print(f"{len(answered)} of {len(texts)} warm-up questions answered by the bot: the load uses those",
              flush=True)
        started = time.perf_counter()
        citizens = _ask_for_a_person(server.url, args.waiting, "waiting-citizen")
        setup_s = time.perf_counter() - started
        print(f"{len(citizens)} citizens waiting for an agent (setup {setup_s:.0f} s)", flush=True)
        for rate in rates:
            baseline = _measure(server, rate, args.seconds, pool, "baseline", seed=int(rate))
            print("baseline", json.dumps(baseline), flush=True)
            ctx = mp.get_context("spawn")
            manager = ctx.Manager()
            ready, stop, result = manager.Event(), manager.Event(), manager.dict()
            poller = ctx.Process(target=_poller_process, args=(server.url, citizens, args.wait, ready, stop, result))
            poller.start()
            if not ready.wait(120):
                raise RuntimeError("the waiting citizens never got parked")
            time.sleep(2)
            loaded = _measure(server, rate, args.seconds, pool, "with-waiting", seed=int(rate) + 1)
            stop.set()
            poller.join(args.wait + 40)
            if poller.is_alive():
                poller.kill()
            loaded["waiting"] = args.waiting
            loaded["polls"] = dict(result)
            manager.shutdown()
            print("waiting", json.dumps(loaded), flush=True)
            rows.append({"rate": rate, "baseline": baseline, "waiting": loaded})
            time.sleep(args.wait + 2)  # polls of this run have ended on the server too
    finally:
        stop_server(server)
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    print()
    print("| offered msg/s | waiting citizens | achieved msg/s | message p50 ms | message p99 ms | errors "
          "| /healthz p50 / p99 / max ms | polls answered (errors) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        for label, r in (("0", row["baseline"]), (str(args.waiting), row["waiting"])):
            polls = r.get("polls")
            answered = f"{polls['polls']} ({polls['errors']})" if polls else "-"
            print(f"| {row['rate']:g} | {label} | {r['achieved_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                  f"{r['errors']} of {r['messages']} | {r['healthz_p50_ms']} / {r['healthz_p99_ms']} / "
                  f"{r['healthz_max_ms']} | {answered} |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "args": {k: str(v) for k, v in vars(args).items()},
                                         "loadavg": os.getloadavg()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
