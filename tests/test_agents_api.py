"""Staff console API: sessions, CSRF, roles, queue order, the desk flow, callbacks,
canned replies, accounts; claim races against a real server."""
from __future__ import annotations

import subprocess
import sys
import threading

import httpx
import pytest
from sqlalchemy import select

from bot.config import PROJECT_ROOT
from bot.conversations.staff import StaffDirectory
from bot.db import Database
from bot.messages import Message
from bot.models import Agent
from connectors.context import SESSION_COOKIE
from tests.conftest import start_server, stop_server

PASSWORD = "correct horse 1"


@pytest.fixture()
def staffed(services):
    for name, role in (("alice", "agent"), ("bob", "agent"), ("erin", "editor"), ("ada", "admin")):
        services.staff.create(name, PASSWORD, name.title(), role)
    return services


def login(app, username="alice"):
    client = app.test_client()
    response = client.post("/agents/api/login", json={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.json
    client.environ_base["HTTP_X_CSRF_TOKEN"] = response.json["csrf_token"]
    return client


def handoff(services, text="/ask_human", user="citizen"):
    reply = services.bot.handle(Message(user_id=user, text=text, channel="api"))
    assert reply.handoff is not None
    return reply


def test_login_rejects_wrong_password_and_needs_a_session(staffed, app):
    client = app.test_client()
    assert client.post("/agents/api/login", json={"username": "alice", "password": "nope"}).status_code == 401
    assert client.post("/agents/api/login", json={"username": "nobody", "password": PASSWORD}).status_code == 401
    assert client.get("/agents/api/updates").status_code == 401
    bad = client.post("/agents/api/login", json={"username": "alice"})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "password"


def test_session_cookie_is_httponly_strict_and_secure_when_configured(staffed, app):
    response = app.test_client().post("/agents/api/login", json={"username": "alice", "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(SESSION_COOKIE) and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    from connectors.app import create_app

    secure = staffed.settings.model_copy(update={"cookie_secure": True})
    staffed.settings = secure
    response = create_app(staffed).test_client().post("/agents/api/login",
                                                      json={"username": "alice", "password": PASSWORD})
    assert "Secure" in response.headers["Set-Cookie"]


def test_logout_revokes_the_session_for_good(staffed, app):
    """Regression: logout left the (signed) cookie valid for its 31-day lifetime."""
    client = login(app)
    token = client.get_cookie(SESSION_COOKIE).value
    assert client.post("/agents/api/logout", json={}).status_code == 200
    replay = app.test_client()
    replay.set_cookie(SESSION_COOKIE, token)
    assert replay.get("/agents/api/me").status_code == 401


def test_disabling_or_resetting_ends_every_session(staffed, app):
    client = login(app)
    staffed.staff.reset_password("alice", "a brand new password")
    assert client.get("/agents/api/me").status_code == 401
    client = app.test_client()
    assert client.post("/agents/api/login", json={"username": "alice", "password": PASSWORD}).status_code == 401
    client = app.test_client()
    assert client.post("/agents/api/login", json={"username": "alice",
                                                  "password": "a brand new password"}).status_code == 200
    staffed.staff.disable("alice")
    assert client.get("/agents/api/me").status_code == 401
    assert app.test_client().post("/agents/api/login", json={"username": "alice",
                                                             "password": "a brand new password"}).status_code == 401


def test_posts_need_json_and_the_csrf_token(staffed, app):
    client = login(app)
    ticket = handoff(staffed).handoff.id
    del client.environ_base["HTTP_X_CSRF_TOKEN"]
    assert client.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 403
    client.environ_base["HTTP_X_CSRF_TOKEN"] = "forged"
    assert client.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 403
    client.environ_base["HTTP_X_CSRF_TOKEN"] = "é"  # a non-ASCII header: 403 (compare_digest raised: a 500)
    assert client.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 403


def test_login_csrf_with_a_cross_site_form_is_refused(staffed, app):
    """Regression: a cross-site text/plain body could log a victim into the attacker's account."""
    response = app.test_client().post("/agents/api/login", data='{"username":"alice","password":"%s"}' % PASSWORD,
                                      content_type="text/plain")
    assert response.status_code == 415 and SESSION_COOKIE not in response.headers.get("Set-Cookie", "")


def test_console_pages_cannot_be_framed_or_cached(staffed, app):
    page = app.test_client().get("/agents/")
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    ticket = handoff(staffed).handoff.id
    detail = login(app).get(f"/agents/api/handoffs/{ticket}")
    assert detail.headers["Cache-Control"] == "no-store"


def test_passwords_are_stored_hashed_with_argon2id(staffed):
    with staffed.db.read() as session:
        stored = session.execute(select(Agent.password_hash).where(Agent.username == "alice")).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_repeated_wrong_passwords_lock_the_account_with_backoff(staffed, app, clock):
    client = app.test_client()
    for _ in range(staffed.settings.limits.login_failures_before_lock):
        assert client.post("/agents/api/login", json={"username": "bob", "password": "wrong!"}).status_code == 401
    locked = client.post("/agents/api/login", json={"username": "bob", "password": PASSWORD})
    assert locked.status_code == 429 and "try again" in locked.json["error"]["message"]
    clock.advance(seconds=31)
    assert client.post("/agents/api/login", json={"username": "bob", "password": "wrong!"}).status_code == 401
    assert client.post("/agents/api/login", json={"username": "bob", "password": PASSWORD}).status_code == 429
    clock.advance(seconds=61)  # the second lock doubled
    assert client.post("/agents/api/login", json={"username": "bob", "password": PASSWORD}).status_code == 200


def test_roles_decide_what_a_member_may_do(staffed, app):
    editor = login(app, "erin")
    assert editor.get("/agents/api/session").json["agent"]["rights"] == ["kb"]
    assert editor.get("/agents/api/updates?wait=0").status_code == 403
    agent = login(app)
    assert agent.get("/agents/api/accounts").status_code == 403
    assert agent.post("/agents/api/canned", json={"title": "t", "zh": "z", "en": "e"}).status_code == 403
    admin = login(app, "ada")
    created = admin.post("/agents/api/accounts", json={"username": "carl", "password": PASSWORD, "role": "agent"})
    assert created.status_code == 201
    assert admin.post("/agents/api/accounts/carl", json={"disabled": True}).status_code == 200
    assert [a for a in admin.get("/agents/api/accounts").json["accounts"] if a["username"] == "carl"][0]["disabled"]


def test_queue_puts_emergencies_first_then_longest_waiting(staffed, app, clock):
    normal_1 = handoff(staffed, user="a").handoff.id
    clock.advance(seconds=1)
    normal_2 = handoff(staffed, user="b").handoff.id
    clock.advance(seconds=1)
    urgent = handoff(staffed, "我家孩子高烧抽搐，叫不醒", user="c").handoff
    assert urgent.priority == 0
    queue = login(app).get("/agents/api/updates?wait=0").json["queue"]
    assert [h["id"] for h in queue] == [urgent.id, normal_1, normal_2]
    assert all("waiting_seconds" in h and h["question"] for h in queue[:1])


def test_ticket_detail_has_transcript_reason_language_candidates_history(staffed, app):
    bot = staffed.bot
    earlier = bot.handle(Message(user_id="u", text="健康码变黄怎么办", channel="api"))
    first = bot.handle(Message(user_id="u", text="How much is a PCR test?", channel="api", new_conversation=True))
    ticket = bot.handle(Message(user_id="u", text="/ask_human", channel="api",
                                conversation_id=first.conversation_id)).handoff.id
    detail = login(app).get(f"/agents/api/handoffs/{ticket}").json
    assert detail["reason"] == "user_request" and detail["language"] == "en"
    assert detail["kb_version"] == bot.kb.version and detail["question"] == "How much is a PCR test?"
    assert 1 <= len(detail["candidates"]) <= 3 and detail["candidates"][0]["answer"]
    assert [t["role"] for t in detail["transcript"]] == ["user", "bot", "user", "bot"]
    assert detail["transcript"][2]["display"] == "Talk to a person"
    assert [c["conversation_id"] for c in detail["previous_conversations"]] == [earlier.conversation_id]
    assert detail["previous_conversations"][0]["first_question"] == "健康码变黄怎么办"


def test_claim_reply_resolve_returns_the_conversation_to_the_bot(staffed, app):
    alice, bob = login(app), login(app, "bob")
    reply = handoff(staffed)
    ticket, cid = reply.handoff.id, reply.conversation_id
    assert alice.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "hi"}).status_code == 409  # not claimed
    assert alice.post(f"/agents/api/handoffs/{ticket}/resolve", json={}).status_code == 409
    assert alice.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 200
    taken = bob.post(f"/agents/api/handoffs/{ticket}/claim", json={})
    assert taken.status_code == 409 and "alice" in taken.json["error"]["message"]
    assert bob.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "me too"}).status_code == 403
    assert alice.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "  "}).status_code == 400
    sent = alice.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "您好，我是人工客服"})
    assert sent.status_code == 201 and sent.json["turns"][0]["role"] == "agent"
    noted = bob.post(f"/agents/api/handoffs/{ticket}/notes", json={"text": "老人，耳背，说慢点"})
    assert noted.status_code == 201
    citizen = staffed.desk.turns_after(cid, 0, "api", "citizen")
    assert citizen["turns"][-1]["text"] == "您好，我是人工客服" and citizen["handoff"]["status"] == "claimed"
    assert alice.post(f"/agents/api/handoffs/{ticket}/resolve", json={}).status_code == 200
    assert staffed.desk.transcript(cid)["status"] == "resolved"
    assert alice.post(f"/agents/api/handoffs/{ticket}/resolve", json={}).status_code == 409
    after = staffed.bot.handle(Message(user_id="citizen", text="核酸检测多少钱", conversation_id=cid, channel="api"))
    assert after.intent == "faq" and after.handoff is None  # the bot answers again


