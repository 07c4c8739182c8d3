"""The database KB (issue 9): import/export round trip, drafts, publish, history, rollback, audit.

Why: editors change answers in the console while git-based teams keep the YAML files; both must
describe the same KB, and the version hash must stay the one the files have."""
from __future__ import annotations

import datetime as dt
import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import event, select

from bot.config import default_knowledge_dir
from bot.db import Database
from bot.kb.loader import knowledge_version, load_knowledge_base
from bot.kb.store import KbEditError, KnowledgeStore
from bot.models import AuditEntry
from tests.conftest import open_database

SHIPPED = default_knowledge_dir()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, clock):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kb.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    db = open_database(url)
    db.upgrade()
    yield KnowledgeStore(db, SHIPPED, tmp_path / "kbwork", clock)
    db.dispose()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts}


def test_import_export_round_trip_is_byte_identical(store, tmp_path):
    publication = store.import_dir(SHIPPED, actor="tester")
    assert publication.version == knowledge_version(SHIPPED)  # same hash: the prebuilt index is reused
    out = store.export(tmp_path / "out")
    shipped, exported = _tree(SHIPPED), _tree(out)
    assert exported.keys() == shipped.keys()
    different = [rel for rel in shipped if shipped[rel] != exported[rel]]
    assert different == []
    # and again: import what was exported, nothing changes, same version
    again = store.import_dir(out, actor="tester")
    assert again.version == publication.version and again.entries == []


def _edited(store, entry_id="testing.pcr_fee", text="新的收费标准：每次10元。"):
    content = dict(store.entry(entry_id)["published"])
    content["answer"] = {**content["answer"], "zh": text}
    return content


def test_draft_publish_history_rollback_audit(store, tmp_path):
    first = store.import_dir(SHIPPED, actor="tester")
    original = store.entry("testing.pcr_fee")["published"]
    view = store.save_draft("testing.pcr_fee", _edited(store), actor="ed")
    assert view["status"] == "draft" and store.entry("testing.pcr_fee")["published"] == original
    assert store.pending() == ["testing.pcr_fee"]
    publication, kb = store.publish("ed", note="fee change")
    assert publication.id > first.id and publication.version != first.version
    assert publication.version == kb.version == store.latest().version
    assert kb.entries["testing.pcr_fee"].answer.zh == "新的收费标准：每次10元。"
    assert store.load().version == publication.version
    history = store.history("testing.pcr_fee")
    assert [h["publication"] for h in history] == [publication.id, first.id]
    assert any("新的收费标准" in line for line in history[0]["diff"])
    # exported YAML carries the change; everything else stays byte-identical
    out = store.export(tmp_path / "after")
    changed = [p.name for p in (out / "faq").glob("*.yml") if p.read_bytes() != (SHIPPED / "faq" / p.name).read_bytes()]
    assert changed == ["testing.yml"]
    assert load_knowledge_base(out).version == publication.version
    # one-click rollback: the old revision, published
    content = store.revision_content("testing.pcr_fee", history[1]["revision"])
    back, kb = store.publish("ed", entry_ids=["testing.pcr_fee"], restore={"testing.pcr_fee": content})
    assert kb.entries["testing.pcr_fee"].answer.zh == original["answer"]["zh"]
    assert back.version == first.version  # the same content has the same hash
    assert store.entry("testing.pcr_fee")["status"] == "live" and store.pending() == []
    with store.db.read() as session:
        actions = [a.action for a in session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars()]
    assert actions == ["kb.import", "kb.draft", "kb.publish", "kb.publish"]


