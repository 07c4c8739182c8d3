"""Live reload of the KB (issue 9): an editor publishes, the next citizen question is answered
from the new version, with no restart — in-process and against real servers over HTTP.

Why: a hotline's rules change every few days; an answer that is right in the editor but
stale on the phone line is the failure this feature exists to prevent."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import httpx

from bot.config import PROJECT_ROOT
from tests.live_server import start_server, stop_server

QUESTION = "核酸检测多少钱"
ENTRY = "testing.pcr_fee"
NEW_ANSWER = "【测试】自2026年12月起，单人单检每次收费10元，混检每人3元。"


def _login(app, username="edna"):
    client = app.test_client()
    response = client.post("/agents/api/login", json={"username": username, "password": "correct horse 1"})
    assert response.status_code == 200, response.json
    client.environ_base["HTTP_X_CSRF_TOKEN"] = response.json["csrf_token"]
    return client


def _ask(client, user="citizen-1"):
    response = client.post("/api/v1/messages", json={"user_id": user, "text": QUESTION, "new_conversation": True})
    assert response.status_code == 200, response.json if hasattr(response, "json") else response.text
    body = response.json if not callable(response.json) else response.json()
    return body["entry_id"], " ".join(r["text"] for r in body["replies"])


def _edited(entry: dict) -> dict:
    content = dict(entry["published"])
    content["answer"] = {**content["answer"], "zh": NEW_ANSWER}
    return content


def test_publish_swaps_the_served_kb_in_process(editing):
    from connectors.app import create_app

    app = create_app(editing)
    editor, citizen = _login(app), app.test_client()
    entry_id, text = _ask(citizen)
    assert entry_id == ENTRY and NEW_ANSWER not in text
    old_version = editing.bot.kb.version
    assert _login(app, "alice").get("/agents/api/kb/entries").status_code == 403  # agents do not edit
    entry = editor.get(f"/agents/api/kb/entries/{ENTRY}").json
    # inline validation names the field
    bad = _edited(entry) | {"questions": {"zh": ["一个"], "en": ["one", "two"]}}
    refused = editor.post(f"/agents/api/kb/entries/{ENTRY}", json={"entry": bad})
    assert refused.status_code == 422 and refused.json["error"]["problems"][0]["field"] == "questions.zh"
    saved = editor.post(f"/agents/api/kb/entries/{ENTRY}", json={"entry": _edited(entry)})
    assert saved.status_code == 200 and saved.json["status"] == "draft"
    box = editor.post("/agents/api/kb/test", json={"text": QUESTION}).json
    assert box["draft"]["answer"] == NEW_ANSWER and box["live"]["answer"] != NEW_ANSWER
    assert box["draft"]["top"][0]["entry_id"] == ENTRY and len(box["live"]["top"]) == 3
    assert _ask(citizen)[1] == text  # a draft is not served
    published = editor.post("/agents/api/kb/publish", json={"note": "fee"})
    assert published.status_code == 200, published.json
    assert published.json["serving"] == published.json["publication"]["version"] != old_version
    assert published.json["swap_seconds"] < 5  # answer-only edit: models reused, lexical + vocabulary rebuilt
    assert NEW_ANSWER in _ask(citizen, "citizen-2")[1]
    history = editor.get(f"/agents/api/kb/entries/{ENTRY}").json["history"]
    back = editor.post(f"/agents/api/kb/entries/{ENTRY}/rollback", json={"revision": history[1]["revision"]})
    assert back.status_code == 200, back.json
    assert editing.bot.kb.version == old_version
    assert NEW_ANSWER not in _ask(citizen, "citizen-3")[1]


def _cli(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "connectors.cli", *args], env=env, cwd=PROJECT_ROOT, check=True,
                   capture_output=True, timeout=120)


def _staff_client(server, username="edna") -> httpx.Client:
    client = server.client()
    response = client.post("/agents/api/login", json={"username": username, "password": "correct horse 1"})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return client


def test_real_server_serves_the_published_answer_without_restart(session_dir, engine, tmp_path):
    """A real ``hotline-bot serve`` (2 worker processes, SQLite): publish over HTTP; every following
    citizen question, whichever worker takes it, gets the new answer; the server never restarted."""
    data_dir = session_dir / "var"  # reuse the session's models and index
    env = {"HOTLINE_KB__EDITING": "1", "HOTLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'live.db'}"}
    server = start_server(data_dir, env)
    try:
        _cli(server.env, "agent", "create", "edna", "--role", "editor", "--password", "correct horse 1")
        pid = server.pid
        editor = _staff_client(server)
        with server.client() as citizen:
            entry_id, before = _ask(citizen)
            assert entry_id == ENTRY and NEW_ANSWER not in before
            entry = editor.get(f"/agents/api/kb/entries/{ENTRY}").json()
            assert editor.post(f"/agents/api/kb/entries/{ENTRY}", json={"entry": _edited(entry)}).status_code == 200
            started = time.perf_counter()
            published = editor.post("/agents/api/kb/publish", json={})
            assert published.status_code == 200, published.text
            answers = []
            for i in range(8):  # a new connection each: both worker processes take some
                with server.client() as fresh:
                    answers.append(_ask(fresh, f"after-{i}")[1])
            elapsed = time.perf_counter() - started
            assert all(NEW_ANSWER in a for a in answers), answers
        assert server.process.poll() is None and server.pid == pid
        print(f"publish -> 8 answers from the new version: {elapsed:.2f} s")
    finally:
        stop_server(server)


def test_scheduled_publish_takes_effect_at_its_time(editing):
    """A publish with ``effective_from`` in the future changes nothing until then; the first request
    after that moment is answered by the new version (the injected clock moves, nothing restarts)."""
    from connectors.app import create_app

    app = create_app(editing)
    editor, citizen = _login(app), app.test_client()
    before = _ask(citizen, "t0")[1]
    entry = editor.get(f"/agents/api/kb/entries/{ENTRY}").json
    assert editor.post(f"/agents/api/kb/entries/{ENTRY}", json={"entry": _edited(entry)}).status_code == 200
    at = editing.clock() + dt.timedelta(hours=1)
    published = editor.post("/agents/api/kb/publish", json={"effective_from": at.isoformat() + "Z"})
    assert published.status_code == 200, published.json
    assert published.json["publication"]["effective_from"] == at.isoformat() + "Z"
    assert _ask(citizen, "t1")[1] == before  # scheduled: not yet
    editing.clock.advance(minutes=59)
    assert _ask(citizen, "t2")[1] == before
    editing.clock.advance(minutes=2)
    assert NEW_ANSWER in _ask(citizen, "t3")[1]


def test_a_process_that_missed_a_publication_rebuilds_it_from_history(editing, tmp_path):
    """Another host has no materialised copy of the version: it is rebuilt from the revision history,
    exactly (same version hash)."""
    store = editing.kb_live.store
    first = store.latest()
    store.save_draft(ENTRY, _edited(store.entry(ENTRY)), "edna")
    second, _ = store.publish("edna")
    from bot.kb.loader import load_knowledge_base
    from bot.kb.store import KnowledgeStore

    elsewhere = KnowledgeStore(store.db, store.knowledge_dir, tmp_path / "other-host", store.clock)
    assert load_knowledge_base(elsewhere.materialise_publication(first.id)).version == first.version
    assert load_knowledge_base(elsewhere.materialise_publication(second.id)).version == second.version
