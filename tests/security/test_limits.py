"""Abuse limits (Flask-Limiter): per citizen, per conversation, per IP, handoffs, callbacks,
logins — with a friendly bilingual reply. Regression: one user sent 123 msg/s for 20 s, all
answered; 400 anonymous tickets in 3.9 s put a real citizen at queue position 456."""
from __future__ import annotations

import pytest

from connectors.app import create_app
from tests.conftest import build_services

CITIZEN = "web-limited-citizen-0001"


@pytest.fixture()
def limited(settings, engine, clock, tmp_path):
    limits = settings.limits.model_copy(update={
        "messages_per_user": "5/minute", "messages_per_conversation": "3/minute", "messages_per_ip": "12/minute",
        "handoffs_per_ip": "2/hour", "callbacks_per_ip": "2/hour", "callbacks_per_phone": 1, "logins_per_ip": "3/minute"})
    svc = build_services(settings, engine, f"sqlite:///{tmp_path / 'limits.db'}", clock, limits=limits)
    yield svc, create_app(svc).test_client()
    svc.close()


def test_a_citizen_flooding_messages_is_slowed_with_a_friendly_reply(limited):
    _svc, client = limited
    codes = [client.post("/web/api/messages", json={"user_id": CITIZEN, "text": f"你好{i}",
                                                    "new_conversation": i % 2 == 0}).status_code for i in range(7)]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]
    refused = client.post("/web/api/messages", json={"user_id": CITIZEN, "text": "再试"})
    assert "频繁" in refused.json["error"]["text"]["zh"] and "too quickly" in refused.json["error"]["text"]["en"]
    assert refused.headers.get("Retry-After")
    other = client.post("/web/api/messages", json={"user_id": "web-someone-else-00001", "text": "你好"})
    assert other.status_code == 200  # limits are per citizen, not global


def test_one_conversation_and_one_address_have_their_own_limits(limited):
    _svc, client = limited
    first = client.post("/web/api/messages", json={"user_id": "web-conv-limit-000001", "text": "你好"}).json
    codes = [client.post("/web/api/messages", json={"user_id": "web-conv-limit-000001", "text": f"问{i}",
                                                    "conversation_id": first["conversation_id"]}).status_code
             for i in range(4)]
    assert codes[-1] == 429
    burst = [client.post("/api/v1/messages", json={"user_id": f"ip-{i}", "text": "你好"}).status_code
             for i in range(12)]
    assert 429 in burst, "one address, many made-up users: the per-IP limit still applies"


def test_handoffs_per_address_and_callbacks_are_capped(limited):
    svc, client = limited
    opened = [client.post("/api/v1/messages", json={"user_id": f"ticket-{i}", "text": "转人工"}) for i in range(3)]
    assert [r.status_code for r in opened] == [200, 200, 429]
    assert len(svc.desk.list_handoffs(status="waiting")) == 2
    assert client.post("/web/api/callbacks", json={"phone": "13812345678"}).status_code == 201
    again = client.post("/web/api/callbacks", json={"phone": "138 1234 5678"})
    assert again.status_code == 429 and again.json["error"]["field"] == "phone"  # one open request per number
    assert client.post("/web/api/callbacks", json={"phone": "13912345678"}).status_code == 201
    assert client.post("/web/api/callbacks", json={"phone": "13712345678"}).status_code == 429  # per address


def test_logins_per_address_are_limited(limited):
    svc, client = limited
    svc.staff.create("alice", "password123")
    codes = [client.post("/agents/api/login", json={"username": "alice", "password": "nope"}).status_code
             for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_conversation_length_is_capped(limited, monkeypatch):
    svc, _client = limited
    from bot.messages import Message
    from bot.conversations.service import ConversationError

    svc.bot.settings = svc.bot.settings.model_copy(update={
        "limits": svc.settings.limits.model_copy(update={"max_turns_per_conversation": 10})})
    for i in range(5):
        svc.bot.handle(Message(user_id="chatty", text=f"你好{i}", channel="api"))
    with pytest.raises(ConversationError) as error:
        svc.bot.handle(Message(user_id="chatty", text="还有", channel="api"))
    assert error.value.kind == "limited"


def test_deployments_sharing_one_redis_count_apart_by_key_prefix(settings, engine, clock, tmp_path, redis_available):
    """Regression: with Redis every deployment's counters had the prefix "hotline", so two sharing one Redis
    (staging and production; one test run and the next) counted each other's citizens: the suite's handoffs
    from 127.0.0.1 stayed counted for an hour and the sixth run that hour got a 429 in test_multiprocess.
    Processes of one deployment (same prefix) still count together."""
    import uuid

    def app(prefix: str, name: str):
        limits = settings.limits.model_copy(update={"handoffs_per_ip": "2/hour", "key_prefix": prefix})
        svc = build_services(settings, engine, f"sqlite:///{tmp_path / name}", clock, redis_url=redis_available,
                             limits=limits)
        return svc, create_app(svc).test_client()

    ours, theirs = f"test-{uuid.uuid4().hex}", f"test-{uuid.uuid4().hex}"
    apps = [app(ours, "a.db"), app(ours, "b.db"), app(theirs, "c.db")]
    try:
        def ask_human(client, user):
            return client.post("/api/v1/messages", json={"user_id": user, "text": "转人工"}).status_code

        assert [ask_human(apps[0][1], "p-1"), ask_human(apps[1][1], "p-2")] == [200, 200]
        assert ask_human(apps[1][1], "p-3") == 429  # one deployment: its two processes count together
        assert [ask_human(apps[2][1], "p-4"), ask_human(apps[2][1], "p-5")] == [200, 200]  # another: its own count
    finally:
        for svc, _ in apps:
            svc.close()
