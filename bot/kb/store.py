"""The knowledge base in the database: drafts, review, publish, history, rollback.

Why: rules and phone numbers change every few days; editors must change answers
without an engineer, a restart or a YAML file. This module is the ONLY writer of
the ``kb_*`` tables. Every change is a draft; ``publish`` applies the drafts,
validates the whole resulting KB exactly as ``hotline-bot kb validate`` does, and
writes a new ``kb_publications`` row whose ``version`` is the same content hash a
KB directory has today (``knowledge_version``): the database KB is materialised
as a KB directory (the non-FAQ files come from ``knowledge_dir``, the FAQ files
are written in canonical form, ``bot.kb.canonical``), so the shipped KB imported
unchanged keeps its version and its prebuilt index.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import and_, bindparam, delete, func, or_, select, update
from sqlalchemy.orm import Session

from bot.db import Database
from bot.kb.canonical import contact_dict, contacts_file, entry_dict, entry_lines, faq_file
from bot.kb.loader import (CONTACTS_FILE, FAQ_DIR, KnowledgeBase, KnowledgeBaseError, Problem, load_knowledge_base,
                           validate_knowledge_base)
from bot.kb.schema import Contact, Entry
from bot.yaml_files import load_yaml
from bot.models import AuditEntry, KbContact, KbEntry, KbPublication, KbRevision, utcnow

CONTACT_PREFIX = "contact:"  # contacts' revisions share the history table: entry_id "contact:<id>"
# When a publication takes effect: its scheduled time, or when it was published.
_EFFECTIVE = func.coalesce(KbPublication.effective_from, KbPublication.published_at)


def _in_effect() -> Any:
    """The publication in effect at ``:now``: the newest immediate one and the newest scheduled one due by then,
    each one probe of its index (``KbPublication.__table_args__``), the later of the two. Built once: building
    the statement on every call cost 0.12 ms of the 0.45 ms read."""
    immediate = (select(KbPublication.id).where(KbPublication.effective_from.is_(None))
                 .order_by(KbPublication.published_at.desc(), KbPublication.id.desc()).limit(1))
    scheduled = (select(KbPublication.id).where(KbPublication.effective_from <= bindparam("now"))
                 .order_by(KbPublication.effective_from.desc(), KbPublication.id.desc()).limit(1))
    return (select(KbPublication).where(KbPublication.id.in_([immediate.scalar_subquery(),
                                                               scheduled.scalar_subquery()]))
            .order_by(_EFFECTIVE.desc(), KbPublication.id.desc()).limit(1))


_IN_EFFECT = _in_effect()
_NEWEST = select(KbPublication).order_by(KbPublication.id.desc()).limit(1)


def _scheduled_after(moment: dt.datetime) -> Any:
    """Publications scheduled to take effect after ``moment``: their changes are stored, not in effect yet."""
    return and_(KbPublication.effective_from.is_not(None), KbPublication.effective_from > moment)


# An import or a publish writes a row per entry in one transaction, and materialising the KB (export, a
# reload's load) reads them all: a citizen's message gets the database deadline (1.5 s on a frozen link), a
# bulk KB read or write this long; each statement keeps its timeout.
BULK_SECONDS = 60.0
_Row = TypeVar("_Row", KbEntry, KbContact)


class KbEditError(Exception):
    """A refused edit: ``status`` is the HTTP status, ``problems`` name the fields."""

    def __init__(self, status: int, message: str, problems: list[Problem] | None = None, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.problems = problems or []
        self.field = field


@dataclass(frozen=True)
class Publication:
    id: int
    version: str
    published_by: str
    published_at: dt.datetime
    entries: list[str]
    note: str = ""
    effective_from: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "published_by": self.published_by,
                "published_at": self.published_at.isoformat() + "Z", "entries": self.entries, "note": self.note,
                "effective_from": self.effective_from.isoformat() + "Z" if self.effective_from else None}


def _publication(row: KbPublication) -> Publication:
    return Publication(row.id, row.version, row.published_by, row.published_at, list(row.entries or []), row.note,
                       row.effective_from)


def entry_etag(row: KbEntry) -> str:
    """What an editor saw of an entry (live content, draft, retirement), as an HTTP entity tag. A save, retire or
    discard made from an older view is refused (412) instead of silently replacing what another editor saved in
    between: before, the last save won and the first editor's change was gone without a word."""
    return _etag([row.published, row.draft, bool(row.draft_retire)])


def contact_etag(row: KbContact) -> str:
    """A contact's draft as an editor saw it (the publish list checks it like an entry's)."""
    return _etag([row.published, row.draft])


