"""Agent console API: login, CSRF, queue order, claim races (real server), resolve / hand back."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import httpx
import pytest

from bot.config import PROJECT_ROOT
from bot.desk import AgentDesk, DeskError
from bot.messages import Message
from connectors.app import create_app
from tests.conftest import start_server, stop_server

PASSWORD = "correct horse 1"


# -- in process ---------------------------------------------------------------------------

@pytest.fixture()
def app(fresh_bot, monkeypatch):
    monkeypatch.delenv("HOTLINE_WEBHOOK_URL", raising=False)
    app = create_app(fresh_bot.settings, bot=fresh_bot)
    desk = app.extensions["hotline_desk"]
    for name in ("alice", "bob"):
        desk.create_agent(name, PASSWORD, name.title())
    return app


def login(app, username="alice"):
    client = app.test_client()
    response = client.post("/agents/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.json
    client.environ_base["HTTP_X_CSRF_TOKEN"] = response.json["csrf_token"]
    return client


def handoff(app, text="/ask_human", user="citizen"):
    reply = app.extensions["hotline_bot"].handle(Message(user_id=user, text=text))
    assert reply.handoff is not None
    return reply


def test_login_rejects_wrong_password_and_needs_a_session(app):
    client = app.test_client()
    assert client.post("/agents/api/login", json={"username": "alice", "password": "nope"}).status_code == 401
    assert client.post("/agents/api/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    assert client.get("/agents/api/updates").status_code == 401
    bad = client.post("/agents/api/login", json={"username": "alice"})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "password"


def test_posts_need_the_csrf_token(app):
    client = login(app)
    ticket = handoff(app).handoff.id
    del client.environ_base["HTTP_X_CSRF_TOKEN"]
    assert client.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 403
    client.environ_base["HTTP_X_CSRF_TOKEN"] = "forged"
    assert client.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 403


def test_passwords_are_stored_hashed_with_scrypt(app):
    from sqlalchemy import select

    from bot.desk_models import Agent

    with app.extensions["hotline_bot"].store.transaction() as session:
        stored = session.execute(select(Agent.password_hash).where(Agent.username == "alice")).scalar()
    assert stored.startswith("scrypt:") and PASSWORD not in stored


def test_queue_puts_emergencies_first_then_longest_waiting(app):
    normal_1 = handoff(app, user="a").handoff.id
    normal_2 = handoff(app, user="b").handoff.id
    urgent = handoff(app, "我家孩子高烧抽搐，叫不醒", user="c").handoff
    assert urgent.priority == 0
    queue = login(app).get("/agents/api/updates?wait=0").json["queue"]
    assert [h["id"] for h in queue] == [urgent.id, normal_1, normal_2]
    assert all("waiting_seconds" in h for h in queue)


def test_ticket_detail_has_transcript_reason_language_candidates_and_kb_version(app):
    bot = app.extensions["hotline_bot"]
    first = bot.handle(Message(user_id="u", text="How much is a PCR test?"))
    ticket = bot.handle(Message(user_id="u", text="/ask_human", conversation_id=first.conversation_id)).handoff.id
    detail = login(app).get(f"/agents/api/handoffs/{ticket}").json
    assert detail["reason"] == "user_request" and detail["language"] == "en"
    assert detail["kb_version"] == bot.kb.version
    assert 1 <= len(detail["candidates"]) <= 3 and detail["candidates"][0]["answer"]
    assert [t["role"] for t in detail["transcript"]] == ["user", "bot", "user", "bot"]
    assert detail["transcript"][2]["display"] == "Talk to a person"


def test_claim_reply_resolve_returns_the_conversation_to_the_bot(app):
    alice, bob = login(app), login(app, "bob")
    reply = handoff(app)
    ticket, cid = reply.handoff.id, reply.conversation_id
    assert alice.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "hi"}).status_code == 409  # not claimed
    assert alice.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 200
    taken = bob.post(f"/agents/api/handoffs/{ticket}/claim", json={})
    assert taken.status_code == 409 and "alice" in taken.json["error"]["message"]
    assert bob.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "me too"}).status_code == 403
    assert alice.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "  "}).status_code == 400
    sent = alice.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "您好，我是人工客服"})
    assert sent.status_code == 201 and sent.json["turn"]["role"] == "agent"
    citizen = app.test_client().get(f"/web/api/conversations/{cid}/turns?user_id=citizen").json
    assert citizen["turns"][-1]["text"] == "您好，我是人工客服" and citizen["handoff"]["status"] == "claimed"
    assert alice.post(f"/agents/api/handoffs/{ticket}/resolve", json={}).status_code == 200
    assert app.extensions["hotline_bot"].store.conversation(cid)["status"] == "bot"
    assert alice.post(f"/agents/api/handoffs/{ticket}/resolve", json={}).status_code == 409
    after = app.extensions["hotline_bot"].handle(Message(user_id="citizen", text="核酸检测多少钱", conversation_id=cid))
    assert after.intent == "faq" and after.handoff is None  # the bot answers again


def test_hand_back_returns_the_conversation_to_the_bot(app):
    alice = login(app)
    reply = handoff(app)
    alice.post(f"/agents/api/handoffs/{reply.handoff.id}/claim", json={})
    assert alice.post(f"/agents/api/handoffs/{reply.handoff.id}/hand_back", json={}).status_code == 200
    store = app.extensions["hotline_bot"].store
    assert store.conversation(reply.conversation_id)["status"] == "bot"
    assert store.handoff(reply.handoff.id)["status"] == "returned"


def test_kb_search_and_callbacks_list(app):
    alice = login(app)
    results = alice.get("/agents/api/kb/search?q=健康码变黄&lang=zh").json["results"]
    assert results and results[0]["entry_id"].startswith("health_code.") and results[0]["source"]["url"]
    assert alice.get("/agents/api/kb/search?q=").status_code == 400
    app.test_client().post("/web/api/callbacks", json={"phone": "13912345678", "note": "请回电"})
    callbacks = alice.get("/agents/api/callbacks").json["callbacks"]
    assert [c["phone"] for c in callbacks] == ["13912345678"]
    assert alice.post(f"/agents/api/callbacks/{callbacks[0]['id']}/done", json={}).json["status"] == "done"
    assert alice.get("/agents/api/callbacks").json["callbacks"] == []


def test_on_duty_presence(app):
    desk = app.extensions["hotline_desk"]
    assert desk.agents_on_duty() == 0
    alice = login(app)
    assert desk.agents_on_duty() == 1
    alice.post("/agents/api/duty", json={"on_duty": False})
    assert desk.agents_on_duty() == 0
    assert alice.post("/agents/api/duty", json={"on_duty": "yes"}).status_code == 400


def test_create_agent_validates(fresh_store):
    desk = AgentDesk(fresh_store)
    with pytest.raises(DeskError, match="password"):
        desk.create_agent("carol", "short")
    with pytest.raises(DeskError, match="username"):
        desk.create_agent("Carol Smith!", PASSWORD)
    desk.create_agent("carol", PASSWORD)
    with pytest.raises(DeskError, match="already exists"):
        desk.create_agent("carol", PASSWORD)


def test_desk_claim_race_in_threads(any_store, fresh_bot):
    """Same race straight on the store, on SQLite and (when configured) PostgreSQL."""
    import bot.desk_models  # noqa: F401

    any_store.create_schema()
    from bot.engine import Bot

    engine_bot = Bot(fresh_bot.settings, fresh_bot.kb, fresh_bot.tokenizer, fresh_bot.encoder, fresh_bot.index, any_store)
    ticket = engine_bot.handle(Message(user_id="race", text="/ask_human")).handoff.id
    desk = AgentDesk(any_store)
    agents = [desk.create_agent(f"agent{i}", PASSWORD) for i in range(8)]
    results: list[str] = []
    barrier = threading.Barrier(len(agents))

    def attempt(agent):
        barrier.wait()
        try:
            desk.claim(ticket, agent)
            results.append("won")
        except DeskError as exc:
            results.append(str(exc.status))

    threads = [threading.Thread(target=attempt, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["409"] * 7 + ["won"]


# -- against a real server -------------------------------------------------------------------

@pytest.fixture(scope="module")
def desk_server(tmp_path_factory, session_dir, bot):
    """A real waitress server over its own database; agents created with the CLI."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('desk') / 'desk.db'}"
    env = os.environ.copy() | {"DATABASE_URL": db_url, "HOTLINE_DATA_DIR": str(session_dir / "var"),
                               "HOTLINE_AGENT_PASSWORD": PASSWORD}
    env.pop("HOTLINE_DATABASE_URL", None)
    for i in range(6):
        done = subprocess.run([sys.executable, "-m", "bot.cli", "agent", "create", f"racer{i}"], env=env,
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    duplicate = subprocess.run([sys.executable, "-m", "bot.cli", "agent", "create", "racer0"], env=env,
                               cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    server = start_server(session_dir / "var", {"DATABASE_URL": db_url, "HOTLINE_WEBHOOK_URL": ""})
    yield server, db_url
    stop_server(server)


def test_two_agents_cannot_claim_the_same_ticket(desk_server):
    server, _ = desk_server
    clients = []
    for i in range(6):
        client = server.client()
        me = client.post("/agents/api/login", json={"username": f"racer{i}", "password": PASSWORD})
        assert me.status_code == 200, me.text
        client.headers["X-CSRF-Token"] = me.json()["csrf_token"]
        clients.append(client)
    for round_ in range(5):
        with server.client() as citizen:
            reply = citizen.post("/web/api/messages", json={"user_id": f"race-{round_}", "text": "/ask_human"}).json()
        ticket = reply["handoff"]["id"]
        barrier = threading.Barrier(len(clients))
        statuses: list[int] = []

        def claim(client: httpx.Client):
            barrier.wait()
            statuses.append(client.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code)

        threads = [threading.Thread(target=claim, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200] + [409] * (len(clients) - 1), statuses
        detail = clients[0].get(f"/api/v1/handoffs/{ticket}").json()
        assert detail["status"] == "claimed"
        claim_notices = [t for t in detail["transcript"] if t.get("intent") == "handoff_claimed"]
        assert len(claim_notices) == 1
    for client in clients:
        client.close()
