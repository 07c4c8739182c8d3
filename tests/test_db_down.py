"""A database that goes away: clear 503s, nothing half-written, recovery without restart.

Runs against PostgreSQL through a TCP proxy the test switches off and on.
"""
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy

from bench.tcp_proxy import TcpProxy
from bot.config import DatabaseSettings
from tests.conftest import start_server, stop_server

# These servers keep production's statement timeout (the suite's test servers get a longer one).
PRODUCTION_DEADLINE = {"HOTLINE_DB__STATEMENT_TIMEOUT": str(DatabaseSettings().statement_timeout)}


@pytest.fixture()
def proxied_postgres(postgres_url):
    parts = urlsplit(postgres_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
    yield proxy, parts._replace(netloc=netloc).geturl() + "?connect_timeout=2"
    proxy.stop()


def test_server_survives_database_outage(tmp_path, proxied_postgres):
    proxy, url = proxied_postgres
    server = start_server(tmp_path / "var", {"DATABASE_URL": url, "HOTLINE_OPEN_READ_API": "1", **PRODUCTION_DEADLINE},
                          healthy=False)
    try:
        with server.client() as client:
            down = client.post("/api/v1/messages", json={"user_id": "outage", "text": "核酸多少钱"})
            assert down.status_code == 503
            assert "database" in down.json()["error"]["message"]
            proxy.start()
            deadline = time.monotonic() + 5  # the breaker lets a probe through every 0.5 s
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "the database is back: the server must notice by itself"
                time.sleep(0.1)
            first = client.post("/api/v1/messages", json={"user_id": "outage", "text": "核酸多少钱"})
            assert first.status_code == 200, first.text
            conversation_id = first.json()["conversation_id"]
            proxy.stop()
            lost = client.post("/api/v1/messages", json={"user_id": "outage", "conversation_id": conversation_id,
                                                          "text": "转人工"})
            assert lost.status_code == 503
            assert client.get("/healthz").status_code == 503
            proxy.start()
            deadline = time.monotonic() + 5  # the breaker probes every 0.5 s: back within about that
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "recovers by itself once the database is back"
                time.sleep(0.1)
            turns = client.get(f"/api/v1/conversations/{conversation_id}").json()["turns"]
            assert [t["role"] for t in turns] == ["user", "bot"]  # the failed message left nothing behind
            again = client.post("/api/v1/messages", json={"user_id": "outage", "conversation_id": conversation_id,
                                                           "text": "转人工"})
            assert again.status_code == 200 and again.json()["handoff"]
    finally:
        stop_server(server)


def test_a_frozen_database_link_answers_503_within_seconds(tmp_path, proxied_postgres):
    """Regression: with the database link frozen (no packets, sockets open), requests and /healthz
    hung ~20 s instead of a fast 503 (no statement/connect timeouts); then the first one took ≈4 s
    (a deadline of twice the statement timeout, checked every 0.2 s). Issue 8: within 2 s. /healthz first:
    it pinged with the 2 s connect timeout as its deadline and answered after 2.0 s."""
    proxy, url = proxied_postgres
    proxy.start()
    server = start_server(tmp_path / "var", {"DATABASE_URL": url, **PRODUCTION_DEADLINE})
    try:
        with server.client() as client:
            assert client.post("/api/v1/messages", json={"user_id": "frozen", "text": "你好"}).status_code == 200
            proxy.freeze()
            for path, kwargs in (("/healthz", {}),
                                 ("/api/v1/messages", {"json": {"user_id": "frozen", "text": "核酸多少钱"}})):
                started = time.monotonic()
                response = client.request("POST" if kwargs else "GET", path, timeout=15, **kwargs)
                assert response.status_code == 503, response.text
                # 1.2 s statement timeout + 0.3 s grace + HTTP (~1.5 s; bench/chaos.py measures the 2 s target):
                # well short of the old ≈4 s and ~20 s, with room for a loaded machine
                assert time.monotonic() - started < 3.0
            proxy.thaw()
            deadline = time.monotonic() + 15
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, "recovers by itself once the link flows again"
            again = client.post("/api/v1/messages", json={"user_id": "frozen", "text": "核酸多少钱"})
            assert again.status_code == 200
    finally:
        stop_server(server)


def test_after_a_failure_the_database_fails_fast_then_finds_its_way_back(proxied_postgres):
    """Under load a frozen link's 503s took p50 2.6 s, max 4.4 s (bench/chaos.py): every request
    waited for its own timeout and queued behind the others. After one failure the breaker
    answers at once, and one probe every 0.5 s notices the database is back."""
    from bot.config import Settings
    from bot.db import Database, StoreUnavailable

    proxy, url = proxied_postgres
    proxy.start()
    db = Database(Settings(database_url=url).sqlalchemy_url, connect_timeout=1, statement_timeout=1)
    try:
        assert db.ping()
        proxy.freeze()
        started = time.monotonic()
        assert not db.ping()
        # The first one waits for its deadline (1 s + 0.3 s grace), not for the frozen socket (~20 s): the
        # upper bound was 1.6 s until a loaded CI machine took 1.63 s to return after the watchdog fired.
        assert 1.2 < time.monotonic() - started < 3.0
        timings = []
        for _ in range(10):  # over 2.5 s: a background probe looks for the database, no request does
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                with db.transaction() as session:
                    session.execute(sqlalchemy.text("SELECT 1"))
            timings.append(time.monotonic() - started)
            time.sleep(0.25)
        # the rest fail fast, far inside the 1.3 s deadline (when a request was the probe, one every 0.5 s
        # waited for the deadline)
        assert max(timings) < 0.5, timings
        proxy.thaw()
        deadline = time.monotonic() + 10
        while not db.ping():
            assert time.monotonic() < deadline, "the database is back but the breaker never closed"
            time.sleep(0.1)
        assert db.ping()
    finally:
        db.dispose()


def test_a_new_connection_on_a_frozen_link_gives_up_at_the_deadline(proxied_postgres):
    """Regression: libpq/psycopg raise a connect_timeout under 2 s to 2 s, so a request that had to open a
    connection on a frozen link answered 503 after 2.0 s (bench.chaos: max 2,016 ms; target 2 s), later than
    one on a pooled connection (1.5 s). Now the wait for a new connection ends at the transaction deadline."""
    from bot.config import Settings
    from bot.db import Database

    proxy, url = proxied_postgres
    proxy.start()
    db = Database(Settings(database_url=url).sqlalchemy_url, connect_timeout=2, statement_timeout=0.8)
    try:
        assert db.ping()
        db.dispose()  # the pool is empty: the next transaction must open a connection
        proxy.freeze()
        started = time.monotonic()
        assert not db.ping()
        assert time.monotonic() - started < 1.9  # the 1.1 s deadline, not psycopg's 2 s connect floor
        proxy.thaw()
        deadline = time.monotonic() + 10
        while not db.ping():
            assert time.monotonic() < deadline, "the database is back but the breaker never closed"
            time.sleep(0.1)
    finally:
        db.close()


def test_one_slow_statement_does_not_trip_the_breaker(postgres_url):
    """A query cancelled by statement_timeout is the caller's problem, not a dead database: the
    next transaction must run normally instead of failing fast."""
    from bot.config import Settings
    from bot.db import Database, StoreUnavailable

    db = Database(Settings(database_url=postgres_url).sqlalchemy_url, statement_timeout=0.5)
    try:
        with pytest.raises(StoreUnavailable):
            with db.transaction(timeout=5) as session:  # the watchdog stays far off; the server cancels
                session.execute(sqlalchemy.text("SET LOCAL statement_timeout = 500"))
                session.execute(sqlalchemy.text("SELECT pg_sleep(2)"))
        started = time.monotonic()
        assert db.ping()
        assert time.monotonic() - started < 1
    finally:
        db.dispose()


def test_a_bulk_transaction_is_not_cut_by_the_citizens_statement_timeout(postgres_url):
    """Regression: a transaction given a longer deadline (a KB import or reload) only moved the
    watchdog; the server still cancelled its statements at the citizens' statement timeout, so a
    152-entry import failed on a loaded machine. Its own timeout now holds for it alone."""
    from bot.config import Settings
    from bot.db import Database, StoreUnavailable

    db = Database(Settings(database_url=postgres_url).sqlalchemy_url, statement_timeout=0.2, pool_size=1)
    try:
        with db.transaction(timeout=5) as session:
            assert session.execute(sqlalchemy.text("SELECT pg_sleep(0.6), 1")).one()[1] == 1
        with pytest.raises(StoreUnavailable, match="statement timeout"):  # the pool's connection kept 0.2 s
            with db.transaction() as session:
                session.execute(sqlalchemy.text("SELECT pg_sleep(0.6)"))
    finally:
        db.dispose()


def test_reading_the_whole_kb_outlasts_a_message_deadline(proxied_postgres, tmp_path, clock):
    """Regression: reading every entry to materialise the KB (``kb export``, a reload's load) is a bulk
    read like the import, but it had a citizen message's deadline (statement timeout + 0.3 s): a large KB
    on a busy machine was cut (the suite's 2,000-entry import test failed at its load on a loaded box),
    so such a KB could never be loaded. A link that stalls past that deadline now only delays it."""
    import threading

    from bot.config import default_knowledge_dir
    from bot.db import Database
    from bot.kb.store import KnowledgeStore

    proxy, url = proxied_postgres
    proxy.start()
    db = Database(url, statement_timeout=0.2)  # a message's transaction is cut after 0.5 s
    db.upgrade()
    try:
        store = KnowledgeStore(db, default_knowledge_dir(), tmp_path / "kbwork", clock)
        publication = store.import_dir(default_knowledge_dir(), actor="tester")
        proxy.freeze()
        thaw = threading.Timer(1.0, proxy.thaw)
        thaw.start()
        started = time.monotonic()
        kb = store.load()
        assert time.monotonic() - started >= 0.9  # it did wait for the link
        assert kb.version == publication.version
        proxy.freeze()
        threading.Timer(1.0, proxy.thaw).start()
        assert store.materialise_publication(publication.id).name == publication.version
        # Saving a draft validates it against every entry, and the editor's list and a publish read every
        # entry too: at 10,000 entries on PostgreSQL under load, a draft save was cut and answered 503.
        content = store.entry("testing.pcr_fee")["published"]
        store.save_draft("testing.pcr_fee", {**content, "answer": {**content["answer"], "zh": "改过的答案。"}}, "tester")
        for bulk in (store.validate_draft, store.entries, lambda: store.publish("tester")):
            proxy.freeze()
            threading.Timer(1.0, proxy.thaw).start()
            bulk()
    finally:
        proxy.thaw()
        db.dispose()
