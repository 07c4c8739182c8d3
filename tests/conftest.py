"""Shared fixtures: one loaded engine per session, a fresh database per test, real
servers, real databases, and an injected clock so nothing depends on today's date."""
from __future__ import annotations

import datetime as dt
import os
import shutil
from pathlib import Path

import pytest

from bench.pg import create_database, drop_database
from bot.config import PROJECT_ROOT, Settings
from bot.conversations.privacy import Vault
from bot.db import Database
from bot.services import Services
from tests.live_server import (NOW, TEST_STATEMENT_TIMEOUT, LiveServer, free_port, start_server,  # noqa: F401
                               stop_server)  # (re-exported)

CHROMIUM = "/usr/bin/chromium"  # Debian's, as CI installs it (apt-get install chromium)


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium for the browser tests of one module (they skip when Chromium is missing)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server_side_checks():
    """For the KB editor's browser modules: what a page waits for there (an inline check, a save, a publish) is the
    server validating the whole KB, several seconds under the suite's load; Playwright's 5 s default failed a
    passing test in a full run (the covers field's inline check). Waits that succeed end as early as before."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    yield
    expect.set_options(timeout=5_000)


def hold_first(page, pattern: str, held: list, when=lambda url: True) -> None:
    """Holds the first request matching ``pattern`` (and ``when(url)``) in ``held`` until ``release``; the rest
    pass. For the consoles' late-answer tests: a slow answer must not be drawn over the next one."""
    def route(r):
        if held or not when(r.request.url):
            r.continue_()
        else:
            held.append(r)
    page.route(pattern, route)


def release(page, held: list) -> None:
    """Answers the held request now, after the ones that followed it, and lets its handlers run."""
    with page.expect_response(lambda r: r.url == held[0].request.url):
        held[0].fulfill(response=held[0].fetch())
    page.wait_for_timeout(500)  # whatever the late answer's handlers would draw, they draw now (nothing to wait for)

TEST_KEY = Vault.new_key()


class Clock:
    """The time services see; tests move it explicitly."""

    def __init__(self, now: dt.datetime = NOW):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hotline")


