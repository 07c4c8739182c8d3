"""The WeChat connector's own tables, on the core ``Base`` so ``create_schema`` makes them.

- ``wechat_inbound``: one row per message/event ever accepted; the unique key
  is what stops WeChat's retries from producing a second turn.
- ``wechat_users``: account + openid → conversation, the customer-service
  window (last inbound, sends since) and the numbered options last shown.
- ``wechat_outbox``: every send-API message until WeChat accepted it.
- ``wechat_tokens``: the access_token per account, shared by all processes.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store import Base, utcnow


class WeChatInbound(Base):
    __tablename__ = "wechat_inbound"
    __table_args__ = (UniqueConstraint("account", "dedupe_key", name="uq_wechat_inbound_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32))
    dedupe_key: Mapped[str] = mapped_column(String(160))
    # received → passive | queued | ignored | failed
    outcome: Mapped[str] = mapped_column(String(16), default="received")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class WeChatUser(Base):
    __tablename__ = "wechat_users"
    __table_args__ = (UniqueConstraint("account", "openid", name="uq_wechat_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(64), index=True)
    conversation_id: Mapped[str] = mapped_column(String(64), unique=True)
    last_inbound_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    sent_since_inbound: Mapped[int] = mapped_column(Integer, default=0)
    last_options: Mapped[list[Any]] = mapped_column(JSON, default=list)  # button payloads, "1" = [0]


class WeChatOutbox(Base):
    __tablename__ = "wechat_outbox"
    __table_args__ = (Index("ix_wechat_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32))
    openid: Mapped[str] = mapped_column(String(64), index=True)
    content: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))  # bot | agent | system
    # Idempotency for producers (a deferred answer, an agent turn): one row per ref.
    ref: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    # pending → sending → sent; held = WeChat refused (window closed / over limit): waits for the user
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    errcode: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)


class WeChatToken(Base):
    __tablename__ = "wechat_tokens"

    account: Mapped[str] = mapped_column(String(32), primary_key=True)
    access_token: Mapped[str] = mapped_column(String(512))
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)
