"""Change notifications, so waiting readers wake at once instead of polling.

A citizen's long poll waits for "conversation X changed" (a new turn) or "the
queue moved" (a ticket was opened, claimed or closed). In one process a
condition variable carries that; with several processes or hosts
(``HOTLINE_REDIS_URL``) Redis pub/sub carries it to every process, each of
which wakes its own waiters. Notifications are hints: readers always re-read
the database, and keep a slow safety poll, so a lost message only delays.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

CHANNEL = "hotline:changes"
QUEUE = "*"  # message meaning "the handoff queue moved": every waiter re-reads
MAX_TRACKED = 100_000
SAFETY_POLL_SECONDS = 5.0  # re-read at least this often: presence/ETA drift, lost notifications

T = TypeVar("T")


class LocalNotifier:
    """Versions per conversation plus one for the queue, under one condition variable."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._queue_version = 0

    def publish(self, conversation_ids: set[str], queue: bool = False) -> None:
        self._deliver(conversation_ids, queue)

    def _deliver(self, conversation_ids: set[str], queue: bool) -> None:
        with self._cond:
            for cid in conversation_ids:
                self._versions[cid] = self._versions.pop(cid, 0) + 1
            while len(self._versions) > MAX_TRACKED:
                self._versions.popitem(last=False)
            if queue:
                self._queue_version += 1
            self._cond.notify_all()

    def version(self, conversation_id: str) -> tuple[int, int]:
        with self._cond:
            return self._versions.get(conversation_id, 0), self._queue_version

    def wait(self, conversation_id: str, since: tuple[int, int], timeout: float) -> bool:
        """True when something changed after ``since`` (from ``version``), False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (self._versions.get(conversation_id, 0), self._queue_version) != since, timeout)

    def poll(self, key: str, read: Callable[[], T], ready: Callable[[T], bool], timeout: float) -> T:
        """Long-poll helper: ``read()`` until ``ready(result)`` or ``timeout`` seconds.

        Sleeps on change notifications for ``key`` (or the queue), re-reading
        at least every SAFETY_POLL_SECONDS; the version is taken before each
        read, so a change committed in between is never missed."""
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

    def close(self) -> None:
        pass


class RedisNotifier(LocalNotifier):
    """Publishes through Redis; a listener thread turns messages into local wake-ups."""

    def __init__(self, url: str) -> None:
        super().__init__()
        import redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._stop = threading.Event()
        self._listener = threading.Thread(target=self._listen, name="hotline-notify", daemon=True)
        self._listener.start()

    def publish(self, conversation_ids: set[str], queue: bool = False) -> None:
        message = " ".join(sorted(conversation_ids) + ([QUEUE] if queue else []))
        if not message:
            return
        try:
            self._redis.publish(CHANNEL, message)
        except Exception as exc:  # Redis down: wake local waiters; remote ones fall back to polling
            log.warning("redis publish failed (%s); notifying this process only", exc)
            super().publish(conversation_ids, queue)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message and message.get("type") == "message":
                        parts = message["data"].decode().split()
                        self._deliver({p for p in parts if p != QUEUE}, QUEUE in parts)
                pubsub.close()
            except Exception as exc:
                log.warning("redis subscription lost (%s); retrying", exc)
                self._stop.wait(1.0)

    def close(self) -> None:
        self._stop.set()


def build_notifier(redis_url: str | None) -> LocalNotifier:
    return RedisNotifier(redis_url) if redis_url else LocalNotifier()
