"""Live reload of the KB (issue 9): an editor publishes, the next citizen question is answered
from the new version, with no restart — in-process and against real servers over HTTP.

Why: a hotline's rules change every few days; an answer that is right in the editor but
stale on the phone line is the failure this feature exists to prevent."""
from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time

import httpx
import pytest

from bot.config import PROJECT_ROOT
from tests.live_server import start_server, stop_server

QUESTION = "核酸检测多少钱"
ENTRY = "testing.pcr_fee"
NEW_ANSWER = "【测试】自2026年12月起，单人单检每次收费10元，混检每人3元。"
MINI_QUESTION = "测一次核酸多少钱"
MINI_ENTRY = "testing.mini_fee"  # the retraining tests run on the fixture KB (tests/fixtures/mini_kb)


@pytest.fixture()
def mini_editing(mini_settings, mini_engine, clock, tmp_path):
    """``editing`` over the three-entry fixture KB: what a paraphrase publish retrains (entry classifier,
    scope model, indexes) is the same code, in ~1 s instead of ~10 s on the shipped KB."""
    from bot.config import KbSettings
    from tests.conftest import build_services

    svc = build_services(mini_settings, mini_engine, f"sqlite:///{tmp_path / 'kb.db'}", clock,
                         kb=KbSettings(editing=True))
    svc.staff.create("edna", "correct horse 1", role="editor")
    yield svc
    svc.close()


def _login(app, username="edna"):
    client = app.test_client()
    response = client.post("/agents/api/login", json={"username": username, "password": "correct horse 1"})
    assert response.status_code == 200, response.json
    client.environ_base["HTTP_X_CSRF_TOKEN"] = response.json["csrf_token"]
    return client


def _ask(client, user="citizen-1", question=QUESTION):
    response = client.post("/api/v1/messages", json={"user_id": user, "text": question, "new_conversation": True})
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


def test_the_test_box_decides_as_citizens_are_answered(editing):
    """The editor's test box ran the policy without the topic and the other subjects: it previewed "疫苗" as
    answered with testing.after_vaccination, and an HPV vaccine question as answered, unlike what citizens got."""
    from bot.messages import Message
    from connectors.app import create_app

    editor = _login(create_app(editing))
    for text in ("疫苗", "HPV疫苗在哪里打"):
        box = editor.post("/agents/api/kb/test", json={"text": text}).json["live"]
        served = editing.bot.handle(Message(user_id=f"box-{text}", text=text, channel="api"))
        assert box["action"] == served.action and box["entry_id"] == served.entry_id, (text, box, served.action)
        assert box["action"] != "answer", (text, box)


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


def _schedule_new_answer(editor, editing):
    """ENTRY's NEW_ANSWER saved and published for an hour from now: (that moment, the publish response)."""
    entry = editor.get(f"/agents/api/kb/entries/{ENTRY}").json
    assert editor.post(f"/agents/api/kb/entries/{ENTRY}", json={"entry": _edited(entry)}).status_code == 200
    at = editing.clock() + dt.timedelta(hours=1)
    published = editor.post("/agents/api/kb/publish", json={"effective_from": at.isoformat() + "Z"})
    assert published.status_code == 200, published.json
    return at, published


def test_scheduled_publish_takes_effect_at_its_time(editing):
    """A publish with ``effective_from`` in the future changes nothing until then; the first request
    after that moment is answered by the new version (the injected clock moves, nothing restarts)."""
    from connectors.app import create_app

    app = create_app(editing)
    editor, citizen = _login(app), app.test_client()
    before = _ask(citizen, "t0")[1]
    at, published = _schedule_new_answer(editor, editing)
    assert published.json["publication"]["effective_from"] == at.isoformat() + "Z"
    assert _ask(citizen, "t1")[1] == before  # scheduled: not yet
    editing.clock.advance(minutes=59)
    assert _ask(citizen, "t2")[1] == before
    editing.clock.advance(minutes=2)
    assert NEW_ANSWER in _ask(citizen, "t3")[1]


