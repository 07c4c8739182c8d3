"""Cancelling a scheduled publication, and publishing from a reviewed list, when other editors act at the same
time (SQLite and PostgreSQL, the three-entry fixture KB). Each case was found by a review and failed before:
a cancel committed after its publication went live, two cancels (or a cancel and a publish) each built on what the
other removed, a cancelled change went back to the publisher instead of its writer (and past the four-eyes rule),
a stale draft could undo a later scheduled change, and a contact draft changed after review was published."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from bot.kb.loader import load_knowledge_base
from bot.kb.store import KbEditError, KnowledgeStore
from bot.models import AuditEntry
from tests.conftest import open_database

A, B, C = "testing.mini_fee", "testing.mini_sites", "testing.mini_results"
DAY = dt.timedelta(days=1)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, clock, mini_settings):
    url = f"sqlite:///{tmp_path / 'kb.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    db = open_database(url)
    db.upgrade()
    store = KnowledgeStore(db, mini_settings.knowledge_dir, tmp_path / "kbwork", clock)
    store.import_dir(mini_settings.knowledge_dir, actor="seed")
    yield store
    db.dispose()


def _edited(store, entry_id: str, text: str) -> dict:
    view = store.entry(entry_id)
    content = dict(view["draft"] or view["published"])
    content["answer"] = {**content["answer"], "zh": text}
    return content


def _schedule(store, clock, entry_id: str, text: str, days: float, writer: str = "jia", publisher: str = "yi"):
    store.save_draft(entry_id, _edited(store, entry_id, text), writer)
    publication, _ = store.publish(publisher, [entry_id], effective_from=clock() + days * DAY)
    return publication


def _other_process(store, clock) -> KnowledgeStore:
    return KnowledgeStore(store.db, store.knowledge_dir, store.work_dir, clock)


def _unschedule_audit(store) -> AuditEntry:
    with store.db.read() as session:
        return session.execute(select(AuditEntry).where(AuditEntry.action == "kb.unschedule")).scalar_one()


def test_a_cancelled_change_goes_back_to_its_writer_not_its_publisher(store, clock):
    """jia wrote it, yi reviewed and scheduled it (four-eyes): after a cancel the draft was yi's, so jia could
    publish her own change alone."""
    scheduled = _schedule(store, clock, A, "甲写的", 1)
    store.cancel_scheduled(scheduled.id, "bing")
    assert store.entry(A)["draft_by"] == "jia"
    with pytest.raises(KbEditError) as refused:
        store.publish("jia", [A], four_eyes=True)
    assert refused.value.status == 403
    assert store.history(A)[0]["publication"] != scheduled.id  # the revision went with it


def test_a_cancel_is_refused_once_its_time_came_while_it_was_rebuilding_later_ones(store, clock):
    due = _schedule(store, clock, A, "定时的A", 0.5)
    _schedule(store, clock, B, "更晚的B", 2)
    real = store.materialise_publication

    def slow(*args, **kwargs):  # rebuilding later publications takes seconds at 10,000 entries
        out = real(*args, **kwargs)
        clock.advance(days=1)
        return out

    store.materialise_publication = slow
    with pytest.raises(KbEditError) as refused:
        store.cancel_scheduled(due.id, "bing")
    assert refused.value.status == 409 and "in effect" in refused.value.message
    assert _other_process(store, clock).latest().id == due.id  # what servers serve is still recorded
    assert store.entry(A)["published"]["answer"]["zh"] == "定时的A"


def test_two_cancels_at_once_do_not_leave_a_later_publication_on_a_removed_change(store, clock):
    first = _schedule(store, clock, A, "第1天A", 1)
    second = _schedule(store, clock, B, "第2天B", 2)
    third = _schedule(store, clock, C, "第3天C", 3)
    other, real = _other_process(store, clock), store.materialise_publication

    def interleave(publication_id, *args, **kwargs):
        out = real(publication_id, *args, **kwargs)
        if publication_id == third.id and not interleave.done:  # between this cancel's rebuild and its commit
            interleave.done = other.cancel_scheduled(second.id, "bing")  # another editor, another process
        return out

    interleave.done = None
    store.materialise_publication = interleave
    with pytest.raises(KbEditError) as refused:
        store.cancel_scheduled(first.id, "ding")
    assert refused.value.status == 409
    store.materialise_publication = real
    store.cancel_scheduled(first.id, "ding")  # again, on what is there now
    stored = next(p for p in store.publications() if p.id == third.id).version
    assert stored == load_knowledge_base(store.materialise_publication(third.id)).version
    clock.advance(days=4)
    served = load_knowledge_base(store.materialise_publication(store.latest().id))
    assert served.entries[C].answer.zh == "第3天C"
    assert "第2天B" not in served.entries[B].answer.zh and "第1天A" not in served.entries[A].answer.zh


def test_a_publish_beside_a_cancel_is_refused_rather_than_built_on_the_cancelled_change(store, clock):
    cancelled = _schedule(store, clock, A, "第1天A", 1)
    store.save_draft(C, _edited(store, C, "立即C"), "jia")
    store.publish("yi", [C])  # the cancelled one is not the newest publication
    store.save_draft(B, _edited(store, B, "第2天B"), "jia")
    other, real = _other_process(store, clock), store._write_dir

    def hook(*args, **kwargs):
        out = real(*args, **kwargs)
        if not hook.done:  # the publish has built its KB; another editor cancels before it commits
            hook.done = other.cancel_scheduled(cancelled.id, "bing")
        return out

    hook.done = None
    store._write_dir = hook
    with pytest.raises(KbEditError) as refused:
        store.publish("yi", [B], effective_from=clock() + 2 * DAY)
    assert refused.value.status == 409
    store._write_dir = real
    later, kb = store.publish("yi", [B], effective_from=clock() + 2 * DAY)
    assert "第1天A" not in kb.entries[A].answer.zh
    assert later.version == load_knowledge_base(store.materialise_publication(later.id)).version


def test_newer_work_on_an_entry_is_kept_and_the_cancelled_content_is_in_the_audit_log(store, clock):
    """A later scheduled change of the same entry was written on the cancelled one: restoring the cancelled content
    as a draft let a later "publish all" undo it. A pending draft (here a retirement) stays as it is."""
    first = _schedule(store, clock, A, "第1天A", 1)
    _schedule(store, clock, A, "第2天A（在第1天的基础上）", 2)
    also = _schedule(store, clock, B, "第1.5天B", 1.5)
    store.retire(B, "bing")
    _, set_aside = store.cancel_scheduled(first.id, "ding")
    assert set_aside == [A] and store.entry(A)["status"] == "live"
    assert store.entry(A)["published"]["answer"]["zh"] == "第2天A（在第1天的基础上）"
    assert _unschedule_audit(store).detail["contents"][A]["answer"]["zh"] == "第1天A"
    _, set_aside = store.cancel_scheduled(also.id, "ding")
    assert set_aside == [B] and store.entry(B)["status"] == "retire"  # the pending retirement, untouched


def test_a_contact_draft_changed_after_review_is_not_published_unseen(store):
    contact = dict(next(c for c in store.contacts() if c["id"] == "national_12345")["published"])
    store.save_contact_draft("national_12345", contact | {"phone": "88888"}, "jia")
    reviewed = {d["id"]: d["etag"] for d in store.pending_drafts()}
    store.save_contact_draft("national_12345", contact | {"phone": "99999"}, "jia")
    with pytest.raises(KbEditError) as refused:
        store.publish("yi", ["contact:national_12345"], reviewed=reviewed)
    assert refused.value.status == 409 and "contact:national_12345 (by jia)" in refused.value.message
    with pytest.raises(KbEditError) as refused:
        store.publish("yi", ["contact:national_12345"], reviewed={"contact:nobody": "x"})
    assert refused.value.status == 422 and refused.value.field == "seen"
    _, kb = store.publish("yi", ["contact:national_12345"], reviewed={d["id"]: d["etag"] for d in store.pending_drafts()})
    assert kb.contacts["national_12345"].phone == "99999"
