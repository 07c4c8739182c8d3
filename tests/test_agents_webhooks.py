"""Outbound webhook: HMAC signature, outbox + retries, nothing lost while the target is down."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from bot import webhooks
from bot.desk import AgentDesk
from bot.messages import Message
from bot.store import Store
from tests.conftest import free_port, start_server, stop_server

SECRET = "s3cret-for-tests"


class Receiver:
    """A webhook target that can be switched between failing (503) and working."""

    def __init__(self):
        self.failing = True
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.attempts = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.attempts += 1
                status = 503 if receiver.failing else 200
                if not receiver.failing:
                    receiver.received.append((dict(self.headers), body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver():
    target = Receiver()
    yield target
    target.close()


def test_signature_is_hmac_sha256_of_the_raw_body():
    body = b'{"event":"handoff.created"}'
    # echo -n '{"event":"handoff.created"}' | openssl dgst -sha256 -hmac s3cret-for-tests
    import hashlib
    import hmac

    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert webhooks.sign(SECRET, body) == expected
    assert webhooks.verify(SECRET, body, expected)
    assert not webhooks.verify(SECRET, body + b" ", expected)
    assert not webhooks.verify("other", body, expected)
    assert not webhooks.verify(SECRET, body, None)


def test_events_are_only_recorded_where_enabled(fresh_bot):
    fresh_bot.handle(Message(user_id="u", text="/ask_human"))
    with fresh_bot.store.transaction() as session:
        assert session.execute(select(webhooks.OutboxEvent)).first() is None


def test_failing_target_loses_nothing_and_retries_with_backoff(fresh_bot, receiver):
    store: Store = fresh_bot.store
    store.create_schema()
    webhooks.enable(store)
    settings = webhooks.WebhookSettings(url=receiver.url, secret=SECRET, backoff_base=0.2, backoff_max=0.4)
    worker = webhooks.WebhookWorker(store, settings)
    tickets = [fresh_bot.handle(Message(user_id=f"u{i}", text="/ask_human")).handoff.id for i in range(3)]
    AgentDesk(store).create_agent("alice", "password123")
    alice = AgentDesk(store).authenticate("alice", "password123")
    AgentDesk(store).claim(tickets[0], alice)

    assert worker.run_once() == 0  # target down
    assert receiver.attempts == 4 and webhooks.pending_count(store) == 4
    assert worker.run_once() == 0  # not due yet: backing off
    assert receiver.attempts == 4
    time.sleep(0.25)
    worker.run_once()
    assert receiver.attempts == 8
    with store.transaction() as session:
        rows = session.execute(select(webhooks.OutboxEvent)).scalars().all()
        assert all(r.attempts == 2 and r.last_error == "HTTP 503" for r in rows)

    receiver.failing = False
    time.sleep(0.45)
    assert worker.run_once() == 4
    assert webhooks.pending_count(store) == 0
    events = receiver.events()
    assert sorted((e["event"], e["handoff"]["id"]) for e in events) == sorted(
        [("handoff.created", t) for t in tickets] + [("handoff.claimed", tickets[0])])
    for headers, body in receiver.received:
        assert webhooks.verify(SECRET, body, headers["X-Hotline-Signature"])
        assert headers["X-Hotline-Delivery"] == str(json.loads(body)["delivery_id"])
    assert worker.run_once() == 0  # delivered once, not again


def test_worker_backoff_is_exponential_and_capped(fresh_store):
    worker = webhooks.WebhookWorker(fresh_store, webhooks.WebhookSettings(url="http://x", backoff_base=2, backoff_max=60))
    assert [worker.backoff(n) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]


def test_real_server_delivers_after_the_target_comes_back(tmp_path, session_dir, bot, receiver):
    """End to end: waitress server, background worker thread, target down then up."""
    db_url = f"sqlite:///{tmp_path / 'hooks.db'}"
    store = Store(db_url)
    import bot.desk_models  # noqa: F401

    store.create_schema()
    AgentDesk(store).create_agent("alice", "password123")
    store.engine.dispose()
    server = start_server(session_dir / "var", {
        "DATABASE_URL": db_url, "HOTLINE_WEBHOOK_URL": receiver.url, "HOTLINE_WEBHOOK_SECRET": SECRET,
        "HOTLINE_WEBHOOK_BACKOFF_BASE": "0.2", "HOTLINE_WEBHOOK_BACKOFF_MAX": "0.5",
        "HOTLINE_WEBHOOK_POLL_INTERVAL": "0.1"})
    try:
        with server.client() as client:
            tickets = []
            for i in range(3):
                started = time.monotonic()
                reply = client.post("/web/api/messages", json={"user_id": f"hook-{i}", "text": "/ask_human"})
                assert reply.status_code == 200 and time.monotonic() - started < 5
                tickets.append(reply.json()["handoff"]["id"])
            agent = client.post("/agents/api/login", json={"username": "alice", "password": "password123"}).json()
            claimed = client.post(f"/agents/api/handoffs/{tickets[1]}/claim", json={},
                                  headers={"X-CSRF-Token": agent["csrf_token"]})
            assert claimed.status_code == 200
        deadline = time.monotonic() + 10
        while receiver.attempts < 8 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert receiver.attempts >= 8 and receiver.received == []  # retried, nothing accepted yet
        receiver.failing = False
        deadline = time.monotonic() + 20
        while len(receiver.received) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # would any event be sent twice?
        events = receiver.events()
        assert sorted((e["event"], e["handoff"]["id"]) for e in events) == sorted(
            [("handoff.created", t) for t in tickets] + [("handoff.claimed", tickets[1])])
        for headers, body in receiver.received:
            assert webhooks.verify(SECRET, body, headers["X-Hotline-Signature"])
    finally:
        stop_server(server)
