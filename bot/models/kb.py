"""The knowledge base as edited in the console: entries with their live content and
pending draft, every published revision of an entry, and the publications (KB versions).

The YAML files stay a first-class format (``hotline-bot kb import|export``); when editing
is enabled these tables are the live source of truth for the FAQ entries. The latest
``kb_publications`` row is the version every server process compares against.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from bot.models.base import Base, utcnow


class KbPublication(Base):
    """One published KB version: who published what, when. The newest row is the live KB."""

    __tablename__ = "kb_publications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(String(16))  # content hash of the KB files, as `kb_version` today
    published_by: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    note: Mapped[str] = mapped_column(String(200), default="")
    entries: Mapped[list[str]] = mapped_column(JSON, default=list)  # ids whose content changed
    # Scheduled publish: served from this moment on (None: at once). Until then the previous
    # publication stays live; every process switches on its first request after it.
    effective_from: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)

    # ``KnowledgeStore.latest()`` runs before every request: the newest immediate publication and the newest
    # scheduled one in effect, each one index probe (ordering the whole table by when each took effect cost
    # 0.32 ms at 10 publications and 1.22 ms at 3,000 on SQLite, 1.04 / 2.39 ms on PostgreSQL)
    # (partial, one kind each: PostgreSQL does not read ``IS NULL`` as an equality that fixes an index's order,
    # and SQLite without statistics chose an index on ``effective_from`` for the immediate ones, then sorted them)
    __table_args__ = (Index("ix_kb_publications_immediate", "published_at", "id",
                            sqlite_where=text("effective_from IS NULL"),
                            postgresql_where=text("effective_from IS NULL")),
                      Index("ix_kb_publications_scheduled", "effective_from", "id",
                            sqlite_where=text("effective_from IS NOT NULL"),
                            postgresql_where=text("effective_from IS NOT NULL")))


class KbEntry(Base):
    """An FAQ entry: its live (published) content and at most one pending draft."""

    __tablename__ = "kb_entries"

    entry_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    category: Mapped[str] = mapped_column(String(32), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)  # order inside its category file
    published: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)  # None: never published / retired
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    draft_retire: Mapped[bool] = mapped_column(Boolean, default=False)  # the draft retires the entry
    draft_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    draft_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KbRevision(Base):
    """The content of an entry as one publication made it live (None: retired): its history."""

    __tablename__ = "kb_revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    entry_id: Mapped[str] = mapped_column(String(120), index=True)
    publication_id: Mapped[int] = mapped_column(ForeignKey("kb_publications.id", ondelete="CASCADE"), index=True)
    content: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    author: Mapped[str] = mapped_column(String(64))  # who published it
    # who wrote the draft it was made from (None: before this was kept, an import or a rollback): a cancelled
    # scheduled change goes back to its writer's drafts, not to the publisher's (the four-eyes rule reads it)
    drafted_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KbInboxDismissal(Base):
    """A question an editor dismissed from the unanswered-question inbox (normalised text)."""

    __tablename__ = "kb_inbox_dismissals"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the normalised question
    text: Mapped[str] = mapped_column(String(500))  # masked
    dismissed_by: Mapped[str] = mapped_column(String(64))
    dismissed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class KbContact(Base):
    """One contact of the directory: live content and at most one pending draft (published with the KB)."""

    __tablename__ = "kb_contacts"

    contact_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    published: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    draft: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    draft_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    draft_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
