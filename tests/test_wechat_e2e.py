"""The WeChat channel end to end: a real ``hotline-bot serve`` process, XML/JSON bodies as
WeChat sends them, and a fake WeChat API server (token + custom/send) on 127.0.0.1."""
from __future__ import annotations

import itertools
import json
import threading
import time
from pathlib import Path

import httpx
import pytest
from flask import Flask, jsonify, request
from sqlalchemy import select
from werkzeug.serving import make_server

from bot.config import WeChatAccount, WeChatSettings
from bot.db import Database, StoreUnavailable
from bot.models import Identity, OutboxDelivery, WeChatInbound
from connectors.app import create_app
from connectors.wechat.crypto import WeChatCrypto, signature
from connectors.wechat.xml import parse_fields
from tests.conftest import build_services, start_server, stop_server

AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
OLD_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
ACCOUNTS = [
    {"name": "main", "token": "tok_main", "app_id": "wxmain0000000001", "app_secret": "sec_main"},
    {"name": "safe", "token": "tok_safe", "app_id": "wx49f0ab532d5d035a", "app_secret": "sec_safe",
     "encoding_aes_key": AES_KEY, "previous_encoding_aes_key": OLD_AES_KEY},
    {"name": "slow", "token": "tok_slow", "app_id": "wxslow0000000001", "app_secret": "sec_slow",
     "reply_budget": 0.001},
    {"name": "mini", "token": "tok_mini", "app_id": "wxmini0000000001", "app_secret": "sec_mini",
     "kind": "miniprogram"},
]
SECRETS = {a["app_id"]: a["app_secret"] for a in ACCOUNTS}
_ids = itertools.count(int(time.time() * 1000) % 10**9 * 1000)


