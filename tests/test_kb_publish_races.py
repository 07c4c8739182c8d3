"""Publishing while something else changes the KB (bot/kb/store.py ``publish``): what is committed is exactly
what was built, validated and swapped in, or the publish is refused (409) and nothing is lost. Each test failed on
the code before (a review reproduced them on SQLite and PostgreSQL). The fixture KB keeps the builds cheap."""
from __future__ import annotations

import pytest

from bot.kb.loader import load_knowledge_base
from bot.kb.store import KbEditError, KnowledgeStore
from tests.conftest import open_database

A, B = "testing.mini_fee", "testing.mini_sites"


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
    other = KnowledgeStore(store.db, store.knowledge_dir, store.work_dir, store.clock)  # another server process
    _refused(store, "ed1", [A], still_live=False, before_commit=lambda kb: other.publish("ed2", [B]))
    served = load_knowledge_base(store.work_dir / store.latest().version)
    assert served.entries[B].answer.zh == "B的新答案" and served.entries[A].answer.zh != "A的新答案"
    again, kb = store.publish("ed1", [A])
    assert kb.entries[A].answer.zh == "A的新答案" and kb.entries[B].answer.zh == "B的新答案"
    assert store.latest().id == again.id
