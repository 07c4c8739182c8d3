"""The application's parts, built once from one Settings and passed down.

``Services.build`` is what the CLI (the composition root) and the tests call;
connectors receive the result and never build parts themselves. ``start()``
starts the background threads (notifier, outbox workers) — after a server has
forked its workers — and ``close()`` stops them.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot.config import Settings, keep_secret
from bot.conversations.desk import Desk
from bot.conversations.notify import Notifier, build_notifier
from bot.conversations.outbox import Consumer, Outbox, OutboxWorker
from bot.conversations.privacy import Vault
from bot.conversations.service import ConversationService, StaleWaitSweeper
from bot.conversations.staff import StaffDirectory
from bot.db import Database, StoreUnavailable
from bot.models import utcnow

if TYPE_CHECKING:
    from bot.engine import Bot

log = logging.getLogger(__name__)


def clock_for(settings: Settings) -> Callable[[], dt.datetime]:
    """Real UTC time, unless ``settings.simulation`` warps it (bench/simulate.py replaying a day)."""
    sim = settings.simulation
    if sim.start is None or sim.anchor is None:
        return utcnow
    import time

    start, anchor, speed = sim.start.replace(tzinfo=None), sim.anchor, sim.speed
    log.warning("simulated clock: %s at unix %.3f, x%g (never on a real service)", start, anchor, speed)

    def simulated() -> dt.datetime:
        return start + dt.timedelta(seconds=(time.time() - anchor) * speed)

    return simulated


@dataclass
class Services:
    settings: Settings
    db: Database
    notifier: Notifier
    outbox: Outbox
    vault: Vault
    conversations: ConversationService
    staff: StaffDirectory
    desk: Desk
    bot: Any  # bot.engine.Bot (imported lazily: it loads the models)
    clock: Callable[[], dt.datetime] = utcnow
    workers: dict[str, OutboxWorker] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # channel runtimes (e.g. WeChat clients) to close
    kb_live: Any = None  # bot.kb.live.LiveKnowledge when the KB is edited in the console (settings.kb.editing)
    started: bool = False
    schema_ready: bool = False
    _schema_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: Settings, *, bot: Bot | None = None, db: Database | None = None,
              notifier: Notifier | None = None, clock: Callable[[], dt.datetime] | None = None,
              upgrade: bool = True) -> "Services":
        """``bot``: an already loaded engine to reuse (its models and index); ``db``: a database
        to use instead of ``settings.sqlalchemy_url``; ``clock``: default real time, or the
        simulation's warped clock when ``settings.simulation`` sets one."""
        clock = clock or clock_for(settings)
        db = db or Database(settings.sqlalchemy_url, connect_timeout=settings.db.connect_timeout,
                            statement_timeout=settings.db.statement_timeout, pool_size=settings.db.pool_size)
        notifier = notifier or build_notifier(settings.redis_url, db, settings.outbox.tail_interval)
        outbox = Outbox(notifier, clock=clock)
        vault = Vault(settings.privacy.key or keep_secret(settings.data_file("privacy.key"), Vault.new_key))
        conversations = ConversationService(db, outbox, vault, settings.limits, clock)
        staff = StaffDirectory(db, settings.limits, settings.session_hours, clock)
        if bot is None:
            from bot.engine import Bot

            bot = Bot.load(settings)
        bot = bot.with_conversations(conversations)
        desk = Desk(db, conversations, staff, outbox, vault, bot.responses, settings.desk, settings.limits,
                    kb=lambda: services.bot.kb, clock=clock)  # the live KB: publishing swaps services.bot
        services = cls(settings, db, notifier, outbox, vault, conversations, staff, desk, bot, clock)
        services.extras["stale_waits"] = StaleWaitSweeper(
            conversations, dt.timedelta(minutes=settings.desk.abandon_after_minutes), settings.desk.abandon_sweep_seconds)
        if upgrade:
            services.ensure_schema()
        if settings.kb.editing:
            from bot.kb.live import LiveKnowledge
            from bot.kb.store import KnowledgeStore

            services.kb_live = LiveKnowledge(services, KnowledgeStore(db, settings.knowledge_dir,
                                                                      settings.kb_work_dir, clock))
            if services.schema_ready:
                services.kb_live.start_up()
        if settings.webhook.enabled:
            from bot.conversations.webhooks import WebhookConsumer

            services.add_consumer(WebhookConsumer(settings.webhook))
        return services

    def ensure_schema(self) -> bool:
        """Run migrations once the database answers. A server started while the database is
        down comes up anyway, answers 503, and migrates as soon as it can: one attempt at a
        time (requests arriving meanwhile get their 503 at once instead of queueing)."""
        if self.schema_ready:
            return True
        if not self._schema_lock.acquire(blocking=False):
            return False
        try:
            if self.schema_ready:
                return True
            try:
                self.db.upgrade()
            except StoreUnavailable as exc:
                log.error("database not reachable, schema not checked yet: %s", exc)
                return False
            self.schema_ready = True
            if self.kb_live is not None and self.kb_live.publication_id == 0:
                self.kb_live.start_up()
            return True
        finally:
            self._schema_lock.release()

    def add_consumer(self, consumer: Consumer) -> OutboxWorker:
        self.outbox.add_consumer(consumer)
        worker = OutboxWorker(self.db, consumer, self.settings.outbox, self.clock)
        self.outbox.on_delivery(consumer.name, worker.wake)
        self.workers[consumer.name] = worker
        if self.started:
            worker.start()
        return worker

    def start(self) -> None:
        """Background threads: in each server process, after any fork."""
        self.notifier.start()
        if self.kb_live is not None:
            self.kb_live.start()
        for worker in self.workers.values():
            worker.start()
        for extra in self.extras.values():
            start = getattr(extra, "start", None)
            if start is not None:
                start()
        self.started = True

    def close(self) -> None:
        if self.kb_live is not None:
            self.kb_live.close()
        for worker in self.workers.values():
            worker.stop()
        for consumer in self.outbox.consumers.values():
            close = getattr(consumer, "close", None)
            if close is not None:
                close()
        for extra in self.extras.values():
            close = getattr(extra, "close", None)
            if close is not None:
                close()
        self.notifier.close()
        self.db.close()
        self.started = False