class FakeWeChat:
    """cgi-bin/token and cgi-bin/message/custom/send, checking what WeChat checks."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.sent: list[dict] = []
        self.attempts: list[tuple[str, object]] = []
        self.problems: list[str] = []
        self.script: dict[str, list[object]] = {}  # openid → outcomes for its next sends
        app = Flask("fake-wechat")

        @app.get("/cgi-bin/token")
        def token():
            appid, secret = request.args.get("appid"), request.args.get("secret")
            if request.args.get("grant_type") != "client_credential" or SECRETS.get(appid) != secret:
                return jsonify({"errcode": 40125, "errmsg": "invalid appsecret"})
            with self.lock:
                value = f"AT-{appid}-{len(self.tokens)}"
                self.tokens.add(value)
            return jsonify({"access_token": value, "expires_in": 7200})

        @app.post("/cgi-bin/message/custom/send")
        def send():
            if request.args.get("access_token") not in self.tokens:
                return jsonify({"errcode": 40001, "errmsg": "invalid credential"})
            try:
                body = json.loads(request.get_data())
                assert set(body) == {"touser", "msgtype", "text"}, body
                assert body["msgtype"] == "text" and set(body["text"]) == {"content"}
                assert isinstance(body["touser"], str) and body["text"]["content"].strip()
                assert len(body["text"]["content"].encode()) <= 2048
            except (ValueError, AssertionError) as exc:
                self.problems.append(repr(exc))
                return jsonify({"errcode": 44002, "errmsg": "bad body"})
            with self.lock:
                queue = self.script.get(body["touser"], [])
                outcome = queue.pop(0) if queue else 0
                self.attempts.append((body["touser"], outcome))
            if outcome == "timeout":
                time.sleep(1.5)  # longer than the connector's HTTP timeout
                return jsonify({"errcode": 0, "errmsg": "ok (too late)"})
            if outcome:
                return jsonify({"errcode": outcome, "errmsg": "refused"})
            with self.lock:
                self.sent.append(body)
            return jsonify({"errcode": 0, "errmsg": "ok"})

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def messages(self, openid: str) -> list[str]:
        with self.lock:
            return [m["text"]["content"] for m in self.sent if m["touser"] == openid]

    def wait_for(self, openid: str, count: int = 1, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages(openid)) >= count:
                return self.messages(openid)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} message(s) for {openid}, got {self.messages(openid)}")


@pytest.fixture(scope="module")
def fake_wechat():
    fake = FakeWeChat()
    yield fake
    fake.server.shutdown()
    assert not fake.problems


@pytest.fixture(scope="module")
def wechat_server(session_dir, engine, fake_wechat):

    db = session_dir / "wechat-e2e.db"
    server = start_server(session_dir / "var", {
        "HOTLINE_DATABASE_URL": f"sqlite:///{db}",
        "HOTLINE_WECHAT__ACCOUNTS": json.dumps(ACCOUNTS),
        "HOTLINE_WECHAT__API_BASE": fake_wechat.url,
        "HOTLINE_WECHAT__HTTP_TIMEOUT": "0.5",
        "HOTLINE_OUTBOX__POLL_INTERVAL": "0.1",
        "HOTLINE_OUTBOX__BACKOFF_MAX": "1",
        "HOTLINE_OPEN_READ_API": "1",
    })
    server.db = Database(f"sqlite:///{db}")
    yield server
    stop_server(server)
    server.db.dispose()
    log = Path(server.log_path).read_text(errors="replace")
    for secret in ("sec_main", "sec_safe", AES_KEY, "AT-wx"):
        assert secret not in log, "secrets must never be logged"


# -- helpers that speak like WeChat's servers ---------------------------------------

def new_openid(tag: str) -> str:
    return f"o{tag}{next(_ids)}"[:28]


def text_xml(openid: str, content: str, msg_id: int | None = None, to: str = "gh_hotline") -> bytes:
    msg_id = msg_id or next(_ids)
    return (f"<xml><ToUserName><![CDATA[{to}]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>").encode()


def event_xml(openid: str, event: str, create_time: int) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_hotline]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event></xml>").encode()


def image_xml(openid: str) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_hotline]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[image]]></MsgType>"
            f"<PicUrl><![CDATA[http://mmbiz.qpic.cn/x]]></PicUrl><MediaId><![CDATA[m1]]></MediaId>"
            f"<MsgId>{next(_ids)}</MsgId></xml>").encode()


def signed(token: str, **extra) -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), str(next(_ids))
    return {"timestamp": timestamp, "nonce": nonce, "signature": signature(token, timestamp, nonce), **extra}


def post(server, account: str, body: bytes, params: dict | None = None) -> httpx.Response:
    if params is None:
        params = signed(next(a["token"] for a in ACCOUNTS if a["name"] == account))
    with server.client() as client:
        return client.post(f"/wechat/{account}", params=params, content=body,
                           headers={"Content-Type": "text/xml"})


def reply_content(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml"), response.text
    return parse_fields(response.content)["Content"]


def conversation_of(db: Database, openid: str, account: str = "main") -> str | None:
    with db.read() as session:
        return session.execute(select(Identity.conversation_id).where(
            Identity.channel == "wechat", Identity.external_id == f"{account}:{openid}")).scalar()


def turns(server, openid: str, account: str = "main") -> list[dict]:
    conversation = conversation_of(server.db, openid, account)
    if conversation is None:
        return []
    with server.client() as client:
        response = client.get(f"/api/v1/conversations/{conversation}")
    return response.json()["turns"] if response.status_code == 200 else []


# -- verification ------------------------------------------------------------------

def test_server_verification(wechat_server):
    with wechat_server.client() as client:
        ok = client.get("/wechat/main", params=signed("tok_main", echostr="echo123"))
        assert (ok.status_code, ok.text) == (200, "echo123")
        bad = client.get("/wechat/main", params={**signed("tok_main", echostr="echo123"), "signature": "0" * 40})
        assert bad.status_code == 403 and "echo123" not in bad.text
        assert client.get("/wechat/main", params=signed("wrong", echostr="x")).status_code == 403
        assert client.get("/wechat/nobody", params=signed("tok_main", echostr="x")).status_code == 404


# -- plain mode ----------------------------------------------------------------------

def answered(server, fake_wechat, account: str, openid: str, body: bytes) -> tuple[str, bool]:
    """The answer to one message and whether it came passively. On a loaded machine the bot may
    miss WeChat's 4 s budget: then it says "success" and the answer comes by the send API — also
    correct, and still exactly once."""
    pushed_before = len(fake_wechat.messages(openid))
    response = post(server, account, body)
    assert response.status_code == 200, response.text
    if response.text == "success":
        return fake_wechat.wait_for(openid, pushed_before + 1)[-1], False
    reply = parse_fields(response.content)
    assert (reply["ToUserName"], reply["FromUserName"], reply["MsgType"]) == (openid, "gh_hotline", "text")
    return reply["Content"], True


def test_text_message_gets_passive_answer_and_retry_is_deduped(wechat_server, fake_wechat):
    openid = new_openid("txt")
    body = text_xml(openid, "核酸检测在哪里做")
    content, passive = answered(wechat_server, fake_wechat, "main", openid, body)
    assert "来源：" in content and "更新于" in content and "回复数字选择：" in content and "\n1. " in content
    assert len(turns(wechat_server, openid)) == 2
    for _ in range(3):  # WeChat retries only when our reply did not reach it: the same answer again
        again = post(wechat_server, "main", body)
        if passive:
            assert parse_fields(again.content)["Content"] == content
        else:
            assert again.text == "success"
    assert len(turns(wechat_server, openid)) == 2
    assert len(fake_wechat.messages(openid)) == (0 if passive else 1)  # the retries pushed nothing more

    follow, _ = answered(wechat_server, fake_wechat, "main", openid, text_xml(openid, "1"))  # pick option 1
    history = turns(wechat_server, openid)
    assert len(history) == 4 and history[2]["text"].startswith("/faq")
    assert history[3]["entry_id"] and history[3]["entry_id"] != history[1]["entry_id"]
    assert "来源：" in follow


def test_subscribe_welcome_and_other_events(wechat_server):
    openid = new_openid("sub")
    created = int(time.time())
    welcome = reply_content(post(wechat_server, "main", event_xml(openid, "subscribe", created)))
    assert "您好" in welcome and "\n1. " in welcome and "转人工" in welcome
    assert reply_content(post(wechat_server, "main", event_xml(openid, "subscribe", created))) == welcome  # retry
    assert post(wechat_server, "main", event_xml(openid, "CLICK", created + 1)).text == "success"
    assert post(wechat_server, "main", event_xml(openid, "unsubscribe", created + 2)).text == "success"
    menu_pick = reply_content(post(wechat_server, "main", text_xml(openid, "1")))
    assert "来源：" in menu_pick  # "1" from the welcome menu is an FAQ entry


def test_non_text_messages_get_polite_reply_in_users_language(wechat_server):
    openid = new_openid("img")
    assert "请直接输入文字问题" in reply_content(post(wechat_server, "main", image_xml(openid)))
    reply_content(post(wechat_server, "main", text_xml(openid, "How do I get a PCR test?")))
    assert "please type your question" in reply_content(post(wechat_server, "main", image_xml(openid))).lower()


@pytest.mark.parametrize("body,status", [
    (b"<xml><ToUserName>unclosed", 400),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">'
     b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;">]><xml><Content>&c;</Content></xml>', 400),
    (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>',
     400),
    (b"<xml><MsgType>text</MsgType></xml>", 400),
    (b"<xml><Content>" + b"a" * 20_000 + b"</Content></xml>", 413),
    (b"<xml><Content>" + b"a" * 70_000 + b"</Content></xml>", 413),
])
def test_bad_bodies_rejected_cleanly(wechat_server, body, status):
    response = post(wechat_server, "main", body)
    assert response.status_code == status
    assert response.json()["error"]["status"] == status


def test_bad_signatures_and_stale_timestamps_rejected(wechat_server):
    body = text_xml(new_openid("sig"), "你好")
    assert post(wechat_server, "main", body, {**signed("tok_main"), "signature": "f" * 40}).status_code == 403
    assert post(wechat_server, "main", body, {**signed("tok_safe")}).status_code == 403
    old = {"timestamp": "1714036504", "nonce": "1514711492"}
    old["signature"] = signature("tok_main", old["timestamp"], old["nonce"])
    assert post(wechat_server, "main", body, old).status_code == 403
    assert post(wechat_server, "main", body, {"signature": "x"}).status_code == 403
    assert post(wechat_server, "nobody", body, signed("tok_main")).status_code == 404


# -- safe mode -----------------------------------------------------------------------

def _safe_post(server, inner: bytes, key: str = AES_KEY, app_id: str = "wx49f0ab532d5d035a",
               tamper: bool = False) -> tuple[httpx.Response, dict]:
    crypto = WeChatCrypto("tok_safe", key, app_id)
    encrypted = crypto.encrypt(inner)
    params = signed("tok_safe", encrypt_type="aes", openid="x")
    params["msg_signature"] = signature("tok_safe", params["timestamp"], params["nonce"], encrypted)
    if tamper:
        params["msg_signature"] = "0" * 40
    envelope = f"<xml><ToUserName><![CDATA[gh_safe]]></ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    return post(server, "safe", envelope.encode(), params), params


def _open_reply(response: httpx.Response, key: str = AES_KEY) -> dict:
    assert response.status_code == 200, response.text
    outer = parse_fields(response.content)
    assert outer["MsgSignature"] == signature("tok_safe", outer["TimeStamp"], outer["Nonce"], outer["Encrypt"])
    crypto = WeChatCrypto("tok_safe", key, "wx49f0ab532d5d035a")
    return parse_fields(crypto.decrypt(outer["Encrypt"]).message)


def test_safe_mode_round_trip_and_key_rotation(wechat_server):
    openid = new_openid("aes")
    response, params = _safe_post(wechat_server, text_xml(openid, "健康码变黄怎么办", to="gh_safe"))
    reply = _open_reply(response)
    assert reply["ToUserName"] == openid and "来源：" in reply["Content"]
    assert parse_fields(response.content)["Nonce"] == params["nonce"]
    # a message sealed with the previous EncodingAESKey is still read, and answered under that key
    old_reply = _open_reply(_safe_post(wechat_server, image_xml(openid), key=OLD_AES_KEY)[0], key=OLD_AES_KEY)
    assert "请直接输入文字问题" in old_reply["Content"]


def test_safe_mode_rejections(wechat_server):
    inner = text_xml(new_openid("aesbad"), "你好")
    assert _safe_post(wechat_server, inner, tamper=True)[0].status_code == 403
    assert _safe_post(wechat_server, inner, app_id="wx0000000000000000")[0].status_code == 403
    unknown_key = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210abcdefg"
    assert _safe_post(wechat_server, inner, key=unknown_key)[0].status_code == 400
    assert _safe_post(wechat_server, b"<xml><oops", )[0].status_code == 400
    params = signed("tok_safe", encrypt_type="aes", msg_signature="0" * 40)
    assert post(wechat_server, "safe", b"<xml><ToUserName>x</ToUserName></xml>", params).status_code == 400


# -- deadline fallback, send API, window -------------------------------------------

def test_slow_turn_falls_back_to_send_api_once(wechat_server, fake_wechat):
    openid = new_openid("slow")
    body = text_xml(openid, "核酸检测在哪里做")
    first = post(wechat_server, "slow", body)
    retries = [post(wechat_server, "slow", body) for _ in range(2)]  # while the first may still compute
    assert [r.text for r in [first, *retries]] == ["success"] * 3
    sent = fake_wechat.wait_for(openid)
    assert "来源：" in sent[0]
    time.sleep(0.5)
    assert len(fake_wechat.messages(openid)) == 1
    assert len(turns(wechat_server, openid, "slow")) == 2


def test_45015_is_held_until_the_user_writes_again(wechat_server, fake_wechat):
    openid = new_openid("held")
    fake_wechat.script[openid] = [45015]
    assert post(wechat_server, "slow", text_xml(openid, "核酸检测在哪里做")).text == "success"
    deadline = time.monotonic() + 10
    row = None
    while time.monotonic() < deadline:
        with wechat_server.db.read() as session:
            row = session.execute(select(OutboxDelivery).where(
                OutboxDelivery.ordering_key == f"wx:slow:{openid}")).scalar_one_or_none()
            if row is not None and row.status == "held":
                break
        time.sleep(0.05)
    assert row is not None and row.status == "held" and "45015" in row.last_error
    assert fake_wechat.messages(openid) == []
    post(wechat_server, "slow", text_xml(openid, "谢谢"))  # the window reopens
    sent = fake_wechat.wait_for(openid, 2)
    assert "来源：" in sent[0] and "来源：" not in sent[1]  # the held answer first, order kept


def test_send_timeout_is_retried_and_45047_held(wechat_server, fake_wechat):
    openid = new_openid("tmo")
    fake_wechat.script[openid] = ["timeout", 45047]
    post(wechat_server, "slow", text_xml(openid, "核酸检测在哪里做"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([u for u, _ in fake_wechat.attempts if u == openid]) < 2:
        time.sleep(0.05)
    time.sleep(0.3)
    assert [o for u, o in fake_wechat.attempts if u == openid] == ["timeout", 45047]  # held: no hammering
    assert fake_wechat.messages(openid) == []
    post(wechat_server, "slow", text_xml(openid, "谢谢"))
    assert "来源：" in fake_wechat.wait_for(openid, 2)[0]


def test_mini_program_json_push(wechat_server, fake_wechat):
    openid = new_openid("mini")
    body = json.dumps({"ToUserName": "gh_mini", "FromUserName": openid, "CreateTime": int(time.time()),
                       "MsgType": "text", "Content": "疫苗接种需要预约吗", "MsgId": next(_ids)}).encode()
    token_params = signed("tok_mini")
    with wechat_server.client() as client:
        response = client.post("/wechat/mini", params=token_params, content=body,
                               headers={"Content-Type": "application/json"})
        again = client.post("/wechat/mini", params=token_params, content=body,
                            headers={"Content-Type": "application/json"})
    assert (response.text, again.text) == ("success", "success")
    assert len(fake_wechat.wait_for(openid)) == 1
    event = json.dumps({"ToUserName": "gh_mini", "FromUserName": openid, "CreateTime": int(time.time()),
                        "MsgType": "event", "Event": "user_enter_tempsession", "SessionFrom": "x"}).encode()
    assert post(wechat_server, "mini", event).text == "success"
    time.sleep(0.3)
    assert len(fake_wechat.messages(openid)) == 1


# -- in-process: agent replies, races, crashes ----------------------------------------------

@pytest.fixture()
def wechat_app(settings, engine, clock, tmp_path, fake_wechat):
    wechat = WeChatSettings(accounts=[WeChatAccount(**ACCOUNTS[0]),
                                      WeChatAccount(**{**ACCOUNTS[0], "name": "gate", "reply_budget": 0.2}),
                                      WeChatAccount(**{**ACCOUNTS[1], "name": "minisafe", "kind": "miniprogram"})],
                            api_base=fake_wechat.url)
    services = build_services(settings, engine, f"sqlite:///{tmp_path / 'wx.db'}", clock, wechat=wechat,
                              open_read_api=True)
    app = create_app(services)
    app.services = services
    yield app
    services.close()


def send_pending(app) -> int:
    worker = app.services.workers["wechat"]
    total = 0
    while sent := worker.run_once():
        total += sent
    return total


def test_agent_reply_goes_through_send_api_with_window(wechat_app, fake_wechat):
    services = wechat_app.services
    openid = new_openid("agent")
    client = wechat_app.test_client()
    handoff = client.post("/wechat/main", query_string=signed("tok_main"), data=text_xml(openid, "转人工"))
    assert "人工" in parse_fields(handoff.data)["Content"]
    conversation = services.desk.transcript(conversation_of(services.db, openid))
    assert conversation["status"] == "waiting" and conversation["channel"] == "wechat"
    windows = services.extras["wechat"].windows
    assert windows.status("main", openid)["remaining"] == 5
    agent = services.staff.create("wxagent", "password123", "小王")
    services.desk.claim(conversation["handoff"]["id"], agent)
    services.desk.reply(conversation["handoff"]["id"], agent, "您好，我是人工客服。")
    assert send_pending(wechat_app) == 2
    assert fake_wechat.messages(openid) == ["人工客服 小王 已接入，请问有什么可以帮您？", "您好，我是人工客服。"]
    status = windows.status("main", openid)
    assert status["open"] and status["remaining"] == 3 and status["queued"] == 0
    detail = client.get(f"/api/v1/handoffs/{conversation['handoff']['id']}").json
    assert detail["channel"] == "wechat" and "o" not in detail["user"][2:3]


def test_retry_while_first_is_still_computing(wechat_app, fake_wechat, monkeypatch):
    services = wechat_app.services
    gate, calls, original = threading.Event(), [], services.bot.handle

    def slow_handle(message, today=None):
        calls.append(message.text)
        gate.wait(5)
        return original(message, today)

    monkeypatch.setattr(services.bot, "handle", slow_handle)
    openid = new_openid("race")
    body = text_xml(openid, "核酸检测在哪里做")
    client = wechat_app.test_client()
    first = client.post("/wechat/gate", query_string=signed("tok_main"), data=body)
    assert first.data == b"success"  # the budget ran out
    retry = client.post("/wechat/gate", query_string=signed("tok_main"), data=body)
    assert retry.data == b"success"
    gate.set()
    deadline = time.monotonic() + 10
    while not send_pending(wechat_app):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert calls == ["核酸检测在哪里做"]
    assert len(fake_wechat.messages(openid)) == 1
    assert len(services.desk.transcript(conversation_of(services.db, openid, "gate"))["turns"]) == 2


def test_a_database_blip_mid_message_loses_nothing(wechat_app, fake_wechat, monkeypatch):
    """Regression: the MsgId was recorded as received before the reply was computed; when the
    database failed in between, WeChat's retry got "success" and the message was lost (3/3 runs)."""
    services = wechat_app.services
    original, failures = services.bot.handle, []

    def flaky_handle(message, today=None):
        if not failures:
            failures.append(message.text)
            raise StoreUnavailable("database unavailable: connection reset")
        return original(message, today)

    monkeypatch.setattr(services.bot, "handle", flaky_handle)
    openid = new_openid("blip")
    body = text_xml(openid, "我呼吸困难")
    client = wechat_app.test_client()
    assert client.post("/wechat/main", query_string=signed("tok_main"), data=body).status_code == 503
    retry = client.post("/wechat/main", query_string=signed("tok_main"), data=body)  # WeChat retries
    assert "120" in parse_fields(retry.data)["Content"]
    assert failures == ["我呼吸困难"]


