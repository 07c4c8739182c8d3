"""The WeChat sender: the outbox consumer that pushes through the customer-service API.

Agent messages and desk notices of WeChat conversations (``TurnAdded`` with
``push``) and answers that missed their passive reply become deliveries, one per
≤2000-byte piece, keyed by turn/inbound id (recording twice sends once), in
order per user. Outcomes: sent; held while the user's 48 h / 5-message window is
closed (45015/45047 too) until the user writes again; anything else retried
with backoff — HTTP errors, timeouts, a body without ``errcode``.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select, update

from bot.conversations.events import Event, TurnAdded
from bot.conversations.outbox import Delivery, Outcome
from bot.db import Database
from bot.models import WeChatUser, utcnow
from bot.render import split
from connectors.wechat.client import WeChatClient
from connectors.wechat.users import CHANNEL, CONSUMER, Windows, ordering_key, parse_external_id, window_of


def text_deliveries(key: str, account: str, openid: str, text: str, max_bytes: int) -> list[Delivery]:
    return [Delivery(key=f"{key}:{i}", ordering_key=ordering_key(account, openid),
                     payload={"account": account, "openid": openid, "content": piece})
            for i, piece in enumerate(split(text.strip(), max_bytes))]


class WeChatSender:
    name = CONSUMER

    def __init__(self, db: Database, clients: Mapping[str, WeChatClient], windows: Windows, max_bytes: int = 2000,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.clock = clock
        self.clients = clients
        self.windows = windows
        self.max_bytes = max_bytes

    def deliveries(self, event: Event) -> list[Delivery]:
        if not isinstance(event, TurnAdded) or event.channel != CHANNEL or not event.push or not event.text.strip():
            return []
        account, openid = parse_external_id(event.user_id)
        return text_deliveries(f"wx-turn:{event.turn_id}", account, openid, event.text, self.max_bytes)

    def deliver(self, payload: dict[str, Any]) -> Outcome:
        account, openid = payload["account"], payload["openid"]
        client = self.clients.get(account)
        if client is None:
            return Outcome.retry(f"account {account!r} is not configured")
        now = self.clock()
        with self.db.read() as session:
            user = session.execute(select(WeChatUser).where(WeChatUser.account == account,
                                                            WeChatUser.openid == openid)).scalar_one_or_none()
            window = window_of(user, now, self.windows.hours, self.windows.messages)
        if user is not None and user.last_inbound_at is not None and not window["open"]:
            return Outcome.hold("customer-service window closed")
        inbound_before = user.last_inbound_at if user is not None else None
        result = client.send_text(openid, payload["content"])
        if result.ok:
            with self.db.transaction() as session:
                session.execute(update(WeChatUser).where(WeChatUser.account == account, WeChatUser.openid == openid)
                                .values(sent_since_inbound=WeChatUser.sent_since_inbound + 1))
            return Outcome.done()
        if result.retry == "hold":
            # The citizen wrote while WeChat refused (45015/45047): the window is open again, and that message
            # released only rows already held, not this one, still sending; held now, it waited for yet another
            # message from the citizen, maybe never. Sent again instead.
            with self.db.read() as session:
                inbound_now = session.execute(select(WeChatUser.last_inbound_at).where(
                    WeChatUser.account == account, WeChatUser.openid == openid)).scalar_one_or_none()
            if inbound_now is not None and (inbound_before is None or inbound_now > inbound_before):
                return Outcome.retry(f"{result.error or 'held'}; the citizen wrote meanwhile: sent again")
            return Outcome.hold(result.error or "held")
        return Outcome.retry(result.error or "send failed")

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def release_window(session, account: str, openid: str, now: dt.datetime) -> None:
    """The user wrote: the window reopens and held messages may go out again."""
    from bot.conversations.outbox import Outbox
    from connectors.wechat.users import get_or_create

    user = get_or_create(session, account, openid)
    user.last_inbound_at = now
    user.sent_since_inbound = 0
    Outbox.release_held(session, CONSUMER, ordering_key(account, openid), user.last_inbound_at)
