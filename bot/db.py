"""The database: engine, transactions, timeouts and schema migrations.

SQLite file by default; PostgreSQL via ``DATABASE_URL`` for several processes or
hosts. Every message is written in one transaction, so a failure leaves nothing
half-written, and any database problem surfaces as ``StoreUnavailable`` (a 503),
never as a hang:

- PostgreSQL: ``connect_timeout`` and a server-side ``statement_timeout``; and
  because a *frozen* link (packets stop, the socket stays open) defeats both, a
  watchdog shuts the socket of a transaction that outlives its deadline, which
  turns the blocked read into an error at once. The deadline is the statement
  timeout plus ``DEADLINE_GRACE`` (a slow statement on a live server is cancelled by
  the server first, so it is not mistaken for a dead link), and the watchdog wakes
  at the earliest deadline rather than on a poll. Measured with a TCP proxy that
  stops forwarding: the first request answers 503 in ≈1.5 s (it was ≈4 s with a
  deadline of twice the statement timeout and a 0.2 s poll; ~20 s with neither).
  Once the database has failed, a breaker answers the next transactions at once
  (503 in milliseconds, nothing queues behind a dead link) while a background
  probe pings it every ``RETRY_SECONDS`` and closes the breaker when it answers
  (bench/chaos.py: under load, frozen-link 503s took p50 2.6 s / max 4.4 s before
  the breaker; when citizens' own requests were the probes, each probe on a frozen
  link cost its citizen a 2 s connect timeout).
- SQLite: writers of one process queue on a lock (fair, no sleeping busy
  handler: p99 at 10 clients 743 → 93 ms); read-only transactions take no lock.

The schema is owned by Alembic migrations (``bot/migrations``), run by
``hotline-bot db upgrade`` and by ``serve`` at start, behind a lock so two
processes starting together never race (PostgreSQL advisory lock; a lock file
next to a SQLite database).
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bot.errors import SchemaError as SchemaError  # re-exported: callers import them from here too
from bot.errors import StoreUnavailable as StoreUnavailable
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
ADVISORY_LOCK = 0x686F746C  # "hotl"
RETRY_SECONDS = 0.5  # after a failure, one transaction probes the database this often
DEADLINE_GRACE = 0.3  # a transaction's socket is shut this long after its statement timeout


def _statement_cancelled(exc: Exception) -> bool:
    """PostgreSQL cancelled a statement (``statement_timeout``, SQLSTATE 57014): a slow query, not a
    dead link, so it must not make every other request fail fast."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == "57014"


class _Breaker:
    """Fail fast while the database is known to be down; a background probe finds it back.

    Closed: everything passes. After a failure: open, every transaction fails at once,
    and one thread calls ``probe`` every ``retry_seconds`` until it returns without an
    exception, which closes the breaker. No citizen's request is ever the probe."""

    def __init__(self, probe: Callable[[], None], retry_seconds: float = RETRY_SECONDS):
        self._lock = threading.Lock()
        self._failing = False
        self._probe = probe
        self._prober: threading.Thread | None = None
        self._prober_pid = 0  # a forked worker inherits the state but not the thread: it starts its own
        self._stop = threading.Event()
        self.retry_seconds = retry_seconds

    def admit(self) -> None:
        if self._failing:
            with self._lock:
                self._probing()
            raise StoreUnavailable("database unavailable (it failed moments ago; retrying shortly)")

    def _probing(self) -> None:
        """Under the lock: make sure this process has a probe running."""
        if self._failing and (self._prober is None or self._prober_pid != os.getpid()):
            self._prober = threading.Thread(target=self._run, name="hotline-db-probe", daemon=True)
            self._prober_pid = os.getpid()
            self._prober.start()

    def succeeded(self) -> None:
        if self._failing:
            with self._lock:
                self._failing = False

    def failed(self) -> None:
        with self._lock:
            self._failing = True
            self._probing()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.retry_seconds):
                with self._lock:  # the prober leaves only under the lock, so a new failure always finds one
                    if not self._failing:
                        self._prober = None
                        return
                try:
                    self._probe()
                except Exception as exc:  # noqa: BLE001 - still down; try again
                    log.debug("database probe failed: %r", exc)
                    continue
                if self._failing:
                    self.succeeded()
                    log.warning("database reachable again")
        finally:
            with self._lock:
                if self._prober is threading.current_thread():
                    self._prober = None

    def close(self) -> None:
        self._stop.set()


