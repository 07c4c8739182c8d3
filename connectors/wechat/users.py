"""Per-user state of the WeChat channel: identity, the service window, numbered options.

The channel's external user is ``<account>:<openid>`` (an openid only means something
within its account). WeChat lets an account push customer-service messages only
for 48 hours after the user's last message, and at most 5 of them;
``window_status`` is what the agent console shows before an agent types.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.db import Database
from bot.models import Conversation, OutboxDelivery, WeChatUser, utcnow, wechat_ordering_key

CHANNEL = "wechat"
CONSUMER = "wechat"


def external_id(account: str, openid: str) -> str:
    return f"{account}:{openid}"


def parse_external_id(value: str) -> tuple[str, str]:
    account, _, openid = value.partition(":")
    return account, openid


def ordering_key(account: str, openid: str) -> str:
    """Messages to one user go out in order, one at a time."""
    return wechat_ordering_key(account, openid)


def get_or_create(session: Session, account: str, openid: str) -> WeChatUser:
    """The user's row, created on first contact (a savepoint absorbs a concurrent insert)."""
    query = select(WeChatUser).where(WeChatUser.account == account, WeChatUser.openid == openid)
    user = session.execute(query).scalar_one_or_none()
    if user is not None:
        return user
    try:
        with session.begin_nested():
            user = WeChatUser(account=account, openid=openid, sent_since_inbound=0, last_options=[])
            session.add(user)
        return user
    except IntegrityError:
        return session.execute(query).scalar_one()


def window_of(user: WeChatUser | None, now: dt.datetime, hours: dt.timedelta, limit: int) -> dict[str, Any]:
    if user is None or user.last_inbound_at is None:
        return {"open": False, "expires_at": None, "remaining": 0}
    expires_at = user.last_inbound_at + hours
    remaining = max(0, limit - (user.sent_since_inbound or 0)) if now < expires_at else 0
    return {"open": remaining > 0, "expires_at": expires_at.isoformat() + "Z", "remaining": remaining}


class Windows:
    """The 48-hour / 5-message window, as the sender enforces it and the console shows it."""

    def __init__(self, db: Database, hours: int = 48, messages: int = 5,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.hours = dt.timedelta(hours=hours)
        self.messages = messages
        self.clock = clock

    def status(self, account: str, openid: str, now: dt.datetime | None = None) -> dict[str, Any]:
        now = now or self.clock()
        with self.db.read() as session:
            user = session.execute(select(WeChatUser).where(WeChatUser.account == account,
                                                            WeChatUser.openid == openid)).scalar_one_or_none()
            status = window_of(user, now, self.hours, self.messages)
            status["queued"] = int(session.execute(select(func.count(OutboxDelivery.id)).where(
                OutboxDelivery.consumer == CONSUMER, OutboxDelivery.ordering_key == ordering_key(account, openid),
                OutboxDelivery.status.in_(("pending", "sending", "held")))).scalar() or 0)
        status["account"] = account
        return status

    def for_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        found = find_by_conversation(self.db, conversation_id)
        return self.status(*found) if found else None


def find_by_conversation(db: Database, conversation_id: str) -> tuple[str, str] | None:
    with db.read() as session:
        row = session.execute(select(Conversation.channel, Conversation.user_id)
                              .where(Conversation.id == conversation_id)).first()
    if row is None or row.channel != CHANNEL:
        return None
    return parse_external_id(row.user_id)


def set_options(session: Session, account: str, openid: str, options: list[str]) -> None:
    get_or_create(session, account, openid).last_options = list(options)
