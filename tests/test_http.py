"""The HTTP API against a real ``hotline-bot serve`` process (gunicorn + uvicorn workers) over TCP."""
import pytest



@pytest.fixture(scope="module")
def client(live_server):
    with live_server.client() as client:
        yield client


def test_healthz(client):
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["database"] is True and body["entries"] >= 120


def test_chat_in_chinese_and_english(client):
    zh = client.post("/api/v1/messages", json={"user_id": "http-1", "text": "哪里可以做核酸"}).json()
    assert zh["intent"] == "faq" and zh["language"] == "zh"
    assert zh["replies"][0]["source"]["url"].startswith("http") and zh["replies"][0]["updated"]
    en = client.post("/api/v1/messages", json={"user_id": "http-1", "conversation_id": zh["conversation_id"],
                                               "text": "My health code is red, why?"}).json()
    assert en["conversation_id"] == zh["conversation_id"] and en["language"] == "en"
    assert en["entry_id"].startswith("health_code.")
    transcript = client.get(f"/api/v1/conversations/{zh['conversation_id']}").json()
    assert [t["role"] for t in transcript["turns"]] == ["user", "bot", "user", "bot"]
    assert transcript["turns"][3]["entry_id"] == en["entry_id"]


def test_handoff_readable_over_api(client):
    reply = client.post("/api/v1/messages", json={"user_id": "http-2", "text": "talk to a real person"}).json()
    assert reply["handoff"]["reason"] == "user_request"
    listed = client.get("/api/v1/handoffs", params={"status": "waiting"}).json()["handoffs"]
    assert reply["handoff"]["id"] in [h["id"] for h in listed]
    ticket = client.get(f"/api/v1/handoffs/{reply['handoff']['id']}").json()
    assert ticket["transcript"][0]["text"] == "talk to a real person" and ticket["kb_version"]
    assert client.get("/api/v1/handoffs/999999").status_code == 404
    assert client.get("/api/v1/handoffs", params={"status": "bogus"}).status_code == 400


@pytest.mark.parametrize("body, field", [
    (b"{not json", None),
    (b"[1, 2]", None),
    (b'{"text": "hi"}', "user_id"),
    (b'{"user_id": "u"}', "text"),
    (b'{"user_id": "u", "text": ""}', "text"),
    (b'{"user_id": "u", "text": "   "}', "text"),
    (b'{"user_id": 5, "text": "hi"}', "user_id"),
    (b'{"user_id": "u", "text": ["hi"]}', "text"),
    (b'{"user_id": "u", "text": "hi", "conversation_id": 7}', "conversation_id"),
])
def test_bad_input_gets_clear_400(client, body, field):
    response = client.post("/api/v1/messages", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"]
    if field:
        assert error["field"] == field and field in error["message"]


def test_too_long_and_oversized_bodies(client):
    long_text = client.post("/api/v1/messages", json={"user_id": "u", "text": "核" * 2001})
    assert long_text.status_code == 400 and "2000" in long_text.json()["error"]["message"]
    huge = client.post("/api/v1/messages", content=b'{"user_id":"u","text":"' + b"a" * 200_000 + b'"}',
                       headers={"Content-Type": "application/json"})
    assert huge.status_code == 413 and "too large" in huge.json()["error"]["message"]
    # and the server keeps serving, with nothing half-written
    assert client.get("/healthz").status_code == 200
    ok = client.post("/api/v1/messages", json={"user_id": "u-after", "text": "你好"})
    assert ok.status_code == 200 and ok.json()["intent"] == "greet"


def test_rasa_rest_channel(client):
    assert client.get("/webhooks/rest/").json() == {"status": "ok"}
    out = client.post("/webhooks/rest/webhook", json={"sender": "rasa-user", "message": "核酸检测结果怎么查"}).json()
    assert out[0]["recipient_id"] == "rasa-user"
    assert "来源" in out[0]["text"]
    amb = client.post("/webhooks/rest/webhook", json={"sender": "rasa-user2", "message": "核酸"}).json()
    assert all(set(m) <= {"recipient_id", "text", "buttons"} for m in amb)
    bad = client.post("/webhooks/rest/webhook", json={"sender": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "message"


def test_readiness_and_security_headers(client):
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] is True
    page = client.get("/agents/")
    assert page.headers["x-frame-options"] == "DENY" and "frame-ancestors" in page.headers["content-security-policy"]


def test_staff_read_api_is_closed_by_default(services):
    """Regression: by default anyone listed all tickets (sequential ids) and read transcripts."""
    from connectors.app import create_app

    services.settings = services.settings.model_copy(update={"api_token": "s3cret-token"})
    client = create_app(services).test_client()
    reply = client.post("/api/v1/messages", json={"user_id": "tok", "text": "转人工"})
    assert reply.status_code == 200  # citizens need no token
    ticket, conversation = reply.json["handoff"]["id"], reply.json["conversation_id"]
    services.staff.create("reader", "password123")
    staff = create_app(services).test_client()
    assert staff.post("/agents/api/login", json={"username": "reader", "password": "password123"}).status_code == 200
    for path in ("/api/v1/handoffs", f"/api/v1/handoffs/{ticket}", f"/api/v1/conversations/{conversation}"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert staff.get(path).status_code == 200  # a staff session works too


def test_the_public_api_owns_neither_channels_nor_conversation_ids(app):
    """Regression: POST /api/v1/messages let callers choose conversation_id and channel: pre-creating
    rasa-<sender> / wx-oa-<openid> locked those users out, channel=wechat sent agent replies to any openid."""
    client = app.test_client()
    foreign = client.post("/api/v1/messages", json={"user_id": "o6_victim", "text": "hi", "channel": "wechat"})
    assert foreign.status_code == 400 and foreign.json["error"]["field"] == "channel"
    chosen = client.post("/api/v1/messages", json={"user_id": "attacker", "text": "hi",
                                                   "conversation_id": "rasa-victim"})
    assert chosen.status_code == 400 and chosen.json["error"]["field"] == "conversation_id"
    # a Rasa sender's conversation is keyed by the channel's own identity record: nothing to pre-create
    rasa = client.post("/webhooks/rest/webhook", json={"sender": "victim", "message": "核酸多少钱"})
    assert rasa.status_code == 200 and "来源" in rasa.json[0]["text"]


def test_rasa_senders_with_a_long_common_prefix_do_not_collide(app):
    """Regression: conversation ids were cut to 64 characters, so senders sharing 59 characters collided."""
    client = app.test_client()
    prefix = "s" * 70
    first = client.post("/webhooks/rest/webhook", json={"sender": prefix + "A", "message": "转人工"}).json
    second = client.post("/webhooks/rest/webhook", json={"sender": prefix + "B", "message": "核酸多少钱"}).json
    assert "排队" in first[0]["text"] and "来源" in second[0]["text"], "B is not in A's queued conversation"
