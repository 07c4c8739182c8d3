"""HTTP side of the KB editor (issue 9): list/search entries, drafts with inline validation,
a test box (draft vs live), publish, history and rollback. Right ``kb`` (editor, admin).

Every refusal names the field: validation problems come back as ``problems`` with the same
``field`` paths ``hotline-bot kb validate`` prints (``questions.zh.2``, ``follow_ups.0``), so
the console shows them next to the input they concern.
"""
from __future__ import annotations

import datetime as dt

from flask import Blueprint, g, jsonify, request
from pydantic import BaseModel, Field, StrictStr

from bot.kb.store import KbEditError, problem_dict
from connectors.context import services, staff_required
from connectors.errors import MAX_ID, ApiError, parse_json_body, query_int, query_text

kb_editor = Blueprint("kb_editor", __name__, url_prefix="/agents/api/kb")


class EntryIn(BaseModel):
    entry: dict


class RollbackIn(BaseModel):
    revision: int = Field(ge=1, le=MAX_ID)  # a row id (10**20 overflowed the database driver: a 500)


class PublishIn(BaseModel):
    entries: list[StrictStr] | None = None  # None: every draft
    note: StrictStr = Field(default="", max_length=200)
    effective_from: dt.datetime | None = None  # scheduled publish (UTC); None: now
    seen: dict[StrictStr, StrictStr] | None = None  # {entry id: etag} as reviewed; a draft saved since: 409


class TestIn(BaseModel):
    text: StrictStr = Field(min_length=1, max_length=500)
    language: StrictStr = "zh"


def _live():
    live = services().kb_live
    if live is None:
        raise ApiError(409, "KB editing is off: set HOTLINE_KB__EDITING=1 (the database becomes the live KB)")
    return live


def _edit(call):
    try:
        return call()
    except KbEditError as exc:
        raise ApiError(exc.status, exc.message, exc.field,
                       extra={"problems": [problem_dict(p) for p in exc.problems]} if exc.problems else None) from None


def _expected() -> str | None:
    """The etag of the view the editor changed, from ``If-Match`` (the console sends the one its GET returned);
    None when the client sends none (then the change applies to whatever is there, as before)."""
    if not request.if_match or request.if_match.star_tag:
        return None
    tags = request.if_match.as_set()
    if len(tags) != 1:
        raise ApiError(400, "If-Match: send the one etag of the entry you opened", "If-Match")
    return next(iter(tags))


def _with_etag(view: dict | None):
    response = jsonify(view)
    if view is not None:
        response.set_etag(view["etag"])
    return response


def _summary(view: dict, kb) -> dict:
    content = view["draft"] or view["published"] or {}
    questions = content.get("questions", {})
    entry = kb.get(view["id"])
    return {"id": view["id"], "category": view["category"], "status": view["status"],
            "title": {"zh": (questions.get("zh") or [""])[0], "en": (questions.get("en") or [""])[0]},
            "updated": content.get("updated"), "valid_until": content.get("valid_until"),
            "region": content.get("region"), "draft_by": view["draft_by"], "live": entry is not None}


@kb_editor.get("/status")
@staff_required("kb")
def status():
    live = _live()
    latest = live.store.latest()
    drafts = live.store.pending_drafts()
    return jsonify({"editing": True, "serving": services().bot.kb.version,
                    "latest": latest.to_dict() if latest else None, "pending": [d["id"] for d in drafts],
                    "drafts": drafts, "four_eyes": live.settings.kb.four_eyes})


@kb_editor.get("/entries")
@staff_required("kb")
def entries():
    live = _live()
    q = (query_text("q", 200) or "").strip().lower()
    category = request.args.get("category") or None
    wanted = request.args.get("status") or None
    kb = services().bot.kb
    sort = request.args.get("sort") or ""
    if sort not in ("", "asked", "worst", "expiring"):
        raise ApiError(400, "sort: must be one of asked, worst, expiring", "sort")
    usage = _inbox().usage() if sort in ("asked", "worst") else {}
    today = services().clock().date()
    out = []
    for view in live.store.entries():
        if category and view["category"] != category:
            continue
        if wanted and view["status"] != wanted:
            continue
        if q:
            content = view["draft"] or view["published"] or {}
            haystack = " ".join([view["id"], *content.get("questions", {}).get("zh", []),
                                 *content.get("questions", {}).get("en", []),
                                 *content.get("answer", {}).values()]).lower()
            if q not in haystack:
                continue
        item = _summary(view, kb) | usage.get(view["id"], {"asked": 0, "down": 0} if usage else {})
        if sort == "expiring":
            if not item["valid_until"]:
                continue
            item["days_left"] = (dt.date.fromisoformat(item["valid_until"]) - today).days
        out.append(item)
    if sort == "asked":
        out.sort(key=lambda e: -e["asked"])
    elif sort == "worst":
        out.sort(key=lambda e: (-e["down"], -e["asked"]))
    elif sort == "expiring":
        out.sort(key=lambda e: e["days_left"])
    return jsonify({"entries": out, "categories": sorted({v["category"] for v in out} | set()),
                    "version": kb.version})


