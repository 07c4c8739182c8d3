"""The transactional outbox under pressure (bot/conversations/outbox.py): rows that are not due do not hide the
ones that are, a worker never takes more than it can send before its lease ends, and one citizen's messages
keep their order while another transaction holds an earlier one. Each test failed on the code before."""
from __future__ import annotations

import collections
import datetime as dt
import json
import threading
import time

import httpx
from sqlalchemy import select

from bot.config import OutboxSettings, WeChatAccount, WeChatSettings
from bot.conversations.outbox import Outbox, OutboxWorker
from bot.models import OutboxDelivery, utcnow
from connectors.app import create_app
from connectors.wechat.client import WeChatClient
from connectors.wechat.sender import WeChatSender, text_deliveries
from connectors.wechat.users import CONSUMER, Windows, get_or_create, ordering_key
from tests import test_wechat_e2e as wx
from tests.conftest import build_services

fake_wechat, wechat_app = wx.fake_wechat, wx.wechat_app  # that module's fixtures: a fake WeChat API over HTTP, an app


def wechat_services(settings, engine, clock, url, fake):
    services = build_services(settings, engine, url, clock,
                              wechat=WeChatSettings(accounts=[WeChatAccount(**wx.ACCOUNTS[0])], api_base=fake.url))
    create_app(services)  # the WeChat channel registers its outbox consumer
    return services


def test_two_hundred_held_replies_do_not_hide_a_due_one(settings, engine, clock, tmp_path, fake_wechat):
    """Agents answered 200 citizens after their 48 h window closed: the replies are held until each writes
    again, maybe never. The first 200 open rows were read and filtered afterwards, so a fresh citizen's answer
    queued after them was never sent."""
    services = wechat_services(settings, engine, clock, f"sqlite:///{tmp_path / 'held.db'}", fake_wechat)
    try:
        worker = services.workers["wechat"]
        with services.db.transaction() as session:
            for i in range(200):
                get_or_create(session, "main", f"ogone{i}").last_inbound_at = clock() - dt.timedelta(hours=49)
                services.outbox.enqueue(session, CONSUMER, text_deliveries(f"t:{i}", "main", f"ogone{i}", "稍后回复",
                                                                           2000))
        assert worker.run_once() == 0
        with services.db.read() as session:
            assert session.execute(select(OutboxDelivery.status).distinct()).scalars().all() == ["held"]
        fresh = wx.new_openid("fresh")
        with services.db.transaction() as session:
            get_or_create(session, "main", fresh).last_inbound_at = clock()
            services.outbox.enqueue(session, CONSUMER, text_deliveries("t:fresh", "main", fresh, "您好", 2000))
        assert worker.run_once() == 1
        assert fake_wechat.messages(fresh) == ["您好"]
    finally:
        services.close()


def test_a_worker_takes_no_more_than_it_can_send_within_its_lease(services):
    """Leased rows waited in the pool's queue behind busy workers until their lease ran out; the next pass
    leased them again and the same WeChat message went out twice. Scaled down: 2 workers, 0.3 s sends, 1 s lease."""
    sent: collections.Counter = collections.Counter()
    lock = threading.Lock()

    def wechat_api(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "AT", "expires_in": 7200})
        time.sleep(0.3)
        with lock:
            sent[json.loads(request.content)["touser"]] += 1
        return httpx.Response(200, json={"errcode": 0, "errmsg": "ok"})

    account = WeChatAccount(name="main", token="tok_main", app_id="wx1", app_secret="s")
    client = WeChatClient(account, "https://api.weixin.qq.com", services.db,
                          http=httpx.Client(transport=httpx.MockTransport(wechat_api)))
    sender = WeChatSender(services.db, {"main": client}, Windows(services.db), clock=utcnow)
    worker = OutboxWorker(services.db, sender, OutboxSettings(workers=2, lease_seconds=1.0, poll_interval=0.05),
                          clock=utcnow)
    with services.db.transaction() as session:
        for i in range(12):
            services.outbox.enqueue(session, CONSUMER, text_deliveries(f"wx-in:{i}", "main", f"o{i}", "答复", 2000),
                                    utcnow())
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while worker.backlog() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # a second copy would go out now
    finally:
        worker.stop()
    assert sorted(sent) == sorted(f"o{i}" for i in range(12))
    assert {k: n for k, n in sent.items() if n > 1} == {}


