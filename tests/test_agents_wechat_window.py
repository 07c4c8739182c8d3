"""The agent sees WeChat's 48-hour / 5-message reply window on a WeChat ticket."""
import time

from bot.config import WeChatAccount, WeChatSettings
from bot.messages import Message
from connectors.app import create_app
from connectors.wechat.crypto import signature
from tests.conftest import build_services

PASSWORD = "window pass 1"


def test_wechat_ticket_shows_reply_window(settings, engine, clock, tmp_path):
    wechat = WeChatSettings(accounts=[WeChatAccount(name="oa", token="tok_oa", app_id="wx1")])
    services = build_services(settings, engine, f"sqlite:///{tmp_path / 'w.db'}", clock, wechat=wechat)
    try:
        app = create_app(services)
        services.staff.create("wang", PASSWORD, "小王")
        client = app.test_client()
        timestamp, nonce = str(int(time.time())), "4242"
        body = ("<xml><ToUserName><![CDATA[gh_x]]></ToUserName><FromUserName><![CDATA[openid-7]]></FromUserName>"
                f"<CreateTime>{timestamp}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
                "<Content><![CDATA[转人工]]></Content><MsgId>998877</MsgId></xml>")
        response = client.post("/wechat/oa", query_string={"timestamp": timestamp, "nonce": nonce,
                                                           "signature": signature("tok_oa", timestamp, nonce)},
                               data=body.encode(), content_type="text/xml")
        assert response.status_code == 200
        ticket = services.desk.list_handoffs(status="waiting")[0]
        assert ticket["channel"] == "wechat"

        agent = app.test_client()
        login = agent.post("/agents/api/login", json={"username": "wang", "password": PASSWORD}).json
        agent.environ_base["HTTP_X_CSRF_TOKEN"] = login["csrf_token"]
        window = agent.get(f"/agents/api/handoffs/{ticket['id']}").json["channel_status"]
        assert window["open"] is True and window["remaining"] == 5 and window["expires_at"]

        web_ticket = services.bot.handle(Message(user_id="web-user", text="转人工", channel="api")).handoff.id
        assert agent.get(f"/agents/api/handoffs/{web_ticket}").json["channel_status"] is None
    finally:
        services.close()
