"""Two server processes sharing PostgreSQL and Redis, as in a multi-host deployment.

A citizen waits on server B; an agent answers on server A; Redis pub/sub wakes
B's long poll at once (well under its 5 s safety poll).
"""
import threading
import time

import pytest

from bot.conversations.staff import StaffDirectory
from tests.conftest import REDIS_URL, open_database, start_server, stop_server

PASSWORD = "multi host 42"
PRIVACY_KEY = "bXVsdGktaG9zdC1wcml2YWN5LWtleS1mb3ItdGVzdCE="


@pytest.fixture()
def two_servers(tmp_path, postgres_url, redis_available):
    db = open_database(postgres_url)
    db.upgrade()
    StaffDirectory(db).create("multi", PASSWORD)
    db.dispose()
    env = {"DATABASE_URL": postgres_url, "HOTLINE_REDIS_URL": REDIS_URL, "HOTLINE_PRIVACY__KEY": PRIVACY_KEY}
    a = start_server(tmp_path / "a", env)
    b = start_server(tmp_path / "b", env)
    yield a, b
    stop_server(a)
    stop_server(b)


def test_agent_reply_on_one_host_wakes_citizen_on_another(two_servers):
    a, b = two_servers
    with a.client() as agent, b.client() as citizen:
        response = citizen.post("/web/api/messages", json={"user_id": "mp-citizen-000000001", "text": "/ask_human"})
        assert response.status_code == 200, response.text
        asked = response.json()
        conversation = asked["conversation_id"]
        ticket = asked["handoff"]["id"]
        login = agent.post("/agents/api/login", json={"username": "multi", "password": PASSWORD}).json()
        agent.headers["X-CSRF-Token"] = login["csrf_token"]
        assert agent.post(f"/agents/api/handoffs/{ticket}/claim", json={}).status_code == 200
        state = citizen.get(f"/web/api/conversations/{conversation}/turns",
                            params={"user_id": "mp-citizen-000000001"}).json()
        result = {}

        def wait_for_reply():
            response = citizen.get(f"/web/api/conversations/{conversation}/turns",
                                   params={"user_id": "mp-citizen-000000001", "after": state["last_id"], "wait": 15,
                                           "state": state["state"]})
            result["turns"] = response.json()["turns"]
            result["at"] = time.monotonic()

        poll = threading.Thread(target=wait_for_reply)
        poll.start()
        time.sleep(1.0)  # the poll is parked on server B
        sent_at = time.monotonic()
        reply = agent.post(f"/agents/api/handoffs/{ticket}/reply", json={"text": "您好，我是人工客服小王。"})
        assert reply.status_code == 201, reply.text
        poll.join(20)
        assert [t["text"] for t in result["turns"]] == ["您好，我是人工客服小王。"]
        assert result["at"] - sent_at < 2.5, "woken by Redis, not by the 5 s safety poll"