def test_an_editor_cancels_a_scheduled_publish_over_http(editing):
    """DELETE /agents/api/kb/publications/<id>: the scheduled change never reaches citizens and is a draft again."""
    from connectors.app import create_app

    app = create_app(editing)
    editor, citizen = _login(app), app.test_client()
    before = _ask(citizen, "c0")[1]
    _, published = _schedule_new_answer(editor, editing)
    scheduled = published.json["publication"]["id"]
    assert editor.get(f"/agents/api/kb/entries/{ENTRY}").json["scheduled_publication"] == scheduled
    token = editor.environ_base.pop("HTTP_X_CSRF_TOKEN")
    assert editor.delete(f"/agents/api/kb/publications/{scheduled}", json={}).status_code == 403  # no CSRF token
    editor.environ_base["HTTP_X_CSRF_TOKEN"] = token
    assert editor.delete(f"/agents/api/kb/publications/{scheduled}", data="{}").status_code == 415  # not JSON
    assert editor.delete(f"/agents/api/kb/publications/{2**40}", json={}).status_code == 404
    cancelled = editor.delete(f"/agents/api/kb/publications/{scheduled}", json={})
    assert cancelled.status_code == 200, cancelled.json
    assert cancelled.json["cancelled"]["entries"] == [ENTRY] and cancelled.json["pending"] == [ENTRY]
    again = editor.delete(f"/agents/api/kb/publications/{scheduled}", json={})
    assert again.status_code == 404 and again.json["error"]["field"] == "publication"
    view = editor.get(f"/agents/api/kb/entries/{ENTRY}").json
    assert view["status"] == "draft" and view["draft"]["answer"]["zh"] == NEW_ANSWER and view["scheduled_for"] is None
    editing.clock.advance(hours=2)
    assert _ask(citizen, "c1")[1] == before  # its hour came and went: nothing changed for citizens
    in_effect = editor.get("/agents/api/kb/status").json["latest"]["id"]
    refused = editor.delete(f"/agents/api/kb/publications/{in_effect}", json={})
    assert refused.status_code == 409 and "roll" in refused.json["error"]["message"]


def test_an_immediate_publish_does_not_serve_a_scheduled_change_early(editing):
    """A change scheduled for later, then another entry published at once: citizens got the scheduled answer
    from that moment (the immediate publish was built from the stored content, which held it). Now it comes at
    its time, and today's change stays served after it."""
    from connectors.app import create_app

    app = create_app(editing)
    editor, citizen = _login(app), app.test_client()
    before = _ask(citizen, "s0")[1]
    at, _ = _schedule_new_answer(editor, editing)
    hours = editor.get("/agents/api/kb/entries/testing.pcr_hours").json
    fixed = dict(hours["published"]) | {"answer": {**hours["published"]["answer"], "zh": "【今天】采样点8点开门。"}}
    assert editor.post("/agents/api/kb/entries/testing.pcr_hours", json={"entry": fixed}).status_code == 200
    now = editor.post("/agents/api/kb/publish", json={})
    assert now.status_code == 200, now.json
    assert _ask(citizen, "s1")[1] == before  # the scheduled answer: not yet
    assert "【今天】" in _ask(citizen, "s2", "核酸采样点几点开门")[1]
    # the editor sees that the entry's published content is not in effect yet
    assert editor.get(f"/agents/api/kb/entries/{ENTRY}").json["scheduled_for"] == at.isoformat() + "Z"
    assert editor.get("/agents/api/kb/entries/testing.pcr_hours").json["scheduled_for"] is None
    editing.clock.advance(minutes=61)
    assert editor.get(f"/agents/api/kb/entries/{ENTRY}").json["scheduled_for"] is None
    assert NEW_ANSWER in _ask(citizen, "s3")[1]
    assert "【今天】" in _ask(citizen, "s4", "核酸采样点几点开门")[1]