def _etag(seen: list[Any]) -> str:
    text = json.dumps(seen, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


# A scheduled publication is not cancelled this close to its time: another host's clock may run ahead, and its
# servers may serve it already.
CANCEL_MARGIN = dt.timedelta(minutes=1)
# Publications scheduled within this window before an operation started are part of what it compares (below).
_SCHEDULE_WINDOW = dt.timedelta(days=1)


def _schedule_fingerprint(session: Session, since: dt.datetime) -> tuple[Any, ...]:
    """What a publish or a cancel built on: the newest publication and every scheduled one (id, version, time).
    Read when it starts and again under the publications' lock before it commits: a difference is a 409. The
    newest id alone missed a cancel (it removes a publication, often not the newest, and rewrites later ones'
    versions): two cancels at once, or a cancel beside a publish, each committed versions built on what the
    other had just removed."""
    newest = session.execute(select(func.max(KbPublication.id))).scalar()
    scheduled = session.execute(select(KbPublication.id, KbPublication.version, KbPublication.effective_from)
                                .where(KbPublication.effective_from > since).order_by(KbPublication.id)).all()
    return (newest, *[tuple(r) for r in scheduled])


def _lock_unchanged(session: Session, since: dt.datetime, base: tuple[Any, ...], again: str, field: str) -> None:
    """Takes the publications' write lock (the newest row, locked, orders concurrent publishes and cancels on
    PostgreSQL; SQLite's writer lock already does) and refuses (409, "... ``again``") when what the operation built
    on (``_schedule_fingerprint`` read at its start) changed meanwhile; the next statement sees any such commit."""
    session.execute(select(KbPublication.id).order_by(KbPublication.id.desc()).limit(1).with_for_update())
    if _schedule_fingerprint(session, since) != base:
        raise KbEditError(409, f"another publish or cancel went through meanwhile: {again}", field=field)


def _unchanged(row: KbEntry, expected: str | None) -> None:
    """Refuses an edit made from a view of ``row`` other than its current one (``expected``: the view's etag)."""
    if expected is None or entry_etag(row) == expected:
        return
    if row.draft is not None or row.draft_retire:
        since = f"{row.draft_by or 'another editor'} saved a draft" + (
            f" at {row.draft_at:%Y-%m-%d %H:%M} UTC" if row.draft_at else "")
    else:
        since = "it was published or its draft discarded"
    raise KbEditError(412, f"{row.entry_id} changed since you opened it ({since}): reload it and make your "
                      "change again", field="entry")


def _audit(session: Session, actor: str, action: str, target: str = "", detail: dict[str, Any] | None = None,
           at: dt.datetime | None = None) -> None:
    session.add(AuditEntry(actor=actor, action=action, target=target[:160], detail=detail or {},
                           at=at or utcnow()))


def problem_dict(problem: Problem) -> dict[str, Any]:
    return {"file": problem.file, "entry": problem.entry, "field": problem.field, "message": problem.message,
            "severity": problem.severity}


def check_entry(content: Any) -> tuple[Entry | None, list[Problem]]:
    """Schema check of one entry as the editor sent it: problems by field (``questions.zh.2``...)."""
    if not isinstance(content, dict):
        return None, [Problem("", "", "", "an entry must be a JSON object")]
    try:
        return Entry.model_validate(content), []
    except ValidationError as exc:
        label = str(content.get("id") or "")
        return None, [Problem(f"{FAQ_DIR}/{content.get('category')}.yml", label,
                              ".".join(str(p) for p in err["loc"]), err["msg"]) for err in exc.errors()]


class KnowledgeStore:
    """FAQ entries in the database; the rest of the KB (intents, synonyms, gazetteer...) from ``knowledge_dir``."""

    def __init__(self, db: Database, knowledge_dir: Path, work_dir: Path,
                 clock: Callable[[], dt.datetime] = utcnow):
        self.db = db
        self.knowledge_dir = Path(knowledge_dir)
        self.work_dir = Path(work_dir)
        self.clock = clock

    # -- reading ------------------------------------------------------------------------

    def latest(self, effective: bool = True) -> Publication | None:
        """The publication whose KB is in effect now: of those in effect (scheduled ones once their time came),
        the one taking effect last (then the newest). What every process compares its served version with (one
        read). ``effective=False``: the newest, scheduled or not."""
        if effective:
            # an immediate publication is in effect whatever this host's clock says (a clock a second behind the
            # publisher's must not hold it back); only scheduled ones wait for their time
            query, params = _IN_EFFECT, {"now": self.clock()}
        else:
            query, params = _NEWEST, {}
        with self.db.read() as session:
            row = session.execute(query, params).scalar_one_or_none()
            return _publication(row) if row else None

    def latest_id(self) -> int:
        with self.db.read() as session:
            return session.execute(select(func.max(KbPublication.id))).scalar() or 0

    def publications(self, limit: int = 50) -> list[Publication]:
        with self.db.read() as session:
            rows = session.execute(select(KbPublication).order_by(KbPublication.id.desc()).limit(limit)).scalars()
            return [_publication(r) for r in rows]

    def _rows(self, session: Session) -> list[KbEntry]:
        return list(session.execute(select(KbEntry).order_by(KbEntry.category, KbEntry.position)).scalars())

    def entries(self) -> list[dict[str, Any]]:
        """Every entry with its live content and pending draft (the editor's list)."""
        with self.db.read(timeout=BULK_SECONDS) as session:
            scheduled = self._scheduled(session)
            return [self._view(r, scheduled.get(r.entry_id)) for r in self._rows(session)]

    def entry(self, entry_id: str) -> dict[str, Any] | None:
        with self.db.read() as session:
            row = session.get(KbEntry, entry_id)
            return self._view(row, self._scheduled(session).get(entry_id)) if row else None

    def _scheduled(self, session: Session) -> dict[str, tuple[dt.datetime, int]]:
        """Entries a publication not in effect yet changes, with when and which (the first such): their stored live
        content is that future content (the console says so, and can cancel it; citizens get the content before
        it until then)."""
        due: dict[str, tuple[dt.datetime, int]] = {}
        for at, publication_id, entries in session.execute(
                select(KbPublication.effective_from, KbPublication.id, KbPublication.entries)
                .where(_scheduled_after(self.clock())).order_by(KbPublication.effective_from, KbPublication.id)):
            for entry_id in entries or []:
                if at is not None:  # always, by the query
                    due.setdefault(entry_id, (at, publication_id))
        return due

    @staticmethod
    def _view(row: KbEntry, scheduled: tuple[dt.datetime, int] | None = None) -> dict[str, Any]:
        return {"id": row.entry_id, "category": row.category, "etag": entry_etag(row),
                "scheduled_for": scheduled[0].isoformat() + "Z" if scheduled else None,
                "scheduled_publication": scheduled[1] if scheduled else None,
                "published": row.published, "draft": row.draft,
                "draft_retire": row.draft_retire, "draft_by": row.draft_by,
                "draft_at": row.draft_at.isoformat() + "Z" if row.draft_at else None,
                "status": ("retire" if row.draft_retire else "draft" if row.draft is not None
                           else "retired" if row.published is None else "live")}

    def history(self, entry_id: str) -> list[dict[str, Any]]:
        """Every published revision of an entry, newest first, each with a diff to the one before."""
        with self.db.read() as session:
            rows = list(session.execute(
                select(KbRevision, KbPublication).join(KbPublication, KbPublication.id == KbRevision.publication_id)
                .where(KbRevision.entry_id == entry_id).order_by(KbRevision.id)).all())
        out: list[dict[str, Any]] = []
        previous: list[str] = []
        for revision, publication in rows:
            lines = entry_lines(revision.content) if revision.content else []
            diff = list(difflib.unified_diff(previous, lines, "before", "after", lineterm="", n=1))
            out.append({"revision": revision.id, "publication": publication.id, "version": publication.version,
                        "author": revision.author, "at": revision.created_at.isoformat() + "Z",
                        "retired": revision.content is None, "content": revision.content, "diff": diff[2:]})
            previous = lines
        return out[::-1]

    # -- the KB as files ----------------------------------------------------------------

    def _ignore(self, directory: str, names: list[str]) -> list[str]:
        """What the database replaces when copying ``knowledge_dir``: the FAQ files and the contacts."""
        if Path(directory) != self.knowledge_dir:
            return [n for n in names if n == "__pycache__"]
        return [n for n in names if n in (FAQ_DIR, CONTACTS_FILE, "__pycache__")]

    @staticmethod
    def _contact_rows(session: Session) -> list[KbContact]:
        return [KbContact(contact_id=r.contact_id, position=r.position, published=r.published, draft=r.draft,
                          draft_by=r.draft_by) for r in
                session.execute(select(KbContact).order_by(KbContact.position, KbContact.contact_id)).scalars()]

    def _files(self, rows: list[KbEntry], draft: bool, contacts: list[KbContact] | None = None) -> dict[str, str]:
        """``faq/<category>.yml`` and ``contacts.yml`` texts from the live content (or live + drafts)."""
        live_contacts: list[dict[str, Any]] = []
        for c in contacts or []:
            content = c.draft if draft and c.draft is not None else c.published
            if content is not None:
                live_contacts.append(content)
        extra = {CONTACTS_FILE: contacts_file(live_contacts)} if live_contacts else {}
        by_category: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            content = row.published
            if draft:
                content = None if row.draft_retire else (row.draft if row.draft is not None else row.published)
            by_category.setdefault(row.category, [])
            if content is not None:
                by_category[row.category].append(content)
        return {f"{FAQ_DIR}/{category}.yml": faq_file(category, entries)
                for category, entries in by_category.items() if entries} | extra

    def export(self, target: Path, draft: bool = False, faq_only: bool = False) -> Path:
        """The live KB (or live + drafts) as a KB directory: ``kb export``. Everything but the FAQ
        files is copied from ``knowledge_dir``."""
        target = Path(target)
        with self.db.read(timeout=BULK_SECONDS) as session:
            rows, contacts = self._rows(session), self._contact_rows(session)
            now = self.clock()
            if not draft and session.execute(select(KbPublication.id).where(_scheduled_after(now)).limit(1)).first():
                # a scheduled publication's changes are stored already but not in effect: the live KB is what is
                rows = [self._detached(r) for r in rows]
                self._put_state(rows, contacts, self._state(session, self._not_before_last(session, now)))
            files = self._files(rows, draft, contacts)
        if not faq_only:
            shutil.copytree(self.knowledge_dir, target, dirs_exist_ok=True, ignore=self._ignore)
        faq = target / FAQ_DIR
        if faq.exists():
            for old in faq.glob("*.yml"):
                if f"{FAQ_DIR}/{old.name}" not in files:
                    old.unlink()
        faq.mkdir(parents=True, exist_ok=True)
        for rel, text in files.items():
            (target / rel).write_text(text, encoding="utf-8")
        return target

    def materialise(self, draft: bool = False) -> Path:
        """The KB as a directory under ``work_dir``, named by its version (reused when it exists)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".kb-", dir=self.work_dir))
        try:
            self.export(tmp, draft=draft)
            from bot.kb.loader import knowledge_version

            final = self.work_dir / knowledge_version(tmp)
            if final.exists():
                return final
            try:
                tmp.rename(final)
            except OSError:  # another process materialised the same version meanwhile
                if not final.exists():
                    raise
            return final
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _state(session: Session, at: dt.datetime, up_to: int | None = None,
               exclude: int | None = None) -> dict[str, dict[str, Any] | None]:
        """Every entry's (and contact's) content in effect at ``at``, from the revision history: of the publications
        taking effect by then, the one taking effect last wins (then the newer). ``up_to``: of the publications
        taking effect exactly at ``at``, only those up to this id (the state a publication itself made).
        ``exclude``: a publication left out (one being cancelled)."""
        until = _EFFECTIVE <= at if up_to is None else or_(_EFFECTIVE < at,
                                                             and_(_EFFECTIVE == at, KbPublication.id <= up_to))
        if exclude is not None:
            until = and_(until, KbPublication.id != exclude)
        state: dict[str, dict[str, Any] | None] = {}
        for revision in session.execute(
                select(KbRevision).join(KbPublication, KbPublication.id == KbRevision.publication_id)
                .where(until).order_by(_EFFECTIVE, KbPublication.id, KbRevision.id)).scalars():
            state[revision.entry_id] = revision.content
        return state

    @staticmethod
    def _not_before_last(session: Session, moment: dt.datetime) -> dt.datetime:
        """``moment``, or the last publication's ``published_at`` when that is later (another host's clock)."""
        newest = session.execute(select(func.max(KbPublication.published_at))).scalar()
        return max(moment, newest) if newest is not None else moment

    @staticmethod
    def _put_state(rows: list[KbEntry], contacts: list[KbContact], state: dict[str, dict[str, Any] | None]) -> None:
        """Detached rows' live content set to ``state`` (``_state``)."""
        for row in rows:
            row.published = state.get(row.entry_id)
        for contact in contacts:
            contact.published = state.get(CONTACT_PREFIX + contact.contact_id)

    def materialise_publication(self, publication_id: int,
                                overlay: dict[str, dict[str, Any] | None] | None = None,
                                exclude: int | None = None) -> Path:
        """The KB exactly as in effect from publication ``publication_id`` on (from the revision history): what a
        process serves while a later, scheduled publication is not in effect yet. ``overlay``: the changes of a
        publication about to commit that takes effect before it (none of them touches what it changes);
        ``exclude``: a publication before it about to be cancelled."""
        with self.db.read(timeout=BULK_SECONDS) as session:
            entries = [self._detached(r) for r in self._rows(session)]
            contacts = self._contact_rows(session)
            at = session.execute(select(_EFFECTIVE).where(KbPublication.id == publication_id)).scalar()
            if at is None:
                raise KbEditError(404, f"no publication {publication_id}")
            latest = self._state(session, at, publication_id, exclude) | (overlay or {})
        for row in entries:
            row.published, row.draft, row.draft_retire = latest.get(row.entry_id), None, False
        for contact in contacts:
            contact.published, contact.draft = latest.get(CONTACT_PREFIX + contact.contact_id), None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".kb-", dir=self.work_dir))
        try:
            self._write_dir(tmp, entries, contacts)
            from bot.kb.loader import knowledge_version

            final = self.work_dir / knowledge_version(tmp)
            if not final.exists():
                try:
                    tmp.rename(final)
                except OSError:
                    if not final.exists():
                        raise
            return final
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def load(self, draft: bool = False) -> KnowledgeBase:
        return load_knowledge_base(self.materialise(draft=draft))

    # -- import -------------------------------------------------------------------------

    def import_dir(self, source: Path, actor: str = "cli", note: str = "import") -> Publication:
        """Replace every entry with the FAQ files of a KB directory and publish that: ``kb import``.
        The directory must pass ``kb validate`` (expired entries are allowed, as when serving).
        Key order of each entry is kept, so export reproduces canonical files byte for byte."""
        source = Path(source)
        with self.db.read() as session:
            due = session.execute(select(KbPublication.effective_from).where(_scheduled_after(self.clock()))
                                  .order_by(KbPublication.effective_from).limit(1)).scalar()
        if due is not None:  # its changes are stored already: an import would be compared with, and undone by, them
            raise KbEditError(409, f"a publication is scheduled for {due:%Y-%m-%d %H:%M} UTC: import after it takes "
                              "effect")
        kb = load_knowledge_base(source)  # raises KnowledgeBaseError naming file/entry/field
        imported: list[tuple[str, str, int, dict[str, Any]]] = []
        for path in sorted((source / FAQ_DIR).glob("*.yml")):
            data = load_yaml(path)
            for position, raw in enumerate(data["entries"]):
                entry = kb.entries[raw["id"]]
                imported.append((entry.id, entry.category, position, entry_dict(entry, list(raw))))
        contacts_in: list[tuple[str, dict[str, Any]]] = []
        if (source / CONTACTS_FILE).exists():
            data = load_yaml(source / CONTACTS_FILE) or {}
            for raw in data.get("contacts") or []:
                contacts_in.append((raw["id"], contact_dict(kb.contacts[raw["id"]], list(raw))))
        now = self.clock()
        with self.db.transaction(timeout=BULK_SECONDS) as session:
            rows = {r.entry_id: r for r in self._rows(session)}
            changed: list[str] = []
            old_contacts = {c.contact_id: c for c in session.execute(select(KbContact)).scalars()}
            contact_changes: list[tuple[str, dict[str, Any] | None]] = []
            for position, (contact_id, content) in enumerate(contacts_in):
                contact_row = old_contacts.pop(contact_id, None)
                if contact_row is None:
                    contact_row = KbContact(contact_id=contact_id, published=None)
                    session.add(contact_row)
                if contact_row.published != content:
                    contact_changes.append((CONTACT_PREFIX + contact_id, content))
                contact_row.position, contact_row.published, contact_row.draft = position, content, None
                contact_row.draft_by, contact_row.draft_at, contact_row.updated_at = None, None, now
            for contact_id, gone in old_contacts.items():
                contact_changes.append((CONTACT_PREFIX + contact_id, None))
                session.delete(gone)
            seen = set()
            for entry_id, category, position, content in imported:
                seen.add(entry_id)
                row = rows.get(entry_id)
                if row is None:
                    row = KbEntry(entry_id=entry_id, category=category, position=position, published=None,
                                  draft=None, draft_retire=False, updated_at=now)
                    session.add(row)
                if row.published != content:
                    changed.append(entry_id)
                row.category, row.position, row.published = category, position, content
                row.draft, row.draft_retire, row.draft_by, row.draft_at = None, False, None, None
                row.updated_at = now
            for entry_id, row in rows.items():
                if entry_id not in seen:
                    if row.published is not None:
                        changed.append(entry_id)
                    session.delete(row)
            session.flush()
            publication = self._publish_rows(session, [(e, c) for e, _, _, c in imported if e in changed]
                                             + [(e, None) for e in rows if e not in seen and e in changed]
                                             + contact_changes, actor, note, now, version=None)
            _audit(session, actor, "kb.import", str(source), {"entries": len(imported), "changed": len(changed),
                                                               "publication": publication.id}, now)
        return publication

    def seed(self, actor: str = "system") -> Publication | None:
        """First start with editing on: the database KB starts as the shipped files. Only one
        process seeds (the others find the publication and do nothing)."""
        if self.latest(effective=False) is not None:
            return None
        try:
            return self.import_dir(self.knowledge_dir, actor=actor, note="initial import")
        except Exception:
            if self.latest(effective=False) is not None:  # a concurrent process seeded first
                return None
            raise

    # -- drafts -------------------------------------------------------------------------

    def validate_draft(self, extra: dict[str, dict[str, Any]] | None = None,
                       extra_contacts: dict[str, dict[str, Any]] | None = None) -> list[Problem]:
        """``kb validate`` over live + drafts (+ ``extra``: an unsaved draft being typed)."""
        with self.db.read(timeout=BULK_SECONDS) as session:
            rows = self._rows(session)
            contacts = self._contact_rows(session)
        for contact_id, content in (extra_contacts or {}).items():
            found = next((c for c in contacts if c.contact_id == contact_id), None)
            if found is None:
                found = KbContact(contact_id=contact_id, position=len(contacts), published=None)
                contacts.append(found)
            found.draft = content
        if extra:
            rows = [self._detached(r) for r in rows]
            known = {r.entry_id: r for r in rows}
            for entry_id, content in extra.items():
                row = known.get(entry_id)
                if row is None:
                    row = KbEntry(entry_id=entry_id, category=str(content.get("category")), position=10 ** 6,
                                  published=None, draft_retire=False)
                    rows.append(row)
                row.draft, row.draft_retire = content, False
        with tempfile.TemporaryDirectory(prefix=".validate-", dir=self._tmp_root()) as tmp:
            target = Path(tmp) / "kb"
            self._write_dir(target, rows, contacts)
            return validate_knowledge_base(target)

    def _tmp_root(self) -> Path:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        return self.work_dir

    def _write_dir(self, target: Path, rows: list[KbEntry], contacts: list[KbContact] | None = None) -> None:
        if contacts is None:
            with self.db.read() as session:
                contacts = self._contact_rows(session)
        shutil.copytree(self.knowledge_dir, target, dirs_exist_ok=True, ignore=self._ignore)
        (target / FAQ_DIR).mkdir(parents=True, exist_ok=True)
        for rel, text in self._files(rows, draft=True, contacts=contacts).items():
            (target / rel).write_text(text, encoding="utf-8")

    @staticmethod
    def _detached(row: KbEntry) -> KbEntry:
        return KbEntry(entry_id=row.entry_id, category=row.category, position=row.position,
                       published=row.published, draft=row.draft, draft_retire=row.draft_retire,
                       draft_by=row.draft_by, draft_at=row.draft_at)

    def _key_order(self, model: type[_Row], kind: str, new_id: str, edited_id: str | None,
                   content: dict[str, Any]) -> list[str]:
        """The keys' order to store a draft in (the stored row's, else the editor's); refuses creating
        an id that exists (409) and editing one that does not (404)."""
        with self.db.read() as session:
            row = session.get(model, new_id)
            if edited_id is None and row is not None:
                raise KbEditError(409, f"id: {kind} {new_id!r} already exists", field="id")
            if edited_id is not None and row is None:
                raise KbEditError(404, f"no {kind} {edited_id!r}")
            return list((row.draft or row.published or {}) if row else {}) or list(content)

    def save_draft(self, entry_id: str | None, content: Any, actor: str,
                   expected: str | None = None) -> dict[str, Any] | None:
        """Store a draft (new entry when ``entry_id`` is None). Refused with every problem of the
        entry, by field, when it would not pass ``kb validate``; problems elsewhere do not block.
        ``expected``: the etag of the view the editor changed (412 when the entry changed since)."""
        entry, problems = check_entry(content)
        if entry is None:
            raise KbEditError(422, "the entry is not valid", problems)
        if entry_id is not None and entry.id != entry_id:
            raise KbEditError(422, "id: an entry's id never changes once published", field="id")
        stored = entry_dict(entry, self._key_order(KbEntry, "entry", entry.id, entry_id, content))
        problems = [p for p in self.validate_draft({entry.id: stored})
                    if p.severity == "error" and (p.entry == entry.id or p.file.endswith(f"/{entry.category}.yml")
                                                   and not p.entry)]
        if problems:
            raise KbEditError(422, "the entry is not valid", problems)
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get(KbEntry, entry.id, with_for_update=True)
            if row is not None and entry_id is None:  # created by another editor since _key_order looked
                raise KbEditError(409, f"id: entry {entry.id!r} already exists", field="id")
            if row is not None:
                _unchanged(row, expected)
            if row is None:
                position = session.execute(select(func.count()).select_from(KbEntry)
                                           .where(KbEntry.category == entry.category)).scalar() or 0
                row = KbEntry(entry_id=entry.id, category=entry.category, position=position, published=None)
                session.add(row)
            elif row.category != entry.category:
                raise KbEditError(422, "category: an entry's category never changes (its id starts with it)",
                                  field="category")
            row.draft = None if stored == row.published else stored
            row.draft_retire, row.draft_by, row.draft_at, row.updated_at = False, actor, now, now
            _audit(session, actor, "kb.draft", entry.id, {"new": row.published is None}, now)
        return self.entry(entry.id)

    def retire(self, entry_id: str, actor: str, expected: str | None = None) -> dict[str, Any] | None:
        """Draft that removes the entry from the live KB at the next publish."""
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get(KbEntry, entry_id, with_for_update=True)
            if row is None:
                raise KbEditError(404, f"no entry {entry_id!r}")
            _unchanged(row, expected)
            row.draft, row.draft_retire, row.draft_by, row.draft_at = None, True, actor, now
            _audit(session, actor, "kb.retire", entry_id, {}, now)
        return self.entry(entry_id)

    def discard(self, entry_id: str, actor: str, expected: str | None = None) -> dict[str, Any] | None:
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get(KbEntry, entry_id, with_for_update=True)
            if row is None:
                raise KbEditError(404, f"no entry {entry_id!r}")
            _unchanged(row, expected)
            if row.published is None and not session.execute(
                    select(KbRevision.id).where(KbRevision.entry_id == entry_id).limit(1)).first():
                session.delete(row)  # a new entry never published: nothing left
            else:
                row.draft, row.draft_retire, row.draft_by, row.draft_at = None, False, None, None
            _audit(session, actor, "kb.discard", entry_id, {}, now)
        return self.entry(entry_id)

    def revision_content(self, entry_id: str, revision_id: int) -> dict[str, Any] | None:
        """An earlier published revision's content (None: that revision retired the entry), to roll back to with
        ``publish(..., restore={entry_id: content})``."""
        with self.db.read() as session:
            revision = session.get(KbRevision, revision_id)
            if revision is None or revision.entry_id != entry_id:
                raise KbEditError(404, f"entry {entry_id!r} has no revision {revision_id}")
            return revision.content

    def pending_drafts(self) -> list[dict[str, Any]]:
        """Every pending draft (entries, then contacts as ``contact:<id>``) with its etag and writer: the publish
        list shows them, sends the etags back (``publish(reviewed=...)``) and, under the four-eyes rule, leaves
        out the editor's own."""
        with self.db.read() as session:
            entries = [{"id": r.entry_id, "etag": entry_etag(r), "draft_by": r.draft_by} for r in session.execute(
                select(KbEntry).where((KbEntry.draft.is_not(None)) | KbEntry.draft_retire)).scalars()]
            contacts = [{"id": CONTACT_PREFIX + c.contact_id, "etag": contact_etag(c), "draft_by": c.draft_by}
                        for c in session.execute(select(KbContact).where(KbContact.draft.is_not(None))).scalars()]
        return entries + contacts

    def pending(self) -> list[str]:
        """Ids with a draft; contacts as ``contact:<id>``."""
        return [draft["id"] for draft in self.pending_drafts()]

    # -- contact directory --------------------------------------------------------------

    def contacts(self, stale_days: int = 30) -> list[dict[str, Any]]:
        today = self.clock().date()
        with self.db.read() as session:
            rows = self._contact_rows(session)
        out = []
        for row in rows:
            content = row.draft or row.published or {}
            verified = content.get("last_verified")
            age = (today - dt.date.fromisoformat(verified)).days if verified else None
            out.append({"id": row.contact_id, "published": row.published, "draft": row.draft,
                        "status": "draft" if row.draft is not None else "live", "draft_by": row.draft_by,
                        "days_since_verified": age, "stale": age is not None and age > stale_days})
        return out

    def save_contact_draft(self, contact_id: str | None, content: Any, actor: str) -> dict[str, Any]:
        """A contact change as a draft (published with the next publish); refused by field when invalid."""
        if not isinstance(content, dict):
            raise KbEditError(422, "a contact must be a JSON object")
        try:
            contact = Contact.model_validate(content)
        except ValidationError as exc:
            raise KbEditError(422, "the contact is not valid", [
                Problem(CONTACTS_FILE, str(content.get("id") or ""), ".".join(str(p) for p in e["loc"]), e["msg"])
                for e in exc.errors()]) from None
        if contact_id is not None and contact.id != contact_id:
            raise KbEditError(422, "id: a contact's id never changes (answers refer to it)", field="id")
        stored = contact_dict(contact, self._key_order(KbContact, "contact", contact.id, contact_id, content))
        problems = [p for p in self.validate_draft(extra_contacts={contact.id: stored})
                    if p.severity == "error" and p.file == CONTACTS_FILE and p.entry == contact.id]
        if problems:
            raise KbEditError(422, "the contact is not valid", problems)
        now = self.clock()
        with self.db.transaction() as session:
            row = session.get(KbContact, contact.id)
            if row is None:
                count = session.execute(select(func.count()).select_from(KbContact)).scalar() or 0
                row = KbContact(contact_id=contact.id, position=count, published=None)
                session.add(row)
            row.draft = None if stored == row.published else stored
            row.draft_by, row.draft_at, row.updated_at = actor, now, now
            _audit(session, actor, "kb.contact_draft", contact.id, {}, now)
        return next(c for c in self.contacts() if c["id"] == contact.id)

    # -- publish ------------------------------------------------------------------------

    @staticmethod
    def _check_reviewed(reviewed: dict[str, str], rows: list[KbEntry], contacts: list[KbContact]) -> None:
        """409 when a draft listed for review (entry or contact, with the etag the editor saw) changed since; 422
        for an id that names nothing."""
        tags = {r.entry_id: (entry_etag(r), r.draft_by) for r in rows} | \
            {CONTACT_PREFIX + c.contact_id: (contact_etag(c), c.draft_by) for c in contacts}
        unknown = sorted(set(reviewed) - set(tags))
        if unknown:
            raise KbEditError(422, f"seen: no entry or contact {', '.join(unknown[:10])}", field="seen")
        changed = sorted(e for e, etag in reviewed.items() if tags[e][0] != etag)
        if changed:
            who = ", ".join(f"{e} (by {tags[e][1] or 'a publish'})" for e in changed)
            raise KbEditError(409, f"entries: {who} changed since you reviewed the list: review and publish again",
                              field="entries")

    def publish(self, actor: str, entry_ids: list[str] | None = None, note: str = "",
                before_commit: Callable[[KnowledgeBase], None] | None = None,
                four_eyes: bool = False, effective_from: dt.datetime | None = None,
                restore: dict[str, dict[str, Any] | None] | None = None,
                reviewed: dict[str, str] | None = None) -> tuple[Publication, KnowledgeBase]:
        """Make the drafts (all, or only ``entry_ids``) live as a new KB version.

        ``reviewed``: {entry id: etag} of the drafts as the editor reviewed them (the console's publish list); one saved
        again since is a 409 naming it, so its newer form is not published unseen.

        ``restore``: a rollback, {entry id: earlier content, None to retire}, published instead of the entries'
        drafts; a draft pending on such an entry stays pending (another editor's work in progress). Before, a
        rollback was "save the old content as the draft, publish it": it replaced the pending draft, and the
        editor who wrote it lost it without a word.

        The resulting KB must pass ``kb validate`` (else 422 with every problem).
        ``before_commit(kb)`` runs with the new KB loaded but before the version row is
        committed: the publishing process builds and swaps its index there, so by the
        time other processes see the row, the KB it names exists and is valid."""
        scheduled = effective_from is not None and effective_from > self.clock()
        at = effective_from if scheduled and effective_from is not None else self.clock()
        with self.db.read(timeout=BULK_SECONDS) as session:
            rows = [self._detached(r) for r in self._rows(session)]
            contacts = self._contact_rows(session)
            since = self.clock() - _SCHEDULE_WINDOW
            base = _schedule_fingerprint(session, since)
            if reviewed:
                self._check_reviewed(reviewed, rows, contacts)
            # Publications scheduled to take effect after this one. The stored live content already holds their
            # changes (written when they were scheduled), so this one is built on what is in effect at its own
            # time instead: before, an immediate publish of any entry served every scheduled change at once
            # (a rule due on the 5th went live on the 3rd), and each such publication is rebuilt on this one.
            if not scheduled:  # after every publication so far, whatever this host's clock says (_publish_rows)
                at = self._not_before_last(session, at)
            later = session.execute(select(KbPublication.id, KbPublication.entries).where(_scheduled_after(at))).all()
            if later:
                self._put_state(rows, contacts, self._state(session, at))
        kept: dict[str, tuple[Any, bool, dt.datetime | None]] = {}  # restored entries' pending drafts, as they were
        for row in rows:
            if restore and row.entry_id in restore:
                kept[row.entry_id] = (row.draft, row.draft_retire, row.draft_at)
                content = restore[row.entry_id]
                row.draft, row.draft_retire = content, content is None
        if restore and set(restore) - set(kept):
            raise KbEditError(404, f"no entry {', '.join(sorted(set(restore) - set(kept)))}")
        pending = [r for r in rows if r.draft is not None or r.draft_retire]
        pending_contacts = [c for c in contacts if c.draft is not None]
        if entry_ids is not None:
            wanted_contacts = {e[len(CONTACT_PREFIX):] for e in entry_ids if e.startswith(CONTACT_PREFIX)}
            for contact in contacts:
                if contact.contact_id not in wanted_contacts:
                    contact.draft = None
            pending_contacts = [c for c in pending_contacts if c.contact_id in wanted_contacts]
            entry_ids = [e for e in entry_ids if not e.startswith(CONTACT_PREFIX)] + \
                [e for e in entry_ids if e.startswith(CONTACT_PREFIX) and e[len(CONTACT_PREFIX):] not in
                 {c.contact_id for c in pending_contacts}]
            unknown = sorted(set(entry_ids) - {r.entry_id for r in pending})
            if unknown:
                raise KbEditError(422, f"entries: no draft for {', '.join(unknown)}", field="entries")
            pending = [r for r in pending if r.entry_id in set(entry_ids)]
            for row in rows:
                if row not in pending:
                    row.draft, row.draft_retire = None, False
        if not pending and not pending_contacts:
            raise KbEditError(409, "nothing to publish: no drafts")
        if later:  # a draft of an entry a later publication changes was written on that future content
            due = {e for _, entries in later for e in entries or []}
            clash = sorted(({r.entry_id for r in pending} | {CONTACT_PREFIX + c.contact_id for c in pending_contacts})
                           & due)
            if clash:
                raise KbEditError(409, f"entries: {', '.join(clash)} changed by a publication scheduled after this "
                                  "one: schedule this change at or after it", field="entries")
        if four_eyes:
            own = sorted([r.entry_id for r in pending if r.draft_by == actor]
                         + [CONTACT_PREFIX + c.contact_id for c in pending_contacts if c.draft_by == actor])
            if own:
                raise KbEditError(403, "four-eyes rule: another editor must review and publish your drafts ("
                                  + ", ".join(own) + ")", field="entries")
        tmp = Path(tempfile.mkdtemp(prefix=".publish-", dir=self._tmp_root()))
        try:
            self._write_dir(tmp, rows, contacts)
            from bot.kb.loader import knowledge_version

            final = self.work_dir / knowledge_version(tmp)
            if not final.exists():
                tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        try:
            kb = load_knowledge_base(final)  # exactly `kb validate`; the KB keeps its final root
        except KnowledgeBaseError as exc:
            raise KbEditError(422, "the KB would not be valid", exc.problems) from None
        version = kb.version
        # Each publication scheduled after this one is rebuilt on it, and must stay valid (scheduled: "retire B";
        # now: "A follows up with B" is valid today and not on B's day); checked before anything commits, its new
        # version written in the same transaction. Before, the rebuild ran after the commit: an invalid one was a
        # 500 for a publish that had gone through, and a failed one left the old version to be served on its day,
        # undoing this change.
        rebuilt: dict[int, str] = {}
        if later:
            overlay = {r.entry_id: None if r.draft_retire else r.draft for r in pending} | \
                {CONTACT_PREFIX + c.contact_id: c.draft for c in pending_contacts}
            for publication_id, _ in later:
                try:
                    rebuilt[publication_id] = load_knowledge_base(
                        self.materialise_publication(publication_id, overlay)).version
                except KnowledgeBaseError as exc:
                    raise KbEditError(422, f"the publication scheduled after this one ({publication_id}) would not be "
                                      "valid with this change", exc.problems) from None
        if before_commit is not None and not scheduled:
            before_commit(kb)
        now = self.clock()
        snapshot = {r.entry_id: r for r in pending}
        with self.db.transaction(timeout=BULK_SECONDS) as session:
            # What is committed is exactly what was built, validated and swapped in above; whatever changed since
            # the snapshot is a 409 (publish again). Before: two processes publishing at once each built a version
            # holding the other's entries as they were, and one change was never served; a draft saved or
            # discarded during the publish was published unreviewed (or retired the entry) while the servers
            # served the snapshot.
            _lock_unchanged(session, since, base, "publish again", "entries")
            changes: list[tuple[str, dict[str, Any] | None]] = []
            drafted: dict[str, str | None] = {}
            stale: list[str] = []
            for row in session.execute(select(KbEntry).where(KbEntry.entry_id.in_(snapshot))
                                       .with_for_update()).scalars():
                seen = snapshot[row.entry_id]
                if (row.draft, row.draft_retire, row.draft_at) != kept.get(row.entry_id, (seen.draft, seen.draft_retire,
                                                                                          seen.draft_at)):
                    stale.append(row.entry_id)
                    continue
                content = None if seen.draft_retire else seen.draft
                changes.append((row.entry_id, content))
                drafted[row.entry_id] = actor if row.entry_id in kept else row.draft_by
                row.published = content
                if row.entry_id not in kept or (row.draft == content if content is not None else row.draft_retire):
                    row.draft, row.draft_retire, row.draft_by, row.draft_at = None, False, None, None
                row.updated_at = now
            for contact in pending_contacts:
                stored = session.get(KbContact, contact.contact_id, with_for_update=True)
                assert stored is not None  # contacts are never deleted outside import
                if stored.draft != contact.draft:
                    stale.append(CONTACT_PREFIX + stored.contact_id)
                    continue
                changes.append((CONTACT_PREFIX + stored.contact_id, contact.draft))
                drafted[CONTACT_PREFIX + stored.contact_id] = stored.draft_by
                stored.published, stored.draft, stored.draft_by, stored.draft_at = contact.draft, None, None, None
                stored.updated_at = now
            if stale:
                raise KbEditError(409, f"entries: {', '.join(sorted(stale))} changed while publishing (saved or "
                                  "discarded meanwhile): review and publish again", field="entries")
            for publication_id, rebuilt_version in rebuilt.items():
                session.execute(update(KbPublication).where(KbPublication.id == publication_id)
                                .values(version=rebuilt_version))
            # an immediate one takes effect when it was built: published at ``at`` (its KB leaves out what takes
            # effect after ``at``; committed later, a scheduled time passing meanwhile would rank it after that)
            publication = self._publish_rows(session, changes, actor, note, now if scheduled else at, version,
                                             effective_from if scheduled else None, drafted)
            _audit(session, actor, "kb.publish", version, {"publication": publication.id,
                                                           "entries": sorted(e for e, _ in changes)}, now)
        return publication, kb

    def cancel_scheduled(self, publication_id: int, actor: str) -> tuple[Publication, list[str]]:
        """Take back a publication that is not in effect yet. Before, a scheduled change could only be waited for:
        an urgent fix of an entry it changes was refused (409, "schedule it at or after it") until its day, and a
        scheduled change found wrong went live anyway.

        Its changes go back to being drafts under whoever wrote them (``KbRevision.drafted_by``), so nothing typed
        is lost — except where that would overwrite newer work: an entry with a draft pending keeps it, and one a
        later scheduled publication also changes gets no draft (that later content was written on this one;
        publishing the old draft would undo it). Every cancelled content is kept in the audit entry
        (``kb.unschedule``) either way. The entries' stored live content becomes what the remaining publications
        make, and every publication scheduled after it is rebuilt without it and must stay valid (422 before
        anything commits: a later one may follow up an entry this one adds). Refused (409): one in effect or due
        within ``CANCEL_MARGIN`` (roll back instead), and one a publish or another cancel changed meanwhile.
        Returns the publication and the entries whose cancelled content went to the audit entry only."""
        now = self.clock()
        since = now - _SCHEDULE_WINDOW
        with self.db.read(timeout=BULK_SECONDS) as session:
            row = session.get(KbPublication, publication_id)
            if row is None:
                raise KbEditError(404, f"no publication {publication_id}", field="publication")
            self._cancellable(row, now)
            cancelled = _publication(row)
            base = _schedule_fingerprint(session, since)
            later = {pid: entries or [] for pid, entries in session.execute(
                select(KbPublication.id, KbPublication.entries).where(or_(
                    KbPublication.effective_from > row.effective_from,
                    and_(KbPublication.effective_from == row.effective_from, KbPublication.id > row.id))))}
        rebuilt: dict[int, str] = {}
        for later_id in later:
            try:
                rebuilt[later_id] = load_knowledge_base(self.materialise_publication(later_id, exclude=row.id)).version
            except KnowledgeBaseError as exc:
                raise KbEditError(422, f"the publication scheduled after it ({later_id}) would not be valid without "
                                  "it: cancel that one first", exc.problems, field="publication") from None
            except KbEditError as exc:  # cancelled meanwhile
                raise KbEditError(409, "another publish or cancel went through meanwhile: cancel again",
                                  field="publication") from exc
        superseded = {entry_id for entries in later.values() for entry_id in entries}
        with self.db.transaction(timeout=BULK_SECONDS) as session:
            _lock_unchanged(session, since, base, "cancel again", "publication")
            now = self.clock()  # the rebuild took a while: its time may have come
            self._cancellable(row, now)
            revisions = list(session.execute(select(KbRevision).where(KbRevision.publication_id == publication_id)
                                             .order_by(KbRevision.id)).scalars())
            remaining = self._state(session, dt.datetime.max, exclude=publication_id)
            contents: dict[str, Any] = {}
            set_aside: list[str] = []
            for revision in revisions:
                key, content = revision.entry_id, revision.content
                contents[key] = content
                stored: KbEntry | KbContact | None
                if key.startswith(CONTACT_PREFIX):
                    stored = session.get(KbContact, key[len(CONTACT_PREFIX):], with_for_update=True)
                else:
                    stored = session.get(KbEntry, key, with_for_update=True)
                if stored is None:
                    continue
                stored.published = remaining.get(key)
                stored.updated_at = now
                pending = stored.draft is not None or bool(getattr(stored, "draft_retire", False))
                if not pending and key not in superseded and content != stored.published:
                    stored.draft, stored.draft_at = content, now
                    stored.draft_by = revision.drafted_by or revision.author
                    if isinstance(stored, KbEntry):
                        stored.draft_retire = content is None
                elif content != stored.published:
                    set_aside.append(key)
                session.delete(revision)
            session.execute(delete(KbPublication).where(KbPublication.id == publication_id))
            for later_id, version in rebuilt.items():
                session.execute(update(KbPublication).where(KbPublication.id == later_id).values(version=version))
            _audit(session, actor, "kb.unschedule", cancelled.version,
                   {"publication": publication_id, "entries": cancelled.entries,
                    "effective_from": row.effective_from.isoformat() + "Z" if row.effective_from else None,
                    "contents": contents, "set_aside": set_aside}, now)
        return cancelled, set_aside

    @staticmethod
    def _cancellable(row: KbPublication, now: dt.datetime) -> None:
        if row.effective_from is None or row.effective_from <= now + CANCEL_MARGIN:
            raise KbEditError(409, f"publication {row.id} is in effect (or due within a minute): roll its entries "
                              "back instead", field="publication")

    def _publish_rows(self, session: Session, changes: list[tuple[str, dict[str, Any] | None]], actor: str, note: str,
                      now: dt.datetime, version: str | None, effective_from: dt.datetime | None = None,
                      drafted: dict[str, str | None] | None = None) -> Publication:
        # Publications apply in the order they take effect, an immediate one at its published_at: never before
        # an earlier publication's, or a host whose clock runs behind another's would publish "into the past"
        # and its change would rank below the one before it (callers hold the publications' write lock).
        now = self._not_before_last(session, now)
        row = KbPublication(version=version or "pending", published_by=actor, published_at=now, note=note[:200],
                            entries=sorted(e for e, _ in changes), effective_from=effective_from)
        session.add(row)
        session.flush()
        for entry_id, content in changes:
            session.add(KbRevision(entry_id=entry_id, publication_id=row.id, content=content, author=actor,
                                   drafted_by=(drafted or {}).get(entry_id), created_at=now))
        session.flush()
        if version is None:  # import: the version is the hash of what was just written
            with tempfile.TemporaryDirectory(prefix=".import-", dir=self._tmp_root()) as tmp:
                self._write_dir(Path(tmp) / "kb", self._rows(session), self._contact_rows(session))
                from bot.kb.loader import knowledge_version

                row.version = knowledge_version(Path(tmp) / "kb")
        return _publication(row)