def test_a_process_killed_mid_message_is_answered_by_the_recovery_sweep(wechat_app, fake_wechat, clock):
    """The worker computing a message died (lease never released): the sweep answers through the
    send API, once, and a late retry from WeChat does not produce a second answer."""
    services = wechat_app.services
    channel = services.extras["wechat"].channel
    openid = new_openid("kill9")
    from connectors.wechat.xml import Inbound

    inbound = Inbound.from_fields(parse_fields(text_xml(openid, "核酸检测在哪里做")), "xml")
    claim = channel.claim("main", inbound, deferred=False)  # ... and the process dies here
    assert claim.status == "new"
    assert channel.recover() == 0  # still leased
    import datetime as dt

    with services.db.transaction() as session:  # the lease runs out
        session.query(WeChatInbound).filter_by(id=claim.id).update(
            {"lease_until": clock() - dt.timedelta(seconds=1)})
    assert channel.recover() == 1
    assert send_pending(wechat_app) == 1
    assert "来源：" in fake_wechat.messages(openid)[0]
    late = wechat_app.test_client().post("/wechat/main", query_string=signed("tok_main"),
                                         data=text_xml(openid, "核酸检测在哪里做", msg_id=int(inbound.msg_id)))
    assert late.data == b"success" and len(fake_wechat.messages(openid)) == 1
    assert len(services.desk.transcript(conversation_of(services.db, openid))["turns"]) == 2


