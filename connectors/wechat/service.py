"""What happens to one WeChat message: a small state machine a retry or a restart resumes.

    received ──answer computed and stored──▶ answered ──passive reply──▶ sent
        │                                         └──past the budget──▶ queued (send API)
        └─ lease expired (process died) ─▶ taken over by a retry or the recovery sweep

1. Record the message (unique account + MsgId) *before* anything else, leased to the
   worker computing it. WeChat's retry of a message finds the row and continues from
   its state: the stored answer is served again (WeChat only retries when it did not
   get our reply); a computation still running is waited for; an abandoned one (lease
   expired) is taken over. Nothing is acknowledged with "success" unless the answer
   is stored or a worker still owns the message — and the recovery sweep answers any
   message whose worker died, through the send API. (Before: the MsgId was marked
   received first and a crash lost the message for good, 3/3 runs.)
2. The bot runs with ``client_message_id = MsgId``, so computing twice never stores
   a second turn.
3. Done within the budget → passive reply; too slow → "success" now, and the answer
   goes through the send API (outbox) when ready.
"""
from __future__ import annotations

import concurrent.futures
import datetime as dt
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot.config import WeChatAccount, WeChatSettings
from bot.db import StoreUnavailable
from bot.messages import InvalidMessage, Message
from bot.models import Conversation, Identity, WeChatInbound, WeChatUser
from bot.render import option_payload, render_numbered, welcome
from bot.services import Services
from connectors.metrics import count_message
from connectors.wechat.sender import release_window, text_deliveries
from connectors.wechat.users import CHANNEL, CONSUMER, external_id, get_or_create, set_options
from connectors.wechat.xml import Inbound

log = logging.getLogger(__name__)

NON_WINDOW_EVENTS = {"unsubscribe"}
WELCOME_EVENTS = {"subscribe"}
LEASE = dt.timedelta(seconds=30)
POLL = 0.1


@dataclass(frozen=True)
class Claim:
    id: int
    key: str  # the dedupe key: MsgId for messages, also the bot's client_message_id
    status: str  # new | taken_over | received (someone else computes) | answered | sent | queued | ignored
    reply: str | None
    language: str
    options: list[str]