def test_a_save_from_an_older_view_does_not_overwrite_another_editors_draft(store):
    """Two editors open the same entry; the second to save used to replace the first's draft without a word."""
    store.import_dir(SHIPPED)
    opened = store.entry("testing.pcr_fee")["etag"]  # both editors see this
    store.save_draft("testing.pcr_fee", _edited(store, text="甲的改动。"), "jia", expected=opened)
    with pytest.raises(KbEditError) as refused:
        store.save_draft("testing.pcr_fee", _edited(store, text="乙的改动。"), "yi", expected=opened)
    assert refused.value.status == 412 and refused.value.field == "entry" and "jia saved a draft" in refused.value.message
    view = store.entry("testing.pcr_fee")
    assert view["draft"]["answer"]["zh"] == "甲的改动。" and view["draft_by"] == "jia"
    for stale in (store.retire, store.discard):  # nor retire or discard what they never saw
        with pytest.raises(KbEditError) as refused:
            stale("testing.pcr_fee", "yi", expected=opened)
        assert refused.value.status == 412
    assert store.entry("testing.pcr_fee")["draft"]["answer"]["zh"] == "甲的改动。"
    # from the current view it goes through, and the view's etag moves on
    store.save_draft("testing.pcr_fee", _edited(store, text="乙的改动。"), "yi", expected=view["etag"])
    assert store.entry("testing.pcr_fee")["etag"] != view["etag"]
    # publishing changes the etag too: a discard from before the publish is refused
    before = store.entry("testing.pcr_fee")["etag"]
    store.publish("jia")
    with pytest.raises(KbEditError) as refused:
        store.discard("testing.pcr_fee", "yi", expected=before)
    assert refused.value.status == 412 and "published" in refused.value.message


def test_a_rollback_keeps_another_editors_pending_draft(store):
    """A rollback used to save the old revision as the entry's draft and publish it: a colleague's pending draft
    on that entry was replaced and lost."""
    first = store.import_dir(SHIPPED)
    original = store.entry("testing.pcr_fee")["published"]
    store.save_draft("testing.pcr_fee", _edited(store, text="错误的收费标准。"), "jia")
    store.publish("jia")
    store.save_draft("testing.pcr_fee", _edited(store, text="乙正在改的答案。"), "yi")
    revision = store.history("testing.pcr_fee")[1]["revision"]
    back, kb = store.publish("jia", ["testing.pcr_fee"], restore={
        "testing.pcr_fee": store.revision_content("testing.pcr_fee", revision)})
    assert back.version == first.version and kb.entries["testing.pcr_fee"].answer.zh == original["answer"]["zh"]
    view = store.entry("testing.pcr_fee")
    assert view["published"] == original
    assert view["draft"]["answer"]["zh"] == "乙正在改的答案。" and view["draft_by"] == "yi" and view["status"] == "draft"
    with pytest.raises(KbEditError) as missing:
        store.revision_content("testing.pcr_fee", 10 ** 6)
    assert missing.value.status == 404
    # restoring a retirement is checked like any publish: other entries still point at this one
    with pytest.raises(KbEditError) as refused:
        store.publish("jia", ["testing.pcr_fee"], restore={"testing.pcr_fee": None})
    assert refused.value.status == 422 and any(p.field.startswith("follow_ups") for p in refused.value.problems)
    assert store.entry("testing.pcr_fee")["draft_by"] == "yi" and store.entry("testing.pcr_fee")["published"]


