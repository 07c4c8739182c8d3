"""Outbound webhook for external ticket systems, via a transactional outbox.

Every handoff event is first written to ``webhook_outbox`` in the same
transaction as the change it describes (so nothing is lost when the target is
down or the process dies), then a background thread POSTs it as JSON signed
with HMAC-SHA256 (``X-Hotline-Signature: sha256=<hex>``), retrying with
exponential backoff. The citizen's reply never waits for the network.

New handoffs are created by the engine, which knows nothing of webhooks: a
mapper ``after_insert`` listener on ``Handoff`` records them, but only for
databases where webhooks were enabled (``enable(store)``), so other stores in
the same process are untouched.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import threading
import weakref
from typing import Any

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import JSON, DateTime, Integer, String, Text, event, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from bot.store import Base, Handoff, Store, utcnow

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hotline-Signature"
LEASE_SECONDS = 60  # a row being sent is hidden from other workers this long


class WebhookSettings(BaseSettings):
    """``HOTLINE_WEBHOOK_URL`` / ``HOTLINE_WEBHOOK_SECRET`` and retry tuning."""

    model_config = SettingsConfigDict(env_prefix="HOTLINE_WEBHOOK_", env_file="hotline.env", extra="ignore")

    url: str | None = None
    secret: str | None = None
    timeout: float = 5.0
    backoff_base: float = 2.0   # seconds before the first retry; doubles each attempt
    backoff_max: float = 300.0  # retries never stop, they just settle at this interval
    poll_interval: float = 1.0

    @property
    def enabled(self) -> bool:
        return bool(self.url)


class OutboxEvent(Base):
    __tablename__ = "webhook_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """For receivers (and tests): constant-time check of ``X-Hotline-Signature``."""
    return bool(header) and hmac.compare_digest(sign(secret, body), header)


def handoff_payload(handoff: Handoff) -> dict[str, Any]:
    return {"id": handoff.id, "conversation_id": handoff.conversation_id, "reason": handoff.reason,
            "priority": handoff.priority, "status": handoff.status, "channel": handoff.channel,
            "user_id": handoff.user_id, "language": handoff.language,
            "candidates": list(handoff.candidates or []), "kb_version": handoff.kb_version,
            "claimed_by": handoff.claimed_by,
            "created_at": handoff.created_at.isoformat() + "Z" if handoff.created_at else None}


# -- recording (inside the caller's transaction) --------------------------------

_enabled_engines: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def enable(store: Store) -> None:
    """Record events for this database from now on (its schema must include the outbox)."""
    _enabled_engines.add(store.engine)


def is_enabled(engine: Engine) -> bool:
    return engine in _enabled_engines


def _row(event_name: str, data: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    return {"event": event_name, "created_at": now, "next_attempt_at": now, "attempts": 0,
            "payload": {"event": event_name, "occurred_at": now.isoformat() + "Z"} | data}


def record(session: Session, event_name: str, data: dict[str, Any]) -> None:
    """Queue an event in the caller's transaction (no-op where webhooks are off)."""
    if is_enabled(session.get_bind()):
        session.execute(insert(OutboxEvent).values(**_row(event_name, data)))


@event.listens_for(Handoff, "after_insert")
def _handoff_created(_mapper, connection: Connection, target: Handoff) -> None:
    if is_enabled(connection.engine):
        connection.execute(insert(OutboxEvent.__table__).values(
            **_row("handoff.created", {"handoff": handoff_payload(target)})))


# -- delivery ---------------------------------------------------------------------

class WebhookWorker:
    """Background sender: at-least-once delivery; receivers dedupe on ``X-Hotline-Delivery``."""

    def __init__(self, store: Store, settings: WebhookSettings, client: httpx.Client | None = None):
        if not settings.url:
            raise ValueError("HOTLINE_WEBHOOK_URL is not set")
        if not settings.secret:
            log.warning("HOTLINE_WEBHOOK_SECRET is not set: webhook events are sent unsigned")
        self.store = store
        self.settings = settings
        self.client = client or httpx.Client(timeout=settings.timeout)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hotline-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                sent = self.run_once()
            except Exception:  # the worker must outlive a database hiccup
                log.exception("webhook worker pass failed")
                sent = 0
            if not sent:
                self._wake.wait(self.settings.poll_interval)
                self._wake.clear()

    def backoff(self, attempts: int) -> float:
        return min(self.settings.backoff_max, self.settings.backoff_base * 2 ** max(0, attempts - 1))

    def run_once(self, limit: int = 50) -> int:
        """Try every due event once; returns how many were delivered."""
        now = utcnow()
        with self.store.transaction() as session:
            due = session.execute(
                select(OutboxEvent.id, OutboxEvent.next_attempt_at)
                .where(OutboxEvent.delivered_at.is_(None), OutboxEvent.next_attempt_at <= now)
                .order_by(OutboxEvent.id).limit(limit)).all()
        delivered = 0
        for event_id, due_at in due:
            if self._stop.is_set():
                break
            delivered += self._send(event_id, due_at)
        return delivered

    def _lease(self, event_id: int, due_at: dt.datetime) -> dict[str, Any] | None:
        """Take the row for LEASE_SECONDS (conditional update), so two workers never both send it."""
        with self.store.transaction() as session:
            taken = session.execute(
                update(OutboxEvent).where(OutboxEvent.id == event_id, OutboxEvent.next_attempt_at == due_at,
                                          OutboxEvent.delivered_at.is_(None))
                .values(next_attempt_at=utcnow() + dt.timedelta(seconds=LEASE_SECONDS))).rowcount
            if taken != 1:
                return None
            row = session.get(OutboxEvent, event_id)
            return {"payload": row.payload, "attempts": row.attempts, "event": row.event}

    def _send(self, event_id: int, due_at: dt.datetime) -> int:
        leased = self._lease(event_id, due_at)
        if leased is None:
            return 0
        body = json.dumps({"delivery_id": event_id} | leased["payload"], ensure_ascii=False,
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Hotline-Event": leased["event"],
                   "X-Hotline-Delivery": str(event_id), "User-Agent": "hotline-bot-webhook/1"}
        if self.settings.secret:
            headers[SIGNATURE_HEADER] = sign(self.settings.secret, body)
        error = None
        try:
            response = self.client.post(self.settings.url, content=body, headers=headers)
            if not 200 <= response.status_code < 300:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        attempts = leased["attempts"] + 1
        with self.store.transaction() as session:
            values: dict[str, Any] = {"attempts": attempts, "last_error": error}
            if error is None:
                values["delivered_at"] = utcnow()
            else:
                values["next_attempt_at"] = utcnow() + dt.timedelta(seconds=self.backoff(attempts))
                log.warning("webhook event %d (%s) failed, attempt %d: %s", event_id, leased["event"],
                            attempts, error)
            session.execute(update(OutboxEvent).where(OutboxEvent.id == event_id).values(**values))
        return 1 if error is None else 0


def pending_count(store: Store) -> int:
    with store.transaction() as session:
        return len(session.execute(select(OutboxEvent.id).where(OutboxEvent.delivered_at.is_(None))).all())
