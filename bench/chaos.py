"""Faults under load: issue 8's probe kept as a benchmark (``python -m bench.chaos``).

A real ``hotline-bot serve`` (bench/live.py) on PostgreSQL reached through a TCP
proxy (bench/tcp_proxy.py), citizens posting messages at a steady rate, and one
fault per scenario while they do:

- ``db-freeze``   the proxy stops forwarding bytes, sockets stay open (a hung link)
- ``db-kill``     the proxy cuts every connection and refuses new ones (database gone)
- ``worker-kill`` ``kill -9`` of a server worker process every 2 s while the fault lasts (the
                  master starts another each time)
- ``server-kill`` ``kill -9`` of the whole server, then a restart on the same port
- ``wechat-api``  WeChat messages whose answers all go out through the customer-service API
                  (reply budget ~0), against a fake WeChat API that fails most sends: HTTP 500
                  without ``errcode``, ``errcode -1`` (busy), replies slower than the connector's
                  timeout, slow-but-successful replies. Every answer must arrive exactly once.

Every message carries its own ``Idempotency-Key`` and is retried like a careful
client would (on 503, 5xx, a refused or reset connection, a timeout; backoff
0.5 s doubling to 4 s) until it gets a 200 or the run ends. Afterwards the
database is read directly (not through the proxy) and every message is checked:

- **lost**: the server answered 200 but the message is not stored (goal 0)
- **duplicated**: stored more than once (a retry that was not recognised; goal 0)
- **unanswered**: never got a 200 by the end of the run

and every HTTP attempt is counted by outcome: 200, fast 503 (within
``--fast-503`` s, the promise of ``HOTLINE_DB__*_TIMEOUT``), slow 503, other 5xx,
429, refused/reset connections, client timeouts. ``/healthz`` is probed twice a
second throughout. Prints one table; ``--json FILE`` keeps the raw numbers.
Talks to 127.0.0.1 only; every run is bounded in time.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from bench.live import LOAD_GENERATOR_ENV, LiveServer, free_port, process_tree, start_server, stop_server
from bench.tcp_proxy import TcpProxy

SCENARIOS = ("db-freeze", "db-kill", "worker-kill", "server-kill", "wechat-api")
QUESTIONS = ["核酸检测多少钱", "健康码变黄了怎么办", "how long does a PCR result take", "疫苗在哪里打",
             "去北京要隔离吗", "抗原阳性怎么办", "what does a red health code mean", "核酸结果多久出来"]
CLIENT_TIMEOUT = 10.0


@dataclass
class Attempt:
    at: float  # seconds since the run started
    seconds: float
    status: int | None  # None: no HTTP answer (refused, reset, timed out)
    error: str = ""


@dataclass
class Sent:
    key: str
    user: str
    attempts: list[Attempt] = field(default_factory=list)
    acknowledged: bool = False


class Url:
    """The server's base URL, shared by the load and the probe (a restart keeps the port)."""

    def __init__(self, url: str):
        self.value = url


def _post_until_answered(client: httpx.Client, url: Url, sent: Sent, text: str, started: float,
                         settle_by: float) -> None:
    backoff = 0.5
    while time.monotonic() < settle_by:
        t0 = time.monotonic()
        try:
            response = client.post(url.value + "/api/v1/messages", json={"user_id": sent.user, "text": text},
                                   headers={"Idempotency-Key": sent.key}, timeout=CLIENT_TIMEOUT)
            status, error = response.status_code, ""
        except httpx.TimeoutException as exc:
            status, error = None, "timeout:" + type(exc).__name__
        except httpx.HTTPError as exc:
            status, error = None, "connection:" + type(exc).__name__
        sent.attempts.append(Attempt(t0 - started, time.monotonic() - t0, status, error))
        if status == 200:
            sent.acknowledged = True
            return
        time.sleep(backoff)
        backoff = min(backoff * 2, 4.0)