class _Watchdog:
    """Shuts the socket of a PostgreSQL transaction that outlives its deadline.

    One thread sleeps until the earliest deadline (a new, earlier one wakes it), so a
    socket is shut within milliseconds of its deadline instead of up to a poll interval late."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._entries: dict[int, tuple[float, int]] = {}
        self._ids = iter(range(1, 2**62))
        self._thread: threading.Thread | None = None

    def watch(self, fd: int, seconds: float) -> int:
        with self._wake:
            key = next(self._ids)
            deadline = time.monotonic() + seconds
            earliest = min((d for d, _ in self._entries.values()), default=None)
            self._entries[key] = (deadline, fd)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hotline-db-watchdog", daemon=True)
                self._thread.start()
            elif earliest is None or deadline < earliest:
                self._wake.notify()
            return key

    def unwatch(self, key: int) -> None:
        with self._wake:
            self._entries.pop(key, None)

    def _run(self) -> None:
        while True:
            with self._wake:  # the fd is valid while registered: unwatch happens before the connection is released
                now = time.monotonic()
                earliest = min((d for d, _ in self._entries.values()), default=None)
                if earliest is None or now < earliest:
                    self._wake.wait(None if earliest is None else earliest - now)
                    continue
                for key, (deadline, fd) in list(self._entries.items()):
                    if now < deadline:
                        continue
                    del self._entries[key]
                    try:
                        sock = socket.socket(fileno=os.dup(fd))
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        finally:
                            sock.close()
                        log.error("database transaction exceeded its deadline: connection shut")
                    except OSError:
                        pass


class Database:
    """Owns the engine and hands out transactions.

    Both engines hide statement parameters in their errors: a failed INSERT's message (logged, and shown by
    ``serve`` on a fault) quoted the citizen's own words and phone number."""

    def __init__(self, url: str, *, connect_timeout: float = 2.0, statement_timeout: float = 2.0,
                 pool_size: int = 10):
        self.url = url
        self.statement_timeout = statement_timeout
        self.deadline = statement_timeout + DEADLINE_GRACE  # a transaction on a silent link ends here
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            path = url.removeprefix("sqlite:///")
            self.path = None if path in ("", ":memory:") else Path(path)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            kwargs: dict[str, Any] = {"connect_args": {"timeout": 30, "check_same_thread": False},
                                      "hide_parameters": True}
            if self.path is None:  # one shared in-memory database for every thread of this process
                from sqlalchemy.pool import StaticPool

                kwargs["poolclass"] = StaticPool
            self.engine: Engine = create_engine(url, **kwargs)
            event.listen(self.engine, "connect", _sqlite_pragmas)
            # SQLite has one writer. Queue this process's writers on a lock instead of
            # SQLite's busy handler, which sleeps up to 100 ms per retry; other
            # processes still meet busy_timeout.
            self._writer: threading.Lock | contextlib.nullcontext[None] = threading.Lock()
            self._watchdog: _Watchdog | None = None
        else:
            self.path = None
            self.engine = create_engine(
                url, hide_parameters=True, pool_size=pool_size, max_overflow=pool_size * 2,
                pool_timeout=connect_timeout,
                pool_pre_ping=False,  # a ping on a frozen link would hang outside the watchdog
                connect_args={"connect_timeout": max(1, int(round(connect_timeout))),
                              "options": f"-c statement_timeout={int(statement_timeout * 1000)}"
                                         f" -c idle_in_transaction_session_timeout=60000"})
            self._writer = contextlib.nullcontext()
            self._watchdog = _Watchdog()
            event.listen(self.engine, "do_connect", self._connect_within_deadline)
        # SQLite is a local file: its errors are not a dead link, so only PostgreSQL gets a breaker.
        self._breaker = None if self.is_sqlite else _Breaker(self._probe)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    # -- transactions -----------------------------------------------------------------

    @contextmanager
    def transaction(self, timeout: float | None = None, write: bool = True) -> Iterator[Session]:
        """One transaction; commits when the block ends without an exception.

        Callables appended to ``session.info["after_commit"]`` run once the commit
        has succeeded (wake-ups must never announce rows a reader cannot see)."""
        if self._breaker is not None:
            self._breaker.admit()
        session = self._sessions()
        if self.is_sqlite:
            session.info["sqlite_begin"] = "BEGIN IMMEDIATE" if write else "BEGIN"
        key = None
        try:
            with (self._writer if write else contextlib.nullcontext()), session.begin():
                if self._watchdog is not None:
                    key = self._watch(session.connection().connection.dbapi_connection, timeout or self.deadline)
                if timeout is not None and timeout > self.deadline and not self.is_sqlite:
                    # A longer transaction (KB import or reload, a quarter's analytics) gets a server-side
                    # timeout to match (its deadline less the grace, like a message's): with only the
                    # watchdog's deadline moved, a 152-entry import's INSERT was still cancelled at the
                    # citizens' statement timeout on a loaded machine. SET LOCAL ends with the transaction.
                    statement_ms = int((timeout - DEADLINE_GRACE) * 1000)
                    session.execute(text(f"SET LOCAL statement_timeout = {statement_ms}"))
                yield session
        except (OperationalError, PoolTimeout) as exc:
            if _statement_cancelled(exc):
                self._reachable()  # one slow statement hit statement_timeout: the database itself answers
            else:
                self._unreachable()
            raise StoreUnavailable(f"database unavailable: {getattr(exc, 'orig', exc)!r}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                self._unreachable()
                raise StoreUnavailable(f"database connection lost: {exc.orig!r}") from exc
            self._reachable()
            raise
        except StoreUnavailable:
            raise  # a nested transaction failed: says nothing good about the database
        except BaseException:
            self._reachable()  # the database answered; the error was the caller's
            raise
        else:
            self._reachable()
        finally:
            if key is not None and self._watchdog is not None:
                self._watchdog.unwatch(key)
            session.close()
        for callback in session.info.get("after_commit", ()):
            try:
                callback()
            except Exception:  # a wake-up must never turn a committed message into an error
                log.exception("after-commit callback failed")

    def _connect_within_deadline(self, dialect: Any, _record: object, cargs: Any, cparams: Any) -> Any:
        """Open a connection, or fail at the transaction deadline.

        libpq and psycopg raise any ``connect_timeout`` under 2 s to 2 s, and the watchdog cannot shut a
        socket that is still being opened: on a frozen link a request that needed a new connection answered
        503 after 2.0 s (bench/chaos.py: max 2,016 ms) while pooled ones did after 1.5 s. The connect runs on
        a thread of its own; the caller stops waiting at the deadline, and a connection that arrives later
        is closed. (A new thread per connect, not a pool: connections are opened rarely, and a pool's
        threads would not survive the fork into workers.)"""
        from concurrent.futures import Future
        from concurrent.futures import TimeoutError as FutureTimeout

        future: Future[Any] = Future()

        def connect() -> None:
            try:
                future.set_result(dialect.connect(*cargs, **cparams))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)

        threading.Thread(target=connect, name="hotline-db-connect", daemon=True).start()
        try:
            return future.result(timeout=self.deadline)
        except FutureTimeout:
            future.add_done_callback(_close_late_connection)
            raise dialect.loaded_dbapi.OperationalError(
                f"no connection within {self.deadline:.1f} s (the link may be frozen)") from None

    def _unreachable(self) -> None:
        if self._breaker is not None:
            self._breaker.failed()

    def _reachable(self) -> None:
        if self._breaker is not None:
            self._breaker.succeeded()

    def read(self, timeout: float | None = None) -> contextlib.AbstractContextManager[Session]:
        """A read-only transaction: takes no writer lock."""
        return self.transaction(timeout=timeout, write=False)

    def _watch(self, raw: Any, seconds: float) -> int | None:
        """Have the watchdog shut this DBAPI connection's socket after ``seconds``; the key to unwatch."""
        pgconn = getattr(raw, "pgconn", None)
        if pgconn is None or self._watchdog is None:
            return None
        return self._watchdog.watch(pgconn.socket, seconds)

    @staticmethod
    def after_commit(session: Session, callback: Callable[[], None]) -> None:
        session.info.setdefault("after_commit", []).append(callback)

    def ping(self, timeout: float | None = None) -> bool:
        try:
            with self.read(timeout=timeout) as session:
                session.execute(text("SELECT 1"))
            return True
        except StoreUnavailable:
            return False

    def _probe(self) -> None:
        """SELECT 1 on a new connection, past the breaker, cut at the deadline like any transaction."""
        with self.engine.connect() as connection:
            key = self._watch(connection.connection.dbapi_connection, self.deadline)
            try:
                connection.execute(text("SELECT 1"))
            finally:
                if key is not None and self._watchdog is not None:
                    self._watchdog.unwatch(key)

    def dispose(self) -> None:
        """Close the pooled connections (also after a fork: they are never shared between processes)."""
        self.engine.dispose()

    def close(self) -> None:
        """For good: connections closed and the background probe stopped."""
        if self._breaker is not None:
            self._breaker.close()
        self.engine.dispose()

    # -- schema -------------------------------------------------------------------------

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision`` (idempotent), one process at a time."""
        from alembic import command

        try:
            with self._migration_lock() as connection:
                self._refuse_unmanaged(connection)
                config = alembic_config(self.url)
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if not self.is_sqlite:
                    connection.commit()
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {exc.orig!r}") from exc

    def current_revision(self) -> str | None:
        from alembic.migration import MigrationContext

        with self.engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    def check_schema(self) -> None:
        """Raise SchemaError unless the database is at this release's head revision."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config(self.url)).get_current_head()
        try:
            current = self.current_revision()
        except OperationalError as exc:
            raise StoreUnavailable(f"database unavailable: {exc.orig!r}") from exc
        if current != head:
            raise SchemaError(f"database schema is at {current or 'nothing'}, this release needs {head}: "
                              f"run `hotline-bot db upgrade`")

    @contextmanager
    def _migration_lock(self) -> Iterator[Connection]:
        if self.is_sqlite:
            handle = None
            if self.path is not None:
                handle = open(f"{self.path}.migrate-lock", "w")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                with self.engine.connect() as connection:
                    yield connection
                    connection.commit()
            finally:
                if handle is not None:
                    fcntl.flock(handle, fcntl.LOCK_UN)
                    handle.close()
            return
        with self.engine.connect() as connection:
            # Neither waiting for another process's migration nor a migration's own DDL is a citizen's
            # statement: with the server's statement timeout (1.2 s), a second process starting beside one
            # that migrated for longer was cancelled in pg_advisory_lock, and so was DDL on a loaded machine.
            connection.execute(text("SET statement_timeout = 0"))
            connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK})
            connection.commit()
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK})
                connection.execute(text("RESET statement_timeout"))  # the pool's connections keep their own
                connection.commit()

    @staticmethod
    def _refuse_unmanaged(connection: Connection) -> None:
        tables = set(inspect(connection).get_table_names())
        if tables and "alembic_version" not in tables and "conversations" in tables:
            raise SchemaError("this database was created by a release before migrations existed; "
                              "export what you need and point hotline-bot at an empty database")


def _close_late_connection(future: Any) -> None:
    """A connection that arrived after its caller gave up belongs to nobody."""
    if future.exception() is None:
        with contextlib.suppress(Exception):
            future.result().close()


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # the "begin" listener issues BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: no fsync per commit; a power cut may lose the last commits but never corrupts.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@event.listens_for(Session, "after_begin")
def _sqlite_begin(session: Session, transaction: SessionTransaction, connection: Connection) -> None:
    begin = session.info.get("sqlite_begin")
    if begin is not None and connection.dialect.name == "sqlite" and not transaction.nested:
        # Take the write lock at BEGIN: a deferred transaction that upgrades later gets
        # SQLITE_BUSY at once instead of waiting its turn.
        connection.exec_driver_sql(begin)


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched: SQLAlchemy types ``Session.execute`` as a plain ``Result``,
    though a DML statement always returns a ``CursorResult``."""
    return int(cast("CursorResult[Any]", result).rowcount)
