"""Privacy (issue 8, row 15): ID, phone and bank-card numbers were stored and served verbatim,
and nothing was ever deleted. Now staff see them masked, the original is kept only
encrypted, ``purge`` applies the retention period and ``forget`` deletes one citizen."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bot.conversations.privacy import mask
from bot.conversations.retention import purge
from bot.models import AuditEntry, CallbackTicket, Conversation, Handoff, Turn
from connectors.app import create_app
from tests.conftest import TEST_KEY

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ID_NUMBER = "110101199003077777"
MOBILE = "13812345678"
CARD = "6222 0212 3456 7890 123"
SECRET_TEXT = f"我的身份证{ID_NUMBER}，手机{MOBILE}，银行卡{CARD}，健康码为什么变黄了"


@pytest.mark.parametrize("raw, shown", [
    (ID_NUMBER, "110*************77"),
    ("11010119900307777X", "110*************7X"),
    (MOBILE, "138****5678"),
    ("+86 138 1234 5678", "138****5678"),
    ("021-62345678", "021-****5678"),
    (CARD, "6222 **** **** 0123"),
    ("E12345678", "E*****678"),
    ("订单号 2026120112", "订单号 2026120112"),  # ten digits: not a personal number, left alone
])
def test_mask_recognises_chinese_personal_numbers(raw, shown):
    assert mask(raw) == shown


def test_staff_see_numbers_masked_and_the_original_is_only_stored_encrypted(services, tmp_path):
    services.settings = services.settings.model_copy(update={"open_read_api": True})
    client = create_app(services).test_client()
    assert client.post("/api/v1/messages", json={"user_id": "privacy-citizen", "text": SECRET_TEXT}).status_code == 200
    reply = client.post("/api/v1/messages", json={"user_id": "privacy-citizen", "text": "转人工"})
    assert reply.status_code == 200 and reply.json["handoff"]
    transcript = client.get(f"/api/v1/conversations/{reply.json['conversation_id']}").get_data(as_text=True)
    ticket = client.get(f"/api/v1/handoffs/{reply.json['handoff']['id']}").get_data(as_text=True)
    for shown in (transcript, ticket):
        assert "110*************77" in shown and "138****5678" in shown and "6222 **** **** 0123" in shown
        for raw in (ID_NUMBER, MOBILE, "6222 0212 3456 7890 123", "privacy-citizen"):
            assert raw not in shown
    with services.db.read() as session:
        stored = session.execute(select(Turn.text, Turn.text_enc).where(Turn.role == "user")).first()
    assert ID_NUMBER not in stored.text and services.vault.decrypt(stored.text_enc) == SECRET_TEXT
    services.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("fresh.db"))
    assert on_disk, "the SQLite files exist"
    for raw in (ID_NUMBER, MOBILE):
        assert raw.encode() not in on_disk, "a personal number in clear in the database file"


def _count(services, model, *where) -> int:
    with services.db.read() as session:
        return session.execute(select(func.count()).select_from(model).where(*where)).scalar()


def test_purge_deletes_what_is_older_than_the_retention_period(services, clock):
    client = create_app(services).test_client()
    old = client.post("/api/v1/messages", json={"user_id": "old-citizen", "text": "转人工"}).json
    client.post("/web/api/callbacks", json={"phone": "13912345678", "conversation_id": None})
    clock.advance(days=60)
    recent = client.post("/api/v1/messages", json={"user_id": "recent-citizen", "text": "核酸多少钱"}).json
    clock.advance(days=31)  # old: 91 days without activity; recent: 31
    counts = purge(services.db, 90, clock=clock)
    assert counts["conversations"] == 1 and counts["callbacks"] == 1
    assert _count(services, Conversation, Conversation.id == old["conversation_id"]) == 0
    assert _count(services, Turn, Turn.conversation_id == old["conversation_id"]) == 0
    assert _count(services, Handoff, Handoff.conversation_id == old["conversation_id"]) == 0
    assert _count(services, CallbackTicket) == 0
    assert _count(services, Turn, Turn.conversation_id == recent["conversation_id"]) == 2
    assert _count(services, AuditEntry, AuditEntry.action == "data.purged") == 1
    again = client.post("/api/v1/messages", json={"user_id": "old-citizen", "text": "你好"})
    assert again.status_code == 200 and again.json["conversation_id"] != old["conversation_id"]


def test_forget_command_deletes_one_citizen_and_their_callback_requests(settings, engine, clock, tmp_path):
    from tests.conftest import build_services

    url = f"sqlite:///{tmp_path / 'forget.db'}"
    services = build_services(settings, engine, url, clock)
    client = create_app(services).test_client()
    gone = client.post("/api/v1/messages", json={"user_id": "forget-me", "text": "转人工"}).json
    client.post("/api/v1/messages", json={"user_id": "forget-me", "text": "还在吗", "new_conversation": True})
    kept = client.post("/api/v1/messages", json={"user_id": "keep-me", "text": "核酸多少钱"}).json
    assert client.post("/web/api/callbacks", json={"phone": "13712345678"}).status_code == 201
    assert client.post("/web/api/callbacks", json={"phone": "13612345678"}).status_code == 201
    services.close()
    env = {"DATABASE_URL": url, "HOTLINE_DATA_DIR": str(tmp_path), "HOTLINE_PRIVACY__KEY": TEST_KEY,
           "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run([sys.executable, "-m", "connectors.cli", "forget", "--user", "api:forget-me",
                           "--phone", "137 1234 5678"], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "conversations 2" in done.stdout and "callbacks 1" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "connectors.cli", "forget", "--user", "nocolon"], env=env,
                         cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--user must look like" in bad.stderr
    services = build_services(settings, engine, url, clock)
    try:
        assert _count(services, Conversation, Conversation.user_id == "forget-me") == 0
        assert _count(services, Turn, Turn.conversation_id == gone["conversation_id"]) == 0
        assert _count(services, Turn, Turn.conversation_id == kept["conversation_id"]) == 2
        assert _count(services, CallbackTicket) == 1  # the other number's request stays
        assert _count(services, AuditEntry, AuditEntry.action == "data.forgotten") == 1
    finally:
        services.close()


def test_purge_and_forget_reach_wechat_users_and_their_waiting_messages(services, clock):
    """An openid stayed in clear for ever: purge never deleted the WeChat user's row, nor a reply held for a
    citizen whose 48 h window closed (held until they write again, maybe never: its payload holds the openid and
    the agent's text); forget deleted neither the row's messages still waiting to go out."""
    import datetime as dt

    from sqlalchemy import insert

    from bot.conversations.retention import forget
    from bot.models import OutboxDelivery, WeChatUser

    old_citizen, citizen = "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", "o6_bmjrPTlm6_2sgVt7hMZOPfL2N"
    old = clock() - dt.timedelta(days=200)
    with services.db.transaction() as session:
        for openid, when in ((old_citizen, old), (citizen, clock())):
            session.add(WeChatUser(account="main", openid=openid, last_inbound_at=when, sent_since_inbound=0,
                                   last_options=[]))
            session.execute(insert(OutboxDelivery).values(
                consumer="wechat", key=f"wx-turn:{openid}:0", ordering_key=f"wx:main:{openid}",
                payload={"account": "main", "openid": openid, "content": "您好，我是客服小王"},
                status="held", attempts=1, next_attempt_at=when, created_at=when))
    purge(services.db, 90, clock=clock)
    assert _count(services, WeChatUser, WeChatUser.openid == old_citizen) == 0
    assert _count(services, OutboxDelivery, OutboxDelivery.ordering_key.contains(old_citizen)) == 0
    assert _count(services, WeChatUser, WeChatUser.openid == citizen) == 1  # heard from recently: kept
    assert forget(services.db, services.vault, "wechat", f"main:{citizen}")["deliveries"] == 1
    assert _count(services, OutboxDelivery) == 0 and _count(services, WeChatUser) == 0


def test_a_retention_of_zero_or_less_days_is_refused(services, capsys):
    """``hotline-bot purge --days -5`` deleted every conversation ("older than five days from now")."""
    from connectors.cli import main

    client = create_app(services).test_client()
    client.post("/api/v1/messages", json={"user_id": "kept-citizen", "text": "你好"})
    with pytest.raises(ValueError, match="retention_days"):
        purge(services.db, -5)
    for days in ("-5", "0", "abc"):
        with pytest.raises(SystemExit) as refused:
            main(["purge", "--days", days])
        assert refused.value.code == 2 and "--days" in capsys.readouterr().err
    assert _count(services, Conversation) == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_database_error_does_not_quote_what_the_citizen_wrote(backend, tmp_path, request):
    """A failed statement's message is logged (and printed on a fault): with SQLAlchemy's default it quoted the
    statement's parameters, a citizen's words and phone number among them. (PostgreSQL's own DETAIL still
    names a conflicting key's value: here the id, as for our tables' keys.)"""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from bot.db import Database

    url = f"sqlite:///{tmp_path / 'p.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_url")
    db = Database(url)
    try:
        with db.transaction() as session:
            session.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"))
        secret = "我叫张三，电话13812345678"
        with db.transaction() as session:
            session.execute(text("INSERT INTO notes (id, body) VALUES (1, :body)"), {"body": secret})
        with pytest.raises(IntegrityError) as failure:
            with db.transaction() as session:
                session.execute(text("INSERT INTO notes (id, body) VALUES (1, :body)"), {"body": secret})
        message = str(failure.value)
        assert "INSERT INTO notes" in message and "hidden" in message  # the statement, not its values
        assert "13812345678" not in message and "张三" not in message
    finally:
        db.engine.dispose()
