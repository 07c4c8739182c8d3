"""Conversations, the channel identities that lead to them, turns and handoff tickets.

One status lives on the conversation (``ConversationStatus``); a ``Handoff`` row is
the record of one episode with a person (reason, priority, who claimed it and when,
how it ended), never a second status to keep in step.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.models.base import Base, utcnow


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_channel_user", "channel", "user_id"),
                      Index("ix_conversations_status", "status"))

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # minted by the server, unguessable
    channel: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(160))  # the channel's verified external user
    status: Mapped[str] = mapped_column(String(16), default="bot")
    language: Mapped[str] = mapped_column(String(8), default="zh")
    script: Mapped[str | None] = mapped_column(String(8), nullable=True)  # hans | hant: how to write back
    region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    pending: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # e.g. an entry awaiting a region
    failures: Mapped[int] = mapped_column(Integer, default=0)
    turn_count: Mapped[int] = mapped_column(Integer, default=0)  # the last turn's seq: no SELECT max(seq)
    last_candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    handoff_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the open ticket, if any
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Identity(Base):
    """(channel, verified external user) → the conversation their next message continues."""

    __tablename__ = "identities"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    external_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    # No foreign key: the identity row is claimed first, so two first messages at once
    # agree on one conversation before either creates it.
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),
                      UniqueConstraint("conversation_id", "client_message_id"),
                      Index("ix_turns_created_at", "created_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(8))  # user | bot | agent | note (staff only)
    text: Mapped[str] = mapped_column(Text)  # personal numbers masked
    text_enc: Mapped[str | None] = mapped_column(Text, nullable=True)  # the original, encrypted, when masking changed it
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    intent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    entry_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    client_message_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Handoff(Base):
    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_open", "closed_at", "priority", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(String(32))  # user_request | low_confidence | emergency | complaint
    priority: Mapped[int] = mapped_column(Integer)  # 0 urgent, 1 normal
    channel: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str] = mapped_column(String(160))
    language: Mapped[str] = mapped_column(String(8))
    region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    question: Mapped[str] = mapped_column(Text, default="")  # the citizen's message that led here (masked)
    candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    kb_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    closed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)  # resolved | returned | abandoned