def test_a_server_already_on_a_scheduled_version_follows_its_rebuild(editing, tmp_path):
    """Hosts' clocks differ: this server's scheduled version is in effect already when a host whose clock is behind
    publishes a change before it. That publish rebuilds the scheduled version (same publication, new version), and
    a server that compared publication ids only never loaded it: the change was never served there."""
    from connectors.app import create_app
    from bot.kb.store import KnowledgeStore

    app = create_app(editing)
    editor, citizen = _login(app), app.test_client()
    store = editing.kb_live.store
    _schedule_new_answer(editor, editing)
    editing.clock.advance(minutes=90)
    assert NEW_ANSWER in _ask(citizen, "h1")[1]  # this server is on the scheduled version
    behind = editing.clock() - dt.timedelta(hours=2)  # the other host's clock
    other = KnowledgeStore(store.db, store.knowledge_dir, tmp_path / "slow-host", lambda: behind)
    hours = other.entry("testing.pcr_hours")["published"]
    other.save_draft("testing.pcr_hours", hours | {"answer": {**hours["answer"], "zh": "【慢主机】8点开门。"}}, "yi")
    other.publish("yi")
    assert "【慢主机】" in _ask(citizen, "h2", "核酸采样点几点开门")[1]
    assert NEW_ANSWER in _ask(citizen, "h3")[1]


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


def _hold_retraining(live, monkeypatch) -> threading.Event:
    """The fixture KB retrains in well under a second, sooner than a test can look at the provisional
    index: the retrained index waits, before it is saved and swapped in, until the test releases it."""
    release, save = threading.Event(), live._save

    def held(index, directory):
        assert release.wait(120), "the test never released the retraining"
        save(index, directory)

    monkeypatch.setattr(live, "_save", held)
    return release


def _with_paraphrase(store, paraphrase: str) -> dict:
    content = dict(store.entry(MINI_ENTRY)["published"])
    content["questions"] = {**content["questions"], "zh": [*content["questions"]["zh"], paraphrase]}
    content["answer"] = {**content["answer"], "zh": NEW_ANSWER + paraphrase}
    return content


def test_a_paraphrase_publish_is_served_at_once_then_retrained_everywhere(mini_editing, mini_settings, mini_engine,
                                                                          clock, monkeypatch):
    """Regression (issue 9): a publish that adds a paraphrase retrained every model before anyone got
    the new version (8.9 s to every server, the entry classifier most of it). Now it is served at once
    with the new paraphrase in the dense and lexical indexes and the previous models (provisional);
    the publisher retrains in the background, saves, swaps; another process loads the retrained index."""
    import uuid

    from bot.config import KbSettings
    from bot.index import artifact_dir, is_complete
    from connectors.app import create_app
    from tests.conftest import build_services

    editing = mini_editing
    release = _hold_retraining(editing.kb_live, monkeypatch)
    app = create_app(editing)
    editor, citizen = _login(app), app.test_client()
    old_models, old_lexical = editing.bot.index.entries, editing.bot.index.lexical
    paraphrase = f"捅一次嗓子眼要掏几块钱{uuid.uuid4().hex[:6]}"  # a new KB version, never in the shared cache
    assert editor.post(f"/agents/api/kb/entries/{MINI_ENTRY}",
                       json={"entry": _with_paraphrase(editing.kb_live.store, paraphrase)}).status_code == 200
    published = editor.post("/agents/api/kb/publish", json={"note": "paraphrase"})
    assert published.status_code == 200, published.json
    assert published.json["retraining"] is True and editing.bot.index.provisional
    assert published.json["swap_seconds"] < 5
    assert editing.bot.index.entries is old_models  # the previous models answer meanwhile
    provisional_lexical = editing.bot.index.lexical
    assert provisional_lexical is not old_lexical
    assert any(paraphrase in text for text in editing.bot.index.doc_texts)  # ...over the new paraphrases
    assert NEW_ANSWER + paraphrase in _ask(citizen, "citizen-p1", MINI_QUESTION)[1]  # served before the retraining ends
    # The new paraphrase itself is answered directly before the retraining ends: the previous models rate it
    # out of the KB, but it is the KB's own words now (it was not answered until the retraining landed).
    asked = citizen.post("/api/v1/messages", json={"user_id": "citizen-p0", "text": paraphrase, "new_conversation": True})
    assert editing.bot.index.provisional and (asked.json["intent"], asked.json["entry_id"]) == ("faq", MINI_ENTRY), \
        asked.json
    assert citizen.get("/healthz").json["retraining"] is True  # operators (and bench.kb_reload) can tell

    other = build_services(mini_settings, mini_engine, editing.db.url, clock, kb=KbSettings(editing=True))
    try:
        assert other.bot.kb.version == editing.bot.kb.version and other.bot.index.provisional
        retraining = editing.kb_live._retraining
        assert retraining is not None and retraining.is_alive()
        release.set()
        retraining.join(timeout=600)
        assert not editing.bot.index.provisional and editing.bot.index.entries is not old_models
        assert citizen.get("/healthz").json["retraining"] is False
        assert editing.bot.index.lexical is provisional_lexical  # the retraining kept the new version's BM25
        assert MINI_ENTRY in editing.bot.index.entries.classes
        assert is_complete(artifact_dir(mini_settings.index_dir, editing.bot.kb.version, mini_settings.encoder_key))
        assert editing.kb_live.last_retrain_seconds is not None
        assert other.kb_live.sync(force=True) and not other.bot.index.provisional  # loaded, not retrained
        assert other.kb_live._retraining is None
        entry_id, text = _ask(create_app(other).test_client(), "citizen-p2", MINI_QUESTION)
        assert entry_id == MINI_ENTRY and NEW_ANSWER + paraphrase in text
    finally:
        other.close()


