"""XML parsing, rendering, the API client (httpx MockTransport) and the sender on the outbox, without a server."""
from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

import threading
import time

from bot import render
from bot.config import WeChatAccount
from connectors.wechat.client import WeChatClient
from connectors.wechat.sender import WeChatSender, release_window, text_deliveries
from connectors.wechat.users import Windows, external_id, parse_external_id
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


def test_external_user_is_account_and_openid():
    assert external_id("main", "oUser1") == "main:oUser1"
    assert parse_external_id("main:o:with:colons") == ("main", "o:with:colons")


# -- API client against httpx.MockTransport -------------------------------------

class FakeApi:
    """Token endpoint + custom/send, scripted per test: an int is an errcode, or one of
    "timeout", "http500" (no errcode), "hang" (blocks until released). Sends to an openid in
    `hang_for` block until released too: bound to the recipient, not to which of two pool threads
    happens to call first."""

    def __init__(self, send_codes: list | None = None):
        self.send_codes = list(send_codes or [])
        self.tokens = 0
        self.sent: list[dict] = []
        self.seen_tokens: list[str] = []
        self.release = threading.Event()
        self.hang_for: set[str] = set()

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
        if body["touser"] in self.hang_for:
            code = "hang"
        if code == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        if code == "http500":
            return httpx.Response(500, json={"message": "upstream exploded"})
        if code == "hang":
            self.release.wait(10)
            code = 0
        if code == 0:
            self.sent.append(body)
        return httpx.Response(200, json={"errcode": code, "errmsg": "ok" if code == 0 else "nope"})

    def texts(self, openid: str | None = None) -> list[str]:
        return [m["text"]["content"] for m in self.sent if openid is None or m["touser"] == openid]


ACCOUNT = WeChatAccount(name="main", token="tok123", app_id="wx1", app_secret="secret")


def client_for(api: FakeApi, db) -> WeChatClient:
    return WeChatClient(ACCOUNT, "https://api.test", db, http=httpx.Client(transport=httpx.MockTransport(api)))


def test_token_is_cached_and_refreshed_on_40001(services):
    api = FakeApi([0, 40001, 0, 42001, 0])
    client = client_for(api, services.db)
    assert client.send_text("o1", "一").ok
    assert client.send_text("o1", "二").ok  # 40001 → new token → retried once
    assert client.send_text("o1", "三").ok
    assert api.tokens == 3 and api.seen_tokens == ["T1", "T1", "T2", "T2", "T3"]
    assert api.texts() == ["一", "二", "三"]


@pytest.mark.parametrize("code,retry", [(45015, "hold"), (45047, "hold"), (-1, "later"), ("timeout", "later"),
                                        ("http500", "later")])
def test_send_failures_are_classified(services, code, retry):
    """Regression: an HTTP 500 whose body has no errcode was read as success (0/9 delivered)."""
    result = client_for(FakeApi([code]), services.db).send_text("o1", "hello")
    assert not result.ok and result.retry == retry
    assert "secret" not in (result.error or "") and "T1" not in (result.error or "")


@pytest.fixture()
def wechat(services):
    api = FakeApi()
    windows = Windows(services.db)
    sender = WeChatSender(services.db, {"main": client_for(api, services.db)}, windows, clock=services.clock)
    worker = services.add_consumer(sender)
    return services, api, windows, worker


def push(services, openid, *texts):
    """Agent-style pushes: deliveries recorded exactly as the sender records them."""
    with services.db.transaction() as session:
        for i, text in enumerate(texts):
            services.outbox.enqueue(session, "wechat", text_deliveries(f"test:{openid}:{text}:{i}", "main", openid,
                                                                       text, 2000))


def user_writes(services, openid):
    with services.db.transaction() as session:
        release_window(session, "main", openid, services.clock())


def test_outbox_holds_on_45015_and_45047_until_the_user_writes(wechat):
    services, api, _windows, worker = wechat
    api.send_codes = [45015, 45047]
    user_writes(services, "o1")
    push(services, "o1", "一", "二")
    assert worker.run_once() == 0 and api.texts() == []
    assert worker.run_once() == 0  # held head blocks the queue: order is kept
    user_writes(services, "o1")  # the user wrote again
    assert worker.run_once() == 0 and api.texts() == []  # 45047 this time: held again
    user_writes(services, "o1")
    assert worker.run_once() == 1 and worker.run_once() == 1
    assert api.texts() == ["一", "二"]


def test_outbox_backs_off_on_transient_errors_and_never_sends_twice(wechat, clock):
    services, api, _windows, worker = wechat
    api.send_codes = ["http500", "timeout"]
    push(services, "o1", "hello")
    assert worker.run_once() == 0
    assert worker.run_once() == 0  # not due yet
    clock.advance(seconds=2)
    assert worker.run_once() == 0  # timed out: retried later (at least once)
    clock.advance(seconds=4)
    assert worker.run_once() == 1 and api.texts() == ["hello"]
    push(services, "o1", "hello")  # the same key again: recorded once, sent once
    clock.advance(seconds=600)
    assert worker.run_once() == 0 and api.texts() == ["hello"]


