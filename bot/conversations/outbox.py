"""One transactional outbox for every consumer of domain events.

``Outbox.record`` runs inside the caller's transaction: it writes the events to
``outbox_events`` and, for each consumer that wants an event delivered outside
(the webhook sender, the WeChat sender), a row in ``outbox_deliveries`` whose
unique ``key`` makes recording idempotent. After the commit it wakes the
notifier (long polls) and the consumers' workers.

``OutboxWorker`` is the one retry/backoff implementation: it leases due rows
(a process that dies mid-send gives its rows back when the lease ends), sends
them on a thread pool so one hanging request blocks nobody else, keeps rows of
one ``ordering_key`` in order and one at a time, and records the outcome:
done, retry later (exponential backoff, capped, never giving up), or held until
something outside changes (WeChat's service window: the citizen writes again).
"""
from __future__ import annotations

import datetime as dt
import functools
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal, Protocol, cast

from sqlalchemy import Table, and_, delete, exists, insert, select, update
from sqlalchemy.orm import aliased
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from bot.config import OutboxSettings
from bot.conversations.events import Event
from bot.conversations.notify import Notifier
from bot.db import Database, rowcount
from bot.models import OutboxDelivery, OutboxEvent, utcnow

log = logging.getLogger(__name__)

BATCH = 200
_INSERT_EVENTS = insert(cast(Table, OutboxEvent.__table__))  # Core, built once: no ORM bulk machinery per message


@dataclass(frozen=True)
class Delivery:
    """What a consumer wants delivered for an event."""

    key: str
    payload: dict[str, Any]
    ordering_key: str | None = None


@dataclass(frozen=True)
class Outcome:
    status: Literal["done", "retry", "hold"]
    error: str | None = None

    @classmethod
    def done(cls) -> "Outcome":
        return cls("done")

    @classmethod
    def retry(cls, error: str) -> "Outcome":
        return cls("retry", error)

    @classmethod
    def hold(cls, error: str) -> "Outcome":
        return cls("hold", error)


class Consumer(Protocol):
    name: str

    def deliveries(self, event: Event) -> list[Delivery]:
        """Inside the transaction: what this event must cause outside (usually nothing)."""

    def deliver(self, payload: dict[str, Any]) -> Outcome:
        """Outside any transaction, on a worker thread: do it once."""


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(OutboxDelivery).on_conflict_do_nothing(index_elements=["key"]), rows)


class Outbox:
    def __init__(self, notifier: Notifier, consumers: Iterable[Consumer] = (),
                 clock: Callable[[], dt.datetime] = utcnow):
        # Rows are stamped with the same clock the workers read to decide what is due: stamped
        # with real time, a row enqueued under a simulated or test clock was never due (every
        # WeChat push waited when the test clock was behind the wall clock).
        self.notifier = notifier
        self.clock = clock
        self.consumers = {c.name: c for c in consumers}
        self._wakers: dict[str, Callable[[], None]] = {}

    def add_consumer(self, consumer: Consumer) -> None:
        self.consumers[consumer.name] = consumer

    def on_delivery(self, consumer: str, wake: Callable[[], None]) -> None:
        self._wakers[consumer] = wake

    def record(self, session: Session, events: Iterable[Event], now: dt.datetime | None = None) -> None:
        events = list(events)
        if not events:
            return
        now = now or self.clock()
        session.connection().execute(_INSERT_EVENTS, [
            {"type": e.type, "conversation_id": e.conversation_id, "queue": e.queue, "payload": e.payload(),
             "created_at": now} for e in events])
        rows: list[dict[str, Any]] = []
        for event in events:
            for consumer in self.consumers.values():
                for delivery in consumer.deliveries(event):
                    rows.append(self._row(consumer.name, delivery, now))
        if rows:
            _insert_ignoring_duplicates(session, rows)
        conversation_ids = {e.conversation_id for e in events if e.conversation_id}
        queue = any(e.queue for e in events)
        consumers = {r["consumer"] for r in rows}
        Database.after_commit(session, lambda: self._after_commit(conversation_ids, queue, consumers))

    def enqueue(self, session: Session, consumer: str, deliveries: Iterable[Delivery],
                now: dt.datetime | None = None) -> None:
        """Deliveries that no event describes (a WeChat answer that missed its passive reply)."""
        rows = [self._row(consumer, d, now or self.clock()) for d in deliveries]
        if rows:
            _insert_ignoring_duplicates(session, rows)
            Database.after_commit(session, lambda: self._after_commit(set(), False, {consumer}))

    @staticmethod
    def release_held(session: Session, consumer: str, ordering_key: str, now: dt.datetime) -> int:
        """Held deliveries of ``ordering_key`` may go out again (e.g. the citizen wrote)."""
        return rowcount(session.execute(
            update(OutboxDelivery)
            .where(OutboxDelivery.consumer == consumer, OutboxDelivery.ordering_key == ordering_key,
                   OutboxDelivery.status == "held")
            .values(status="pending", next_attempt_at=now)))

    @staticmethod
    def _row(consumer: str, delivery: Delivery, now: dt.datetime) -> dict[str, Any]:
        return {"consumer": consumer, "key": delivery.key[:128], "ordering_key": delivery.ordering_key,
                "payload": delivery.payload, "status": "pending", "attempts": 0, "next_attempt_at": now,
                "created_at": now}

    def _after_commit(self, conversation_ids: set[str], queue: bool, consumers: set[str]) -> None:
        if conversation_ids or queue:
            self.notifier.publish(conversation_ids, queue)
        for name in consumers:
            wake = self._wakers.get(name)
            if wake is not None:
                wake()