def test_a_process_that_never_gets_the_retrained_index_retrains_it_itself(mini_editing, mini_settings, mini_engine,
                                                                           clock):
    """Another host without the shared data dir, or a publisher that died mid-retraining: after
    ``kb.retrain_after`` seconds of serving a provisional index a process completes it itself."""
    import uuid

    from bot.config import KbSettings
    from tests.conftest import build_services

    store = mini_editing.kb_live.store
    store.save_draft(MINI_ENTRY, _with_paraphrase(store, f"核酸采一回样收费几何{uuid.uuid4().hex[:6]}"), "edna")
    store.publish("edna")  # straight to the store: no process was asked to retrain
    other = build_services(mini_settings, mini_engine, mini_editing.db.url, clock,
                           kb=KbSettings(editing=True, retrain_after=0))
    try:
        assert other.bot.index.provisional
        old_models = other.bot.index.entries
        assert other.kb_live.sync(force=True)
        retraining = other.kb_live._retraining
        assert retraining is not None, "retrain_after elapsed: the process must retrain by itself"
        retraining.join(timeout=600)
        assert not other.bot.index.provisional and other.bot.index.entries is not old_models
    finally:
        other.close()


def test_a_publish_during_a_retraining_is_retrained_next(mini_editing, monkeypatch):
    """Two paraphrase publishes in a row: the second came while the first was retraining, so no new
    retraining could start; the running one completes the version being served next instead of
    leaving it provisional until ``kb.retrain_after``."""
    import uuid

    editing = mini_editing
    live = editing.kb_live
    release = _hold_retraining(live, monkeypatch)  # the first retraining is still running at the second publish
    suffix = uuid.uuid4().hex[:6]
    live.store.save_draft(MINI_ENTRY, _with_paraphrase(live.store, f"核酸单检收费标准是啥{suffix}"), "edna")
    live.publish("edna")
    first = live._retraining
    assert first is not None and first.is_alive()
    live.store.save_draft(MINI_ENTRY, _with_paraphrase(live.store, f"混采一次收几块钱{suffix}"), "edna")
    second = live.publish("edna")
    assert editing.bot.kb.version == second.version and editing.bot.index.provisional
    assert live._retraining is first  # no second retraining started
    release.set()
    first.join(timeout=600)
    assert editing.bot.kb.version == second.version and not editing.bot.index.provisional


def test_the_retrained_index_is_announced_even_when_a_request_loaded_it_first(mini_editing, monkeypatch):
    """Between the publisher saving the retrained index and swapping it in, a request of the same
    process may find it on disk and swap first. The bump must still go out, or the other processes
    (their own check once an hour behind Redis) would wait ``kb.retrain_after`` and retrain it themselves."""
    import uuid

    editing = mini_editing
    live = editing.kb_live
    release = _hold_retraining(live, monkeypatch)
    save, bumps = live._save, []

    def save_then_a_request_looks(index, directory):
        save(index, directory)
        live._complete_provisional()  # what sync() does before a request

    monkeypatch.setattr(live, "_save", save_then_a_request_looks)
    monkeypatch.setattr(live, "bump", bumps.append)
    live.store.save_draft(MINI_ENTRY, _with_paraphrase(live.store, f"核酸检测贵不贵{uuid.uuid4().hex[:6]}"), "edna")
    publication = live.publish("edna")
    assert bumps == [publication.id] and editing.bot.index.provisional  # the publish itself
    release.set()
    live._retraining.join(timeout=600)
    assert not editing.bot.index.provisional
    assert bumps == [publication.id, publication.id]  # ...and the retrained index