def test_a_lost_passive_reply_is_served_again_on_retry(wechat_app):
    openid = new_openid("lost")
    body = text_xml(openid, "健康码变黄怎么办")
    client = wechat_app.test_client()
    first = parse_fields(client.post("/wechat/main", query_string=signed("tok_main"), data=body).data)["Content"]
    # WeChat never got that response (network): it retries, and gets the same answer, not "success"
    again = parse_fields(client.post("/wechat/main", query_string=signed("tok_main"), data=body).data)["Content"]
    assert again == first and "来源：" in first
    services = wechat_app.services
    assert len(services.desk.transcript(conversation_of(services.db, openid))["turns"]) == 2


def test_a_captured_signed_url_cannot_be_replayed_with_another_message(wechat_app):
    """Regression (plain mode signs only the URL): a captured URL was accepted again with another
    openid and text within the 300 s window."""
    client = wechat_app.test_client()
    params = signed("tok_main")
    original = text_xml(new_openid("orig"), "你好")
    assert client.post("/wechat/main", query_string=params, data=original).status_code == 200
    assert client.post("/wechat/main", query_string=params, data=original).status_code == 200  # WeChat's retry
    forged = client.post("/wechat/main", query_string=params, data=text_xml(new_openid("evil"), "转人工"))
    assert forged.status_code == 403


