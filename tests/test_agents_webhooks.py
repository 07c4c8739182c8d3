"""Outbound webhook: HMAC signature, the outbox, retries with backoff, nothing lost, no
personal data in payloads. Unit tests on httpx.MockTransport and an injected clock; one
real server over a real socket."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from bot.config import WebhookSettings
from bot.conversations import webhooks
from bot.conversations.outbox import backoff
from bot.conversations.staff import StaffDirectory
from bot.db import Database
from bot.messages import Message
from tests.conftest import free_port, start_server, stop_server

SECRET = "s3cret-for-tests"


class Target:
    """A MockTransport receiver that fails until told otherwise."""

    def __init__(self):
        self.failing = True
        self.attempts = 0
        self.received: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        if self.failing:
            return httpx.Response(503)
        self.received.append(request)
        return httpx.Response(204)

    def events(self) -> list[dict]:
        return [json.loads(r.content) for r in self.received]


@pytest.fixture()
def hooked(services):
    target = Target()
    consumer = webhooks.WebhookConsumer(WebhookSettings(url="https://tickets.example/hook", secret=SECRET),
                                        client=httpx.Client(transport=httpx.MockTransport(target)))
    worker = services.add_consumer(consumer)
    return services, worker, target


def test_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"event":"handoff.opened"}'
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert webhooks.sign(SECRET, body) == expected
    assert webhooks.verify(SECRET, body, expected)
    assert not webhooks.verify(SECRET, body + b" ", expected)
    assert not webhooks.verify("other", body, expected)
    assert not webhooks.verify(SECRET, body, None)
    assert not webhooks.verify(SECRET, body, "sha256=é")  # refused, not a TypeError from compare_digest


def test_no_webhook_no_deliveries(services):
    services.bot.handle(Message(user_id="u", text="/ask_human", channel="api"))
    assert services.workers == {}


def test_failing_target_loses_nothing_and_retries_with_backoff(hooked, clock):
    services, worker, target = hooked
    tickets = [services.bot.handle(Message(user_id=f"u{i}", text="/ask_human", channel="api")).handoff.id
               for i in range(3)]
    alice = services.staff.create("alice", "password123")
    services.desk.claim(tickets[0], alice)
    services.desk.leave_callback("13812345678", note="请回电")

    assert worker.run_once() == 0 and target.attempts == 5  # target down
    assert worker.backlog() == 5
    assert worker.run_once() == 0 and target.attempts == 5  # not due yet: backing off
    clock.advance(seconds=2)
    assert worker.run_once() == 0 and target.attempts == 10
    target.failing = False
    clock.advance(seconds=3)
    assert worker.run_once() == 0  # the second backoff is 4 s
    clock.advance(seconds=1)
    assert worker.run_once() == 5 and worker.backlog() == 0
    events = target.events()
    assert sorted((e["event"], e.get("handoff", {}).get("id")) for e in events) == sorted(
        [("handoff.opened", t) for t in tickets] + [("handoff.claimed", tickets[0]), ("callback.requested", None)])
    for request in target.received:
        assert webhooks.verify(SECRET, request.content, request.headers["X-Hotline-Signature"])
        assert request.headers["X-Hotline-Delivery"] == json.loads(request.content)["delivery_id"]
    clock.advance(seconds=600)
    assert worker.run_once() == 0  # delivered once, not again


def test_payloads_carry_no_raw_ids_or_phone_numbers(hooked):
    """Privacy regression: webhooks carried openids and callback phones in clear."""
    services, worker, target = hooked
    target.failing = False
    openid = "main:o6_bmjrPTlm6_2sgVt7hMZOPfL2M"
    services.bot.handle(Message(user_id=openid, text="我的电话是13812345678，转人工", channel="wechat"))
    services.desk.leave_callback("13912345678")
    worker.run_once()
    raw = b"".join(r.content for r in target.received)
    for secret in (b"o6_bmjrPTlm6_2sgVt7hMZOPfL2M", b"13812345678", b"13912345678"):
        assert secret not in raw
    opened = next(e for e in target.events() if e["event"] == "handoff.opened")
    assert opened["handoff"]["user"].startswith("p_") and "138****5678" in opened["handoff"]["question"]


def test_backoff_is_exponential_and_capped():
    assert [backoff(n, 2, 60) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


class Receiver:
    """A real HTTP target on a socket, switched between failing (503) and working."""

    def __init__(self):
        self.failing = True
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.changed:
                    receiver.attempts += 1
                    if not receiver.failing:
                        receiver.received.append((dict(self.headers), body))
                    receiver.changed.notify_all()
                self.send_response(503 if receiver.failing and not receiver.received else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_real_server_delivers_after_the_target_comes_back(tmp_path, session_dir, engine):
    """End to end: the real server's outbox thread, target down then up."""
    receiver = Receiver()
    db_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    db = Database(db_url)
    db.upgrade()
    StaffDirectory(db).create("alice", "password123")
    db.dispose()
    server = start_server(session_dir / "var", {
        "DATABASE_URL": db_url, "HOTLINE_WEBHOOK__URL": receiver.url, "HOTLINE_WEBHOOK__SECRET": SECRET,
        "HOTLINE_OUTBOX__BACKOFF_BASE": "0.2", "HOTLINE_OUTBOX__BACKOFF_MAX": "0.5",
        "HOTLINE_OUTBOX__POLL_INTERVAL": "0.1"})
    try:
        with server.client() as client:
            tickets = []
            for i in range(3):
                started = time.monotonic()
                reply = client.post("/web/api/messages", json={"user_id": f"hook-citizen-{i:06d}",
                                                               "text": "/ask_human"})
                assert reply.status_code == 200 and time.monotonic() - started < 5
                tickets.append(reply.json()["handoff"]["id"])
            agent = client.post("/agents/api/login", json={"username": "alice", "password": "password123"}).json()
            claimed = client.post(f"/agents/api/handoffs/{tickets[1]}/claim", json={},
                                  headers={"X-CSRF-Token": agent["csrf_token"]})
            assert claimed.status_code == 200
        assert receiver.wait_for(lambda: receiver.attempts >= 8, 15)
        assert receiver.received == []  # retried, nothing accepted yet
        receiver.failing = False
        assert receiver.wait_for(lambda: len(receiver.received) >= 4, 20)
        events = [json.loads(body) for _, body in receiver.received]
        assert sorted((e["event"], e["handoff"]["id"]) for e in events) == sorted(
            [("handoff.opened", t) for t in tickets] + [("handoff.claimed", tickets[1])])
        assert len({e["delivery_id"] for e in events}) == len(events)
        for headers, body in receiver.received:
            assert webhooks.verify(SECRET, body, headers["X-Hotline-Signature"])
    finally:
        stop_server(server)
        receiver.close()