@kb_editor.get("/entries/<entry_id>")
@staff_required("kb")
def entry(entry_id: str):
    live = _live()
    view = live.store.entry(entry_id)
    if view is None:
        raise ApiError(404, f"no entry {entry_id!r}")
    return _with_etag({**view, "history": live.store.history(entry_id)})


@kb_editor.post("/entries/<entry_id>")
@staff_required("kb")
def save(entry_id: str):
    body = parse_json_body(EntryIn)
    expected = _expected()
    return _with_etag(_edit(lambda: _live().store.save_draft(entry_id, body.entry, g.member.username, expected)))


@kb_editor.post("/entries")
@staff_required("kb")
def create():
    body = parse_json_body(EntryIn)
    return jsonify(_edit(lambda: _live().store.save_draft(None, body.entry, g.member.username))), 201


@kb_editor.post("/validate")
@staff_required("kb")
def validate():
    """Problems of an entry being typed, without saving it (the console's inline errors)."""
    from bot.kb.store import check_entry
    from bot.kb.canonical import entry_dict

    body = parse_json_body(EntryIn)
    parsed, problems = check_entry(body.entry)
    if parsed is not None:
        problems = [p for p in _live().store.validate_draft({parsed.id: entry_dict(parsed)})
                    if p.entry == parsed.id]
    return jsonify({"ok": not [p for p in problems if p.severity == "error"],
                    "problems": [problem_dict(p) for p in problems]})


@kb_editor.post("/entries/<entry_id>/retire")
@staff_required("kb")
def retire(entry_id: str):
    expected = _expected()
    return _with_etag(_edit(lambda: _live().store.retire(entry_id, g.member.username, expected)))


@kb_editor.post("/entries/<entry_id>/discard")
@staff_required("kb")
def discard(entry_id: str):
    expected = _expected()
    return jsonify(_edit(lambda: _live().store.discard(entry_id, g.member.username, expected)) or {"id": entry_id})


@kb_editor.post("/entries/<entry_id>/rollback")
@staff_required("kb")
def rollback(entry_id: str):
    """One click: the old revision published at once (this entry only); a draft pending on the entry stays."""
    body = parse_json_body(RollbackIn)
    live = _live()
    content = _edit(lambda: live.store.revision_content(entry_id, body.revision))
    publication = _edit(lambda: live.publish(g.member.username, [entry_id], f"rollback to revision {body.revision}",
                                             review=False, restore={entry_id: content}))
    return jsonify({"publication": publication.to_dict(), "entry": live.store.entry(entry_id)})


@kb_editor.post("/publish")
@staff_required("kb")
def publish():
    body = parse_json_body(PublishIn)
    live = _live()
    when = body.effective_from
    if when is not None and when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    publication = _edit(lambda: live.publish(g.member.username, body.entries, body.note, effective_from=when,
                                             reviewed=body.seen))
    # retraining: served already with the new paraphrases; the retrained models follow within seconds
    return jsonify({"publication": publication.to_dict(), "serving": services().bot.kb.version,
                    "swap_seconds": live.last_swap_seconds, "retraining": services().bot.index.provisional})


@kb_editor.get("/publications")
@staff_required("kb")
def publications():
    return jsonify({"publications": [p.to_dict() for p in _live().store.publications()]})


@kb_editor.delete("/publications/<int:publication_id>")
@staff_required("kb")
def cancel_publication(publication_id: int):
    """Cancel a scheduled publication before its time: its changes are drafts again (``KnowledgeStore.cancel_scheduled``)."""
    if publication_id > MAX_ID:
        raise ApiError(404, f"no publication {publication_id}", "publication")
    store = _live().store
    cancelled, set_aside = _edit(lambda: store.cancel_scheduled(publication_id, g.member.username))
    return jsonify({"cancelled": cancelled.to_dict(), "pending": store.pending(), "set_aside": set_aside})


