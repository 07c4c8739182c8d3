"""The widget's HTTP API (/web/api) in process: turn ids, sources, feedback, ratings,
callbacks, identity, bad input."""
from __future__ import annotations

import time

import pytest

from connectors.web import identity_signature
from tests.test_engine import ask

CITIZEN = "web-citizen-0000000001"


def say(client, text, conversation_id=None, user_id=CITIZEN, **extra):
    response = client.post("/web/api/messages", json={"user_id": user_id, "text": text,
                                                      "conversation_id": conversation_id, **extra})
    assert response.status_code == 200, response.json
    return response.json


def turns(client, cid, user_id=CITIZEN, **query):
    params = "&".join(f"{k}={v}" for k, v in ({"user_id": user_id} | query).items())
    return client.get(f"/web/api/conversations/{cid}/turns?{params}")


def test_answers_carry_turn_ids_sources_and_dates(client):
    zh = say(client, "核酸检测多少钱")
    user, answer = zh["turns"]
    assert user["role"] == "user" and answer["role"] == "bot"
    assert answer["id"] > user["id"] and zh["last_id"] == answer["id"]
    assert answer["payload"]["source"]["url"].startswith("http")
    assert answer["payload"]["updated"]
    en = say(client, "How much is a PCR test?", zh["conversation_id"], after=zh["last_id"])
    assert [t["id"] for t in en["turns"]] == [zh["last_id"] + 1, zh["last_id"] + 2]
    assert en["language"] == "en" and en["turns"][1]["payload"]["source"]


def test_button_payloads_show_their_title_and_follow_the_widget_language(client):
    reply = say(client, '/faq{"entry": "testing.pcr_fee"}', language="en")
    user, answer = reply["turns"]
    assert user["text"].startswith("/faq") and user["display"] == "Is PCR testing free?"
    assert answer["entry_id"] == "testing.pcr_fee" and reply["language"] == "en"
    human = say(client, "/ask_human", reply["conversation_id"], language="zh", after=reply["last_id"])
    assert human["turns"][0]["display"] == "转人工"
    assert human["status"] == "waiting" and human["handoff"]["queue_position"] == 1
    # no agent on duty and no handle-time history: no promise of a wait time
    assert human["handoff"]["estimated_wait_seconds"] is None and human["agents_on_duty"] == 0


def test_transcript_reloads_and_is_private_to_its_user(client):
    first = say(client, "健康码变黄怎么办")
    cid = first["conversation_id"]
    again = turns(client, cid, after=0).json
    assert [t["id"] for t in again["turns"]] == [t["id"] for t in first["turns"]]
    assert turns(client, cid, user_id="web-someone-else-0000").status_code == 404
    stolen = client.post("/web/api/messages", json={"user_id": "web-someone-else-0000", "text": "hi",
                                                    "conversation_id": cid})
    assert stolen.status_code == 403 and stolen.json["error"]["field"] == "conversation_id"


def test_other_channels_conversations_cannot_be_read_through_the_widget(services, client):
    """Regression: with the API token set, Rasa and WeChat transcripts were still readable through
    /web/api/conversations/rasa-<sender>/turns?user_id=<sender> (ids built from public identifiers)."""
    rasa = ask(services.bot, "核酸多少钱 我的手机13812345678", user="rasa-sender-000000001", channel="rasa")
    wechat = ask(services.bot, "核酸多少钱", user="main:o6_bmjrPTlm6_2sgVt7hMZOPfL2M", channel="wechat")
    for reply, user in ((rasa, "rasa-sender-000000001"), (wechat, "main:o6_bmjrPTlm6_2sgVt7hMZOPfL2M")):
        for guess in (user, "a:" + user, reply.conversation_id):
            assert turns(client, reply.conversation_id, user_id=guess).status_code in (400, 404)
    assert len(rasa.conversation_id) == 32 and "rasa" not in rasa.conversation_id


def test_long_poll_waits_then_returns_nothing_new(client):
    first = say(client, "/ask_human")
    cid, last = first["conversation_id"], first["last_id"]
    state = turns(client, cid, after=last).json["state"]
    started = time.monotonic()
    polled = turns(client, cid, after=last, wait=1, state=state).json
    assert time.monotonic() - started >= 0.9
    assert polled["turns"] == [] and polled["last_id"] == last
    changed = turns(client, cid, after=last, wait=5, state="stale")
    assert changed.status_code == 200  # a changed state answers at once


@pytest.mark.parametrize("wait", ["nan", "inf", "-1", "NaN", "1e999"])
def test_long_poll_rejects_non_finite_waits(client, wait):
    """Regression: ``wait=nan`` passed the ``< 0`` check and the poll loop never ended (pinned a thread)."""
    cid = say(client, "健康码变黄怎么办")["conversation_id"]
    started = time.monotonic()
    response = turns(client, cid, after=0, wait=wait)
    assert response.status_code == 400 and response.json["error"]["field"] == "wait"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("after", ["99999999999999999999999", "-3", "1.5", "٣"])