def backoff(attempts: int, base: float, maximum: float) -> float:
    return float(min(maximum, base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class _Lease:
    id: int
    payload: dict[str, Any]
    attempts: int
    ordering_key: str | None


class OutboxWorker:
    """Delivers one consumer's rows: at least once, in order per ordering key."""

    def __init__(self, db: Database, consumer: Consumer, settings: OutboxSettings,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.consumer = consumer
        self.settings = settings
        self.clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: dict[int, Future[str]] = {}
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._pool = ThreadPoolExecutor(self.settings.workers, thread_name_prefix=f"outbox-{self.consumer.name}")
        self._thread = threading.Thread(target=self._run, name=f"outbox-{self.consumer.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.dispatch()
            except Exception:  # the worker must outlive a database hiccup
                log.exception("outbox %s: pass failed", self.consumer.name)
                claimed = 0
            if not claimed:
                self._wake.wait(self.settings.poll_interval)
                self._wake.clear()

    def dispatch(self) -> int:
        """Lease what is due and hand it to the pool; returns how many were started."""
        if self._pool is None:
            raise RuntimeError("dispatch() needs start(); use run_once() without a pool")
        with self._lock:
            busy = set(self._in_flight)
        free = self.settings.workers - len(busy)
        if free <= 0:
            return 0  # a worker that finishes wakes the loop
        # No more than the free workers take at once: a row leased and left queued behind busy workers outlived
        # its lease, was leased again by the next pass and sent twice (reproduced: 2 workers, 0.3 s sends, 1 s lease)
        leases = self._lease(self.clock(), limit=free, busy=busy)
        for lease in leases:
            future = self._pool.submit(self._deliver, lease)
            with self._lock:
                self._in_flight[lease.id] = future
            future.add_done_callback(functools.partial(self._finished_future, lease.id))
        return len(leases)

    def _finished_future(self, lease_id: int, _future: Future[str]) -> None:
        self._finished(lease_id)

    def _finished(self, lease_id: int) -> None:
        with self._lock:
            self._in_flight.pop(lease_id, None)
        self._wake.set()  # the next row of that ordering key may go now

    def run_once(self) -> int:
        """Lease and deliver what is due, synchronously (tests, CLI); returns how many are done."""
        done = 0
        for lease in self._lease(self.clock()):
            done += self._deliver(lease) == "done"
        return done

    # -- leasing and recording ------------------------------------------------------------

    def _lease(self, now: dt.datetime, limit: int = BATCH, busy: Iterable[int] = ()) -> list[_Lease]:
        """Rows due now whose ordering key has no earlier message still open (pending, sending or held).

        Only due rows are read: the first ``BATCH`` open rows used to be read and filtered afterwards, so 200
        replies held for citizens whose 48 h window had closed (or webhooks backing off) hid every newer row
        for good. The earlier-message check is a plain read: with SKIP LOCKED on it, an earlier row locked by
        another transaction (a hold being released) vanished and the reply after it overtook it (PostgreSQL)."""
        lease_until = now + dt.timedelta(seconds=self.settings.lease_seconds)
        name = self.consumer.name
        busy = list(busy)
        D, earlier = OutboxDelivery, aliased(OutboxDelivery)
        with self.db.transaction() as session:
            # A process that died mid-send: its rows come back when the lease ends (not this process's own).
            session.execute(update(D)
                            .where(D.consumer == name, D.status == "sending", D.lease_until < now,
                                   D.id.notin_(busy))
                            .values(status="pending", lease_until=None))
            open_before = exists().where(earlier.consumer == name, earlier.ordering_key == D.ordering_key,
                                         earlier.id < D.id, earlier.status.in_(("pending", "sending", "held")))
            rows = session.execute(
                select(D.id, D.ordering_key, D.payload, D.attempts)
                .where(D.consumer == name, D.status == "pending", D.next_attempt_at <= now, D.id.notin_(busy),
                       ~open_before)
                .order_by(D.id).limit(limit).with_for_update(of=D, skip_locked=True)).all()
            leases = [_Lease(row.id, row.payload, row.attempts, row.ordering_key) for row in rows]
            if leases:
                session.execute(update(OutboxDelivery)
                                .where(OutboxDelivery.id.in_([lease.id for lease in leases]),
                                       OutboxDelivery.status == "pending")
                                .values(status="sending", lease_until=lease_until))
        return leases

    def _deliver(self, lease: _Lease) -> str:
        try:
            outcome = self.consumer.deliver(lease.payload)
        except Exception as exc:  # a bug or an odd failure must not lose the message
            log.exception("outbox %s: delivery %d raised", self.consumer.name, lease.id)
            outcome = Outcome.retry(f"{type(exc).__name__}: {exc}"[:500])
        attempts = lease.attempts + 1
        now = self.clock()
        values: dict[str, Any] = {"attempts": attempts, "lease_until": None, "last_error": outcome.error}
        if outcome.status == "done":
            values |= {"status": "done", "done_at": now}
        elif outcome.status == "hold":
            values |= {"status": "held"}
        else:
            delay = backoff(attempts, self.settings.backoff_base, self.settings.backoff_max)
            values |= {"status": "pending", "next_attempt_at": now + dt.timedelta(seconds=delay)}
            log.warning("outbox %s: delivery %d failed (attempt %d, retry in %.0fs): %s",
                        self.consumer.name, lease.id, attempts, delay, outcome.error)
        try:
            with self.db.transaction() as session:
                session.execute(update(OutboxDelivery)
                                .where(and_(OutboxDelivery.id == lease.id, OutboxDelivery.status == "sending"))
                                .values(**values))
        except Exception:  # the lease runs out and the row is tried again: at least once
            log.exception("outbox %s: could not record delivery %d", self.consumer.name, lease.id)
        return outcome.status

    def backlog(self) -> int:
        from sqlalchemy import func

        with self.db.read() as session:
            return int(session.execute(select(func.count(OutboxDelivery.id)).where(
                OutboxDelivery.consumer == self.consumer.name,
                OutboxDelivery.status.in_(("pending", "sending", "held")))).scalar() or 0)


def purge_outbox(session: Session, before: dt.datetime, events_before: dt.datetime) -> tuple[int, int]:
    """Delete finished deliveries older than ``before``, unfinished ones (held, pending) created before it, and
    events older than ``events_before``. A WeChat reply held for a citizen whose window closed stays held until
    they write again, maybe never: its payload (openid, the agent's text) outlived the retention period."""
    deliveries = rowcount(session.execute(delete(OutboxDelivery).where(
        OutboxDelivery.status == "done", OutboxDelivery.done_at < before)))
    deliveries += rowcount(session.execute(delete(OutboxDelivery).where(
        OutboxDelivery.status != "done", OutboxDelivery.status != "sending", OutboxDelivery.created_at < before)))
    events = rowcount(session.execute(delete(OutboxEvent).where(OutboxEvent.created_at < events_before)))
    return deliveries, events