def test_a_publish_tokenises_only_the_texts_it_changed(mini_editing, monkeypatch):
    """Regression: a server with KB editing tokenised every paraphrase and answer at start so that its first
    publish would not (42 s and a few hundred MB at 10,000 entries). The lexical index now keeps its term
    counts, so nothing is warmed and a publish tokenises only its new texts."""
    from connectors.app import create_app

    editing = mini_editing
    assert editing.kb_live.tokens == {}  # nothing tokenised at start
    _hold_retraining(editing.kb_live, monkeypatch)
    tokenizer, seen = editing.bot.tokenizer, []
    tokens = tokenizer.tokens

    def spy(text, words=None):
        seen.append(text)
        return tokens(text, words)

    monkeypatch.setattr(tokenizer, "tokens", spy)
    editor = _login(create_app(editing))
    paraphrase = "捅一次嗓子眼要掏几块钱呀"
    assert editor.post(f"/agents/api/kb/entries/{MINI_ENTRY}",
                       json={"entry": _with_paraphrase(editing.kb_live.store, paraphrase)}).status_code == 200
    assert editor.post("/agents/api/kb/publish", json={"note": "paraphrase"}).status_code == 200
    assert editing.bot.index.provisional and any(paraphrase in text for text in editing.bot.index.doc_texts)
    assert len(seen) == 2 and any(paraphrase in text for text in seen), seen  # the paraphrase and the new answer


def test_another_process_updates_its_own_index_for_an_answer_edit_instead_of_loading_it(
        mini_editing, mini_settings, mini_engine, clock, monkeypatch):
    """An answer edit keeps every model: the other processes updated nothing themselves but loaded the saved
    index (895 MB at 10,000 entries: 3.0–4.3 s of their swap, against 1.3–2.6 s for the publisher's own
    update). They now update their own index (a saved index whose models were retrained is still loaded:
    test_a_paraphrase_publish_is_served_at_once_then_retrained_everywhere)."""
    from bot import index as index_module
    from bot.config import KbSettings
    from bot.index import artifact_dir
    from bot.kb import live as live_module
    from connectors.app import create_app
    from tests.conftest import build_services

    editing = mini_editing
    other = build_services(mini_settings, mini_engine, editing.db.url, clock, kb=KbSettings(editing=True))
    try:
        editor = _login(create_app(editing))
        content = dict(editing.kb_live.store.entry(MINI_ENTRY)["published"])
        content["answer"] = {**content["answer"], "zh": NEW_ANSWER}
        assert editor.post(f"/agents/api/kb/entries/{MINI_ENTRY}", json={"entry": content}).status_code == 200
        assert editor.post("/agents/api/kb/publish", json={"note": "answer"}).status_code == 200
        saved = artifact_dir(mini_settings.index_dir, editing.bot.kb.version, mini_settings.encoder_key) / "docs.json"
        deadline = time.monotonic() + 60
        while not saved.exists() and time.monotonic() < deadline:  # the publisher's background save
            time.sleep(0.05)
        assert saved.exists()
        loads = []
        monkeypatch.setattr(live_module, "load_index", lambda d: loads.append(d) or index_module.load_index(d))
        assert other.kb_live.sync(force=True) and other.bot.kb.version == editing.bot.kb.version
        assert loads == [] and not other.bot.index.provisional
        assert other.bot.index.entries is mini_engine.index.entries  # the models it served before
        entry_id, text = _ask(create_app(other).test_client(), "citizen-o1", MINI_QUESTION)
        assert entry_id == MINI_ENTRY and NEW_ANSWER in text
    finally:
        other.close()