def test_turn_cursor_must_be_a_sane_integer(client, after):
    cid = say(client, "健康码变黄怎么办")["conversation_id"]
    response = turns(client, cid, after=after)
    assert response.status_code == 400 and response.json["error"]["field"] == "after"


def test_feedback_is_stored_changeable_and_asks_why(client):
    reply = say(client, "核酸检测多少钱")
    answer = reply["turns"][1]
    body = {"conversation_id": reply["conversation_id"], "user_id": CITIZEN, "turn_id": answer["id"]}
    down = client.post("/web/api/feedback", json=body | {"value": "down", "reason": "outdated"})
    assert down.status_code == 200 and down.json["reason"] == "outdated"
    assert client.post("/web/api/feedback", json=body | {"value": "up"}).json["value"] == "up"
    assert turns(client, reply["conversation_id"]).json["turns"][1]["feedback"] == "up"
    user_turn = body | {"turn_id": reply["turns"][0]["id"], "value": "up"}
    assert client.post("/web/api/feedback", json=user_turn).status_code == 400
    bad_reason = client.post("/web/api/feedback", json=body | {"value": "up", "reason": "wrong"})
    assert bad_reason.status_code == 400 and bad_reason.json["error"]["field"] == "reason"


def test_rating_after_an_agent_resolved(services, client):
    reply = say(client, "/ask_human")
    alice = services.staff.create("alice", "password123", "Alice")
    services.desk.claim(reply["handoff"]["id"], alice)
    body = {"conversation_id": reply["conversation_id"], "user_id": CITIZEN, "handoff_id": reply["handoff"]["id"],
            "score": 5, "comment": "很耐心"}
    assert client.post("/web/api/ratings", json=body).status_code == 409  # not resolved yet
    services.desk.resolve(reply["handoff"]["id"], alice)
    state = turns(client, reply["conversation_id"]).json
    assert state["rating_due"] == {"handoff_id": reply["handoff"]["id"], "agent": "Alice"}
    assert client.post("/web/api/ratings", json=body).status_code == 201
    assert client.post("/web/api/ratings", json=body).status_code == 409
    assert turns(client, reply["conversation_id"]).json["rating_due"] is None
    assert client.post("/web/api/ratings", json=body | {"score": 6}).json["error"]["field"] == "score"


@pytest.mark.parametrize("phone, shown", [("13812345678", "138****5678"), ("+86 138-1234-5678", "138****5678"),
                                          ("010-12345678", "010-****5678"), ("0755 8765432", "0755-****5432")])
def test_callback_ticket_keeps_the_number_masked(services, client, phone, shown):
    response = client.post("/web/api/callbacks", json={"phone": phone, "name": "王阿姨", "note": "想问疫苗"})
    assert response.status_code == 201
    assert response.json["phone"] == shown and response.json["status"] == "open"
    agent = services.staff.create("caller", "password123")
    number = services.desk.reveal_phone(response.json["id"], agent)
    assert number.replace("-", "").endswith(shown[-4:]) and "*" not in number


def test_callback_is_linked_to_the_conversation(services, client):
    reply = say(client, "/ask_human")
    response = client.post("/web/api/callbacks", json={"phone": "13812345678", "user_id": CITIZEN,
                                                       "conversation_id": reply["conversation_id"]})
    assert response.status_code == 201
    state = turns(client, reply["conversation_id"]).json
    assert state["callback"] == {"id": response.json["id"], "phone": "138****5678", "status": "open"}
    agent = services.staff.create("linker", "password123")
    queue = services.desk.queue(agent)
    assert queue[0]["callback"]["id"] == response.json["id"]
    assert services.desk.handoff(reply["handoff"]["id"])["callbacks"][0]["phone"] == "138****5678"


@pytest.mark.parametrize("body, field, words", [
    ({"phone": "12345"}, "phone", "mainland mobile"),
    ({"phone": "23812345678"}, "phone", "mainland mobile"),
    ({"phone": "1381234567"}, "phone", "mainland mobile"),
    ({}, "phone", "Field required"),
    ({"phone": 13812345678}, "phone", "valid string"),
])
def test_callback_bad_phone_is_a_clear_400(client, body, field, words):
    response = client.post("/web/api/callbacks", json=body)
    assert response.status_code == 400
    assert response.json["error"]["field"] == field and words in response.json["error"]["message"]


