"""What citizens tell us back: answer feedback, satisfaction ratings, callback requests."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from bot.models.base import Base, iso, utcnow


class Feedback(Base):
    """One thumbs up/down per bot turn (a second click changes it); 👎 may say why."""

    __tablename__ = "turn_feedback"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    value: Mapped[str] = mapped_column(String(8))  # up | down
    reason: Mapped[str | None] = mapped_column(String(16), nullable=True)  # wrong | outdated | unclear | human
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Rating(Base):
    """Satisfaction (1–5 + comment) after an agent resolved the conversation."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    handoff_id: Mapped[int] = mapped_column(ForeignKey("handoffs.id", ondelete="CASCADE"), unique=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"), index=True)
    agent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CallbackTicket(Base):
    """Leave-a-message request: someone calls the citizen back. The number is kept
    encrypted; staff see it masked until they reveal it (which is audited)."""

    __tablename__ = "callback_tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str | None] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"),
                                                        nullable=True, index=True)
    handoff_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    phone_masked: Mapped[str] = mapped_column(String(32))
    phone_enc: Mapped[str] = mapped_column(Text)
    phone_hash: Mapped[str] = mapped_column(String(64), index=True)  # per-number limits without the number
    name: Mapped[str | None] = mapped_column(String(64), nullable=True)
    note: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="zh")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open | done
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    due_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    handled_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    handled_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "conversation_id": self.conversation_id, "handoff_id": self.handoff_id,
                "phone": self.phone_masked, "name": self.name, "note": self.note, "language": self.language,
                "status": self.status, "created_at": iso(self.created_at), "due_at": iso(self.due_at),
                "handled_by": self.handled_by, "handled_at": iso(self.handled_at)}