def _would_answer(bot, text: str, language: str) -> dict:
    understanding = bot.understand(text, top_k=10)
    decision = bot.decision_for(understanding, bot.clock().date(), region=understanding.region)
    entry = bot.kb.get(decision.entry_id) if decision.entry_id else None
    answer = None
    if entry is not None and decision.action == "answer":
        from bot.kb.schema import expand_contacts

        answer = expand_contacts(entry.answer.en if language == "en" else entry.answer.zh, bot.kb.contacts, language)
    return {"version": bot.kb.version, "action": decision.action, "entry_id": decision.entry_id, "answer": answer,
            "top": [{"entry_id": c.entry_id, "score": round(c.score, 4),
                     "title": bot.kb.entries[c.entry_id].title(language)}
                    for c in understanding.candidates[:3] if c.entry_id in bot.kb.entries]}


@kb_editor.post("/test")
@staff_required("kb")
def test_box():
    """What the bot would answer with the live KB and with the drafts, side by side."""
    body = parse_json_body(TestIn)
    language = "en" if body.language == "en" else "zh"
    live = _live()
    from bot.kb.loader import KnowledgeBaseError

    try:
        draft = _edit(live.draft_bot)
    except KnowledgeBaseError as exc:
        raise ApiError(422, "the drafts do not make a valid KB",
                       extra={"problems": [problem_dict(p) for p in exc.problems]}) from None
    return jsonify({"live": _would_answer(services().bot, body.text, language),
                    "draft": _would_answer(draft, body.text, language)})


# -- unanswered-question inbox -------------------------------------------------------------------

class InboxQuestionsIn(BaseModel):
    questions: list[StrictStr] = Field(min_length=1, max_length=50)


class ParaphraseIn(InboxQuestionsIn):
    entry_id: StrictStr = Field(min_length=3, max_length=120)


def _inbox():
    from bot.kb.inbox import Inbox

    svc = services()
    return Inbox(svc.db, svc.clock)


@kb_editor.get("/inbox")
@staff_required("kb")
def inbox():
    """Failed questions grouped by meaning, most citizens first (personal data masked)."""
    _live()
    days = min(max(query_int("days", 30) or 30, 1), 365)  # ?days=abc was a ValueError: a 500
    return jsonify({"groups": _inbox().groups(services().bot, days=days)})


@kb_editor.post("/inbox/paraphrase")
@staff_required("kb")
def inbox_paraphrase():
    """One click: the group's questions become paraphrases of an entry (a draft; publish to serve)."""
    from bot.conversations.privacy import mask_names
    from bot.kb.inbox import add_paraphrases

    body = parse_json_body(ParaphraseIn)
    live = _live()
    view = live.store.entry(body.entry_id)
    if view is None or (view["draft"] or view["published"]) is None:
        raise ApiError(404, f"entry_id: no entry {body.entry_id!r}", "entry_id")
    content = add_paraphrases(view["draft"] or view["published"], [mask_names(q) for q in body.questions])
    return jsonify(_edit(lambda: live.store.save_draft(body.entry_id, content, g.member.username)))


@kb_editor.post("/inbox/dismiss")
@staff_required("kb")
def inbox_dismiss():
    body = parse_json_body(InboxQuestionsIn)
    _live()
    return jsonify({"dismissed": _inbox().dismiss(body.questions, g.member.username)})


# -- contact directory -----------------------------------------------------------------------------

class ContactIn(BaseModel):
    contact: dict


@kb_editor.get("/contacts")
@staff_required("kb")
def contacts():
    """The directory, each contact flagged when not verified for ``kb.contact_stale_days``."""
    svc = services()
    return jsonify({"contacts": _live().store.contacts(svc.settings.kb.contact_stale_days),
                    "stale_days": svc.settings.kb.contact_stale_days})


@kb_editor.post("/contacts/<contact_id>")
@staff_required("kb")
def contact_save(contact_id: str):
    body = parse_json_body(ContactIn)
    return jsonify(_edit(lambda: _live().store.save_contact_draft(contact_id, body.contact, g.member.username)))


@kb_editor.post("/contacts")
@staff_required("kb")
def contact_create():
    body = parse_json_body(ContactIn)
    return jsonify(_edit(lambda: _live().store.save_contact_draft(None, body.contact, g.member.username))), 201