def test_a_scheduled_change_stays_out_of_an_immediate_publish_until_its_time(store, clock):
    """The fee rule changes on the 5th and is scheduled on the 3rd; the same day another editor publishes an
    opening-hours fix. That publish served the new fee at once: the stored live content already held every
    scheduled change, and the immediate publish was built from it."""
    first = store.import_dir(SHIPPED)
    old_fee = store.entry("testing.pcr_fee")["published"]["answer"]["zh"]
    store.save_draft("testing.pcr_fee", _edited(store, text="12月5日起的新收费。"), "jia")
    scheduled, _ = store.publish("jia", effective_from=clock() + dt.timedelta(days=2))
    assert store.latest().id == first.id
    store.save_draft("testing.pcr_hours", _edited(store, "testing.pcr_hours", "今天就改的开放时间。"), "yi")
    today, kb = store.publish("yi")
    assert kb.entries["testing.pcr_fee"].answer.zh == old_fee  # not before its day
    assert store.load().version == today.version  # the live KB (`kb export`) is what is in effect
    assert kb.entries["testing.pcr_hours"].answer.zh == "今天就改的开放时间。"
    assert store.latest().id == today.id
    assert load_knowledge_base(store.materialise_publication(today.id)).version == today.version
    # the scheduled publication now includes today's fix, under a new version, rebuilt exactly from history
    rebuilt = next(p for p in store.publications() if p.id == scheduled.id)
    assert rebuilt.version != scheduled.version
    on_the_day = load_knowledge_base(store.materialise_publication(scheduled.id))
    assert on_the_day.version == rebuilt.version
    assert on_the_day.entries["testing.pcr_fee"].answer.zh == "12月5日起的新收费。"
    assert on_the_day.entries["testing.pcr_hours"].answer.zh == "今天就改的开放时间。"
    # a draft of the entry the scheduled publication changes was written on its future content: not published
    # before it (else the new fee would go live today through that entry)
    store.save_draft("testing.pcr_fee", _edited(store, text="12月5日起的新收费（改一个字）。"), "yi")
    with pytest.raises(KbEditError) as refused:
        store.publish("yi")
    assert refused.value.status == 409 and "testing.pcr_fee" in refused.value.message
    assert store.latest().id == today.id
    clock.advance(days=2, minutes=1)
    assert store.latest().id == scheduled.id  # its day: in effect, with today's fix
    store.publish("yi")  # and now the draft may go live
    assert store.load().entries["testing.pcr_fee"].answer.zh == "12月5日起的新收费（改一个字）。"


def test_a_change_that_would_break_a_scheduled_publication_is_refused_before_anything_commits(store, clock):
    """Scheduled: retire an entry. Now: another entry gets it as a follow-up, valid today, not on that day. The
    scheduled publication was rebuilt only after the commit: the editor got a 500 for a publish that had gone
    through, and on the day the old (pre-rebuild) version was served, undoing the change."""
    first = store.import_dir(SHIPPED)
    follow = "testing.pcr_results_time"  # 乙's draft, saved first: a follow-up to the opening hours
    content = dict(store.entry(follow)["published"])
    content["follow_ups"] = [*content.get("follow_ups", []), "testing.pcr_hours"]
    store.save_draft(follow, content, "yi")
    store.retire("testing.pcr_hours", "jia")  # 甲 schedules the opening hours' retirement, with its referrers
    referring = [e["id"] for e in store.entries() if e["id"] != follow
                 and "testing.pcr_hours" in (e["published"] or {}).get("follow_ups", [])]
    for entry_id in referring:
        edited = dict(store.entry(entry_id)["published"])
        edited["follow_ups"] = [f for f in edited["follow_ups"] if f != "testing.pcr_hours"]
        store.save_draft(entry_id, edited, "jia")
    scheduled, _ = store.publish("jia", ["testing.pcr_hours", *referring],
                                 effective_from=clock() + dt.timedelta(days=1))
    with pytest.raises(KbEditError) as refused:
        store.publish("yi")
    assert refused.value.status == 422 and any("testing.pcr_hours" in p.message for p in refused.value.problems)
    assert store.latest().id == first.id and store.pending() == [follow]
    assert next(p for p in store.publications() if p.id == scheduled.id).version == scheduled.version


def test_a_scheduled_time_passing_during_a_publish_still_brings_the_scheduled_change(store, clock):
    """An immediate publish is built on what is in effect when it starts; it took effect when it committed, so a
    scheduled time passing in between ranked it after the scheduled publication, whose change it lacks."""
    store.import_dir(SHIPPED)
    store.save_draft("testing.pcr_fee", _edited(store, text="一小时后的新收费。"), "jia")
    scheduled, _ = store.publish("jia", effective_from=clock() + dt.timedelta(hours=1))
    store.save_draft("testing.pcr_hours", _edited(store, "testing.pcr_hours", "现在改的开放时间。"), "yi")
    store.publish("yi", before_commit=lambda kb: clock.advance(hours=2))  # a long build, past the scheduled time
    assert store.latest().id == scheduled.id
    served = store.load()
    assert served.version == store.latest().version
    assert served.entries["testing.pcr_fee"].answer.zh == "一小时后的新收费。"
    assert served.entries["testing.pcr_hours"].answer.zh == "现在改的开放时间。"


