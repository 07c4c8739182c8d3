"""Change notifications, so waiting readers wake at once instead of polling.

A citizen's long poll waits for "conversation X changed" (a new turn) or "the
queue moved" (a ticket opened, claimed or closed; an agent came on duty). In one
process, versions under a condition variable carry that — to threads and to
coroutines of the asynchronous long-poll front alike. Across processes and
hosts the committed events travel either through Redis pub/sub
(``HOTLINE_REDIS_URL``) or, without Redis, by every process tailing the
``outbox_events`` table (one indexed range read every ``tail_interval``).
Notifications are hints: readers always re-read the database and keep a slow
safety poll, so a lost notification only delays.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import func, select

if TYPE_CHECKING:
    from bot.db import Database

log = logging.getLogger(__name__)

CHANNEL = "hotline:changes"
QUEUE = "*"  # message meaning "the handoff queue moved": every waiter re-reads
MAX_TRACKED = 100_000
SAFETY_POLL_SECONDS = 5.0  # re-read at least this often: presence/ETA drift, lost notifications

T = TypeVar("T")
Version = tuple[int, int]


class Notifier:
    """Versions per conversation plus one for the queue; wakes threads and coroutines."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._queue_version = 0
        self._async: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]]] = defaultdict(set)

    # -- producing ------------------------------------------------------------------

    def publish(self, conversation_ids: Iterable[str], queue: bool = False) -> None:
        """Called after a commit: wake local waiters, and tell other processes."""
        self.deliver(set(conversation_ids), queue)

    def deliver(self, conversation_ids: set[str], queue: bool) -> None:
        """Wake this process's waiters (also what transports call for remote changes)."""
        woken: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[bool]]] = []
        with self._cond:
            for cid in conversation_ids:
                self._versions[cid] = self._versions.pop(cid, 0) + 1
                woken.extend(self._async.pop(cid, ()))
            while len(self._versions) > MAX_TRACKED:
                self._versions.popitem(last=False)
            if queue:
                self._queue_version += 1
                for key in list(self._async):
                    woken.extend(self._async.pop(key))
            self._cond.notify_all()
        for loop, future in woken:
            loop.call_soon_threadsafe(_resolve, future)

    # -- waiting (threads) ---------------------------------------------------------------

    def version(self, key: str) -> Version:
        with self._cond:
            return self._versions.get(key, 0), self._queue_version

    def wait(self, key: str, since: Version, timeout: float) -> bool:
        """True when something changed after ``since`` (from ``version``), False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: (self._versions.get(key, 0), self._queue_version) != since, timeout)

    def poll(self, key: str, read: Callable[[], T], ready: Callable[[T], bool], timeout: float) -> T:
        """Long-poll helper for callers without the asynchronous front: ``read()`` until
        ``ready(result)`` or ``timeout`` seconds. The version is taken before each read,
        so a change committed in between is never missed."""
        if not math.isfinite(timeout):  # a NaN deadline never passes: the loop would spin forever
            raise ValueError("timeout must be a finite number of seconds")
        deadline = time.monotonic() + timeout
        while True:
            seen = self.version(key)
            result = read()
            remaining = deadline - time.monotonic()
            if ready(result) or remaining <= 0:
                return result
            self.wait(key, seen, min(remaining, SAFETY_POLL_SECONDS))

    # -- waiting (coroutines) ---------------------------------------------------------------

    async def wait_async(self, key: str, since: Version, timeout: float) -> bool:
        """The coroutine twin of ``wait``: parks no thread, however many citizens wait."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        entry = (loop, future)
        with self._cond:
            if (self._versions.get(key, 0), self._queue_version) != since:
                return True
            self._async[key].add(entry)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._cond:
                waiters = self._async.get(key)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        self._async.pop(key, None)

    def waiting(self) -> int:
        """Coroutines parked right now (for /metrics and the long-poll tests)."""
        with self._cond:
            return sum(len(w) for w in self._async.values())

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


def _resolve(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(True)


class RedisNotifier(Notifier):
    """Publishes through Redis; a listener thread turns other processes' messages into local wake-ups."""

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._origin = uuid.uuid4().hex[:12]
        self._stop = threading.Event()
        self._listener: threading.Thread | None = None
        self.subscribed = threading.Event()  # set while the subscription is live

    def start(self) -> None:
        if self._listener is None or not self._listener.is_alive():
            self._stop.clear()
            self._origin = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
            self._listener = threading.Thread(target=self._listen, name="hotline-notify", daemon=True)
            self._listener.start()

    def publish(self, conversation_ids: Iterable[str], queue: bool = False) -> None:
        ids = set(conversation_ids)
        self.deliver(ids, queue)
        message = " ".join([self._origin] + sorted(ids) + ([QUEUE] if queue else []))
        if not ids and not queue:
            return
        try:
            self._redis.publish(CHANNEL, message)
        except Exception as exc:  # Redis down: remote waiters fall back to their safety poll
            log.warning("redis publish failed (%s); notifying this process only", exc)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(CHANNEL)
                pubsub.get_message(timeout=1.0)  # the subscribe confirmation
                self.subscribed.set()
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        origin, *parts = message["data"].decode().split()
                        if origin != self._origin:
                            self.deliver({p for p in parts if p != QUEUE}, QUEUE in parts)
                pubsub.close()
            except Exception as exc:
                self.subscribed.clear()
                log.warning("redis subscription lost (%s); retrying", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()


class TailNotifier(Notifier):
    """Without Redis: every process reads the events committed since it last looked.

    One indexed range read (``id > last``) every ``interval`` seconds; measured
    ≈0.1 ms on SQLite, so 5 reads a second per process cost nothing noticeable."""

    def __init__(self, db: Database, interval: float = 0.2) -> None:
        super().__init__()
        self._db = db
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: int | None = None

    def start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._tail, name="hotline-tail", daemon=True)
            self._thread.start()

    def _tail(self) -> None:
        from bot.models import OutboxEvent

        while not self._stop.is_set():
            try:
                with self._db.read() as session:
                    if self._last is None:
                        self._last = session.execute(select(func.max(OutboxEvent.id))).scalar() or 0
                    rows = session.execute(
                        select(OutboxEvent.id, OutboxEvent.conversation_id, OutboxEvent.queue)
                        .where(OutboxEvent.id > self._last).order_by(OutboxEvent.id).limit(2000)).all()
                if rows:
                    self._last = rows[-1][0]
                    self.deliver({cid for _, cid, _ in rows if cid}, any(q for _, _, q in rows))
            except Exception as exc:  # the database is down: waiters keep their safety poll
                log.debug("event tail failed: %s", exc)
            self._stop.wait(self._interval)

    def close(self) -> None:
        self._stop.set()


def build_notifier(redis_url: str | None, db: Database | None = None, tail_interval: float = 0.2) -> Notifier:
    if redis_url:
        return RedisNotifier(redis_url)
    if db is not None:
        return TailNotifier(db, tail_interval)
    return Notifier()
