"""The agent sees WeChat's 48-hour / 5-message reply window on a WeChat ticket."""
import json
import time

from bot.messages import Message
from connectors.app import create_app
from connectors.wechat.crypto import signature

PASSWORD = "window pass 1"


def test_wechat_ticket_shows_reply_window(fresh_bot, monkeypatch):
    monkeypatch.setenv("HOTLINE_WECHAT_ACCOUNTS", json.dumps([{"name": "oa", "token": "tok_oa", "app_id": "wx1"}]))
    monkeypatch.setenv("HOTLINE_WECHAT_OUTBOX_WORKER", "false")
    monkeypatch.delenv("HOTLINE_WEBHOOK_URL", raising=False)
    app = create_app(fresh_bot.settings, bot=fresh_bot)
    app.extensions["hotline_desk"].create_agent("wang", PASSWORD, "小王")
    client = app.test_client()
    timestamp, nonce = str(int(time.time())), "4242"
    body = ("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[openid-7]]></FromUserName>"
            f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            "<Content><![CDATA[转人工]]></Content><MsgId>998877</MsgId></xml>")
    response = client.post("/wechat/oa", query_string={"timestamp": timestamp, "nonce": nonce,
                                                       "signature": signature("tok_oa", timestamp, nonce)},
                           data=body.encode(), content_type="text/xml")
    assert response.status_code == 200
    ticket = fresh_bot.store.list_handoffs(status="open")[0]
    assert ticket["channel"] == "wechat"

    agent = app.test_client()
    login = agent.post("/agents/api/login", json={"username": "wang", "password": PASSWORD}).json
    agent.environ_base["HTTP_X_CSRF_TOKEN"] = login["csrf_token"]
    window = agent.get(f"/agents/api/handoffs/{ticket['id']}").json["channel_status"]
    assert window["open"] is True and window["remaining"] == 5 and window["expires_at"]

    web_ticket = fresh_bot.handle(Message(user_id="web-user", text="转人工")).handoff.id
    assert agent.get(f"/agents/api/handoffs/{web_ticket}").json["channel_status"] is None