def test_transfer_to_a_colleague_and_back_to_the_queue(staffed, app):
    alice, bob = login(app), login(app, "bob")
    ticket = handoff(staffed).handoff.id
    alice.post(f"/agents/api/handoffs/{ticket}/claim", json={})
    assert [c["username"] for c in alice.get("/agents/api/colleagues").json["agents"]] == ["ada", "bob"]
    bad = alice.post(f"/agents/api/handoffs/{ticket}/transfer", json={"to_agent": "erin"})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "to_agent"  # editors don't take tickets
    assert alice.post(f"/agents/api/handoffs/{ticket}/transfer", json={"to_agent": "bob"}).status_code == 200
    assert [h["id"] for h in bob.get("/agents/api/updates?wait=0").json["queue"]] == [ticket]
    assert bob.post(f"/agents/api/handoffs/{ticket}/transfer", json={}).status_code == 200
    assert alice.get("/agents/api/updates?wait=0").json["queue"][0]["status"] == "waiting"


def test_hand_back_returns_the_conversation_to_the_bot(staffed, app):
    alice = login(app)
    reply = handoff(staffed)
    alice.post(f"/agents/api/handoffs/{reply.handoff.id}/claim", json={})
    assert alice.post(f"/agents/api/handoffs/{reply.handoff.id}/hand_back", json={}).status_code == 200
    assert staffed.desk.transcript(reply.conversation_id)["status"] == "returned"
    assert staffed.desk.handoff(reply.handoff.id)["status"] == "returned"


