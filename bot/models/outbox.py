"""The transactional outbox: every domain event, and the deliveries it causes.

``outbox_events`` gets one row per event in the same transaction as the change
it describes; every process tails it to wake its waiting long polls (or Redis
carries the wake-up). ``outbox_deliveries`` holds the work of consumers that
talk to the outside world (webhook, WeChat send API) until it is done.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.models.base import Base, utcnow


class OutboxEvent(Base):
    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    queue: Mapped[bool] = mapped_column(Boolean, default=False)  # the handoff queue moved
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class OutboxDelivery(Base):
    __tablename__ = "outbox_deliveries"
    __table_args__ = (Index("ix_outbox_deliveries_due", "consumer", "status", "next_attempt_at"),
                      Index("ix_outbox_deliveries_ordering", "ordering_key", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(16))  # webhook | wechat
    key: Mapped[str] = mapped_column(String(128), unique=True)  # idempotency: one delivery per key
    ordering_key: Mapped[str | None] = mapped_column(String(128), nullable=True)  # same key: in order, one at a time
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # pending → sending → done; held = waits for something outside (WeChat's window); dead = gave up
    status: Mapped[str] = mapped_column(String(8), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    done_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