def test_a_scheduled_publication_can_be_cancelled_and_its_changes_become_drafts_again(store, clock):
    """A fee change scheduled for the 5th turns out wrong, and the entry needs an urgent fix today. Before, the
    only way was to wait: the fix was refused (409, "schedule it at or after it") and the wrong change went live."""
    first = store.import_dir(SHIPPED)
    old_fee = store.entry("testing.pcr_fee")["published"]
    store.save_draft("testing.pcr_fee", _edited(store, text="写错了的新收费。"), "jia")
    scheduled, _ = store.publish("jia", effective_from=clock() + dt.timedelta(days=2))
    assert store.entry("testing.pcr_fee")["scheduled_publication"] == scheduled.id
    clock.advance(hours=1)
    cancelled, set_aside = store.cancel_scheduled(scheduled.id, "yi")
    assert cancelled.id == scheduled.id and cancelled.entries == ["testing.pcr_fee"] and set_aside == []
    view = store.entry("testing.pcr_fee")
    assert view["published"] == old_fee and view["scheduled_for"] is None and view["scheduled_publication"] is None
    assert view["status"] == "draft" and view["draft_by"] == "jia"  # nothing 甲 typed is lost
    assert view["draft"]["answer"]["zh"] == "写错了的新收费。"
    assert [p.id for p in store.publications()] == [first.id] and store.latest().id == first.id
    assert store.history("testing.pcr_fee")[0]["publication"] == first.id
    # the urgent fix goes live at once; on the 5th nothing else arrives
    store.save_draft("testing.pcr_fee", _edited(store, text="今天的紧急更正。"), "yi",
                     expected=store.entry("testing.pcr_fee")["etag"])
    fixed, kb = store.publish("yi")
    assert kb.entries["testing.pcr_fee"].answer.zh == "今天的紧急更正。"
    clock.advance(days=3)
    assert store.latest().id == fixed.id and store.load().entries["testing.pcr_fee"].answer.zh == "今天的紧急更正。"
    with store.db.read() as session:
        audit = session.execute(select(AuditEntry).where(AuditEntry.action == "kb.unschedule")).scalar_one()
    assert audit.actor == "yi" and audit.detail["publication"] == scheduled.id


def test_cancelling_is_refused_for_a_publication_in_effect_or_one_a_later_schedule_needs(store, clock):
    first = store.import_dir(SHIPPED)
    with pytest.raises(KbEditError) as refused:
        store.cancel_scheduled(first.id, "jia")  # in effect: a rollback, not a cancel
    assert refused.value.status == 409 and refused.value.field == "publication"
    with pytest.raises(KbEditError) as refused:
        store.cancel_scheduled(first.id + 1000, "jia")
    assert refused.value.status == 404
    # the 5th: a new entry; the 6th: an existing entry offers it as a follow-up (needs it)
    content = dict(store.entry("testing.pcr_fee")["published"]) | {"id": "testing.new_rule"}
    content["questions"] = {"zh": ["新规定是什么", "新规定从哪天开始", "新规定适用于谁"], "en": ["what is the new rule", "who does it apply to"]}
    store.save_draft(None, content, "jia")
    adds, _ = store.publish("jia", effective_from=clock() + dt.timedelta(days=2))
    follow = dict(store.entry("testing.pcr_hours")["published"])
    follow["follow_ups"] = [*follow.get("follow_ups", []), "testing.new_rule"]
    store.save_draft("testing.pcr_hours", follow, "jia")
    needs, _ = store.publish("jia", effective_from=clock() + dt.timedelta(days=3))
    with pytest.raises(KbEditError) as refused:
        store.cancel_scheduled(adds.id, "yi")
    assert refused.value.status == 422 and any("testing.new_rule" in p.message for p in refused.value.problems)
    assert {p.id for p in store.publications()} == {first.id, adds.id, needs.id}  # nothing changed
    assert store.entry("testing.new_rule")["status"] == "live" and store.pending() == []
    # the later one first, then the other: each returns to a draft; a later schedule is rebuilt without it
    store.cancel_scheduled(needs.id, "yi")
    assert store.entry("testing.pcr_hours")["status"] == "draft"
    store.discard("testing.pcr_hours", "yi")
    store.save_draft("testing.pcr_fee", _edited(store, text="第7天的收费。"), "yi")
    fee, _ = store.publish("yi", ["testing.pcr_fee"], effective_from=clock() + dt.timedelta(days=4))
    store.cancel_scheduled(adds.id, "yi")
    new_rule = store.entry("testing.new_rule")
    assert new_rule["published"] is None and new_rule["status"] == "draft"  # a new entry's draft again
    rebuilt = next(p for p in store.publications() if p.id == fee.id)
    on_the_day = load_knowledge_base(store.materialise_publication(fee.id))
    assert rebuilt.version == on_the_day.version != fee.version and "testing.new_rule" not in on_the_day.entries
    assert on_the_day.entries["testing.pcr_fee"].answer.zh == "第7天的收费。"


