"""State of the WeChat channel: the inbound pipeline, users' service windows,
access tokens and the nonces of signed URLs already used."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.models.base import Base, utcnow


class WeChatInbound(Base):
    """One message as WeChat pushed it, through ``received → answered → sent``.

    The answer is stored before anything is acknowledged, so WeChat's retry (or a
    restarted process) resumes from the last state instead of losing the message."""

    __tablename__ = "wechat_inbound"
    __table_args__ = (UniqueConstraint("account", "dedupe_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(160))
    openid: Mapped[str] = mapped_column(String(64))
    msg_type: Mapped[str] = mapped_column(String(32), default="text")
    event: Mapped[str] = mapped_column(String(32), default="")
    content_enc: Mapped[str | None] = mapped_column(Text, nullable=True)  # to answer after a crash; encrypted
    # received → answered → sent (passive reply) | queued (send API) ; ignored (nothing to say)
    status: Mapped[str] = mapped_column(String(12), default="received")
    deferred: Mapped[bool] = mapped_column(Boolean, default=False)  # the reply goes by the send API
    reply: Mapped[str | None] = mapped_column(Text, nullable=True)
    options: Mapped[list[Any]] = mapped_column(JSON, default=list)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)  # being computed until
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


def wechat_ordering_key(account: str, openid: str) -> str:
    """The outbox ordering key of one WeChat user's messages (in order, one at a time); retention deletes by it."""
    return f"wx:{account}:{openid}"


class WeChatUser(Base):
    """The customer-service window (48 h / 5 messages) and the numbered options last shown."""

    __tablename__ = "wechat_users"
    __table_args__ = (UniqueConstraint("account", "openid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(64), index=True)
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    sent_since_inbound: Mapped[int] = mapped_column(Integer, default=0)
    last_options: Mapped[list[Any]] = mapped_column(JSON, default=list)


class WeChatToken(Base):
    __tablename__ = "wechat_tokens"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    access_token: Mapped[str] = mapped_column(String(512))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class WeChatNonce(Base):
    """Plain mode signs only the URL: a signed (timestamp, nonce) is bound to the first body
    it came with. WeChat's own retries resend that body and pass; a captured URL with
    another openid or text does not."""

    __tablename__ = "wechat_nonces"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    nonce: Mapped[str] = mapped_column(String(80), primary_key=True)
    body_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
