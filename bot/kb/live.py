"""Live reload: every server process serves the newest published KB version, no restart.

Why: a publish must reach every worker within seconds, without dropping or mixing a
request. Each process compares the newest ``kb_publications`` row with what it serves
(before every request, or every ``kb.check_interval`` seconds); when it is behind, it
loads that version's index from disk (the publisher saved it) or rebuilds only what
changed, then swaps ``services.bot`` with one reference assignment. A request holds
one Bot from start to end, so it is answered wholly by the old or wholly by the new
version. With Redis, a publish also sends a bump on ``hotline:kb`` so idle processes
swap before their next request arrives.

A publish that changes only question paraphrases is served in two steps: at once with a
*provisional* index (new paraphrases in the dense and lexical indexes, the previous version's
trained models), then with the retrained index, which the publishing process builds in the
background, saves, swaps in and announces (bump); the other processes load it from disk. Measured
(bench/kb_reload.py, 2 servers on PostgreSQL + Redis under load): a paraphrase publish was served
by every server after 8.9 s, all of it retraining; now the provisional index is served by both within
0.4–0.7 s and answers the new paraphrase itself (a question word for word in the KB is answered with
its entry) within 0.6–1.0 s; both are retrained 7.6–9.6 s after the publish. A process that serves a
provisional index for ``kb.retrain_after`` seconds without the complete one appearing (another host without the shared
data dir; a publisher that died) retrains it itself.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.index import (SearchIndex, VectorMemo, artifact_dir, is_complete, load_index, retrain_index, save_index,
                       update_index)
from bot.kb.loader import KnowledgeBase, load_knowledge_base
from bot.kb.store import KnowledgeStore, Publication

if TYPE_CHECKING:
    from bot.engine import Bot
    from bot.services import Services

log = logging.getLogger(__name__)

CHANNEL = "hotline:kb"


class LiveKnowledge:
    def __init__(self, services: "Services", store: KnowledgeStore):
        self.services = services
        self.store = store
        self.settings = services.settings
        self.publication_id = 0  # the publication this process serves
        self.publication_version = ""  # ...and its version (a scheduled one is rebuilt when one before it commits)
        self.memo = VectorMemo()
        self.tokens: dict[str, list[str]] = {}  # normalised text -> tokens, reused by publishes
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._redis_thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.last_swap_seconds: float | None = None
        self._draft: Bot | None = None
        self._draft_lock = threading.Lock()
        self._provisional_since = 0.0  # when this process began serving a provisional index
        self._retraining: threading.Thread | None = None
        self.last_retrain_seconds: float | None = None

    # -- keeping up ---------------------------------------------------------------------

    def start_up(self) -> None:
        """At build: seed the database from the files on first start, then serve the newest version."""
        self.store.seed()
        self.sync(force=True)
        # No tokens are warmed here any more: a publish's lexical index keeps the counts of the texts it
        # holds (saved with the index) and tokenises only new ones, so warming every text at start
        # (42 s and a few hundred MB at 10,000 entries; it made the first publish 2.2 -> 0.3 s) buys nothing.

    def sync(self, force: bool = False) -> bool:
        """Before a request: swap to the newest publication if this process is behind. True if current."""
        now = time.monotonic()
        if not force and now - self._checked_at < self.settings.kb.check_interval:
            return True
        self._checked_at = now
        latest = self.store.latest()
        if latest is None or (latest.id, latest.version) == (self.publication_id, self.publication_version):
            self._complete_provisional()
            return True
        if not self._lock.acquire(timeout=self.settings.kb.reload_wait):
            return False  # someone else is swapping; serve the old version meanwhile
        try:
            latest = self.store.latest() or latest
            if (latest.id, latest.version) != (self.publication_id, self.publication_version):
                self._switch(latest)
            return True
        finally:
            self._lock.release()

    def _switch(self, publication: Publication) -> None:
        bot = self.services.bot
        if publication.version != bot.kb.version:
            root = self.store.work_dir / publication.version
            kb = load_knowledge_base(root if root.exists() else self.store.materialise_publication(publication.id))
            if kb.version != publication.version:  # a newer publication landed meanwhile; take what is there
                log.info("KB %s published while loading %s", kb.version, publication.version)
            self.swap(kb)
        self.publication_id, self.publication_version = publication.id, publication.version

    def swap(self, kb: KnowledgeBase) -> None:
        """Serve ``kb`` in this process from now on (index loaded from disk or rebuilt incrementally)."""
        started = time.perf_counter()
        bot = self.services.bot
        if kb.version == bot.kb.version:
            return
        index = self.index_for(kb, bot)
        self.services.bot = bot.with_knowledge(kb, index)
        if index.provisional:
            self._provisional_since = time.monotonic()
        self.last_swap_seconds = time.perf_counter() - started
        log.info("serving KB version %s (%d entries), swapped in %.2f s", kb.version, len(kb.entries),
                 self.last_swap_seconds)

    def index_for(self, kb: KnowledgeBase, bot: Bot | None = None) -> SearchIndex:
        bot = bot or self.services.bot
        directory = artifact_dir(self.settings.index_dir, kb.version, self.settings.encoder_key)
        if (directory / "docs.json").exists() and not self._cheaper_here(kb, bot, directory):
            try:
                return load_index(directory)
            except Exception as exc:  # noqa: BLE001 - a corrupt artifact is rebuilt
                log.warning("index at %s unreadable (%s); rebuilding", directory, exc)
        index = update_index(kb, bot.tokenizer, bot.encoder, bot.index, bot.kb, self.memo, self.tokens, quick=True)
        if index.intents is not bot.index.intents:
            # Retrained (entries changed): save before the version row commits, so the other
            # processes load it (~1 s) instead of each retraining for half a minute.
            self._save(index, directory)
        else:
            # Models reused (lexical, vocabulary, perhaps dense rebuilt): a process that looks before
            # this is written rebuilds them itself in well under a second, so the swap need not wait.
            threading.Thread(target=self._save_unless_saved, args=(index, directory), name="kb-index-save",
                             daemon=True).start()
        return index

    @staticmethod
    def _cheaper_here(kb: KnowledgeBase, bot: Bot, directory: Path) -> bool:
        """Whether updating this process's own index beats loading the one saved for ``kb``: no model
        retrains (the same entries and aspects) and the saved index is no better than the update's —
        the same paraphrases (an answer edit: the models are the served ones either way) or a provisional
        index. At 10,000 entries on PostgreSQL under load, the other server's swap loaded 895 MB in
        3.0–4.3 s where the publisher's own update took 1.3–2.6 s (an answer edit)."""
        previous, complete = bot.kb, is_complete(directory)
        if kb.entries.keys() != previous.entries.keys() or (bot.index.provisional and complete):
            return False
        if any(entry.aspect != previous.entries[entry_id].aspect for entry_id, entry in kb.entries.items()):
            return False
        return not complete or all(
            entry.questions == previous.entries[entry_id].questions for entry_id, entry in kb.entries.items())

    # -- completing a provisional index --------------------------------------------------

    def _complete_provisional(self) -> None:
        """Serving a provisional index: swap to the complete one once it is on disk, or retrain it here
        when it has not appeared within ``kb.retrain_after`` seconds."""
        bot = self.services.bot
        if not bot.index.provisional:
            return
        directory = artifact_dir(self.settings.index_dir, bot.kb.version, self.settings.encoder_key)
        if is_complete(directory):
            if not self._lock.acquire(blocking=False):
                return  # a swap is under way; the next request looks again
            try:
                if self.services.bot is bot:
                    self.services.bot = bot.with_knowledge(bot.kb, load_index(directory))
                    log.info("serving the retrained index of KB version %s", bot.kb.version)
            except Exception as exc:  # noqa: BLE001 - keep serving the provisional index; retrain below
                log.warning("retrained index at %s unreadable (%s)", directory, exc)
            finally:
                self._lock.release()
        elif time.monotonic() - self._provisional_since >= self.settings.kb.retrain_after:
            self.retrain()

    def retrain(self) -> threading.Thread | None:
        """Complete the provisional index being served, in the background (one at a time)."""
        if not self.services.bot.index.provisional or (self._retraining and self._retraining.is_alive()):
            return None
        self._retraining = threading.Thread(target=self._retrain, name="kb-retrain", daemon=True)
        self._retraining.start()
        return self._retraining

    def _retrain(self) -> None:
        while self.services.bot.index.provisional:  # a version published meanwhile is completed next
            started = time.perf_counter()
            bot = self.services.bot
            try:
                index = retrain_index(bot.kb, bot.tokenizer, bot.encoder, bot.index, self.memo, self.tokens)
                self._save(index, artifact_dir(self.settings.index_dir, bot.kb.version, self.settings.encoder_key))
                with self._lock:  # unless a request of this process loaded it from disk first, or moved on
                    if self.services.bot.kb.version == bot.kb.version and self.services.bot.index.provisional:
                        self.services.bot = self.services.bot.with_knowledge(bot.kb, index)
            except Exception:  # noqa: BLE001 - the provisional index keeps answering; a later check retries
                log.exception("retraining KB version %s failed", bot.kb.version)
                self._provisional_since = time.monotonic()
                return
            self.last_retrain_seconds = time.perf_counter() - started
            log.info("KB version %s retrained in %.2f s", bot.kb.version, self.last_retrain_seconds)
            self.bump(self.publication_id)  # saved: the other processes load it now

    def _save_unless_saved(self, index: SearchIndex, directory: Path) -> None:
        if not (directory / "docs.json").exists():  # another process saved this version first (~900 MB at 10k)
            self._save(index, directory)

    @staticmethod
    def _save(index: SearchIndex, directory: Path) -> None:
        try:
            save_index(index, directory)
        except OSError as exc:
            log.warning("could not save index to %s: %s", directory, exc)

    def draft_bot(self) -> Bot:
        """A Bot over live + drafts, for the editors' test box (cached per draft version; never served)."""
        kb = load_knowledge_base(self.store.materialise(draft=True))
        live: Bot = self.services.bot
        if kb.version == live.kb.version:
            return live
        with self._draft_lock:
            if self._draft is None or self._draft.kb.version != kb.version:
                self._draft = live.with_knowledge(kb, self.index_for(kb, live))
            return self._draft

    # -- publishing ---------------------------------------------------------------------

    def publish(self, actor: str, entry_ids: list[str] | None = None, note: str = "",
                review: bool = True, effective_from: dt.datetime | None = None,
                restore: dict[str, dict[str, Any] | None] | None = None,
                reviewed: dict[str, str] | None = None) -> Publication:
        """Publish the drafts; this process swaps before the version row commits, others follow.
        ``review=False``: a rollback (the restored content was published, hence approved, before); ``restore``:
        its content (see ``KnowledgeStore.publish``)."""
        with self._lock:
            serving = self.services.bot
            try:
                publication, _ = self.store.publish(actor, entry_ids, note, before_commit=self.swap,
                                                    four_eyes=self.settings.kb.four_eyes and review,
                                                    effective_from=effective_from, restore=restore, reviewed=reviewed)
            except BaseException:
                self.services.bot = serving  # swapped before a commit that did not happen: serve what is live
                raise
            if publication.effective_from is None:
                self.publication_id, self.publication_version = publication.id, publication.version
        self.bump(publication.id)
        self.retrain()
        return publication

    def import_dir(self, source: Path, actor: str) -> Publication:
        with self._lock:
            publication = self.store.import_dir(source, actor)
            self.swap(load_knowledge_base(self.store.materialise()))
            self.publication_id, self.publication_version = publication.id, publication.version
        self.bump(publication.id)
        self.retrain()
        return publication

    # -- Redis bump ---------------------------------------------------------------------

    def bump(self, publication_id: int) -> None:
        url = self.settings.redis_url
        if not url:
            return
        try:
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).publish(CHANNEL, str(publication_id))
        except Exception as exc:  # noqa: BLE001 - a lost bump only delays: the version row is checked anyway
            log.warning("KB bump not sent: %s", exc)

    def start(self) -> None:
        """Listen for bumps (after any fork): swap in the background, before the next request."""
        if not self.settings.redis_url or self._redis_thread is not None:
            return
        self._stop.clear()
        self._redis_thread = threading.Thread(target=self._listen, name="kb-bump", daemon=True)
        self._redis_thread.start()

    def _listen(self) -> None:
        import redis

        url = self.settings.redis_url
        if not url:  # start() only listens when it is set
            return
        while not self._stop.is_set():
            try:
                client = redis.Redis.from_url(url, socket_connect_timeout=2)
                pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                pubsub.subscribe(CHANNEL)
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self.sync(force=True)
            except Exception as exc:  # noqa: BLE001 - reconnect; the per-request check covers the gap
                log.warning("KB bump listener: %s", exc)
                self._stop.wait(2.0)

    def close(self) -> None:
        self._stop.set()
