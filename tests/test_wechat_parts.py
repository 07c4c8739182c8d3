"""XML parsing, rendering, the API client (httpx MockTransport) and the outbox, without a server."""
from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from bot.store import utcnow
from connectors.wechat import render
from connectors.wechat.client import WeChatClient
from connectors.wechat.config import WeChatAccount
from connectors.wechat.models import WeChatOutbox
from connectors.wechat.outbox import Outbox, enqueue
from connectors.wechat.users import conversation_id_for, touch_inbound, window_status
from connectors.wechat.xml import Inbound, MalformedMessage, parse_fields, text_reply

TEXT_XML = b"""<xml><ToUserName><![CDATA[gh_123]]></ToUserName>
<FromUserName><![CDATA[oUser1]]></FromUserName><CreateTime>1714036504</CreateTime>
<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[\xe4\xbd\xa0\xe5\xa5\xbd]]></Content>
<MsgId>23456789012345678</MsgId></xml>"""

BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<xml><Content>&lol3;</Content></xml>"""
XXE = b"""<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Content>&e;</Content></xml>"""


def test_parse_text_message():
    inbound = Inbound.from_fields(parse_fields(TEXT_XML), "xml")
    assert (inbound.from_user, inbound.msg_type, inbound.content) == ("oUser1", "text", "你好")
    assert inbound.dedupe_key == "m:23456789012345678"
    event = Inbound.from_fields({"FromUserName": "o1", "CreateTime": "17", "MsgType": "event",
                                 "Event": "subscribe"}, "xml")
    assert event.dedupe_key == "e:o1:17:subscribe"


def test_parse_json_push():
    body = json.dumps({"ToUserName": "gh_1", "FromUserName": "oMini", "CreateTime": 1714036504,
                       "MsgType": "text", "Content": "hi", "MsgId": 1234}).encode()
    inbound = Inbound.from_fields(parse_fields(body), "json")
    assert (inbound.from_user, inbound.content, inbound.msg_id, inbound.create_time) == ("oMini", "hi", "1234", 1714036504)


@pytest.mark.parametrize("body", [BOMB, XXE, b"<xml><a>", b"", b"   ", b"<notxml/>", b"{bad json", b"[1,2]",
                                  b"<xml>" + b"<a>x</a>" * 100 + b"</xml>"])
def test_malformed_bodies_rejected(body):
    with pytest.raises(MalformedMessage):
        parse_fields(body)


@pytest.mark.parametrize("fields", [{}, {"FromUserName": "o", "MsgType": "text", "CreateTime": "abc"},
                                    {"FromUserName": "o", "MsgType": "text", "CreateTime": "1", "MsgId": "x"}])
def test_missing_fields_rejected(fields):
    with pytest.raises(MalformedMessage):
        Inbound.from_fields(fields, "xml")


def test_reply_xml_escapes_cdata_end():
    xml = text_reply("oUser", "gh_1", "a ]]> b <c>", 1)
    assert parse_fields(xml.encode())["Content"] == "a ]]> b <c>"


def test_options_and_truncation():
    assert render.option_payload("２", ["/a", "/b"]) == "/b"
    assert render.option_payload(" 1 ", ["/a"]) == "/a"
    assert render.option_payload("3", ["/a"]) is None
    assert render.option_payload("1 核酸", ["/a"]) is None
    cut = render.truncate("核" * 1000, 100)
    assert len(cut.encode()) <= 100 and cut.endswith("…")
    pieces = render.split("第一行\n" + "核" * 1000, 300)
    assert all(len(p.encode()) <= 300 for p in pieces) and "".join(pieces).replace("\n", "") == "第一行" + "核" * 1000


def test_conversation_id_is_deterministic_and_short():
    assert conversation_id_for("main", "oUser1") == "wx-main-oUser1"
    long_id = conversation_id_for("a" * 24, "o" * 60)
    assert long_id == conversation_id_for("a" * 24, "o" * 60) and len(long_id) <= 64
    assert long_id != conversation_id_for("a" * 24, "o" * 59 + "p")


# -- API client against httpx.MockTransport -------------------------------------

class FakeApi:
    """Token endpoint + custom/send, scripted per test."""

    def __init__(self, send_codes: list[int] | None = None):
        self.send_codes = list(send_codes or [])
        self.tokens = 0
        self.sent: list[dict] = []
        self.seen_tokens: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/cgi-bin/token":
            assert request.url.params["grant_type"] == "client_credential"
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"T{self.tokens}", "expires_in": 7200})
        assert request.url.path == "/cgi-bin/message/custom/send"
        self.seen_tokens.append(request.url.params["access_token"])
        body = json.loads(request.content)
        assert set(body) == {"touser", "msgtype", "text"} and body["msgtype"] == "text"
        assert isinstance(body["text"]["content"], str)
        assert "\\u" not in request.content.decode()  # UTF-8, not ASCII escapes
        code = self.send_codes.pop(0) if self.send_codes else 0
        if code == -999:
            raise httpx.ReadTimeout("timed out", request=request)
        if code == 0:
            self.sent.append(body)
        return httpx.Response(200, json={"errcode": code, "errmsg": "ok" if code == 0 else "nope"})


ACCOUNT = WeChatAccount(name="main", token="tok123", app_id="wx1", app_secret="secret")


def client_for(api: FakeApi, store) -> WeChatClient:
    return WeChatClient(ACCOUNT, "https://api.test", store, http=httpx.Client(transport=httpx.MockTransport(api)))


def test_token_is_cached_and_refreshed_on_40001(fresh_store):
    api = FakeApi([0, 40001, 0, 42001, 0])
    client = client_for(api, fresh_store)
    assert client.send_text("o1", "一").ok
    assert client.send_text("o1", "二").ok  # 40001 → new token → retried once
    assert client.send_text("o1", "三").ok
    assert api.tokens == 3 and api.seen_tokens == ["T1", "T1", "T2", "T2", "T3"]
    assert [m["text"]["content"] for m in api.sent] == ["一", "二", "三"]


@pytest.mark.parametrize("code,retry", [(45015, "hold"), (45047, "hold"), (-1, "later"), (-999, "later")])
def test_send_failures_are_classified(fresh_store, code, retry):
    result = client_for(FakeApi([code]), fresh_store).send_text("o1", "hello")
    assert not result.ok and result.retry == retry
    assert "secret" not in (result.error or "") and "T1" not in (result.error or "")


def _rows(store):
    with store.transaction() as session:
        return {r.id: (r.status, r.errcode, r.attempts) for r in session.query(WeChatOutbox)}


def test_outbox_holds_on_45015_and_45047_until_the_user_writes(any_store):
    store = any_store
    api = FakeApi([45015, 45047])
    outbox = Outbox(store, {"main": client_for(api, store)})
    with store.transaction() as session:
        touch_inbound(session, "main", "o1")
    first = enqueue(store, "main", "o1", "一", "agent")
    second = enqueue(store, "main", "o1", "二", "agent")
    assert outbox.run_once() == 0
    assert _rows(store)[first] == ("held", 45015, 1) and _rows(store)[second][0] == "pending"
    assert outbox.run_once() == 0  # held head blocks the queue: order is kept
    with store.transaction() as session:
        touch_inbound(session, "main", "o1")  # the user wrote again
    assert outbox.run_once() == 0
    assert _rows(store)[first] == ("held", 45047, 2)
    with store.transaction() as session:
        touch_inbound(session, "main", "o1")
    assert outbox.run_once() == 2
    assert [m["text"]["content"] for m in api.sent] == ["一", "二"]
    assert _rows(store)[first] == ("sent", 0, 3)


def test_outbox_backs_off_on_transient_errors(any_store):
    store = any_store
    api = FakeApi([-999])
    outbox = Outbox(store, {"main": client_for(api, store)})
    msg = enqueue(store, "main", "o1", "hello", "bot")
    assert outbox.run_once() == 0
    assert _rows(store)[msg] == ("pending", None, 1)
    assert outbox.run_once() == 0  # not due yet
    assert outbox.run_once(now=utcnow() + dt.timedelta(seconds=5)) == 1
    assert enqueue(store, "main", "o1", "x", "bot", ref="r1") is not None
    assert enqueue(store, "main", "o1", "x", "bot", ref="r1") is None  # idempotent producers


def test_window_tracks_48h_and_5_messages(any_store):
    store = any_store
    api = FakeApi()
    outbox = Outbox(store, {"main": client_for(api, store)})
    assert window_status("o1", store=store)["open"] is False
    with store.transaction() as session:
        touch_inbound(session, "main", "o1")
    status = window_status("o1", store=store)
    assert status["open"] and status["remaining"] == 5 and status["expires_at"].endswith("Z")
    for i in range(7):
        enqueue(store, "main", "o1", f"m{i}", "agent")
    assert outbox.run_once() == 5
    status = window_status("o1", account="main", store=store)
    assert status == {**status, "open": False, "remaining": 0, "queued": 2}
    assert len(api.sent) == 5  # the 6th is held locally, WeChat is not even asked
    later = utcnow() + dt.timedelta(hours=49)
    assert window_status("o1", store=store, now=later)["open"] is False
    with store.transaction() as session:
        touch_inbound(session, "main", "o1")
    assert outbox.run_once() == 2 and window_status("o1", store=store)["remaining"] == 3


def test_concurrent_deliveries_of_one_message_claim_once(any_store):
    """WeChat's retry racing the first delivery: the unique key lets exactly one through."""
    from concurrent.futures import ThreadPoolExecutor

    from connectors.wechat.config import WeChatSettings
    from connectors.wechat.service import WeChatService

    class NoBot:
        store = any_store

    service = WeChatService(NoBot(), WeChatSettings(), executor=None)
    inbound = Inbound.from_fields(parse_fields(TEXT_XML), "xml")
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: service.claim("main", inbound), range(8)))
    assert sum(c is not None for c in claims) == 1
    assert service.claim("other", inbound) is not None  # keys are per account
    winner = next(c for c in claims if c is not None)
    service.release(winner)  # a failed turn forgets the key, so WeChat's retry is processed
    assert service.claim("main", inbound) is not None
