"""From one accepted WeChat message to at most one answer, inside WeChat's 5 seconds.

1. Claim the message's dedupe key in SQL (unique constraint): a retry of a
   message already claimed — done or still computing — gets ``success`` and
   nothing else, so it never makes a second turn or a second answer.
2. Run ``bot.handle`` in a worker thread with a budget. Done in time → the text
   goes back as the passive reply; too slow → ``success`` now, and the answer
   is queued for the customer-service send API when it is ready.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from bot.messages import InvalidMessage, Message
from bot.store import Conversation, Store
from connectors.wechat import render, users
from connectors.wechat.config import WeChatAccount, WeChatSettings
from connectors.wechat.models import WeChatInbound
from connectors.wechat.outbox import enqueue
from connectors.wechat.xml import Inbound

log = logging.getLogger(__name__)

NON_WINDOW_EVENTS = {"unsubscribe"}
WELCOME_EVENTS = {"subscribe"}


@dataclass(frozen=True)
class Claim:
    inbound_id: int
    conversation_id: str
    options: list[str]
    language: str


class _Job:
    """Hand-over between the request thread and the worker: exactly one of them delivers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.text: str | None = None
        self.error: BaseException | None = None
        self.deferred = False


class WeChatService:
    def __init__(self, bot, settings: WeChatSettings, executor: ThreadPoolExecutor,
                 wake_outbox: Callable[[], None] = lambda: None):
        self.bot = bot
        self.store: Store = bot.store
        self.settings = settings
        self.executor = executor
        self.wake_outbox = wake_outbox

    # -- entry point --------------------------------------------------------------

    def accept(self, account: WeChatAccount, inbound: Inbound, started: float | None = None) -> str | None:
        """The passive reply text, or None for ``success`` (nothing, or the answer goes by send API).

        ``started`` (``time.monotonic()`` when the request arrived) makes the budget
        count from WeChat's clock, not from when the turn began.
        """
        started = time.monotonic() if started is None else started
        claim = self.claim(account.name, inbound)
        if claim is None:
            log.info("wechat %s: duplicate delivery ignored", account.name)
            return None
        self.wake_outbox()  # the user wrote: messages held for the window may go out now
        passive = account.kind == "official" and inbound.fmt == "xml"
        if inbound.msg_type == "event":
            if inbound.event not in WELCOME_EVENTS:
                self._outcome(claim, "ignored")
                return None
            text, options = render.welcome(self.bot, claim.language, self.settings.max_reply_bytes)
            users.set_options(self.store, account.name, inbound.from_user, options)
            return self._immediate(account, inbound, claim, text, passive)
        if inbound.msg_type != "text" or not inbound.content.strip():
            return self._immediate(account, inbound, claim, render.text(self.bot, "text_only", claim.language), passive)
        text = render.option_payload(inbound.content, claim.options) or inbound.content
        return self._answer(account, inbound, claim, text, passive, started)

    # -- dedupe -------------------------------------------------------------------

    def claim(self, account: str, inbound: Inbound) -> Claim | None:
        """Insert the dedupe key; None when it exists (a retry). Also reopens the user's window."""
        with self.store.transaction() as session:
            try:
                with session.begin_nested():
                    row = WeChatInbound(account=account, dedupe_key=inbound.dedupe_key, outcome="received")
                    session.add(row)
            except IntegrityError:
                return None
            if inbound.event in NON_WINDOW_EVENTS:
                user = users.get_or_create(session, account, inbound.from_user)
            else:
                user = users.touch_inbound(session, account, inbound.from_user)
            conv = session.get(Conversation, user.conversation_id)
            return Claim(row.id, user.conversation_id, list(user.last_options or []),
                         conv.language if conv is not None else "zh")

    def release(self, claim: Claim) -> None:
        """Forget the key after a failure that wrote nothing, so WeChat's retry is processed."""
        with self.store.transaction() as session:
            session.execute(delete(WeChatInbound).where(WeChatInbound.id == claim.inbound_id))

    def _outcome(self, claim: Claim, outcome: str) -> None:
        try:
            with self.store.transaction() as session:
                session.execute(update(WeChatInbound).where(WeChatInbound.id == claim.inbound_id)
                                .values(outcome=outcome))
        except Exception:  # diagnostics only
            log.warning("wechat: could not record outcome %s", outcome)

    # -- replies --------------------------------------------------------------------

    def _immediate(self, account: WeChatAccount, inbound: Inbound, claim: Claim, text: str,
                   passive: bool) -> str | None:
        if passive:
            self._outcome(claim, "passive")
            return text
        self._queue(account, inbound, claim, text)
        return None

    def _queue(self, account: WeChatAccount, inbound: Inbound, claim: Claim, text: str) -> None:
        enqueue(self.store, account.name, inbound.from_user, text, "bot", ref=f"in:{claim.inbound_id}")
        self._outcome(claim, "queued")
        self.wake_outbox()

    def _answer(self, account: WeChatAccount, inbound: Inbound, claim: Claim, text: str,
                passive: bool, started: float) -> str | None:
        job = _Job()
        self.executor.submit(self._compute, job, account, inbound, claim, text)
        budget = self.settings.budget_for(account) - (time.monotonic() - started) if passive else 0
        job.done.wait(max(0.0, budget))
        with job.lock:
            if job.text is None and job.error is None:
                job.deferred = True  # the worker delivers through the send API when done
                return None
        if job.error is not None:
            self.release(claim)
            raise job.error
        if not job.text:  # nothing to say (e.g. an agent owns the conversation and is typing)
            self._outcome(claim, "ignored")
            return None
        return self._immediate(account, inbound, claim, job.text, passive)

    def _compute(self, job: _Job, account: WeChatAccount, inbound: Inbound, claim: Claim, text: str) -> None:
        result: str | None = None
        error: BaseException | None = None
        try:
            result = self._turn(account, inbound, claim, text)
        except BaseException as exc:  # handed to whoever delivers
            error = exc
        with job.lock:
            job.text, job.error = result, error
            deferred = job.deferred
        job.done.set()
        if not deferred:
            return
        try:
            if error is not None:
                log.error("wechat %s: turn failed after the deadline: %s", account.name, type(error).__name__)
                result = render.text(self.bot, "busy", claim.language)
            if result:
                self._queue(account, inbound, claim, result)
            else:
                self._outcome(claim, "ignored")
        except Exception:
            log.exception("wechat %s: could not queue a deferred answer", account.name)

    def _turn(self, account: WeChatAccount, inbound: Inbound, claim: Claim, text: str) -> str:
        message = Message(user_id=inbound.from_user, text=text, channel=users.CHANNEL,
                          conversation_id=claim.conversation_id)
        try:
            reply = self.bot.handle(message)
        except InvalidMessage as exc:
            return render.text(self.bot, "too_long" if exc.field == "text" and text.strip() else "text_only",
                               claim.language)
        body, options = render.render_reply(self.bot, reply, self.settings.max_reply_bytes)
        try:
            users.set_options(self.store, account.name, inbound.from_user, options)
        except Exception:  # the turn is stored; numbered options are a convenience
            log.warning("wechat %s: could not store reply options", account.name)
        return body