def test_a_draft_saved_again_after_the_editor_reviewed_the_publish_list_is_not_published_unseen(store):
    store.import_dir(SHIPPED)
    store.save_draft("testing.pcr_fee", _edited(store, text="甲核对过的。"), "jia")
    reviewed = {"testing.pcr_fee": store.entry("testing.pcr_fee")["etag"]}  # the list 乙 looks at
    store.save_draft("testing.pcr_fee", _edited(store, text="甲后来又改的，乙没看过。"), "jia")
    with pytest.raises(KbEditError) as refused:
        store.publish("yi", ["testing.pcr_fee"], reviewed=reviewed)
    assert refused.value.status == 409 and refused.value.field == "entries"
    assert "testing.pcr_fee (by jia)" in refused.value.message
    assert store.pending() == ["testing.pcr_fee"] and len(store.publications()) == 1
    _, kb = store.publish("yi", ["testing.pcr_fee"], reviewed={"testing.pcr_fee": store.entry("testing.pcr_fee")["etag"]})
    assert kb.entries["testing.pcr_fee"].answer.zh == "甲后来又改的，乙没看过。"


def test_two_editors_creating_the_same_id_at_once_do_not_overwrite(store, monkeypatch):
    store.import_dir(SHIPPED)
    content = dict(store.entry("testing.pcr_fee")["published"]) | {"id": "testing.brand_new"}
    content["questions"] = {"zh": ["全新的问题一", "全新的问题二", "全新的问题三"], "en": ["brand new one", "brand new two"]}
    store.save_draft(None, content, "jia")
    monkeypatch.setattr(store, "_key_order", lambda *a: list(content))  # both looked before either saved
    with pytest.raises(KbEditError) as refused:
        store.save_draft(None, content | {"answer": {**content["answer"], "zh": "乙的"}}, "yi")
    assert refused.value.status == 409 and refused.value.field == "id"
    assert store.entry("testing.brand_new")["draft_by"] == "jia"


def test_an_import_waits_for_a_scheduled_publication(store, clock):
    store.import_dir(SHIPPED)
    store.save_draft("testing.pcr_fee", _edited(store, text="明天的。"), "jia")
    store.publish("jia", effective_from=clock() + dt.timedelta(days=1))
    with pytest.raises(KbEditError) as refused:
        store.import_dir(SHIPPED)
    assert refused.value.status == 409 and "scheduled" in refused.value.message


