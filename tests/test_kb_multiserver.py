"""Two server processes on PostgreSQL + Redis (issue 9): an editor publishes on one; the
other serves the new version within seconds, through the Redis bump alone (its own version
check is set to once an hour), and no request fails or flips back during the swap.

Why: a hotline runs several servers; an answer fixed on one of them only is still wrong."""
from __future__ import annotations

import threading
import time

import pytest

from tests.conftest import drop_postgres_database, new_postgres_database
from tests.live_server import start_server, stop_server
from tests.test_kb_live import ENTRY, NEW_ANSWER, QUESTION, _cli, _edited, _staff_client


@pytest.fixture()
def shared_postgres(postgres_admin):
    url = new_postgres_database(postgres_admin)
    yield url
    drop_postgres_database(postgres_admin, url)


def test_two_servers_follow_a_publish(session_dir, engine, shared_postgres, redis_available):
    data_dir = session_dir / "var"  # shared models and index artifacts (one host; see README for several)
    common = {"HOTLINE_DATABASE_URL": shared_postgres, "HOTLINE_REDIS_URL": redis_available,
              "HOTLINE_KB__EDITING": "1", "HOTLINE_SERVER__WORKERS": "1",
              "HOTLINE_LIMITS__ENABLED": "0"}  # the load below is one IP sending far above a citizen's rate
    first = start_server(data_dir, common)
    second = None
    try:
        second = start_server(data_dir, {**common, "HOTLINE_KB__CHECK_INTERVAL": "3600"})
        _cli(first.env, "agent", "create", "edna", "--role", "editor", "--password", "correct horse 1")
        results: dict[str, list[tuple[float, int, bool]]] = {"first": [], "second": []}
        stop = threading.Event()

        def load(name, server):
            with server.client() as client:
                i = 0
                while not stop.is_set():
                    i += 1
                    response = client.post("/api/v1/messages", json={"user_id": f"{name}-{i}", "text": QUESTION,
                                                                      "new_conversation": True})
                    ok = response.status_code == 200
                    text = " ".join(r["text"] for r in response.json()["replies"]) if ok else ""
                    results[name].append((time.perf_counter(), response.status_code, NEW_ANSWER in text))

        threads = [threading.Thread(target=load, args=(n, s)) for n, s in (("first", first), ("second", second))]
        for t in threads:
            t.start()
        editor = _staff_client(first)
        entry = editor.get(f"/agents/api/kb/entries/{ENTRY}").json()
        assert editor.post(f"/agents/api/kb/entries/{ENTRY}", json={"entry": _edited(entry)}).status_code == 200
        time.sleep(1.0)
        published_at = time.perf_counter()
        response = editor.post("/agents/api/kb/publish", json={})
        assert response.status_code == 200, response.text
        returned_at = time.perf_counter()
        deadline = returned_at + 30
        while time.perf_counter() < deadline and not (
                results["second"] and results["second"][-1][2] and results["first"] and results["first"][-1][2]):
            time.sleep(0.05)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=30)
        for name, rows in results.items():
            statuses = sorted({status for _, status, _ in rows})
            assert rows and statuses == [200], (name, statuses)  # nothing failed during the swap
            flags = [new for _, _, new in rows]
            first_new = flags.index(True)
            assert all(flags[first_new:]), f"{name} went back to the old answer"  # never mixed / flipped
            assert not any(flags[:first_new])
        seen = {name: next(at for at, _, new in rows if new) - published_at for name, rows in results.items()}
        print(f"publish request {returned_at - published_at:.2f} s; new answer first served: "
              + ", ".join(f"{k} +{v:.2f} s" for k, v in seen.items())
              + f"; requests during the test: {sum(len(r) for r in results.values())}")
        assert seen["second"] <= (returned_at - published_at) + 5.0  # the Redis bump, within 5 s of the publish
    finally:
        if second is not None:
            stop_server(second)
        stop_server(first)
