"""The probe's rows that had no regression test yet, on SQLite and PostgreSQL.

Row 8 (500 instead of 400) was closed for 2^64 on SQLite, but PostgreSQL's INTEGER
columns end at 2^31 - 1: an id or cursor between 2^31 and 2^53 passed validation and
PostgreSQL's "integer out of range" became a 500 on every id route, anonymous ones
included (widget transcript cursor, feedback, ratings). NUL bytes only break
PostgreSQL, so they are checked there too (text, user_id, path, login username).
"""
from __future__ import annotations

import pytest

from connectors.app import create_app

CITIZEN = "web-probe-rows-citizen-01"
BIG = [2**31, 2**40, 2**53]


@pytest.fixture()
def probe(any_services):
    any_services.settings = any_services.settings.model_copy(update={"open_read_api": True})
    any_services.staff.create("prober", "password123", role="admin")
    citizen = create_app(any_services).test_client()
    first = citizen.post("/web/api/messages", json={"user_id": CITIZEN, "text": "转人工"})
    assert first.status_code == 200
    staff = create_app(any_services).test_client()
    login = staff.post("/agents/api/login", json={"username": "prober", "password": "password123"})
    csrf = {"X-CSRF-Token": login.json["csrf_token"]}
    return citizen, staff, csrf, first.json["conversation_id"]


@pytest.mark.parametrize("big", BIG)
def test_ids_past_postgresqls_integer_range_are_clean_4xx(probe, big):
    citizen, staff, csrf, conversation = probe
    anonymous = [
        citizen.get(f"/web/api/conversations/{conversation}/turns", query_string={"user_id": CITIZEN, "after": big}),
        citizen.post("/web/api/messages", json={"user_id": CITIZEN, "text": "hi", "conversation_id": conversation,
                                                "after": big}),
        citizen.post("/web/api/feedback", json={"user_id": CITIZEN, "conversation_id": conversation,
                                                "turn_id": big, "value": "up"}),
        citizen.post("/web/api/ratings", json={"user_id": CITIZEN, "conversation_id": conversation,
                                               "handoff_id": big, "score": 3}),
        citizen.get(f"/api/v1/handoffs/{big}"),
    ]
    for response in anonymous:
        assert 400 <= response.status_code < 500, (response.request.path, response.json)
    for response in anonymous[:4]:
        assert response.json["error"]["field"] in ("after", "turn_id", "handoff_id")
    for method, path in (("GET", f"/agents/api/handoffs/{big}"), ("POST", f"/agents/api/handoffs/{big}/claim"),
                         ("GET", f"/agents/api/updates?handoff={big}&after={big}"),
                         ("POST", f"/agents/api/callbacks/{big}/reveal"),
                         ("POST", f"/agents/api/canned/{big}/delete")):
        response = staff.open(path, method=method, json={} if method == "POST" else None, headers=csrf)
        assert 400 <= response.status_code < 500, (path, response.status_code)


def test_a_cursor_with_thousands_of_digits_is_a_400(probe):
    """int() of more than 4,300 digits raises ValueError: the length is checked first."""
    citizen, staff, _csrf, conversation = probe
    response = citizen.get(f"/web/api/conversations/{conversation}/turns",
                           query_string={"user_id": CITIZEN, "after": "9" * 5000})
    assert response.status_code == 400 and response.json["error"]["field"] == "after"
    assert staff.get("/agents/api/updates", query_string={"after": "9" * 5000}).status_code == 400
    assert staff.get(f"/agents/api/handoffs/{'9' * 5000}").status_code == 404


def test_nul_bytes_are_400s_naming_the_field(probe):
    citizen, staff, _csrf, conversation = probe
    for body, field in (({"user_id": "api-nul", "text": "a\x00b"}, "text"),
                        ({"user_id": "api\x00nul", "text": "hi"}, "user_id")):
        response = citizen.post("/api/v1/messages", json=body)
        assert response.status_code == 400 and response.json["error"]["field"] == field
    login = citizen.post("/agents/api/login", json={"username": "pro\x00ber", "password": "password123"})
    assert login.status_code == 400 and login.json["error"]["field"] == "username"
    assert staff.get("/api/v1/conversations/ab%00cd").status_code == 404
    turns = citizen.get(f"/web/api/conversations/{conversation}%00/turns", query_string={"user_id": CITIZEN})
    assert 400 <= turns.status_code < 500


def test_password_checks_never_run_under_the_sqlite_writer_lock(services, monkeypatch):
    """Row 9: scrypt ran inside the write transaction, so 16 parallel wrong logins queued every
    citizen's message behind them (p50 18 ms -> 3.4 s). The hash must run with the lock free."""
    import bot.conversations.staff as staff_module

    real = staff_module._HASHER
    held = []

    class Watching:
        def verify(self, *args):
            held.append(services.db._writer.locked())
            return real.verify(*args)

        def __getattr__(self, name):
            return getattr(real, name)

    services.staff.create("hasher", "password123")
    monkeypatch.setattr(staff_module, "_HASHER", Watching())
    client = create_app(services).test_client()
    for password in ("wrong-password", "password123"):
        client.post("/agents/api/login", json={"username": "hasher", "password": password})
    client.post("/agents/api/login", json={"username": "nobody", "password": "whatever1"})
    assert held == [False, False, False], "a password hash ran while holding the writer lock"


def test_readiness_is_separate_from_liveness(services, monkeypatch):
    """Row 18: /healthz said 200 while the first message still took 5.9 s; /readyz waits for the models."""
    monkeypatch.setattr(services.bot, "_warm", False)
    client = create_app(services).test_client()
    assert client.get("/healthz").status_code == 200  # alive
    cold = client.get("/readyz")
    assert cold.status_code == 503 and cold.json["models"] is False and cold.json["database"] is True
    services.bot.warm_up()
    assert client.get("/readyz").status_code == 200


def test_a_retried_post_with_the_same_idempotency_key_is_stored_once(services, client):
    """Row 18: a client retrying after a timeout stored its message twice."""
    from bot.models import Turn
    from sqlalchemy import func, select

    def post(text="核酸多少钱", **headers):
        return client.post("/api/v1/messages", json={"user_id": "retrying-client", "text": text}, headers=headers)

    first, again = post(**{"Idempotency-Key": "k-1"}), post(**{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.json["replayed"] is True and again.json["replies"] == first.json["replies"]
    assert post(**{"Idempotency-Key": "k-2"}).json["replayed"] is False
    with services.db.read() as session:
        stored = session.execute(select(func.count(Turn.id)).where(Turn.role == "user")).scalar()
    assert stored == 2
    body = {"user_id": "web-idempotent-widget-01", "text": "你好", "client_message_id": "w-1"}
    web = [client.post("/web/api/messages", json=body).json for _ in range(2)]
    assert web[1]["reply"]["replayed"] is True and web[0]["conversation_id"] == web[1]["conversation_id"]


def test_widget_transcripts_are_never_cached(client):
    """Row 17: transcripts went out without Cache-Control: no-store."""
    first = client.post("/web/api/messages", json={"user_id": "web-no-store-citizen-1", "text": "你好"})
    assert first.headers["Cache-Control"] == "no-store"
    turns = client.get(f"/web/api/conversations/{first.json['conversation_id']}/turns",
                       query_string={"user_id": "web-no-store-citizen-1"})
    assert turns.status_code == 200 and turns.headers["Cache-Control"] == "no-store"