def test_bad_editor_query_and_revision_are_a_400_naming_the_field(mini_editing):
    """``?days=abc`` on the inbox was a ValueError and ``{"revision": 10**20}`` overflowed the database driver:
    both were 500s."""
    from connectors.app import create_app

    editor = _login(create_app(mini_editing))
    days = editor.get("/agents/api/kb/inbox?days=abc")
    assert days.status_code == 400 and days.json["error"]["field"] == "days"
    huge = editor.post(f"/agents/api/kb/entries/{MINI_ENTRY}/rollback", json={"revision": 10 ** 20})
    assert huge.status_code == 400 and huge.json["error"]["field"] == "revision"


def test_a_publish_refused_at_its_commit_leaves_this_process_serving_what_is_live(mini_editing, monkeypatch):
    """The publishing process swaps to the new KB before the version row commits; when the commit is refused
    (another publish went live meanwhile: 409), it served a KB that was never published. It swaps back."""
    from bot.kb.store import KbEditError, KnowledgeStore

    live = mini_editing.kb_live
    store = live.store
    serving = mini_editing.bot.kb.version
    for entry_id, text in ((MINI_ENTRY, "A的新答案"), ("testing.mini_sites", "B的新答案")):
        content = dict(store.entry(entry_id)["published"])
        store.save_draft(entry_id, content | {"answer": {**content["answer"], "zh": text}}, "edna")
    other = KnowledgeStore(store.db, store.knowledge_dir, store.work_dir, store.clock)  # another server process
    swap = live.swap

    def swap_while_another_publishes(kb):
        swap(kb)
        other.publish("ed2", ["testing.mini_sites"])

    monkeypatch.setattr(live, "swap", swap_while_another_publishes)
    with pytest.raises(KbEditError):
        live.publish("edna", [MINI_ENTRY])
    assert mini_editing.bot.kb.version == serving


def test_an_edit_from_an_older_view_is_a_412_and_a_rollback_keeps_the_pending_draft(mini_editing):
    """Over HTTP as the console does it: the entry's GET carries an ETag, changes send it back in ``If-Match``.
    Before, two editors on one entry overwrote each other (the last save won) and a rollback replaced a
    colleague's pending draft."""
    from connectors.app import create_app

    app = create_app(mini_editing)
    mini_editing.staff.create("yi", "correct horse 1", role="editor")
    jia, yi = _login(app), _login(app, "yi")
    path = f"/agents/api/kb/entries/{MINI_ENTRY}"
    opened = jia.get(path)
    assert opened.headers["ETag"] == f'"{opened.json["etag"]}"'
    edited = dict(opened.json["published"]) | {"answer": {**opened.json["published"]["answer"], "zh": "甲的改动。"}}
    saved = jia.post(path, json={"entry": edited}, headers={"If-Match": opened.headers["ETag"]})
    assert saved.status_code == 200 and saved.headers["ETag"] != opened.headers["ETag"]
    theirs = dict(edited) | {"answer": {**edited["answer"], "zh": "乙的改动。"}}
    stale = yi.post(path, json={"entry": theirs}, headers={"If-Match": opened.headers["ETag"]})
    assert stale.status_code == 412 and stale.json["error"]["field"] == "entry"
    assert "edna saved a draft" in stale.json["error"]["message"]
    assert yi.post(f"{path}/discard", json={}, headers={"If-Match": opened.headers["ETag"]}).status_code == 412
    assert jia.get(path).json["draft"]["answer"]["zh"] == "甲的改动。"
    two = yi.post(path, json={"entry": theirs}, headers={"If-Match": '"a", "b"'})
    assert two.status_code == 400 and two.json["error"]["field"] == "If-Match"
    # published, then 乙 starts a new draft and 甲 rolls the published change back: 乙's draft stays
    assert jia.post("/agents/api/kb/publish", json={}).status_code == 200
    current = yi.get(path)
    assert yi.post(path, json={"entry": theirs}, headers={"If-Match": current.headers["ETag"]}).status_code == 200
    revision = current.json["history"][1]["revision"]
    back = jia.post(f"{path}/rollback", json={"revision": revision})
    assert back.status_code == 200, back.json
    assert back.json["entry"]["published"] == opened.json["published"]
    assert back.json["entry"]["draft"]["answer"]["zh"] == "乙的改动。" and back.json["entry"]["draft_by"] == "yi"
    assert mini_editing.bot.kb.version == back.json["publication"]["version"]
