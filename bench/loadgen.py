"""The load generator: closed-loop clients and open-loop Poisson arrivals over HTTP.

One shared ``httpx.Client`` (thread-safe connection pool) drives every request
from plain threads, so the same client code measures hotline-bot and Rasa.
Threads rather than asyncio because it is cheaper here: per request, sync httpx
cost 1.1 ms of CPU on these cores against 2.2 ms for ``httpx.AsyncClient``
(1,000 POSTs to a trivial local server). Open loop: arrival times
are drawn up front (exponential gaps at the target rate) and each request's
latency is measured from its *intended* arrival, so a client that falls
behind does not hide server queueing (no coordinated omission). The
generator's own CPU time is measured (``client_cpu_ms``) so a table can show
it was not the bottleneck: on these 2 cores it costs well under a millisecond
per request (see README).

Every run is bounded in requests and in time, and talks to loopback only.
"""
from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from collections import Counter
from dataclasses import asdict, dataclass, field

import httpx
import numpy as np

from bench.live import self_cpu_seconds, tree_usage

MESSAGES_PER_CITIZEN = 5  # a citizen's conversation: a new user every five messages
MAX_CONNECTIONS = 200  # client-side cap on open connections


class Target:
    """How to send one message to one kind of server."""

    name = "target"

    def __init__(self, url: str, pid: int | None = None):
        self.url = url.rstrip("/")
        self.pid = pid  # root of the server's process tree, for CPU/RSS (None: not measured)

    def send(self, client: httpx.Client, user: dict, text: str) -> bool:
        raise NotImplementedError


class HotlineTarget(Target):
    """hotline-bot's own API: POST /api/v1/messages, continuing the citizen's conversation."""

    name = "hotline-bot"

    def send(self, client: httpx.Client, user: dict, text: str) -> bool:
        body = {"user_id": user["id"], "text": text}
        if user.get("conversation_id"):
            body["conversation_id"] = user["conversation_id"]
        response = client.post(self.url + "/api/v1/messages", json=body)
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}: {response.text[:200]}")
        reply = response.json()
        # A handed-off conversation would only report the queue from now on: the next message starts anew.
        user["conversation_id"] = None if reply.get("handoff") else reply["conversation_id"]
        return bool(reply.get("replies"))


class RasaRestTarget(Target):
    """The Rasa REST channel (hotline-bot serves the same route): POST /webhooks/rest/webhook."""

    name = "rasa-rest"

    def send(self, client: httpx.Client, user: dict, text: str) -> bool:
        response = client.post(self.url + "/webhooks/rest/webhook", json={"sender": user["id"], "message": text})
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}: {response.text[:200]}")
        return isinstance(response.json(), list) and bool(response.json())


@dataclass
class RunResult:
    target: str
    mode: str  # "closed" | "open"
    level: float  # clients (closed) or target msg/s (open)
    questions: str  # "distinct (vector cache cold)" | "repeated (vector cache warm)"
    sent: int  # offered: every message the run tried to send
    ok: int
    errors: int  # timeouts, HTTP errors, empty replies, and `unsent`
    p50_ms: float
    p99_ms: float
    achieved_rps: float
    wall_s: float
    client_cpu_ms: float  # load generator CPU per request
    client_cpu_cores: float  # load generator CPU seconds per wall second
    server_cpu_ms: float  # server process tree CPU per request (nan when not measured)
    server_cpu_cores: float  # server CPU seconds per wall second during the run
    rss_mb: float
    pss_mb: float
    error_kinds: dict = field(default_factory=dict)  # error message -> count
    unsent: int = 0  # open loop, overloaded: never reached the server (counted in errors too)

    def as_dict(self) -> dict:
        return asdict(self)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else math.nan


class _Users:
    """Citizens: each sends up to MESSAGES_PER_CITIZEN messages, never two at once."""

    def __init__(self, prefix: str):
        self._prefix = prefix
        self._idle: deque[dict] = deque()
        self._count = 0
        self._lock = threading.Lock()

    def take(self) -> dict:
        with self._lock:
            while self._idle:
                user = self._idle.popleft()
                if user["sent"] < MESSAGES_PER_CITIZEN:
                    return user
            self._count += 1
            return {"id": f"{self._prefix}-{self._count}", "sent": 0, "conversation_id": None}

    def give_back(self, user: dict) -> None:
        with self._lock:
            user["sent"] += 1
            self._idle.append(user)


