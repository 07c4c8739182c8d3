"""Tables of the agent desk: agent accounts, answer feedback, callback tickets.

They live on ``bot.store.Base`` so ``Store.create_schema()`` creates them next
to conversations and handoffs (in the same SQLite file or PostgreSQL database).
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.store import Base, utcnow


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() + "Z" if value else None


class Agent(Base):
    __tablename__ = "agents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))
    # On duty = switched on in the console AND seen recently (the console polls),
    # so a closed browser tab stops counting without anyone logging out.
    on_duty: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Feedback(Base):
    """One thumbs up/down per bot turn; a second click changes it."""

    __tablename__ = "turn_feedback"
    __table_args__ = (UniqueConstraint("turn_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id"), index=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    entry_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    value: Mapped[str] = mapped_column(String(8))  # up | down
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class CallbackTicket(Base):
    """Leave-a-message request: someone calls the citizen back."""

    __tablename__ = "callback_tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str | None] = mapped_column(ForeignKey("conversations.id"), nullable=True, index=True)
    phone: Mapped[str] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="zh")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | done
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    handled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    handled_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "conversation_id": self.conversation_id, "phone": self.phone,
                "name": self.name, "note": self.note, "language": self.language, "status": self.status,
                "created_at": iso(self.created_at), "handled_by": self.handled_by,
                "handled_at": iso(self.handled_at)}
