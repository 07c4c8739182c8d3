"""Alembic migrations: an empty SQLite and PostgreSQL database upgrade to exactly the
models, concurrent first starts do not race, and a database from before migrations
is refused with a clear message instead of being half-used."""
from __future__ import annotations

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from bot.db import Database, SchemaError
from bot.models import Base
from tests.conftest import open_database


def _diff(url: str) -> list:
    engine = create_engine(url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    return diff


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres_url")


def test_upgrade_of_an_empty_database_matches_the_models(empty_url):
    db = open_database(empty_url)
    db.upgrade()
    assert db.current_revision() is not None
    db.check_schema()
    assert _diff(empty_url) == []
    db.upgrade()  # idempotent
    db.dispose()


def test_two_processes_starting_together_do_not_race(empty_url):
    """Regression: table creation from two threads on an empty PostgreSQL crashed the server (4/4)."""
    errors = []
    barrier = threading.Barrier(4)

    def start():
        db = open_database(empty_url)
        barrier.wait()
        try:
            db.upgrade()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _diff(empty_url) == []


def test_a_database_from_before_migrations_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE conversations (id VARCHAR(64) PRIMARY KEY)"))
    engine.dispose()
    db = open_database(url)
    with pytest.raises(SchemaError, match="before migrations"):
        db.upgrade()
    with pytest.raises(SchemaError, match="db upgrade"):
        db.check_schema()


def test_a_process_waits_for_another_ones_migration_past_its_statement_timeout(postgres_url):
    """Regression: migrating ran under the server's statement timeout (1.2 s), so a process starting while
    another held the migration lock longer was cancelled in ``pg_advisory_lock`` (and the suite's 0.2 s
    database failed in CREATE TABLE on a loaded machine). The lock holder here stands for a long migration."""
    import time

    from bot.db import ADVISORY_LOCK

    holder = create_engine(postgres_url)
    with holder.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK})
        threading.Timer(1.0, lambda: (connection.execute(text("SELECT pg_advisory_unlock(:k)"),
                                                         {"k": ADVISORY_LOCK}), connection.commit())).start()
        db = Database(postgres_url, statement_timeout=0.2)
        try:
            started = time.monotonic()
            db.upgrade()
            assert time.monotonic() - started >= 0.9  # it waited for the lock
            db.check_schema()
            with db.engine.connect() as pooled:  # the pool's connections still have the server's timeout
                assert pooled.execute(text("SHOW statement_timeout")).scalar() == "200ms"
        finally:
            db.dispose()
    holder.dispose()