@pytest.mark.parametrize("path, raw, field", [
    ("/web/api/messages", b"{not json", None),
    ("/web/api/messages", b"[1, 2]", None),
    ("/web/api/messages", b'{"user_id": "web-citizen-0000000001", "text": "   "}', "text"),
    ("/web/api/messages", b'{"user_id": "web-citizen-0000000001"}', "text"),
    ("/web/api/messages", b'{"user_id": "short", "text": "hi"}', "user_id"),
    ("/web/api/messages", b'{"user_id": "web-citizen-0000000001", "text": "hi", "language": "fr"}', "language"),
    ("/web/api/messages", b'{"user_id": "web-citizen-0000000001", "text": "hi", "after": -1}', "after"),
    ("/web/api/messages", b'{"user_id": "web-citizen-0000000001", "text": "hi", "after": 99999999999999999999}',
     "after"),
    ("/web/api/messages", b'{"user_id": "web-citizen-0000000001", "text": "' + b"x" * 2001 + b'", "language": "zh"}',
     "text"),
    ("/web/api/feedback", b'{"conversation_id": "c", "user_id": "web-citizen-0000000001", "turn_id": 1, '
                          b'"value": "meh"}', "value"),
])
def test_bad_input_is_a_clear_400(client, path, raw, field):
    response = client.post(path, data=raw, content_type="application/json")
    assert response.status_code == 400
    error = response.json["error"]
    assert error["message"] and error.get("field") == field


def test_identified_users_need_the_host_sites_signature(settings, engine, clock, tmp_path):
    from connectors.app import create_app
    from tests.conftest import build_services

    svc = build_services(settings, engine, f"sqlite:///{tmp_path / 'id.db'}", clock,
                         web=settings.web.model_copy(update={"identify_secret": "host-site-secret"}))
    try:
        client = create_app(svc).test_client()
        good = {"user_id": "1234567", "signature": identity_signature("host-site-secret", "1234567")}
        reply = say(client, "核酸多少钱", user_id=CITIZEN, identity=good)
        later = say(client, "谢谢", user_id="another-device-00000001", identity=good)
        assert later["conversation_id"] == reply["conversation_id"], "the same logged-in user on another device"
        forged = client.post("/web/api/messages", json={"user_id": CITIZEN, "text": "hi",
                                                        "identity": {"user_id": "1234567", "signature": "0" * 64}})
        assert forged.status_code == 403 and forged.json["error"]["field"] == "identity.signature"
        # non-ASCII signatures: a clear 403, not a 500 from compare_digest (it refuses non-ASCII str)
        odd = client.post("/web/api/messages", json={"user_id": CITIZEN, "text": "hi",
                                                     "identity": {"user_id": "1234567", "signature": "é" * 64}})
        assert odd.status_code == 403 and odd.json["error"]["field"] == "identity.signature"
        odd_query = client.get(f"/web/api/conversations/{reply['conversation_id']}/turns?uid=1234567&sig=" + "%C3%A9" * 64)
        assert odd_query.status_code == 403
        query = f"uid=1234567&sig={good['signature']}"
        assert client.get(f"/web/api/conversations/{reply['conversation_id']}/turns?{query}").status_code == 200
        assert turns(client, reply["conversation_id"]).status_code == 404  # not the anonymous widget id
    finally:
        svc.close()


def test_topics_menu_lists_kb_entries_and_a_human_option(client):
    topics = client.get("/web/api/topics?lang=zh").json["topics"]
    assert [t["title"] for t in topics] == ["核酸检测", "健康码", "隔离政策", "疫苗接种", "出行政策", "联系人工"]
    assert topics[0]["entries"] and topics[0]["entries"][0]["payload"].startswith("/faq")
    assert topics[-1]["payload"] == "/ask_human"


def test_widget_assets_demo_page_and_cors(client):
    page = client.get("/")
    assert page.status_code == 200 and b"widget.js" in page.data
    script = client.get("/web/static/widget.js")
    assert script.status_code == 200 and b"data-server" in script.data
    assert client.get("/web/static/widget.css").status_code == 200
    preflight = client.options("/web/api/messages", headers={"Origin": "https://example.org",
                                                             "Access-Control-Request-Method": "POST"})
    assert preflight.status_code in (200, 204) and preflight.headers["Access-Control-Allow-Origin"] == "*"


def test_a_retried_new_conversation_message_is_answered_once(client, services):
    """The widget's first message after 新对话 carries new_conversation; its answer lost, the widget resends the
    same outbox item (same client id, still new_conversation). That retry started another conversation and stored
    the message twice (closing the first one's ticket, if it had opened one, as abandoned)."""
    from sqlalchemy import func, select

    from bot.models import Turn

    assert client.post("/web/api/messages", json={"user_id": CITIZEN, "text": "核酸检测在哪里做"}).status_code == 200
    body = {"user_id": CITIZEN, "text": "疫苗接种需要预约吗", "new_conversation": True, "client_message_id": "w-fresh-1"}
    first = client.post("/web/api/messages", json=body, headers={"Idempotency-Key": "w-fresh-1"}).get_json()
    again = client.post("/web/api/messages", json=body, headers={"Idempotency-Key": "w-fresh-1"}).get_json()
    assert again["conversation_id"] == first["conversation_id"] and again["reply"]["replayed"] is True
    assert again["reply"]["replies"] == first["reply"]["replies"]
    with services.db.read() as session:
        stored = session.execute(select(func.count()).select_from(Turn).where(Turn.client_message_id == "w-fresh-1"))
        assert stored.scalar() == 1
