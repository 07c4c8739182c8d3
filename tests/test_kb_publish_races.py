"""Publishing or cancelling a scheduled publication while something else changes the KB (bot/kb/store.py
``publish``, ``cancel_scheduled``): what is committed is exactly what was built, validated and swapped in, or the
operation is refused (409) and nothing is lost. Each test failed on the code before (reviews reproduced them on
SQLite and PostgreSQL): a draft saved or discarded during a publish, two publishes at once; a cancel committed
after its publication went live, two cancels (or a cancel and a publish) each built on what the other removed, a
cancelled change went back to the publisher instead of its writer (and past the four-eyes rule), a stale draft
could undo a later scheduled change, and a contact draft changed after review was published. The fixture KB keeps
the builds cheap."""
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


def _edit(store, entry_id, text):
    view = store.entry(entry_id)
    content = dict(view["draft"] or view["published"])
    content["answer"] = {**content["answer"], "zh": text}
    return content


def _other_process(store, clock) -> KnowledgeStore:
    return KnowledgeStore(store.db, store.knowledge_dir, store.work_dir, clock)


def _refused(store, *args, still_live: bool = True, **kwargs) -> KbEditError:
    """``still_live``: the publication live before is still the latest (nothing of this publish committed)."""
    before = store.latest().id
    with pytest.raises(KbEditError) as refused:
        store.publish(*args, **kwargs)
    assert refused.value.status == 409
    assert (store.latest().id == before) == still_live
    return refused.value


def test_a_draft_saved_during_a_publish_is_kept_for_review_not_published(store):
    """ed2's newer draft was published unreviewed (under a version serving ed1's text) and cleared."""
    store.save_draft(A, _edit(store, A, "审核过的版本"), "ed1")
    published = store.entry(A)["published"]
    error = _refused(store, "ed1", before_commit=lambda kb: store.save_draft(A, _edit(store, A, "未审核的新版本"), "ed2"))
    assert A in str(error)
    after = store.entry(A)
    assert after["published"] == published and after["draft"]["answer"]["zh"] == "未审核的新版本"


def test_a_discard_during_a_publish_does_not_retire_the_entry(store):
    store.save_draft(A, _edit(store, A, "新版本"), "ed1")
    _refused(store, "ed1", before_commit=lambda kb: store.discard(A, "ed2"))
    assert store.entry(A)["published"] is not None


def test_a_contact_draft_saved_during_a_publish_is_kept(store):
    contact = dict(next(c for c in store.contacts() if c["id"] == "national_12345")["published"])
    store.save_contact_draft("national_12345", contact | {"phone": "88888"}, "ed1")
    _refused(store, "ed3", before_commit=lambda kb: store.save_contact_draft(
        "national_12345", contact | {"phone": "99999"}, "ed2"))
    after = next(c for c in store.contacts() if c["id"] == "national_12345")
    assert after["draft"]["phone"] == "99999" and after["published"]["phone"] == contact["phone"]


def test_two_processes_publishing_at_once_lose_neither_change(store):
    """Each built a version holding the other's entry as it was; the later commit named a KB serving B's old
    answer while the database called B's new one live. The later publish is refused; published again, it
    carries both."""
    store.save_draft(A, _edit(store, A, "A的新答案"), "ed1")
    store.save_draft(B, _edit(store, B, "B的新答案"), "ed2")
    other = _other_process(store, store.clock)  # another server process
    _refused(store, "ed1", [A], still_live=False, before_commit=lambda kb: other.publish("ed2", [B]))
    served = load_knowledge_base(store.work_dir / store.latest().version)
    assert served.entries[B].answer.zh == "B的新答案" and served.entries[A].answer.zh != "A的新答案"
    again, kb = store.publish("ed1", [A])
    assert kb.entries[A].answer.zh == "A的新答案" and kb.entries[B].answer.zh == "B的新答案"
    assert store.latest().id == again.id


# -- cancelling a scheduled publication, and publishing from a reviewed list ------------------------------

def _schedule(store, clock, entry_id: str, text: str, days: float, writer: str = "jia", publisher: str = "yi"):
    store.save_draft(entry_id, _edit(store, entry_id, text), writer)
    publication, _ = store.publish(publisher, [entry_id], effective_from=clock() + days * DAY)
    return publication


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
    store.save_draft(C, _edit(store, C, "立即C"), "jia")
    store.publish("yi", [C])  # the cancelled one is not the newest publication
    store.save_draft(B, _edit(store, B, "第2天B"), "jia")
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
