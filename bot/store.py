"""Conversations, turns and handoff tickets in SQL (SQLAlchemy 2).

SQLite file by default; PostgreSQL via ``DATABASE_URL`` for several processes
or hosts. Every message is written in one transaction, so a failure leaves
nothing half-written.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint,
                        create_engine, event, func, or_, select, and_)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

from bot.notify import LocalNotifier

OPEN_STATUSES = ("open", "claimed")
PRIORITY_URGENT = 0
PRIORITY_NORMAL = 1


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class StoreUnavailable(RuntimeError):
    """The database cannot be reached; the caller should answer 503, not crash."""


class Base(DeclarativeBase):
    pass


class Conversation(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128), index=True)
    language: Mapped[str] = mapped_column(String(8), default="zh")
    status: Mapped[str] = mapped_column(String(16), default="bot")  # bot | handoff
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # Understanding half: where the citizen is (gazetteer name or 全国), the entry waiting for the answer
    # to "which city?", and the Chinese script the citizen writes (hans | hant) for replies.
    region: Mapped[str | None] = mapped_column(String(64), nullable=True)
    pending_entry_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    script: Mapped[str | None] = mapped_column(String(8), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    turns: Mapped[list["Turn"]] = relationship(back_populates="conversation", order_by="Turn.seq")


class Turn(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("conversation_id", "seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(16))  # user | bot | agent
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    intent: Mapped[str | None] = mapped_column(String(32), nullable=True)
    entry_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    conversation: Mapped[Conversation] = relationship(back_populates="turns")

    def to_dict(self) -> dict[str, Any]:
        out = {"id": self.id, "seq": self.seq, "role": self.role, "text": self.text,
               "time": self.created_at.isoformat() + "Z"}
        if self.role == "bot":
            out.update(intent=self.intent, entry_id=self.entry_id, score=self.score)
        if self.payload:
            out["payload"] = self.payload
        return out


class Handoff(Base):
    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    priority: Mapped[int] = mapped_column(Integer, default=PRIORITY_NORMAL)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    channel: Mapped[str] = mapped_column(String(32))
    user_id: Mapped[str] = mapped_column(String(128))
    language: Mapped[str] = mapped_column(String(8))
    candidates: Mapped[list[Any]] = mapped_column(JSON, default=list)
    kb_version: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    conversation: Mapped[Conversation] = relationship()

    def to_dict(self, queue_position: int | None = None, transcript: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "conversation_id": self.conversation_id, "reason": self.reason,
            "priority": self.priority, "status": self.status, "channel": self.channel,
            "user_id": self.user_id, "language": self.language, "candidates": self.candidates,
            "kb_version": self.kb_version, "created_at": self.created_at.isoformat() + "Z",
            "claimed_by": self.claimed_by,
            "closed_at": self.closed_at.isoformat() + "Z" if self.closed_at else None,
            "queue_position": queue_position,
        }
        if transcript:
            out["transcript"] = [t.to_dict() for t in self.conversation.turns]
        return out


class Store:
    """Owns the engine and hands out transactions."""

    def __init__(self, url: str, notifier: LocalNotifier | None = None):
        self.notifier = notifier or LocalNotifier()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # Take the write lock at BEGIN: a deferred transaction that upgrades
            # later gets SQLITE_BUSY at once instead of waiting its turn.
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
            # SQLite has one writer. Queue this process's threads on a lock instead of
            # SQLite's busy handler, which sleeps up to 100 ms per retry (measured:
            # p99 at 10 clients 743 ms -> 93 ms). Other processes still use busy_timeout.
            self._writer: threading.Lock | contextlib.nullcontext = threading.Lock()
        else:
            self.engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
            self._writer = contextlib.nullcontext()
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._tables_created = 0
        self.url = url

    def create_schema(self) -> None:
        """Create missing tables (idempotent). Also run by the first transaction
        after new models were imported (channels add their own tables), so a
        server started while the database was down recovers by itself."""
        tables = len(Base.metadata.tables)
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {exc.orig!r}") from exc
        self._tables_created = tables

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        if self._tables_created != len(Base.metadata.tables):
            self.create_schema()
        session = self._sessions()
        try:
            with self._writer, session.begin():
                yield session
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {exc.orig!r}") from exc
        finally:
            session.close()
        changed, queue = session.info.get("changed", set()), session.info.get("queue_changed", False)
        if changed or queue:  # only after a successful commit: readers must find the rows
            self.notifier.publish(changed, queue)

    @staticmethod
    def mark_changed(session: Session, conversation_id: str | None = None, queue: bool = False) -> None:
        """Record what this transaction changes, to notify waiters once it commits."""
        if conversation_id:
            session.info.setdefault("changed", set()).add(conversation_id)
        if queue:
            session.info["queue_changed"] = True

    def ping(self) -> bool:
        try:
            with self.transaction() as session:
                session.execute(select(1))
            return True
        except StoreUnavailable:
            return False

    # -- conversations -------------------------------------------------------

    @staticmethod
    def conversation_for_update(session: Session, conversation_id: str | None, user_id: str,
                                channel: str, language: str) -> Conversation:
        """The conversation row, locked for this transaction; created when new."""
        if conversation_id:
            conv = session.execute(
                select(Conversation).where(Conversation.id == conversation_id).with_for_update()
            ).scalar_one_or_none()
            if conv is not None:
                return conv
        conv = Conversation(id=conversation_id or uuid.uuid4().hex, channel=channel, user_id=user_id,
                            language=language, status="bot", failures=0, last_candidates=[])
        session.add(conv)
        session.flush()
        return conv

    @staticmethod
    def add_turn(session: Session, conv: Conversation, role: str, text: str, **fields: Any) -> Turn:
        last = session.execute(select(func.max(Turn.seq)).where(Turn.conversation_id == conv.id)).scalar()
        turn = Turn(conversation_id=conv.id, seq=(last or 0) + 1, role=role, text=text,
                    payload=fields.pop("payload", None) or {}, **fields)
        session.add(turn)
        session.flush()
        Store.mark_changed(session, conv.id)
        return turn

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        with self.transaction() as session:
            conv = session.get(Conversation, conversation_id)
            if conv is None:
                return None
            handoff = self.open_handoff(session, conv.id)
            return {
                "conversation_id": conv.id, "channel": conv.channel, "user_id": conv.user_id,
                "language": conv.language, "status": conv.status,
                "created_at": conv.created_at.isoformat() + "Z",
                "handoff": handoff.to_dict(self.queue_position(session, handoff)) if handoff else None,
                "turns": [t.to_dict() for t in conv.turns],
            }

    # -- handoffs ------------------------------------------------------------

    @staticmethod
    def open_handoff(session: Session, conversation_id: str) -> Handoff | None:
        return session.execute(
            select(Handoff).where(Handoff.conversation_id == conversation_id,
                                  Handoff.status.in_(OPEN_STATUSES)).order_by(Handoff.id.desc())
        ).scalars().first()

    @staticmethod
    def queue_position(session: Session, handoff: Handoff) -> int | None:
        """1-based place among waiting tickets (urgent first, then oldest); None once claimed."""
        if handoff.status != "open":
            return None
        ahead = session.execute(
            select(func.count(Handoff.id)).where(
                Handoff.status == "open",
                Handoff.id != handoff.id,
                or_(Handoff.priority < handoff.priority,
                    and_(Handoff.priority == handoff.priority, Handoff.created_at < handoff.created_at),
                    and_(Handoff.priority == handoff.priority, Handoff.created_at == handoff.created_at,
                         Handoff.id < handoff.id)),
            )
        ).scalar()
        return int(ahead or 0) + 1

    def list_handoffs(self, status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        with self.transaction() as session:
            query = select(Handoff)
            if status:
                query = query.where(Handoff.status == status)
            query = query.order_by(Handoff.priority, Handoff.created_at, Handoff.id).limit(limit)
            return [h.to_dict(self.queue_position(session, h)) for h in session.execute(query).scalars()]

    def handoff(self, handoff_id: int) -> dict[str, Any] | None:
        with self.transaction() as session:
            handoff = session.get(Handoff, handoff_id)
            if handoff is None:
                return None
            return handoff.to_dict(self.queue_position(session, handoff), transcript=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" listener issues BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: no fsync per commit; a power cut may lose the last commits but never corrupts.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