@pytest.fixture(scope="session", autouse=True)
def shared_cache(session_dir):
    """One index and model cache for the whole run: every server subprocess inherits it through the
    environment, so each new data dir does not re-encode the KB (measured ~8 s per server)."""
    # Under pytest-xdist every worker has its own session dir; the cache goes one level up so the
    # workers share it (index and model copies are written to a temp folder and renamed: safe).
    root = session_dir.parent.parent if os.environ.get("PYTEST_XDIST_WORKER") else session_dir
    cache = root / "cache"
    previous = os.environ.get("HOTLINE_CACHE_DIR")
    os.environ["HOTLINE_CACHE_DIR"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("HOTLINE_CACHE_DIR", None)
    else:
        os.environ["HOTLINE_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def settings(session_dir, shared_cache) -> Settings:
    """Real KB, index artifacts in the shared cache, SQLite, a fixed privacy key. A 5 s statement timeout:
    the suite loads both cores (browsers, servers, two workers), and a first message on a fresh PostgreSQL
    database once outlived the 1.5 s production deadline in a fixture's setup; the tests of that deadline
    (tests/test_db_down.py) set their own timeouts."""
    return Settings(data_dir=session_dir / "var", cache_dir=shared_cache, database_url=None, cookie_secure=False,
                    privacy={"key": TEST_KEY}, redis_url=None, db={"statement_timeout": TEST_STATEMENT_TIMEOUT})


@pytest.fixture(scope="session")
def engine(settings):
    """The understanding half, loaded once: KB, encoder, index."""
    from bot.engine import Bot

    return Bot.load(settings)


MINI_KB = PROJECT_ROOT / "tests" / "fixtures" / "mini_kb"


@pytest.fixture(scope="session")
def mini_settings(tmp_path_factory, shared_cache) -> Settings:
    """The tiny fixture KB (tests/fixtures/mini_kb: three FAQ entries) beside the shipped KB's other files
    (intents, responses, regions, safety rules): engine and KB-editing mechanics without the real KB's
    answers, expiry dates or training cost (retraining its models: ~1 s instead of ~10 s)."""
    root = tmp_path_factory.mktemp("mini") / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", root, ignore=shutil.ignore_patterns("faq", "scope", "__pycache__"))
    shutil.copytree(MINI_KB / "faq", root / "faq")
    return Settings(knowledge_dir=root, data_dir=root.parent / "var", cache_dir=shared_cache, database_url=None,
                    cookie_secure=False, privacy={"key": TEST_KEY}, redis_url=None)


@pytest.fixture(scope="session")
def mini_engine(mini_settings):
    from bot.engine import Bot

    return Bot.load(mini_settings)


@pytest.fixture()
def clock() -> Clock:
    return Clock()


def open_database(url: str) -> Database:
    """A ``Database`` for a test's own setup and assertions, with the suite's statement timeout."""
    return Database(url, statement_timeout=TEST_STATEMENT_TIMEOUT)


def build_services(settings: Settings, engine, url: str, clock: Clock, **changes) -> Services:
    if changes:
        settings = settings.model_copy(update=changes)
    db = Database(url, connect_timeout=settings.db.connect_timeout, statement_timeout=settings.db.statement_timeout)
    return Services.build(settings, bot=engine, db=db, clock=clock)


@pytest.fixture()
def services(settings, engine, clock, tmp_path):
    """Everything over an empty SQLite file (no model reload)."""
    svc = build_services(settings, engine, f"sqlite:///{tmp_path / 'fresh.db'}", clock)
    yield svc
    svc.close()


@pytest.fixture()
def fresh_bot(services):
    return services.bot


@pytest.fixture()
def app(services):
    from connectors.app import create_app

    return create_app(services)


@pytest.fixture()
def client(app):
    return app.test_client()


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
def postgres_admin():
    admin_url = _postgres_admin_url()
    if admin_url is None:
        pytest.skip("DATABASE_URL does not point at PostgreSQL")
    return Settings(database_url=admin_url).sqlalchemy_url


def new_postgres_database(admin_url: str) -> str:
    return create_database(admin_url, prefix="hotline_test")


def drop_postgres_database(admin_url: str, url: str) -> None:
    drop_database(admin_url, url)


@pytest.fixture()
def postgres_url(postgres_admin):
    """A throw-away, empty PostgreSQL database for one test."""
    url = new_postgres_database(postgres_admin)
    yield url
    drop_postgres_database(postgres_admin, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_services(request, settings, engine, clock, tmp_path):
    """The same tests on SQLite and (when configured) PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'any.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    svc = build_services(settings, engine, url, clock)
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def live_server(session_dir, settings, engine):
    """One real server for the session; it reuses the index the ``engine`` fixture built."""
    server = start_server(session_dir / "var", {"HOTLINE_OPEN_READ_API": "1"})
    yield server
    stop_server(server)


@pytest.fixture()
def editing(settings, engine, clock, tmp_path):
    """Services with KB editing on (issue 9) over SQLite, an editor ``edna`` and an agent ``alice``."""
    from bot.config import KbSettings

    svc = build_services(settings, engine, f"sqlite:///{tmp_path / 'kb.db'}", clock, kb=KbSettings(editing=True))
    svc.staff.create("edna", "correct horse 1", role="editor")
    svc.staff.create("alice", "correct horse 1", role="agent")
    yield svc
    svc.close()


# -- scheduling under pytest-xdist ---------------------------------------------------------------
# `--dist loadscope` sends whole modules to workers; by default it dispatches the modules with the most
# tests first, so modules of one long test (the dashboard's simulated day, two servers following a publish)
# came last and one worker ran them while the others were idle (2026-12-02, -n 4: workers finished at 144,
# 146, 151 and 176 s). With `--no-loadscope-reorder` they go in this order instead: the longest first (seconds
# of one worker, measured under -n 4 that day; a module not listed follows, in collection order). A stale
# list only costs speed. test_analytics goes second, out of order: it needs no index, so its process works
# while the first one builds the index that the others wait for (~12 s).
LONGEST_FIRST = {name: rank for rank, name in enumerate([
    "test_browser_ux.py",  # 93 s
    "test_analytics.py",  # 20
    "test_browser_kb_editor.py",  # 35
    "test_bench_tools.py",  # 34
    "test_db_down.py",  # 31
    "test_browser_dashboard.py",  # 24
    "test_browser_widget.py",  # 24
    "test_browser_late_answers.py",  # 29 (its own server and browser)
    "test_browser_kb_four_eyes.py",  # 30 (its own server and browser)
    "test_kb_inbox.py",  # 25
    "test_agents_api.py",  # 25
    "test_kb_store.py",  # 23
    "test_wechat_parts.py",  # 23
    "test_wechat_e2e.py",  # 22
    "test_slow_clients.py",  # 21
    "test_fuzz.py",  # 20
    "test_probe_rows.py",  # 19
    "test_conversations.py",  # 16 (+ the first index build where it comes first)
    "test_kb_live.py",  # 16
    "test_fast_models.py",  # 15
    "test_web_api.py",  # 10
    "test_kb_multiserver.py",  # 10
])}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: LONGEST_FIRST.get(item.path.name, len(LONGEST_FIRST)))  # stable: order within a module kept