def test_one_hanging_send_blocks_nobody_else(wechat):
    """Regression: one send thread meant one hang blocked every citizen's answers."""
    services, api, _windows, worker = wechat
    api.hang_for = {"slow"}
    for openid in ("slow", "fast"):
        user_writes(services, openid)
    push(services, "slow", "waiting on a hung connection")
    push(services, "fast", "should not wait")
    worker.start()
    try:
        deadline = time.monotonic() + 10
        while api.texts("fast") != ["should not wait"]:
            assert time.monotonic() < deadline, "the second user's message is stuck behind the hang"
            time.sleep(0.02)
        assert api.texts("slow") == []
        api.release.set()
        while api.texts("slow") != ["waiting on a hung connection"]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        api.release.set()
        worker.stop()


@pytest.mark.parametrize("years", [-3, 0, 3])
def test_a_push_is_due_at_once_whatever_the_wall_clock_says(wechat, clock, years):
    """Regression: rows were stamped with the wall clock but leased by the services' clock, so under a
    test or simulated clock behind real time no push was ever due (5 tests failed from 08:00 UTC on
    the day of their fixed clock)."""
    services, api, _windows, worker = wechat
    clock.now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(days=365 * years)
    user_writes(services, "o1")
    push(services, "o1", "已经到期")
    assert worker.run_once() == 1 and api.texts() == ["已经到期"]


def test_window_tracks_48h_and_5_messages(wechat, clock):
    services, api, windows, worker = wechat
    assert windows.status("main", "o1")["open"] is False
    user_writes(services, "o1")
    status = windows.status("main", "o1", now=clock())
    assert status["open"] and status["remaining"] == 5 and status["expires_at"].endswith("Z")
    push(services, "o1", *[f"m{i}" for i in range(7)])
    while worker.run_once():
        pass
    status = windows.status("main", "o1", now=clock())
    assert status == {**status, "open": False, "remaining": 0, "queued": 2}
    assert len(api.sent) == 5  # the 6th is held locally, WeChat is not even asked
    later = clock() + dt.timedelta(hours=49)
    assert windows.status("main", "o1", now=later)["open"] is False
    user_writes(services, "o1")
    while worker.run_once():
        pass
    assert windows.status("main", "o1", now=clock())["remaining"] == 3 and len(api.sent) == 7


def test_concurrent_deliveries_of_one_message_claim_once(any_services):
    """WeChat's retry racing the first delivery: the unique key lets exactly one worker compute."""
    from concurrent.futures import ThreadPoolExecutor

    from bot.config import WeChatSettings
    from connectors.wechat.service import WeChatChannel

    channel = WeChatChannel(any_services, WeChatSettings(), executor=None)
    inbound = Inbound.from_fields(parse_fields(TEXT_XML), "xml")
    with ThreadPoolExecutor(8) as pool:
        claims = list(pool.map(lambda _: channel.claim("main", inbound, deferred=False), range(8)))
    assert sorted(c.status for c in claims) == ["new"] + ["received"] * 7
    assert channel.claim("other", inbound, deferred=False).status == "new"  # keys are per account


def test_a_send_slower_than_five_seconds_is_delivered_exactly_once(services, clock):
    """Regression (row 5): a send slower than 5 s was timed out and sent again although WeChat had
    accepted it (3/9 delivered twice). With the default timeout a 6 s send is one delivery, and
    while it is in flight its lease keeps every other pass of the worker off it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from bot.config import Settings

    sends: list[bytes] = []

    class SlowWeChat(BaseHTTPRequestHandler):
        def do_GET(self):  # /cgi-bin/token
            self._json({"access_token": "T-slow", "expires_in": 7200})

        def do_POST(self):  # /cgi-bin/message/custom/send: accepted, but answered after 6 s
            sends.append(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(6)
            self._json({"errcode": 0, "errmsg": "ok"})

        def _json(self, body):
            raw = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowWeChat)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    timeout = Settings().wechat.http_timeout  # the shipped default
    client = WeChatClient(ACCOUNT, f"http://127.0.0.1:{server.server_port}", services.db, timeout=timeout)
    worker = services.add_consumer(WeChatSender(services.db, {"main": client}, Windows(services.db), clock=clock))
    user_writes(services, "o-slow")
    push(services, "o-slow", "一个慢的回答")
    worker.start()
    try:
        deadline = time.monotonic() + 3
        while not sends:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        clock.advance(seconds=60)  # past any backoff, inside the lease
        for _ in range(10):
            worker.run_once()
            time.sleep(0.1)
        deadline = time.monotonic() + 15
        while worker.backlog():
            assert time.monotonic() < deadline, "the slow send never completed"
            time.sleep(0.1)
        time.sleep(0.5)
        assert len(sends) == 1, f"sent {len(sends)} times"
    finally:
        worker.stop()
        server.shutdown()