def test_kb_search_callbacks_and_canned_replies(staffed, app):
    alice = login(app)
    results = alice.get("/agents/api/kb/search?q=健康码变黄&lang=zh").json["results"]
    assert results and results[0]["entry_id"].startswith("health_code.") and results[0]["source"]["url"]
    assert alice.get("/agents/api/kb/search?q=").status_code == 400
    app.test_client().post("/web/api/callbacks", json={"phone": "13912345678", "note": "请回电"})
    callbacks = alice.get("/agents/api/callbacks").json["callbacks"]
    assert [c["phone"] for c in callbacks] == ["139****5678"] and callbacks[0]["overdue"] is False
    assert alice.post(f"/agents/api/callbacks/{callbacks[0]['id']}/reveal", json={}).json["phone"] == "13912345678"
    assert alice.post(f"/agents/api/callbacks/{callbacks[0]['id']}/done", json={}).json["status"] == "done"
    assert alice.get("/agents/api/callbacks").json["callbacks"] == []
    admin = login(app, "ada")
    saved = admin.post("/agents/api/canned", json={"title": "问候", "zh": "您好，请问有什么可以帮您？",
                                                   "en": "Hello, how can I help?"})
    assert saved.status_code == 201
    assert [r["title"] for r in alice.get("/agents/api/canned").json["replies"]] == ["问候"]