def test_a_publish_from_a_host_whose_clock_runs_behind_still_goes_live(store, clock):
    """Publications apply in the order they take effect; an immediate one takes effect when published. A second
    host whose clock is a minute behind the first's must not publish "into the past", below the one before."""
    first = store.import_dir(SHIPPED)
    clock.advance(minutes=-1)
    store.save_draft("testing.pcr_fee", _edited(store, text="慢一分钟的主机发布的。"), "yi")
    behind, _ = store.publish("yi")
    assert store.latest().id == behind.id != first.id
    assert store.load().entries["testing.pcr_fee"].answer.zh == "慢一分钟的主机发布的。"


def _plan_of_latest(store) -> list[str]:
    """The query plan of the statement ``latest()`` sends, as the database would run it."""
    seen: list[tuple[str, object]] = []

    def grab(conn, cursor, statement, parameters, context, executemany):
        if "kb_publications" in statement:
            seen.append((statement, parameters))

    event.listen(store.db.engine, "before_cursor_execute", grab)
    try:
        store.latest()
    finally:
        event.remove(store.db.engine, "before_cursor_execute", grab)
    (statement, parameters), = seen
    raw = store.db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.db.engine.dialect.name == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + statement, parameters)
            return [row[3] for row in cursor.fetchall()]
        cursor.execute("SET enable_seqscan = off")  # a tiny table is scanned anyway; can an index serve it?
        cursor.execute("EXPLAIN " + statement, parameters)
        return [row[0] for row in cursor.fetchall()]
    finally:
        raw.rollback()
        raw.close()


def test_the_publication_in_effect_is_read_through_indexes(store, clock):
    """Every request asks which publication is in effect. Ordering the whole table by when each took effect
    grew with the table (0.32 ms at 10 publications, 1.2-2.2 ms at 3,000 on SQLite); two index probes do not."""
    store.import_dir(SHIPPED)
    store.save_draft("testing.pcr_fee", _edited(store, text="明天的。"), "jia")
    store.publish("jia", effective_from=clock() + dt.timedelta(days=1))
    plan = _plan_of_latest(store)
    if store.db.engine.dialect.name == "sqlite":
        assert not [line for line in plan if line.startswith("SCAN kb_publications") and "INDEX" not in line], plan
        assert any("ix_kb_publications_immediate" in line for line in plan), plan
        assert any("ix_kb_publications_scheduled" in line for line in plan), plan
    else:
        assert not [line for line in plan if "Seq Scan" in line], plan
        assert sum("ix_kb_publications_" in line for line in plan) == 2, plan
    clock.advance(days=2)
    assert store.latest().entries == ["testing.pcr_fee"]  # the scheduled one, in effect now


def test_invalid_draft_is_refused_by_field(store):
    store.import_dir(SHIPPED)
    content = _edited(store)
    content["questions"] = {"zh": ["只有一个"], "en": content["questions"]["en"]}
    with pytest.raises(KbEditError) as refused:
        store.save_draft("testing.pcr_fee", content, actor="ed")
    assert refused.value.status == 422 and [p.field for p in refused.value.problems] == ["questions.zh"]
    # a question another entry already has: the cross-entry rule of `kb validate`
    content = _edited(store)
    taken = store.entry("testing.pcr_sites")["published"]["questions"]["zh"][0]
    content["questions"] = {**content["questions"], "zh": [*content["questions"]["zh"], taken]}
    with pytest.raises(KbEditError) as refused:
        store.save_draft("testing.pcr_fee", content, actor="ed")
    assert "testing.pcr_sites" in refused.value.problems[0].message
    assert refused.value.problems[0].field.startswith("questions.zh.")
    # follow_ups to an unknown id
    content = _edited(store)
    content["follow_ups"] = ["testing.nope"]
    with pytest.raises(KbEditError) as refused:
        store.save_draft("testing.pcr_fee", content, actor="ed")
    assert refused.value.problems[0].field == "follow_ups.0"
    assert store.pending() == []
    with pytest.raises(KbEditError) as refused:
        store.publish("ed")
    assert refused.value.status == 409