def test_a_safe_mode_url_cannot_be_replayed_in_plain_mode(wechat_app):
    """Regression: a safe-mode push's URL also carries signature/timestamp/nonce; with encrypt_type and
    msg_signature dropped it was accepted in plain mode with any message (a handoff for a chosen openid)."""
    client = wechat_app.test_client()
    encrypted = WeChatCrypto("tok_safe", AES_KEY, "wx49f0ab532d5d035a").encrypt(text_xml(new_openid("real"), "你好"))
    params = signed("tok_safe", encrypt_type="aes")
    params["msg_signature"] = signature("tok_safe", params["timestamp"], params["nonce"], encrypted)
    body = f"<xml><ToUserName>gh</ToUserName><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
    assert client.post("/wechat/minisafe", query_string=params, data=body).status_code == 200
    assert client.post("/wechat/minisafe", query_string=params, data=body).status_code == 200  # WeChat's retry
    plain = {k: params[k] for k in ("timestamp", "nonce", "signature")}
    forged = client.post("/wechat/minisafe", query_string=plain, data=text_xml(new_openid("victim"), "转人工"))
    assert forged.status_code == 403


def test_mini_program_safe_mode_json(wechat_app, fake_wechat):
    openid = new_openid("minis")
    inner = json.dumps({"ToUserName": "gh_mini", "FromUserName": openid, "CreateTime": int(time.time()),
                        "MsgType": "image", "PicUrl": "http://x", "MediaId": "m", "MsgId": next(_ids)}).encode()
    encrypted = WeChatCrypto("tok_safe", AES_KEY, "wx49f0ab532d5d035a").encrypt(inner)
    params = signed("tok_safe", encrypt_type="aes")
    params["msg_signature"] = signature("tok_safe", params["timestamp"], params["nonce"], encrypted)
    client = wechat_app.test_client()
    response = client.post("/wechat/minisafe", query_string=params,
                           json={"ToUserName": "gh_mini", "Encrypt": encrypted})
    assert response.data == b"success"
    send_pending(wechat_app)
    assert "请直接输入文字问题" in fake_wechat.messages(openid)[0]


def test_deeply_nested_json_is_a_clean_400(wechat_app):
    body = b'{"a":' * 2000 + b"1" + b"}" * 2000
    response = wechat_app.test_client().post("/wechat/minisafe", query_string=signed("tok_safe"), data=body)
    assert response.status_code == 400