def _probe_health(client: httpx.Client, url: Url, started: float, stop: threading.Event, out: list) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            status = client.get(url.value + "/healthz", timeout=CLIENT_TIMEOUT).status_code
        except httpx.HTTPError:
            status = None
        out.append(Attempt(t0 - started, time.monotonic() - t0, status))
        stop.wait(0.5)


def _workers(server: LiveServer) -> list[int]:
    return [pid for pid in process_tree(server.pid) if pid != server.pid]


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def _stored_counts(database_url: str, keys: list[str]) -> dict[str, int]:
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                "SELECT client_message_id, count(*) FROM turns WHERE role = 'user' AND client_message_id = ANY(:k) "
                "GROUP BY client_message_id"), {"k": keys}).all()
    finally:
        engine.dispose()
    return {key: count for key, count in rows}


def run_scenario(name: str, *, admin_url: str, data_dir: Path, rate: float, warmup: float, fault: float,
                 after: float, settle: float, fast_503: float) -> dict:
    """One scenario on a fresh database: load, fault, recovery, then the ledger."""
    from bench.pg import create_database, drop_database

    database_url = create_database(admin_url)
    parts = urlsplit(database_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    env = {"DATABASE_URL": parts._replace(netloc=netloc).geturl(), **LOAD_GENERATOR_ENV}
    port = free_port()
    server = start_server(data_dir, env, port=port, timeout=240)
    url = Url(server.url)
    run_id = uuid.uuid4().hex[:8]
    messages: list[Sent] = []
    health: list[Attempt] = []
    started = time.monotonic()
    generate_for = warmup + fault + after
    settle_by = started + generate_for + settle + (60 if name == "server-kill" else 0)
    stop_probe = threading.Event()
    limits = httpx.Limits(max_connections=400, max_keepalive_connections=100)
    fault_window: list[float] = []
    restart_seconds = None
    killed: list[int] = []
    with httpx.Client(limits=limits) as client, httpx.Client() as probe_client, \
            ThreadPoolExecutor(max_workers=400) as pool:
        prober = threading.Thread(target=_probe_health, args=(probe_client, url, started, stop_probe, health),
                                  daemon=True)
        prober.start()

        def inject() -> None:
            nonlocal server, restart_seconds
            time.sleep(warmup)
            fault_window.append(time.monotonic() - started)
            if name == "db-freeze":
                proxy.freeze()
                time.sleep(fault)
                proxy.thaw()
            elif name == "db-kill":
                proxy.stop()
                time.sleep(fault)
                proxy.start()
            elif name == "worker-kill":
                until = time.monotonic() + fault
                while time.monotonic() < until:
                    workers = _workers(server)
                    if workers:
                        victim = workers[len(killed) % len(workers)]
                        os.kill(victim, signal.SIGKILL)
                        killed.append(victim)
                    time.sleep(min(2.0, max(0.0, until - time.monotonic())))
            elif name == "server-kill":
                os.killpg(server.pid, signal.SIGKILL)
                server.process.wait()
                t0 = time.monotonic()
                server = start_server(data_dir, env, port=port, timeout=240)
                restart_seconds = time.monotonic() - t0
            fault_window.append(time.monotonic() - started)

        injector = threading.Thread(target=inject, daemon=True)
        injector.start()
        futures = []
        i = 0
        while True:
            due = started + i / rate
            if due - started > generate_for and not injector.is_alive():
                break
            time.sleep(max(0.0, due - time.monotonic()))
            sent = Sent(key=f"chaos-{run_id}-{i}", user=f"chaos-{run_id}-{i}")
            messages.append(sent)
            futures.append(pool.submit(_post_until_answered, client, url, sent, QUESTIONS[i % len(QUESTIONS)],
                                       started, settle_by))
            i += 1
        for future in futures:
            future.result()
        injector.join()
        stop_probe.set()
        prober.join()
    stop_server(server)
    proxy.stop()
    stored = _stored_counts(database_url, [m.key for m in messages])
    drop_database(admin_url, database_url)
    summary = _summary(name, messages, health, stored, fault_window, restart_seconds, fast_503, rate)
    summary["workers_killed"] = len(killed)
    return summary


def _summary(name, messages, health, stored, fault_window, restart_seconds, fast_503, rate) -> dict:
    attempts = [a for m in messages for a in m.attempts]
    fault_start, fault_end = fault_window
    ok = [a.seconds for a in attempts if a.status == 200]
    s503 = [a.seconds for a in attempts if a.status == 503]
    after_fault = [a for a in attempts if a.status == 200 and a.at >= fault_end]
    health_in_fault = [a for a in health if fault_start <= a.at < fault_end]
    return {
        "scenario": name, "rate": rate, "fault_seconds": round(fault_end - fault_start, 1),
        "restart_seconds": round(restart_seconds, 1) if restart_seconds else None,
        "messages": len(messages), "acknowledged": sum(m.acknowledged for m in messages),
        "lost": sum(1 for m in messages if m.acknowledged and stored.get(m.key, 0) == 0),
        "duplicated": sum(1 for m in messages if stored.get(m.key, 0) > 1),
        "unanswered": sum(1 for m in messages if not m.acknowledged),
        "unanswered_but_stored": sum(1 for m in messages if not m.acknowledged and stored.get(m.key, 0)),
        "retried_messages": sum(1 for m in messages if len(m.attempts) > 1),
        "attempts": len(attempts), "http_200": len(ok),
        "fast_503": sum(1 for s in s503 if s <= fast_503), "slow_503": sum(1 for s in s503 if s > fast_503),
        "p50_503_ms": _pct(s503, 50), "max_503_ms": round(max(s503) * 1000, 1) if s503 else None,
        "other_5xx": sum(1 for a in attempts if a.status is not None and a.status >= 500 and a.status != 503),
        "http_429": sum(1 for a in attempts if a.status == 429),
        "other_4xx": sum(1 for a in attempts if a.status is not None and 400 <= a.status < 500 and a.status != 429),
        "connection_errors": sum(1 for a in attempts if a.status is None and a.error.startswith("connection")),
        "client_timeouts": sum(1 for a in attempts if a.status is None and a.error.startswith("timeout")),
        "p50_200_ms": _pct(ok, 50), "p99_200_ms": _pct(ok, 99),
        "recovered_after_s": round(min(a.at for a in after_fault) - fault_end, 1) if after_fault else None,
        "healthz_in_fault": {"probes": len(health_in_fault),
                             "status": sorted({str(a.status) for a in health_in_fault}),
                             "max_ms": round(max(a.seconds for a in health_in_fault) * 1000, 1)
                             if health_in_fault else None},
    }


# -- WeChat API failures ------------------------------------------------------------------------------

WECHAT_TOKEN = "tok_chaos"
WECHAT_TIMEOUT = 2.0  # the connector's HTTP timeout in this scenario (default 15 s)
# Outcome of each send attempt, drawn per attempt: most fail. "slow_ok" answers after half the
# timeout and accepts (must not be sent again); "too_slow" answers after the timeout and refuses.
WECHAT_OUTCOMES = [("http500", 0.25), ("busy", 0.15), ("too_slow", 0.10), ("slow_ok", 0.10), ("ok", 0.40)]


class FakeWeChatApi:
    """cgi-bin/token and cgi-bin/message/custom/send on 127.0.0.1, failing on purpose."""

    def __init__(self, seed: int = 0):
        import random
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, str]] = []  # (openid, content)
        self.attempts: dict[str, int] = {name: 0 for name, _ in WECHAT_OUTCOMES}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self._json(200, {"access_token": "AT-chaos", "expires_in": 7200})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake.lock:
                    outcome = fake.random.choices([n for n, _ in WECHAT_OUTCOMES],
                                                  [w for _, w in WECHAT_OUTCOMES])[0]
                    fake.attempts[outcome] += 1
                if outcome == "http500":
                    return self._json(500, {"message": "upstream exploded"})
                if outcome == "busy":
                    return self._json(200, {"errcode": -1, "errmsg": "system error"})
                if outcome == "too_slow":
                    time.sleep(WECHAT_TIMEOUT + 1)
                    return self._json(200, {"errcode": -1, "errmsg": "too late"})
                if outcome == "slow_ok":
                    time.sleep(WECHAT_TIMEOUT / 2)
                with fake.lock:
                    fake.accepted.append((body.get("touser", ""), body.get("text", {}).get("content", "")))
                return self._json(200, {"errcode": 0, "errmsg": "ok"})

            def _json(self, status, body):
                raw = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:
                    pass  # the client gave up first

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def _wechat_post(client: httpx.Client, url: str, openid: str, msg_id: int, text: str) -> tuple[bool, bool]:
    """One message as WeChat's servers push it, retried as they retry (3 tries, 5 s each):
    (acknowledged, answered in the HTTP reply itself, i.e. passively)."""
    from connectors.wechat.crypto import signature

    body = (f"<xml><ToUserName><![CDATA[gh_chaos]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
            f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>").encode()
    for attempt in range(3):
        timestamp, nonce = str(int(time.time())), f"{msg_id}{attempt}"
        params = {"timestamp": timestamp, "nonce": nonce, "signature": signature(WECHAT_TOKEN, timestamp, nonce)}
        try:
            response = client.post(url + "/wechat/chaos", params=params, content=body,
                                   headers={"Content-Type": "text/xml"}, timeout=5)
            if response.status_code == 200:
                return True, b"<Content>" in response.content
        except httpx.HTTPError:
            pass
    return False, False


def run_wechat(*, data_dir: Path, rate: float, seconds: float, settle: float) -> dict:
    """WeChat messages while the send API fails: every answer delivered, once."""
    fake = FakeWeChatApi()
    account = {"name": "chaos", "token": WECHAT_TOKEN, "app_id": "wxchaos000000001", "app_secret": "sec_chaos",
               "reply_budget": 0.001}
    database = data_dir / f"chaos-wechat-{uuid.uuid4().hex[:8]}.db"
    env = {"DATABASE_URL": f"sqlite:///{database}", **LOAD_GENERATOR_ENV,
           "HOTLINE_WECHAT__ACCOUNTS": json.dumps([account]), "HOTLINE_WECHAT__API_BASE": fake.url,
           "HOTLINE_WECHAT__HTTP_TIMEOUT": str(WECHAT_TIMEOUT), "HOTLINE_OUTBOX__POLL_INTERVAL": "0.1",
           "HOTLINE_OUTBOX__BACKOFF_BASE": "0.2", "HOTLINE_OUTBOX__BACKOFF_MAX": "1"}
    server = start_server(data_dir, env, timeout=240)
    run_id = int(time.time() * 1000) % 10**9
    openids = [f"ochaos{run_id}{i:05d}" for i in range(int(rate * seconds))]
    acked: dict[str, bool] = {}
    passive: dict[str, bool] = {}
    started = time.monotonic()
    try:
        with httpx.Client() as client, ThreadPoolExecutor(max_workers=50) as pool:
            futures = {}
            for i, openid in enumerate(openids):
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
                futures[openid] = pool.submit(_wechat_post, client, server.url, openid, run_id * 100000 + i,
                                              QUESTIONS[i % len(QUESTIONS)])
            for openid, future in futures.items():
                acked[openid], passive[openid] = future.result()
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            with fake.lock:
                delivered = {o for o, _ in fake.accepted}
            if all(o in delivered or passive[o] for o in openids if acked[o]):
                break
            time.sleep(0.5)
        time.sleep(3)  # a late duplicate would show up now
    finally:
        stop_server(server)
        fake.close()
    with fake.lock:
        accepted = list(fake.accepted)
        attempts = dict(fake.attempts)
    per_user: dict[str, list[str]] = {}
    for openid, content in accepted:
        per_user.setdefault(openid, []).append(content)
    for openid in openids:
        if passive[openid]:
            per_user.setdefault(openid, []).append("(passive reply)")
    return {"scenario": "wechat-api", "rate": rate, "messages": len(openids),
            "acknowledged": sum(acked.values()), "answered_passively": sum(passive.values()),
            "lost": sum(1 for o in openids if acked[o] and not per_user.get(o)),
            # the same piece twice, or a passive reply and a pushed one for the same question
            "duplicated": sum(1 for o in openids if len(per_user.get(o, [])) != len(set(per_user.get(o, [])))
                              or (passive[o] and len(per_user[o]) > 1)),
            "send_attempts": sum(attempts.values()), "send_outcomes": attempts,
            "delivered_within_s": round(time.monotonic() - started - seconds, 1)}


def print_table(results: list[dict], fast_503: float) -> None:
    head = ["scenario", "fault", "msgs", "lost", "dup", "unanswered", "200", f"503 ≤{fast_503:g}s", "503 slow",
            "503 p50/max ms", "other 5xx", "conn err", "timeouts", "healthz in fault", "first 200 after"]
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for r in (r for r in results if r["scenario"] != "wechat-api"):
        fault = f"{r['fault_seconds']} s" + (f" (restart {r['restart_seconds']} s)" if r["restart_seconds"] else "") \
            + (f" ({r['workers_killed']} workers killed)" if r.get("workers_killed") else "")
        h = r["healthz_in_fault"]
        healthz = f"{'/'.join(h['status']) or '-'}, max {h['max_ms']} ms" if h["probes"] else "-"
        print("| " + " | ".join(str(v) for v in [
            r["scenario"], fault, r["messages"], r["lost"], r["duplicated"], r["unanswered"], r["http_200"],
            r["fast_503"], r["slow_503"], f"{r['p50_503_ms']} / {r['max_503_ms']}", r["other_5xx"],
            r["connection_errors"], r["client_timeouts"], healthz,
            f"{r['recovered_after_s']} s" if r["recovered_after_s"] is not None else "-"]) + " |")
    for r in (r for r in results if r["scenario"] == "wechat-api"):
        print()
        print("| WeChat messages | acknowledged | answered passively | lost | duplicated | send attempts "
              "| outcomes of the attempts |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        outcomes = ", ".join(f"{k} {v}" for k, v in r["send_outcomes"].items())
        print(f"| {r['messages']} | {r['acknowledged']} | {r['answered_passively']} | {r['lost']} | {r['duplicated']} "
              f"| {r['send_attempts']} | {outcomes} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL",
                                                                 "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="a PostgreSQL server where a throw-away database per scenario may be created")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--rate", type=float, default=10.0, help="messages per second offered")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--fault", type=float, default=20.0, help="seconds the database stays frozen/down")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after the fault")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds for retries to finish after the load")
    parser.add_argument("--fast-503", type=float, default=2.5, help="a 503 within this many seconds is fast")
    parser.add_argument("--data-dir", type=Path, help="server data dir (index, model cache); temp by default")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from bot.config import Settings

    admin_url = Settings(database_url=args.database_url).sqlalchemy_url
    if not admin_url.startswith("postgresql"):
        parser.error("--database-url must point at PostgreSQL")
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="hotline-chaos-"))
    results = []
    for name in args.scenarios.split(","):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; one of {', '.join(SCENARIOS)}")
        print(f"-- {name}", flush=True)
        if name == "wechat-api":
            results.append(run_wechat(data_dir=data_dir, rate=args.rate, seconds=args.warmup + args.fault + args.after,
                                      settle=args.settle + 30))
            print(json.dumps(results[-1], ensure_ascii=False), flush=True)
            continue
        results.append(run_scenario(name, admin_url=admin_url, data_dir=data_dir, rate=args.rate,
                                    warmup=args.warmup, fault=args.fault, after=args.after, settle=args.settle,
                                    fast_503=args.fast_503))
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    print()
    print_table(results, args.fast_503)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "args": {k: str(v) for k, v in vars(args).items()},
                                         "loadavg": os.getloadavg()}, indent=2))
    return 0 if all(r["lost"] == 0 and r["duplicated"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