def test_new_entry_and_retire(store):
    store.import_dir(SHIPPED)
    base = dict(store.entry("testing.pcr_fee")["published"])
    new = {**base, "id": "testing.pcr_new_rule", "questions": {
        "zh": ["新规定一", "新规定二是什么", "新规定三怎么办"], "en": ["What is the new rule one?", "new rule two?"]},
        "follow_ups": []}
    store.save_draft(None, new, actor="ed")
    with pytest.raises(KbEditError) as refused:
        store.save_draft(None, new, actor="ed")
    assert refused.value.status == 409
    store.retire("testing.pcr_hours", actor="ed")
    with pytest.raises(KbEditError) as refused:  # testing.pcr_sites follows up to the retired entry
        store.publish("ed")
    assert any(p.field.startswith("follow_ups") for p in refused.value.problems)
    store.discard("testing.pcr_hours", actor="ed")
    _, kb = store.publish("ed")
    assert "testing.pcr_new_rule" in kb.entries


def test_four_eyes_rule(store):
    """With the rule on, the author of a draft cannot publish it; a second editor can."""
    store.import_dir(SHIPPED)
    store.save_draft("testing.pcr_fee", _edited(store), actor="ed")
    with pytest.raises(KbEditError) as refused:
        store.publish("ed", four_eyes=True)
    assert refused.value.status == 403 and "testing.pcr_fee" in refused.value.message
    publication, _ = store.publish("rev", four_eyes=True)
    assert publication.published_by == "rev" and store.pending() == []


def test_cli_import_export_round_trip(tmp_path, monkeypatch, capsys):
    """`hotline-bot kb import DIR` then `hotline-bot kb export OUT`: OUT is byte-identical to DIR. The real
    entry point once (a subprocess), then the same CLI in process (each subprocess: ~2 s of imports)."""
    import subprocess
    import sys

    from bot.config import PROJECT_ROOT
    from connectors.cli import main

    env = {"HOTLINE_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}", "HOTLINE_DATA_DIR": str(tmp_path / "var"),
           "PATH": "/usr/bin:/bin"}
    empty = subprocess.run([sys.executable, "-m", "connectors.cli", "kb", "export", str(tmp_path / "nothing")],
                           cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert empty.returncode == 1 and "no KB yet" in empty.stderr
    monkeypatch.delenv("DATABASE_URL", raising=False)  # the suite's PostgreSQL: this CLI's is the SQLite file
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    def cli(*args):
        capsys.readouterr()
        code = main(["kb", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    imported = cli("import", str(SHIPPED), "--actor", "git")
    assert imported.returncode == 0, imported.stderr
    assert knowledge_version(SHIPPED) in imported.stdout
    exported = cli("export", str(tmp_path / "out"))
    assert exported.returncode == 0, exported.stderr
    assert _tree(tmp_path / "out") == _tree(SHIPPED)
    broken = tmp_path / "broken"
    shutil.copytree(SHIPPED, broken, ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "faq" / "testing.yml").write_text("category: testing\nentries:\n  - id: testing.x\n", encoding="utf-8")
    refused = cli("import", str(broken))
    assert refused.returncode == 2 and "faq/testing.yml" in refused.stderr


def test_a_large_import_is_not_cut_by_the_message_deadline(postgres_url, tmp_path, clock):
    """Regression: a citizen's transaction on a frozen link is cut after the statement timeout + 0.3 s (1.5 s);
    importing a large KB is one longer transaction of many short statements, and must not be cut."""
    from bench.bigkb import generate

    root = generate(600, tmp_path / "big")
    db = Database(postgres_url, statement_timeout=0.2)  # a citizen's transaction: cut after 0.5 s
    db.upgrade()
    try:
        store = KnowledgeStore(db, root, tmp_path / "kbwork", clock)
        started = time.monotonic()
        publication = store.import_dir(root, actor="tester")
        took = time.monotonic() - started
        assert len(store.load().entries) == 600 and store.latest().id == publication.id
        assert took > 0.5, f"a {took:.2f} s import proves nothing about a 0.5 s deadline: import more entries"
        print(f"600-entry import: {took:.1f} s")
    finally:
        db.dispose()