class WeChatChannel:
    def __init__(self, services: Services, settings: WeChatSettings, executor: ThreadPoolExecutor):
        self.services = services
        self.db = services.db
        self.settings = settings
        self.executor = executor
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- entry point --------------------------------------------------------------------

    def accept(self, account: WeChatAccount, inbound: Inbound, started: float | None = None) -> str | None:
        """The passive reply text, or None for "success" (nothing to say, or the send API will carry it).

        ``started`` (``time.monotonic()`` when the request arrived) makes the budget count
        from WeChat's clock, not from when the turn began."""
        started = time.monotonic() if started is None else started
        passive = account.kind == "official" and inbound.fmt == "xml"
        claim = self.claim(account.name, inbound, deferred=not passive)
        if claim.status in ("queued", "ignored"):
            return None
        if claim.status in ("answered", "sent"):  # WeChat retried: it did not get our reply
            return self._serve(account, inbound, claim.id, claim.reply, passive)
        if claim.status == "received":  # another worker computes it right now
            return self._await_other(account, inbound, claim.id, passive, started)
        future = self.executor.submit(self._compute, account, inbound, claim)
        if passive:
            budget = self.settings.budget_for(account) - (time.monotonic() - started)
            try:
                return self._serve(account, inbound, claim.id, future.result(timeout=max(0.0, budget)), passive)
            except concurrent.futures.TimeoutError:
                pass
        return self._defer_or_serve(account, inbound, claim.id, passive)

    # -- the inbound record ------------------------------------------------------------------

    def claim(self, account: str, inbound: Inbound, deferred: bool) -> Claim:
        """Record the message (or find it), reopen the user's window, and say who computes it."""
        now = self.services.clock()
        with self.db.transaction() as session:
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            inserted = session.execute(
                dialect.insert(WeChatInbound).values(
                    account=account, dedupe_key=inbound.dedupe_key, openid=inbound.from_user,
                    msg_type=inbound.msg_type[:32], event=inbound.event[:32],
                    content_enc=self.services.vault.encrypt(inbound.content) if inbound.content else None,
                    status="received",
                    deferred=deferred, reply=None, options=[], lease_until=now + LEASE, attempts=1,
                    created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["account", "dedupe_key"]).returning(WeChatInbound.id)).first()
            if inbound.event in NON_WINDOW_EVENTS:
                user = get_or_create(session, account, inbound.from_user)
            else:
                release_window(session, account, inbound.from_user, now)
                user = get_or_create(session, account, inbound.from_user)
            options = list(user.last_options or [])
            language = self._language(session, account, inbound.from_user)
            if inserted is not None:
                return Claim(inserted[0], inbound.dedupe_key, "new", None, language, options)
            row = session.execute(select(WeChatInbound).where(
                WeChatInbound.account == account, WeChatInbound.dedupe_key == inbound.dedupe_key)
                .with_for_update()).scalar_one()
            if row.status == "received" and (row.lease_until is None or row.lease_until < now):
                row.lease_until, row.attempts, row.updated_at = now + LEASE, row.attempts + 1, now
                row.deferred = row.deferred or deferred
                return Claim(row.id, row.dedupe_key, "taken_over", None, language, options)
            return Claim(row.id, row.dedupe_key, row.status, row.reply, language, options)

    @staticmethod
    def _language(session, account: str, openid: str) -> str:
        return session.execute(select(Conversation.language).join(
            Identity, Identity.conversation_id == Conversation.id).where(
            Identity.channel == CHANNEL, Identity.external_id == external_id(account, openid))).scalar() or "zh"

    # -- computing ------------------------------------------------------------------------------

    def _compute(self, account: WeChatAccount, inbound: Inbound, claim: Claim) -> str | None:
        try:
            reply, options = self._reply(account, inbound, claim)
        except Exception:
            self._release(claim.id)  # a retry (or the sweep) takes over at once
            raise
        return self._store(account, inbound, claim.id, reply, options)

    def _reply(self, account: WeChatAccount, inbound: Inbound, claim: Claim) -> tuple[str | None, list[str]]:
        bot = self.services.bot
        responses, max_bytes = bot.responses, self.settings.max_reply_bytes
        if inbound.msg_type == "event":
            if inbound.event in WELCOME_EVENTS:
                return welcome(bot.kb, responses, claim.language, max_bytes)
            return None, []
        if inbound.msg_type != "text" or not inbound.content.strip():
            return responses("text_only", claim.language), []
        text = option_payload(inbound.content, claim.options) or inbound.content
        message = Message(user_id=external_id(account.name, inbound.from_user), text=text, channel=CHANNEL,
                          client_message_id=f"wx:{claim.key}"[:64])
        try:
            reply = bot.handle(message)
            count_message(CHANNEL, reply)
        except InvalidMessage as exc:
            key = "too_long" if exc.field == "text" and text.strip() else "text_only"
            return responses(key, claim.language), []
        return render_numbered(reply, responses, max_bytes)

    def _store(self, account: WeChatAccount, inbound: Inbound, inbound_id: int, reply: str | None,
               options: list[str]) -> str | None:
        """answered, with the options the reply numbered; queued for the send API if the request gave up."""
        now = self.services.clock()
        with self.db.transaction() as session:
            row = session.execute(select(WeChatInbound).where(WeChatInbound.id == inbound_id)
                                  .with_for_update()).scalar_one()
            row.reply, row.options, row.updated_at, row.lease_until = reply, options, now, None
            if reply is None:
                row.status = "ignored"
                return None
            set_options(session, account.name, inbound.from_user, options)
            if row.deferred:
                row.status = "queued"
                self.services.outbox.enqueue(session, CONSUMER, text_deliveries(
                    f"wx-in:{row.id}", account.name, inbound.from_user, reply, self.settings.max_reply_bytes), now)
            else:
                row.status = "answered"
        return reply

    def _release(self, inbound_id: int) -> None:
        try:
            with self.db.transaction() as session:
                session.execute(update(WeChatInbound).where(WeChatInbound.id == inbound_id,
                                                            WeChatInbound.status == "received")
                                .values(lease_until=None))
        except StoreUnavailable:
            pass  # the lease runs out by itself; the retry or the sweep takes over then

    # -- delivering -------------------------------------------------------------------------------

    def _serve(self, account: WeChatAccount, inbound: Inbound, inbound_id: int, reply: str | None,
               passive: bool) -> str | None:
        if reply is None:
            return None
        if passive:
            with self.db.transaction() as session:
                session.execute(update(WeChatInbound).where(WeChatInbound.id == inbound_id,
                                                            WeChatInbound.status.in_(("answered", "sent")))
                                .values(status="sent", updated_at=self.services.clock()))
            return reply
        return None

    def _defer_or_serve(self, account: WeChatAccount, inbound: Inbound, inbound_id: int, passive: bool) -> str | None:
        """Past the budget: the worker will push when done — unless it finished just now."""
        with self.db.transaction() as session:
            row = session.execute(select(WeChatInbound).where(WeChatInbound.id == inbound_id)
                                  .with_for_update()).scalar_one()
            if row.status == "received":
                row.deferred = True
                return None
            if row.status != "answered" or row.reply is None:
                return None  # queued or ignored: nothing for the passive reply
            if not passive:
                row.status = "queued"
                self.services.outbox.enqueue(session, CONSUMER, text_deliveries(
                    f"wx-in:{row.id}", account.name, inbound.from_user, row.reply, self.settings.max_reply_bytes),
                    self.services.clock())
                return None
            row.status = "sent"
            return row.reply

    def _await_other(self, account: WeChatAccount, inbound: Inbound, inbound_id: int, passive: bool,
                     started: float) -> str | None:
        deadline = started + (self.settings.budget_for(account) if passive else 0.0)
        while time.monotonic() < deadline:
            with self.db.read() as session:
                status = session.execute(select(WeChatInbound.status).where(WeChatInbound.id == inbound_id)).scalar()
            if status != "received":
                break
            time.sleep(POLL)
        return self._defer_or_serve(account, inbound, inbound_id, passive)

    # -- recovery -----------------------------------------------------------------------------------

    def recover(self) -> int:
        """Answer, through the send API, every message whose worker died before storing an answer."""
        now = self.services.clock()
        with self.db.read() as session:
            rows = session.execute(select(WeChatInbound.id, WeChatInbound.account, WeChatInbound.dedupe_key)
                                   .where(WeChatInbound.status == "received", WeChatInbound.lease_until.is_not(None),
                                          WeChatInbound.lease_until < now).limit(50)).all()
            rows += session.execute(select(WeChatInbound.id, WeChatInbound.account, WeChatInbound.dedupe_key)
                                    .where(WeChatInbound.status == "received", WeChatInbound.lease_until.is_(None),
                                           WeChatInbound.updated_at < now - dt.timedelta(seconds=5))
                                    .limit(50)).all()
        done = 0
        for inbound_id, account_name, _key in rows:
            account = self.settings.account(account_name)
            if account is None:
                continue
            done += self._recover_one(account, inbound_id, now)
        return done

    def _recover_one(self, account: WeChatAccount, inbound_id: int, now: dt.datetime) -> int:
        with self.db.transaction() as session:
            row = session.execute(select(WeChatInbound).where(WeChatInbound.id == inbound_id)
                                  .with_for_update()).scalar_one()
            if row.status != "received" or (row.lease_until is not None and row.lease_until >= now):
                return 0
            row.lease_until, row.deferred, row.attempts, row.updated_at = now + LEASE, True, row.attempts + 1, now
            user = session.execute(select(WeChatUser).where(WeChatUser.account == account.name,
                                                            WeChatUser.openid == row.openid)).scalar_one_or_none()
            claim = Claim(row.id, row.dedupe_key, "taken_over", None, self._language(session, account.name, row.openid),
                          list(user.last_options or []) if user else [])
            inbound = Inbound(to_user="", from_user=row.openid, create_time=0, msg_type=row.msg_type,
                              content=self.services.vault.decrypt(row.content_enc) if row.content_enc else "",
                              event=row.event)
        try:
            self._compute(account, inbound, claim)
            return 1
        except Exception:
            log.exception("wechat %s: recovering message %d failed; will retry", account.name, inbound_id)
            return 0

    def start(self, interval: float = 5.0) -> None:
        if self._sweeper is None or not self._sweeper.is_alive():
            self._stop.clear()
            self._sweeper = threading.Thread(target=self._sweep, args=(interval,), name="wechat-recover", daemon=True)
            self._sweeper.start()

    def _sweep(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.recover()
            except Exception:
                log.warning("wechat: recovery sweep failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        self.executor.shutdown(wait=False, cancel_futures=True)
