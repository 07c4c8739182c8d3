"""Shared fixtures: one real Bot per session, real servers, real databases."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from bot.config import PROJECT_ROOT, Settings
from bot.store import Store
from tests.live_server import LiveServer, free_port, start_server, stop_server  # noqa: F401  (re-exported)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hotline")


@pytest.fixture(scope="session")
def settings(session_dir) -> Settings:
    """Real KB, index artifacts in a session temp dir, SQLite in a temp file."""
    return Settings(knowledge_dir=PROJECT_ROOT / "knowledge", data_dir=session_dir / "var", database_url=None)


@pytest.fixture(scope="session")
def bot(settings):
    from bot.engine import Bot

    return Bot.from_settings(settings)


@pytest.fixture()
def fresh_store(tmp_path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'fresh.db'}")
    store.create_schema()
    return store


@pytest.fixture()
def fresh_bot(bot, fresh_store):
    """The session's loaded bot over an empty database (no model reload)."""
    from bot.engine import Bot

    return Bot(bot.settings, bot.kb, bot.tokenizer, bot.encoder, bot.index, fresh_store)


REDIS_URL = os.environ.get("HOTLINE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture()
def redis_available() -> str:
    """The local Redis, or skip: multi-process wake-ups are tested over a real connection."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL


def _postgres_admin_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgresql", "postgres")) else None


@pytest.fixture(scope="session")
def postgres_url():
    """A throw-away PostgreSQL database for this session, or skip when none is configured."""
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip("DATABASE_URL does not point at PostgreSQL")
    import sqlalchemy

    base = Settings(database_url=admin_url).sqlalchemy_url
    name = f"hotline_test_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = base.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.exec_driver_sql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()")
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path) -> Store:
    """The same tests on SQLite and (when configured) PostgreSQL."""
    if request.param == "sqlite":
        store = Store(f"sqlite:///{tmp_path / 'any.db'}")
    else:
        store = Store(request.getfixturevalue("postgres_url"))
        from bot.store import Base

        Base.metadata.drop_all(store.engine)  # each test starts from empty tables
    store.create_schema()
    yield store
    store.engine.dispose()


@pytest.fixture(scope="session")
def live_server(session_dir, settings, bot):
    """One real server for the session; it reuses the index the ``bot`` fixture built."""
    server = start_server(session_dir / "var")
    yield server
    stop_server(server)
