"""End-to-end HTTP latency and throughput against a real ``hotline-bot serve``.

Starts the production server (waitress) as a subprocess on 127.0.0.1, measures
cold start (spawn → healthy, with the index prebuilt and without), then sends
held-out questions from 1, 10 and 50 concurrent clients and reports p50/p99
latency, throughput and server RSS. Every request is bounded in count and
time; traffic goes to loopback only.

    python -m bench.latency [--requests 2000] [--database-url postgresql://...]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.heldout import load_heldout
from tests.live_server import LiveServer, start_server, stop_server


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start(data_dir: Path, env_extra: dict[str, str]) -> tuple[LiveServer, float]:
    """The real server (tests/live_server.py) and its cold start: spawn → healthy."""
    started = time.perf_counter()
    server = start_server(data_dir, env_extra)
    return server, time.perf_counter() - started


def load(url: str, clients: int, total: int, questions: list[str], max_seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(total))
    deadline = time.perf_counter() + max_seconds

    def worker(worker_id: int) -> None:
        nonlocal errors
        conversation = None
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if i % 5 == 0:
                    conversation = None  # a new citizen every five messages
                body = {"user_id": f"bench-{worker_id}", "text": questions[i % len(questions)]}
                if conversation:
                    body["conversation_id"] = conversation
                t0 = time.perf_counter()
                response = client.post("/api/v1/messages", json=body)
                elapsed = time.perf_counter() - t0
                with lock:
                    if response.status_code == 200:
                        latencies.append(elapsed)
                        reply = response.json()
                        conversation = None if reply.get("handoff") else reply["conversation_id"]
                    else:
                        errors += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(latencies), "errors": errors,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "throughput_rps": len(latencies) / wall}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.latency")
    parser.add_argument("--requests", type=int, default=1500, help="requests per concurrency level")
    parser.add_argument("--levels", default="1,10,50")
    parser.add_argument("--max-seconds", type=float, default=120, help="time cap per level")
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args(argv)
    questions = [q.text for q in load_heldout()]
    data_dir = Path(tempfile.mkdtemp(prefix="hotline-bench-"))
    env = {"DATABASE_URL": args.database_url} if args.database_url else {}
    try:
        server, cold_build = start(data_dir, env)  # first start builds the index
        stop_server(server)
        server, cold = start(data_dir, env)        # second start loads the saved index
        url = server.url
        rss_start = _rss_mb(server.process.pid)
        for q in questions[:50]:  # warm-up, not measured
            httpx.post(url + "/api/v1/messages", json={"user_id": "warm", "text": q}, timeout=30)
        rows = [load(url, int(c), args.requests, questions, args.max_seconds) for c in args.levels.split(",")]
        rss_end = _rss_mb(server.process.pid)
        stop_server(server)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"database: {args.database_url or 'SQLite (file)'}; cores: {os.cpu_count()}; "
          f"client threads run on the same machine")
    print(f"cold start: {cold_build:.1f}s with index build, {cold:.1f}s with saved index; "
          f"RSS {rss_start:.0f} MB after start, {rss_end:.0f} MB after load")
    print("| clients | requests | errors | p50 ms | p99 ms | req/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
              f"| {r['throughput_rps']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