def test_on_duty_presence(staffed, app):
    desk = staffed.desk
    assert desk.agents_on_duty() == 0
    alice = login(app)
    alice.post("/agents/api/duty", json={"on_duty": True})
    assert desk.agents_on_duty() == 1
    alice.post("/agents/api/duty", json={"on_duty": False})
    assert desk.agents_on_duty() == 0
    assert alice.post("/agents/api/duty", json={"on_duty": "yes"}).status_code == 400


def test_create_account_validates(services):
    from bot.conversations.service import ConversationError

    with pytest.raises(ConversationError, match="password"):
        services.staff.create("carol", "short")
    with pytest.raises(ConversationError, match="username"):
        services.staff.create("Carol Smith!", PASSWORD)
    with pytest.raises(ConversationError, match="role"):
        services.staff.create("carol", PASSWORD, role="overlord")
    services.staff.create("carol", PASSWORD)
    with pytest.raises(ConversationError, match="already exists"):
        services.staff.create("carol", PASSWORD)


def test_cli_manages_accounts(tmp_path, monkeypatch, capsys):
    """The real entry point once (a subprocess), then the same CLI in process: each subprocess
    costs ~2 s of imports and the account logic is the same."""
    from connectors.cli import main

    db_url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {"DATABASE_URL": db_url, "HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_AGENT_PASSWORD": PASSWORD,
           "PATH": "/usr/bin:/bin"}
    created = subprocess.run([sys.executable, "-m", "connectors.cli", "agent", "create", "dora", "--role",
                              "supervisor"], env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def cli(*args):
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    duplicate = cli("agent", "create", "dora")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr
    assert cli("agent", "disable", "dora").returncode == 0
    listed = cli("agent", "list")
    assert "dora" in listed.stdout and "supervisor" in listed.stdout and "disabled" in listed.stdout
    staff = StaffDirectory(Database(db_url))
    assert staff.authenticate("dora", PASSWORD) is None
    assert cli("agent", "enable", "dora").returncode == 0
    assert staff.authenticate("dora", PASSWORD).role == "supervisor"


# -- against a real server -------------------------------------------------------------------

@pytest.fixture(scope="module")
def desk_server(tmp_path_factory, session_dir, engine):
    """A real server over its own database; accounts created in that database first."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('desk') / 'desk.db'}"
    db = Database(db_url)
    db.upgrade()
    staff = StaffDirectory(db)
    for i in range(6):
        staff.create(f"racer{i}", PASSWORD)
    db.dispose()
    server = start_server(session_dir / "var", {"DATABASE_URL": db_url, "HOTLINE_OPEN_READ_API": "1"})
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
            reply = citizen.post("/web/api/messages", json={"user_id": f"race-citizen-{round_:08d}",
                                                            "text": "/ask_human"}).json()
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
