"""Customer-service messages waiting to go out, and the worker that sends them.

A row is written before any send is tried, so nothing is lost if WeChat is
down, the token is stale or the process dies; the worker retries with backoff.
Messages WeChat refuses for the user's window (45015, 45047) are *held* and go
out again as soon as the user writes (``users.touch_inbound`` releases them).
Messages to one user keep their order.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from bot.store import Store, utcnow
from connectors.wechat.client import SendResult, WeChatClient
from connectors.wechat.models import WeChatInbound, WeChatOutbox, WeChatUser
from connectors.wechat.users import window_of

log = logging.getLogger(__name__)

STALE_CLAIM = dt.timedelta(seconds=120)
BATCH = 200
KEEP_INBOUND = dt.timedelta(days=7)


def enqueue(store: Store, account: str, openid: str, content: str, source: str, ref: str | None = None) -> int | None:
    """Queue one text; ``ref`` makes the call idempotent (None when that ref was already queued)."""
    try:
        with store.transaction() as session:
            row = WeChatOutbox(account=account, openid=openid, content=content, source=source, ref=ref,
                               status="pending", attempts=0, next_attempt_at=utcnow())
            session.add(row)
            session.flush()
            return row.id
    except IntegrityError:
        if ref is None:
            raise
        return None


def backoff(attempts: int, maximum: float) -> dt.timedelta:
    return dt.timedelta(seconds=min(maximum, 2.0 * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True)
class _Claim:
    id: int
    account: str
    openid: str
    content: str
    attempts: int


class Outbox:
    """Sends due messages; ``run_once`` is what the worker thread (or a test) calls."""

    def __init__(self, store: Store, clients: Mapping[str, WeChatClient], window_hours: int = 48,
                 window_messages: int = 5, max_backoff: float = 600.0):
        self.store = store
        self.clients = clients
        self.window = dt.timedelta(hours=window_hours)
        self.window_messages = window_messages
        self.max_backoff = max_backoff
        self._run_lock = threading.Lock()

    def run_once(self, now: dt.datetime | None = None) -> int:
        """Send what is due; returns how many WeChat accepted."""
        with self._run_lock:
            claims = self._claim(now or utcnow())
            sent = 0
            failed_users: set[tuple[str, str]] = set()
            for claim in claims:
                key = (claim.account, claim.openid)
                if key in failed_users:  # keep order: do not overtake a message that just failed
                    self._release(claim)
                    continue
                result = self._send(claim)
                self._record(claim, result)
                if result.ok:
                    sent += 1
                else:
                    failed_users.add(key)
            return sent

    def _claim(self, now: dt.datetime) -> list[_Claim]:
        with self.store.transaction() as session:
            session.execute(update(WeChatOutbox)
                            .where(WeChatOutbox.status == "sending", WeChatOutbox.claimed_at < now - STALE_CLAIM)
                            .values(status="pending"))
            rows = session.execute(
                select(WeChatOutbox).where(WeChatOutbox.status.in_(("pending", "sending", "held")))
                .order_by(WeChatOutbox.id).limit(BATCH).with_for_update(skip_locked=True)
            ).scalars().all()
            blocked: set[tuple[str, str]] = set()
            budget: dict[tuple[str, str], int] = {}
            claims: list[_Claim] = []
            for row in rows:
                key = (row.account, row.openid)
                if key in blocked:
                    continue
                if row.status != "pending" or row.next_attempt_at > now:
                    blocked.add(key)
                    continue
                if key not in budget:
                    budget[key] = self._remaining(session, row.account, row.openid, now)
                if budget[key] <= 0:
                    row.status, row.last_error = "held", "customer-service window closed"
                    blocked.add(key)
                    continue
                budget[key] -= 1
                row.status, row.claimed_at = "sending", now
                claims.append(_Claim(row.id, row.account, row.openid, row.content, row.attempts))
            return claims

    def _remaining(self, session, account: str, openid: str, now: dt.datetime) -> int:
        user = session.execute(select(WeChatUser).where(WeChatUser.account == account,
                                                        WeChatUser.openid == openid)).scalar_one_or_none()
        if user is None or user.last_inbound_at is None:
            return BATCH  # we have not seen this user write: let WeChat decide
        return window_of(user, now, self.window, self.window_messages)["remaining"]

    def _send(self, claim: _Claim) -> SendResult:
        client = self.clients.get(claim.account)
        if client is None:
            return SendResult(False, None, "account not configured", "later")
        try:
            return client.send_text(claim.openid, claim.content)
        except Exception as exc:  # a bug or odd failure must not lose the message
            log.exception("wechat outbox %d: send raised", claim.id)
            return SendResult(False, None, f"send raised {type(exc).__name__}", "later")

    def _record(self, claim: _Claim, result: SendResult) -> None:
        now = utcnow()
        with self.store.transaction() as session:
            row = session.get(WeChatOutbox, claim.id)
            if row is None:
                return
            row.attempts = claim.attempts + 1
            row.errcode = result.errcode
            row.claimed_at = None
            if result.ok:
                row.status, row.sent_at, row.last_error = "sent", now, None
                session.execute(update(WeChatUser)
                                .where(WeChatUser.account == claim.account, WeChatUser.openid == claim.openid)
                                .values(sent_since_inbound=WeChatUser.sent_since_inbound + 1))
                return
            row.last_error = (result.error or "send failed")[:255]
            if result.retry == "hold":
                row.status = "held"
            else:
                row.status, row.next_attempt_at = "pending", now + backoff(row.attempts, self.max_backoff)
        log.warning("wechat outbox %d: not sent (attempt %d, errcode %s, %s)",
                    claim.id, claim.attempts + 1, result.errcode, result.retry)

    def _release(self, claim: _Claim) -> None:
        with self.store.transaction() as session:
            row = session.get(WeChatOutbox, claim.id)
            if row is not None and row.status == "sending":
                row.status, row.claimed_at = "pending", None

    def prune(self, now: dt.datetime | None = None) -> None:
        """Dedupe keys only matter while WeChat may retry; keep a week for diagnostics."""
        with self.store.transaction() as session:
            session.execute(delete(WeChatInbound).where(WeChatInbound.created_at < (now or utcnow()) - KEEP_INBOUND))


class OutboxWorker:
    """A daemon thread running ``Outbox.run_once`` every ``interval`` seconds, or at once on ``wake``."""

    def __init__(self, outbox: Outbox, interval: float):
        self.outbox = outbox
        self.interval = interval
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="wechat-outbox", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        last_prune = 0.0
        while not self._stop.is_set():
            try:
                self.outbox.run_once()
                if time.monotonic() - last_prune > 3600:
                    self.outbox.prune()
                    last_prune = time.monotonic()
            except Exception:
                log.exception("wechat outbox run failed")
            self._wake.wait(self.interval)
            self._wake.clear()
