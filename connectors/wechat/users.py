"""Per-user state: conversation id, the customer-service window, the numbered options.

WeChat lets an account push customer-service messages only for 48 hours after
the user's last message, and at most 5 of them; ``window_status`` is what the
agent console shows before an agent types.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bot.store import Store, utcnow
from connectors.wechat.models import WeChatOutbox, WeChatUser

CHANNEL = "wechat"
DEFAULT_WINDOW = dt.timedelta(hours=48)
DEFAULT_MESSAGES = 5


def conversation_id_for(account: str, openid: str) -> str:
    """Deterministic, so the same user always lands in the same conversation (max 64 chars)."""
    plain = f"wx-{account}-{openid}"
    if len(plain) <= 64:
        return plain
    return "wx-" + hashlib.sha256(f"{account}\0{openid}".encode()).hexdigest()[:48]


def get_or_create(session: Session, account: str, openid: str) -> WeChatUser:
    """The user's row, created on first contact (a savepoint absorbs a concurrent insert)."""
    query = select(WeChatUser).where(WeChatUser.account == account, WeChatUser.openid == openid)
    user = session.execute(query).scalar_one_or_none()
    if user is not None:
        return user
    try:
        with session.begin_nested():
            user = WeChatUser(account=account, openid=openid, conversation_id=conversation_id_for(account, openid),
                              sent_since_inbound=0, last_options=[])
            session.add(user)
        return user
    except IntegrityError:
        return session.execute(query).scalar_one()


def touch_inbound(session: Session, account: str, openid: str, now: dt.datetime | None = None) -> WeChatUser:
    """The user wrote: the window reopens, and messages WeChat refused may go out again."""
    user = get_or_create(session, account, openid)
    user.last_inbound_at = now or utcnow()
    user.sent_since_inbound = 0
    session.execute(update(WeChatOutbox)
                    .where(WeChatOutbox.account == account, WeChatOutbox.openid == openid,
                           WeChatOutbox.status == "held")
                    .values(status="pending", next_attempt_at=user.last_inbound_at))
    return user


def window_of(user: WeChatUser | None, now: dt.datetime | None = None,
              hours: dt.timedelta = DEFAULT_WINDOW, limit: int = DEFAULT_MESSAGES) -> dict[str, Any]:
    now = now or utcnow()
    if user is None or user.last_inbound_at is None:
        return {"open": False, "expires_at": None, "remaining": 0}
    expires_at = user.last_inbound_at + hours
    remaining = max(0, limit - (user.sent_since_inbound or 0)) if now < expires_at else 0
    return {"open": remaining > 0, "expires_at": expires_at.isoformat() + "Z", "remaining": remaining}


def window_status(openid: str, account: str | None = None, store: Store | None = None,
                  now: dt.datetime | None = None) -> dict[str, Any]:
    """``{open, expires_at, remaining, queued}`` for the agent console.

    ``account`` may be omitted (the most recently active account of this openid
    is used); ``store`` defaults to the current Flask app's bot store.
    """
    hours, limit = DEFAULT_WINDOW, DEFAULT_MESSAGES
    if store is None:
        from flask import current_app

        store = _app_store()
        runtime = current_app.extensions.get("hotline_wechat")
        if runtime is not None:
            hours = dt.timedelta(hours=runtime.settings.window_hours)
            limit = runtime.settings.window_messages
    with store.transaction() as session:
        query = select(WeChatUser).where(WeChatUser.openid == openid)
        if account is not None:
            query = query.where(WeChatUser.account == account)
        users = list(session.execute(query).scalars())
        user = max(users, key=lambda u: u.last_inbound_at or dt.datetime.min, default=None)
        status = window_of(user, now, hours, limit)
        queued = 0
        if user is not None:
            queued = len(session.execute(select(WeChatOutbox.id).where(
                WeChatOutbox.account == user.account, WeChatOutbox.openid == openid,
                WeChatOutbox.status.in_(("pending", "sending", "held")))).all())
        status["queued"] = queued
        status["account"] = user.account if user is not None else account
        return status


def window_status_for_conversation(conversation_id: str, store: Store | None = None) -> dict[str, Any] | None:
    """The same, keyed by our conversation id (what the agent console has at hand)."""
    found = find_by_conversation(store or _app_store(), conversation_id)
    if found is None:
        return None
    return window_status(found[1], account=found[0], store=store)


def _app_store() -> Store:
    from flask import current_app

    return current_app.extensions["hotline_bot"].store


def find_by_conversation(store: Store, conversation_id: str) -> tuple[str, str] | None:
    with store.transaction() as session:
        user = session.execute(select(WeChatUser).where(WeChatUser.conversation_id == conversation_id)).scalar_one_or_none()
        return (user.account, user.openid) if user is not None else None


def set_options(store: Store, account: str, openid: str, options: list[str]) -> None:
    with store.transaction() as session:
        get_or_create(session, account, openid).last_options = list(options)


def get_options(store: Store, account: str, openid: str) -> list[str]:
    with store.transaction() as session:
        user = session.execute(select(WeChatUser).where(WeChatUser.account == account,
                                                        WeChatUser.openid == openid)).scalar_one_or_none()
        return list(user.last_options or []) if user is not None else []