def test_a_reply_does_not_overtake_an_earlier_one_locked_by_another_transaction(settings, engine, clock,
                                                                                 postgres_url, fake_wechat):
    """PostgreSQL: the first reply is held (45015), the second waits behind it. The citizen writes: releasing the
    hold locks the first row for that transaction, and a worker pass meanwhile skipped the locked row (SKIP
    LOCKED) and sent the second reply first."""
    services = wechat_services(settings, engine, clock, postgres_url, fake_wechat)
    try:
        worker = services.workers["wechat"]
        openid = wx.new_openid("order")
        with services.db.transaction() as session:
            get_or_create(session, "main", openid).last_inbound_at = clock() - dt.timedelta(hours=47)
            services.outbox.enqueue(session, CONSUMER, text_deliveries("agent:a", "main", openid, "第一条", 2000))
            services.outbox.enqueue(session, CONSUMER, text_deliveries("agent:b", "main", openid, "第二条", 2000))
        fake_wechat.script[openid] = [45015]
        assert worker.run_once() == 0 and worker.run_once() == 0  # the first held, the second behind it

        def citizen_writes():  # as claim() does: release the hold, more work, then commit
            with services.db.transaction() as session:
                Outbox.release_held(session, CONSUMER, ordering_key("main", openid), clock())
                time.sleep(1.0)

        writer = threading.Thread(target=citizen_writes)
        writer.start()
        time.sleep(0.3)
        worker.run_once()  # a pass during that transaction
        writer.join()
        while worker.run_once():
            pass
        assert fake_wechat.messages(openid) == ["第一条", "第二条"]
    finally:
        services.close()


def test_a_reply_refused_while_the_citizen_writes_is_sent_when_the_window_reopens(wechat_app, fake_wechat, clock,
                                                                                   monkeypatch):
    """WeChat refuses a reply (45015: its 48 h window closed) while the citizen writes again: that message
    released only replies already held, not this one, still being sent; recorded as held afterwards, it waited for
    yet another message from the citizen, maybe never. It is sent again instead."""
    from bot.models import WeChatUser

    services = wechat_app.services
    worker = services.workers["wechat"]
    sender = services.extras["wechat"].sender
    openid = wx.new_openid("race")
    with services.db.transaction() as session:
        get_or_create(session, "main", openid).last_inbound_at = clock() - dt.timedelta(hours=47, minutes=59)
        services.outbox.enqueue(session, CONSUMER, text_deliveries("agent:1", "main", openid, "人工回复", 2000))
    fake_wechat.script[openid] = [45015]  # WeChat's own clock: the window has just closed
    original = sender.clients["main"].send_text

    def refused_while_the_citizen_writes(to, content):
        result = original(to, content)
        response = wechat_app.test_client().post("/wechat/main", query_string=wx.signed("tok_main"),
                                                 data=wx.text_xml(openid, "还在吗"))
        assert response.status_code == 200
        return result

    monkeypatch.setattr(sender.clients["main"], "send_text", refused_while_the_citizen_writes)
    worker.run_once()
    monkeypatch.setattr(sender.clients["main"], "send_text", original)
    with services.db.read() as session:
        status = session.execute(select(OutboxDelivery.status).where(OutboxDelivery.key == "agent:1:0")).scalar()
        assert session.execute(select(WeChatUser.last_inbound_at).where(WeChatUser.openid == openid)).scalar() == clock()
    assert status == "pending", status
    clock.advance(minutes=5)  # past the retry's backoff
    while worker.run_once():
        pass
    assert fake_wechat.messages(openid)[-1:] == ["人工回复"]