class _Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.unsent = 0  # open loop: given up before sending (the server never saw them)
        self.lock = threading.Lock()

    def send(self, target: Target, client: httpx.Client, users: _Users, text: str, since: float,
             give_up_after: float | None = None) -> None:
        if give_up_after is not None and time.perf_counter() - since > give_up_after:
            # Open loop, overloaded: every connection is busy and this message has waited out its
            # timeout in the client's queue. A citizen would have given up: an error, not a latency.
            with self.lock:
                self.failures.append("not sent within the timeout (all connections busy)")
                self.unsent += 1
            return
        user = users.take()
        try:
            ok = target.send(client, user, text)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            with self.lock:
                self.failures.append(f"{type(exc).__name__}: {exc}"[:120])
            return
        finally:
            users.give_back(user)
        elapsed = time.perf_counter() - since
        with self.lock:
            if ok:
                self.latencies.append(elapsed)
            else:
                self.failures.append("bad response")


def _client(connections: int, timeout: float) -> httpx.Client:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(limits=limits, timeout=httpx.Timeout(timeout, pool=timeout), trust_env=False)


def _closed(target: Target, clients: int, texts: Sequence[str], max_seconds: float, timeout: float,
            prefix: str) -> tuple[_Tally, int, float]:
    """``clients`` threads, each sending its next message when the reply to the last one arrived."""
    tally, users = _Tally(), _Users(prefix)
    next_text = iter(texts)
    taken = threading.Lock()
    deadline = time.perf_counter() + max_seconds
    sent = 0

    def worker(client: httpx.Client) -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            with taken:
                text = next(next_text, None)
                if text is None:
                    return
                sent += 1
            tally.send(target, client, users, text, time.perf_counter())

    with _client(clients, timeout) as client:
        threads = [threading.Thread(target=worker, args=(client,), daemon=True) for _ in range(clients)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
    return tally, sent, wall


def _open(target: Target, rate: float, texts: Sequence[str], timeout: float, seed: int,
          prefix: str) -> tuple[_Tally, int, float]:
    """Poisson arrivals at ``rate``: one scheduling thread hands each message to a thread pool at its
    arrival time; latency counts from that intended time, queueing in the pool included. A message
    still unsent ``timeout`` seconds after its arrival (the server holds every connection) is an
    error, and so is one whose reply takes longer than ``timeout`` once sent."""
    rng = random.Random(seed)
    arrivals, t = [], 0.0
    for _ in texts:
        t += rng.expovariate(rate)
        arrivals.append(t)
    tally, users = _Tally(), _Users(prefix)
    with _client(MAX_CONNECTIONS, timeout) as client, ThreadPoolExecutor(MAX_CONNECTIONS) as pool:
        began = time.perf_counter()
        for text, offset in zip(texts, arrivals):
            delay = began + offset - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(tally.send, target, client, users, text, began + offset, timeout)
        pool.shutdown(wait=True)
        wall = time.perf_counter() - began
    return tally, len(texts), wall


def wait_idle(pid: int | None, quiet_cpu: float = 0.15, interval: float = 0.5, max_seconds: float = 60) -> None:
    """Wait until the server's process tree uses < ``quiet_cpu`` cores: a run that overloaded it
    leaves queued requests (whose clients gave up) that must not bill the next run."""
    if pid is None:
        return
    deadline = time.monotonic() + max_seconds
    last = tree_usage(pid).cpu_seconds
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = tree_usage(pid).cpu_seconds
        if now - last < quiet_cpu * interval:
            return
        last = now


def run(target: Target, mode: str, level: float, texts: Sequence[str], questions: str, *, seed: int = 0,
        max_seconds: float = 120, timeout: float = 10.0, prefix: str = "bench") -> RunResult:
    """One measured run; the server's tree CPU is read before and after (after it is idle again)."""
    wait_idle(target.pid)
    before = tree_usage(target.pid) if target.pid else None
    client_before = self_cpu_seconds()
    began = time.perf_counter()
    if mode == "closed":
        tally, sent, wall = _closed(target, int(level), texts, max_seconds, timeout, prefix)
    elif mode == "open":
        tally, sent, wall = _open(target, level, texts, timeout, seed, prefix)
    else:
        raise ValueError(f"mode must be 'closed' or 'open', got {mode!r}")
    latencies, failures = tally.latencies, tally.failures
    client_cpu = self_cpu_seconds() - client_before
    busy_wall = time.perf_counter() - began
    server_cpu = server_cores = rss = pss = math.nan
    if target.pid:
        during = tree_usage(target.pid)
        server_cores = (during.cpu_seconds - before.cpu_seconds) / busy_wall
        wait_idle(target.pid)  # requests still queued when clients gave up are billed to this run
        after = tree_usage(target.pid)
        # Per message the server received: ones the client gave up on before sending cost it nothing.
        server_cpu = (after.cpu_seconds - before.cpu_seconds) * 1000 / max(sent - tally.unsent, 1)
        rss, pss = after.rss_mb, after.pss_mb
    return RunResult(target=target.name, mode=mode, level=level, questions=questions, sent=sent,
                     ok=len(latencies), errors=len(failures), p50_ms=_percentile(latencies, 50),
                     p99_ms=_percentile(latencies, 99), achieved_rps=len(latencies) / wall if wall else math.nan,
                     wall_s=wall, client_cpu_ms=client_cpu * 1000 / max(sent, 1),
                     client_cpu_cores=client_cpu / busy_wall, server_cpu_ms=server_cpu,
                     server_cpu_cores=server_cores, rss_mb=rss, pss_mb=pss,
                     error_kinds=dict(Counter(failures).most_common(5)), unsent=tally.unsent)


def median_result(results: list[RunResult]) -> RunResult:
    """Medians of the numeric fields of repeated runs (sent/ok/errors: summed over the runs)."""
    first = results[0]
    merged = first.as_dict()
    for key, value in merged.items():
        if isinstance(value, float) and key != "level":
            merged[key] = float(np.nanmedian([getattr(r, key) for r in results])) \
                if not all(math.isnan(getattr(r, key)) for r in results) else math.nan
    for key in ("sent", "ok", "errors", "unsent"):
        merged[key] = sum(getattr(r, key) for r in results)
    merged["error_kinds"] = dict(sum((Counter(r.error_kinds) for r in results), Counter()).most_common(5))
    return RunResult(**merged)


# -- calibration: the generator alone ---------------------------------------------------------------

_TRIVIAL_SERVER = """
import sys
import uvicorn

BODY = b'{"conversation_id": "c", "replies": [{"text": "ok"}]}'

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error", access_log=False)
"""


def self_test(rates: Sequence[float] = (20, 50, 100, 200), clients: Sequence[int] = (1, 10, 50),
              duration: float = 5.0) -> list[RunResult]:
    """The generator against a server that does nothing (uvicorn + a constant reply): what it can
    offer and what it costs, so the real tables can show the generator was not the bottleneck."""
    import subprocess
    import sys

    from bench.live import free_port

    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", _TRIVIAL_SERVER, str(port)], start_new_session=True)
    target = HotlineTarget(f"http://127.0.0.1:{port}", server.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(target.url + "/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("trivial server did not start") from None
                time.sleep(0.1)
        texts = [f"message {i}" for i in range(int(max(rates) * duration) + 1000)]
        results = [run(target, "closed", c, texts[:1000], "constant reply") for c in clients]
        results += [run(target, "open", r, texts[:int(r * duration)], "constant reply") for r in rates]
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="bench.loadgen", description="calibrate the load generator alone")
    parser.add_argument("--duration", type=float, default=5.0, help="open loop: seconds per rate")
    args = parser.parse_args(argv)
    print("| load generator vs a do-nothing server | level | achieved msg/s | p50 ms | p99 ms | errors "
          "| load-gen CPU ms/msg | load-gen CPU % of a core |")
    print("|---|---|---|---|---|---|---|---|")
    for r in self_test(duration=args.duration):
        core = r.client_cpu_cores * 100
        level = f"{r.level:g} clients" if r.mode == "closed" else f"{r.level:g} msg/s offered"
        print(f"| {r.mode} loop | {level} | {r.achieved_rps:.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} "
              f"| {r.client_cpu_ms:.2f} | {core:.0f} % |")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
