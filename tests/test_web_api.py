"""The widget's HTTP API (/web/api) in process: turn ids, sources, feedback, callbacks, bad input."""
from __future__ import annotations

import time

import pytest

from connectors.app import create_app


@pytest.fixture()
def app(fresh_bot, monkeypatch):
    monkeypatch.delenv("HOTLINE_WEBHOOK_URL", raising=False)
    return create_app(fresh_bot.settings, bot=fresh_bot)


@pytest.fixture()
def client(app):
    return app.test_client()


def say(client, text, conversation_id=None, user_id="citizen-1", **extra):
    response = client.post("/web/api/messages", json={"user_id": user_id, "text": text,
                                                      "conversation_id": conversation_id, **extra})
    assert response.status_code == 200, response.json
    return response.json


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
    assert human["status"] == "handoff"
    assert human["handoff"]["queue_position"] == 1 and human["handoff"]["estimated_wait_seconds"] > 0


def test_transcript_reloads_and_is_private_to_its_user(client):
    first = say(client, "健康码变黄怎么办")
    cid = first["conversation_id"]
    again = client.get(f"/web/api/conversations/{cid}/turns?user_id=citizen-1&after=0").json
    assert [t["id"] for t in again["turns"]] == [t["id"] for t in first["turns"]]
    assert client.get(f"/web/api/conversations/{cid}/turns?user_id=someone-else").status_code == 404
    stolen = client.post("/web/api/messages", json={"user_id": "someone-else", "text": "hi", "conversation_id": cid})
    assert stolen.status_code == 403


def test_long_poll_waits_then_returns_nothing_new(client):
    first = say(client, "/ask_human")
    cid, last = first["conversation_id"], first["last_id"]
    state = client.get(f"/web/api/conversations/{cid}/turns?user_id=citizen-1&after={last}").json["state"]
    started = time.monotonic()
    polled = client.get(f"/web/api/conversations/{cid}/turns?user_id=citizen-1&after={last}&wait=1&state={state}").json
    assert time.monotonic() - started >= 0.9
    assert polled["turns"] == [] and polled["last_id"] == last
    changed = client.get(f"/web/api/conversations/{cid}/turns?user_id=citizen-1&after={last}&wait=5&state=stale")
    assert changed.status_code == 200  # a changed state answers at once


def test_feedback_is_stored_and_changeable(app, client):
    reply = say(client, "核酸检测多少钱")
    answer = reply["turns"][1]
    body = {"conversation_id": reply["conversation_id"], "user_id": "citizen-1", "turn_id": answer["id"]}
    assert client.post("/web/api/feedback", json=body | {"value": "down"}).status_code == 200
    assert client.post("/web/api/feedback", json=body | {"value": "up"}).json["value"] == "up"
    turns = client.get(f"/web/api/conversations/{reply['conversation_id']}/turns?user_id=citizen-1").json["turns"]
    assert turns[1]["feedback"] == "up"
    user_turn = body | {"turn_id": reply["turns"][0]["id"], "value": "up"}
    assert client.post("/web/api/feedback", json=user_turn).status_code == 400


@pytest.mark.parametrize("phone, stored", [("13812345678", "13812345678"), ("+86 138-1234-5678", "13812345678"),
                                           ("010-12345678", "010-12345678"), ("0755 8765432", "0755-8765432")])
def test_callback_ticket_with_valid_phone(client, phone, stored):
    response = client.post("/web/api/callbacks", json={"phone": phone, "name": "王阿姨", "note": "想问疫苗"})
    assert response.status_code == 201
    assert response.json["phone"] == stored and response.json["status"] == "open"


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
    ("/web/api/messages", b'{"user_id": "u", "text": "   "}', "text"),
    ("/web/api/messages", b'{"user_id": "u"}', "text"),
    ("/web/api/messages", b'{"user_id": "u", "text": "hi", "language": "fr"}', "language"),
    ("/web/api/messages", b'{"user_id": "u", "text": "hi", "after": -1}', "after"),
    ("/web/api/feedback", b'{"conversation_id": "c", "user_id": "u", "turn_id": 1, "value": "meh"}', "value"),
])
def test_bad_input_is_a_clear_400(client, path, raw, field):
    response = client.post(path, data=raw, content_type="application/json")
    assert response.status_code == 400
    error = response.json["error"]
    assert error["message"] and error.get("field") == field


def test_topics_menu_lists_kb_entries_and_a_human_option(client):
    topics = client.get("/web/api/topics?lang=zh").json["topics"]
    assert [t["title"] for t in topics] == ["核酸检测", "健康码", "隔离政策", "联系人工"]
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


@pytest.mark.parametrize("wait", ["nan", "inf", "-1", "NaN", "1e999"])
def test_long_poll_rejects_non_finite_waits(client, wait):
    """Regression: ``wait=nan`` passed the ``< 0`` check and the poll loop never ended (pinned a thread)."""
    cid = say(client, "健康码变黄怎么办")["conversation_id"]
    started = time.monotonic()
    response = client.get(f"/web/api/conversations/{cid}/turns?user_id=citizen-1&after=0&wait={wait}")
    assert response.status_code == 400 and response.json["error"]["field"] == "wait"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("after", ["99999999999999999999999", "-3", "1.5", "٣"])
def test_turn_cursor_must_be_a_sane_integer(client, after):
    cid = say(client, "健康码变黄怎么办")["conversation_id"]
    response = client.get(f"/web/api/conversations/{cid}/turns?user_id=citizen-1&after={after}")
    assert response.status_code == 400 and response.json["error"]["field"] == "after"
