"""Loads and validates the knowledge base directory.

Every problem is reported with the file, the entry id and the field, so a KB
editor can fix it without reading Python tracebacks.
"""
from __future__ import annotations

from bot.yaml_files import YAMLError, load_yaml

import datetime as dt
import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from bot.kb.schema import CONTACT_REF, Contact, Entry
from bot.regions import REGIONS_FILE, Gazetteer
from bot.text import normalise_kb_text

FAQ_DIR = "faq"
INTENTS_FILE = "intents.yml"
SYNONYMS_FILE = "synonyms.yml"
USERDICT_FILE = "userdict.txt"
SAFETY_FILE = "safety.yml"
CONTACTS_FILE = "contacts.yml"
CONTACT_STALE_DAYS = 30  # default of settings.kb.contact_stale_days


@dataclass(frozen=True)
class Problem:
    file: str
    entry: str
    field: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}: entry {self.entry or '-'}: field {self.field or '-'}: {self.message}"


class KnowledgeBaseError(Exception):
    """The KB cannot be served; ``problems`` says exactly where and why."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class KnowledgeBase:
    root: Path
    entries: dict[str, Entry]
    intent_examples: dict[str, list[str]]
    version: str
    problems: list[Problem] = field(default_factory=list)
    contacts: dict[str, Contact] = field(default_factory=dict)  # the contact directory (contacts.yml)

    @property
    def covers(self) -> dict[str, frozenset[str]]:
        """General entry → the entries its answer covers (``covers`` in the FAQ files)."""
        return {e.id: frozenset(e.covers) for e in self.entries.values() if e.covers}

    @property
    def synonyms_path(self) -> Path:
        return self.root / SYNONYMS_FILE

    @property
    def userdict_path(self) -> Path:
        return self.root / USERDICT_FILE

    @property
    def safety_path(self) -> Path:
        return self.root / SAFETY_FILE

    @property
    def regions_path(self) -> Path:
        return self.root / REGIONS_FILE

    @property
    def variant_regions(self) -> list[str]:
        """Every region some entry has a variant for: the buttons offered when the bot asks where."""
        seen: dict[str, None] = {}
        for entry in self.entries.values():
            for region in entry.variant_regions:
                seen.setdefault(region, None)
        return list(seen)

    def get(self, entry_id: str) -> Entry | None:
        return self.entries.get(entry_id)


THRESHOLDS_DIR = "thresholds"


def knowledge_version(root: Path) -> str:
    """Content hash of every KB file: changes whenever an editor changes anything.

    Calibrated thresholds are configuration about the KB, not content, and are
    left out: recalibrating must not invalidate the index or the KB version."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.relative_to(root).parts[0] == THRESHOLDS_DIR:
            continue
        if path.is_file() and path.suffix in {".yml", ".yaml", ".txt"}:
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _read_yaml(path: Path, root: Path, problems: list[Problem]) -> object | None:
    rel = str(path.relative_to(root))
    try:
        data: object = load_yaml(path)
        return data
    except (YAMLError, UnicodeDecodeError) as exc:
        problems.append(Problem(rel, "", "", f"cannot parse: {exc}"))
        return None


def _field_name(loc: tuple[object, ...]) -> str:
    return ".".join(str(part) for part in loc)


# One FAQ file's entries and own problems, by its name, then by its content (see ``_file_entries``): the
# last two contents of each file (the live one and a draft's), so memory stays within twice the KB.
_FILES: dict[str, OrderedDict[bytes, tuple[list[Entry], list[Problem]]]] = {}
_FILES_KEPT = 2
_FILES_LOCK = threading.Lock()


def _file_entries(path: Path, root: Path) -> tuple[list[Entry], list[Problem]]:
    """The valid entries of one FAQ file and the problems found in it alone, memoised by the file's
    bytes. Why: a publish writes the whole KB and loads it back (``kb validate`` exactly), and a draft
    save validates it, but an edit changes one file. At 10,000 entries, parsing and validating every file
    took 11.5 s of a 26 s publish; entries are frozen, so versions share the unchanged files' ones."""
    rel = str(path.relative_to(root))
    try:
        content = path.read_bytes()
    except OSError as exc:
        return [], [Problem(rel, "", "", f"cannot read: {exc}")]
    digest = hashlib.blake2b(content, digest_size=20).digest()
    with _FILES_LOCK:
        known = _FILES.setdefault(rel, OrderedDict())
        if digest in known:
            known.move_to_end(digest)
            return known[digest]
    problems: list[Problem] = []
    entries: list[Entry] = []
    data = _read_yaml(path, root, problems)
    if data is not None and (not isinstance(data, dict) or not isinstance(data.get("entries"), list)):
        problems.append(Problem(rel, "", "entries", "file must be a mapping with an 'entries' list"))
    elif isinstance(data, dict):
        category = data.get("category")
        if category != path.stem:
            problems.append(Problem(rel, "", "category", f"must be '{path.stem}' (the file name), got {category!r}"))
        for position, raw in enumerate(data["entries"]):
            label = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") else f"#{position + 1}"
            try:
                entry = Entry.model_validate(raw)
            except ValidationError as exc:
                for err in exc.errors():
                    problems.append(Problem(rel, label, _field_name(err["loc"]), err["msg"]))
                continue
            if entry.category != path.stem:
                problems.append(Problem(rel, entry.id, "category", f"must be '{path.stem}', got '{entry.category}'"))
            if not entry.id.startswith(entry.category + "."):
                problems.append(Problem(rel, entry.id, "id", f"must start with '{entry.category}.'"))
            entries.append(entry)
    with _FILES_LOCK:
        known[digest] = (entries, problems)
        while len(known) > _FILES_KEPT:
            known.popitem(last=False)
    return entries, problems


def forget_parsed_files() -> None:
    """Drop the memoised FAQ files and question keys: a benchmark of ``kb validate`` (a fresh process)
    repeated in one process would otherwise measure memo hits."""
    with _FILES_LOCK:
        _FILES.clear()
    normalise_kb_text.cache_clear()


def _load_entries(root: Path, problems: list[Problem], today: dt.date) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    entry_files: dict[str, str] = {}
    faq_dir = root / FAQ_DIR
    files = sorted(faq_dir.glob("*.yml")) if faq_dir.is_dir() else []
    if not files:
        problems.append(Problem(f"{FAQ_DIR}/", "", "", "no FAQ files (*.yml) found"))
    for path in files:
        rel = str(path.relative_to(root))
        found, own = _file_entries(path, root)
        problems.extend(own)
        for entry in found:
            if entry.id in entries:
                problems.append(Problem(rel, entry.id, "id", f"duplicate id, also in {entry_files[entry.id]}"))
                continue
            entries[entry.id] = entry
            entry_files[entry.id] = rel
    _check_cross_entry(entries, entry_files, problems, today)
    _check_regions(root, entries, entry_files, problems)
    return entries


def _check_regions(root: Path, entries: dict[str, Entry], files: dict[str, str], problems: list[Problem]) -> None:
    """Regions and variants must name places the gazetteer knows, once each."""
    uses_regions = any(e.region or e.variants for e in entries.values())
    path = root / REGIONS_FILE
    if not path.exists():
        if uses_regions:
            problems.append(Problem(REGIONS_FILE, "", "", "missing: entries use regions, so the gazetteer is required"))
        return
    try:
        gazetteer = Gazetteer.from_file(path)
    except (YAMLError, KeyError, TypeError, AttributeError) as exc:
        problems.append(Problem(REGIONS_FILE, "", "provinces", f"cannot read the gazetteer: {exc}"))
        return
    for entry_id, entry in entries.items():
        rel = files[entry_id]
        if entry.region and entry.region not in gazetteer.regions:
            problems.append(Problem(rel, entry_id, "region", f"unknown region {entry.region!r} (see {REGIONS_FILE})"))
        if entry.region and entry.variants:
            problems.append(Problem(rel, entry_id, "variants",
                                    "a regional entry cannot have variants: drop `region` (the entry's answer is "
                                    "the nationwide default) or the variants"))
        seen: set[str] = set()
        for index, variant in enumerate(entry.variants):
            if variant.region not in gazetteer.regions:
                problems.append(Problem(rel, entry_id, f"variants.{index}.region",
                                        f"unknown region {variant.region!r} (use a full name from {REGIONS_FILE}, "
                                        f"e.g. 北京市)"))
            if variant.region in seen:
                problems.append(Problem(rel, entry_id, f"variants.{index}.region",
                                        f"duplicate variant for {variant.region!r}"))
            seen.add(variant.region)


def _check_cross_entry(entries: dict[str, Entry], files: dict[str, str], problems: list[Problem],
                       today: dt.date) -> None:
    seen_questions: dict[str, str] = {}
    for entry_id, entry in entries.items():
        rel = files[entry_id]
        for lang in ("zh", "en"):
            for index, question in enumerate(getattr(entry.questions, lang)):
                key = normalise_kb_text(question).rstrip("?？!！。. ")
                owner = seen_questions.get(key)
                if owner is not None and owner != entry_id:
                    problems.append(Problem(rel, entry_id, f"questions.{lang}.{index}",
                                            f"question {question!r} is also a question of entry {owner}"))
                elif owner == entry_id:  # a paste twice: harmless to answers, but one copy is clutter to edit
                    problems.append(Problem(rel, entry_id, f"questions.{lang}.{index}",
                                            f"question {question!r} is repeated in this entry", severity="warning"))
                seen_questions.setdefault(key, entry_id)
        for index, target in enumerate(entry.follow_ups):
            if target not in entries:
                problems.append(Problem(rel, entry_id, f"follow_ups.{index}", f"unknown entry id {target!r}"))
        for index, target in enumerate(entry.covers):
            if target not in entries or target == entry_id:
                problems.append(Problem(rel, entry_id, f"covers.{index}",
                                        f"unknown entry id {target!r}" if target != entry_id else "an entry cannot cover itself"))
            elif entry_id in _covered_from(entries, target):  # A covers B and B (through others) A: a cycle
                problems.append(Problem(rel, entry_id, f"covers.{index}",
                                        f"{target} covers {entry_id} too (through covers): only the general entry "
                                        "covers the specific one"))
        if entry.is_expired(today):
            problems.append(Problem(rel, entry_id, "valid_until",
                                    f"expired on {entry.valid_until}: update or remove the entry",
                                    severity="expired"))


def _covered_from(entries: dict[str, Entry], start: str) -> set[str]:
    """Every entry ``start`` covers, directly or through entries it covers."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in entries[todo.pop()].covers:
            if target in entries and target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _load_intents(root: Path, problems: list[Problem]) -> dict[str, list[str]]:
    path = root / INTENTS_FILE
    if not path.exists():
        problems.append(Problem(INTENTS_FILE, "", "", "missing (Rasa NLU intents file)"))
        return {}
    data = _read_yaml(path, root, problems)
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("nlu"), list):
        problems.append(Problem(INTENTS_FILE, "", "nlu", "must be a Rasa 3.x NLU file with an 'nlu' list"))
        return {}
    intents: dict[str, list[str]] = {}
    for block in data["nlu"]:
        if not isinstance(block, dict) or "intent" not in block:
            continue  # synonyms/regex/lookup blocks are valid Rasa but not ours
        name = str(block["intent"])
        examples = block.get("examples")
        if not isinstance(examples, str):
            problems.append(Problem(INTENTS_FILE, name, "examples", "must be a '|' block of '- example' lines"))
            continue
        lines = [line.strip()[1:].strip() for line in examples.splitlines() if line.strip().startswith("-")]
        lines = [line for line in lines if line]
        if not lines:
            problems.append(Problem(INTENTS_FILE, name, "examples", "no examples"))
        intents.setdefault(name, []).extend(lines)
    return intents


def _load_contacts(root: Path, entries: dict[str, Entry], problems: list[Problem], today: dt.date,
                   stale_days: int = CONTACT_STALE_DAYS) -> dict[str, Contact]:
    """The contact directory: schema, unique ids, known regions; every ``{{contact:id}}`` in an
    answer must name one; contacts not verified for ``stale_days`` are warnings."""
    contacts: dict[str, Contact] = {}
    path = root / CONTACTS_FILE
    if path.exists():
        data = _read_yaml(path, root, problems)
        raw_list = data.get("contacts") if isinstance(data, dict) else None
        if data is not None and not isinstance(raw_list, list):
            problems.append(Problem(CONTACTS_FILE, "", "contacts", "file must be a mapping with a 'contacts' list"))
            raw_list = []
        gazetteer = None
        if (root / REGIONS_FILE).exists():
            try:
                gazetteer = Gazetteer.from_file(root / REGIONS_FILE)
            except Exception:  # noqa: BLE001 - reported by the entry checks
                gazetteer = None
        for position, raw in enumerate(raw_list or []):
            label = str(raw.get("id")) if isinstance(raw, dict) and raw.get("id") else f"#{position + 1}"
            try:
                contact = Contact.model_validate(raw)
            except ValidationError as exc:
                for err in exc.errors():
                    problems.append(Problem(CONTACTS_FILE, label, _field_name(err["loc"]), err["msg"]))
                continue
            if contact.id in contacts:
                problems.append(Problem(CONTACTS_FILE, contact.id, "id", "duplicate contact id"))
                continue
            if contact.region and gazetteer is not None and contact.region not in gazetteer.regions:
                problems.append(Problem(CONTACTS_FILE, contact.id, "region", f"unknown region {contact.region!r}"))
            if (today - contact.last_verified).days > stale_days:
                problems.append(Problem(CONTACTS_FILE, contact.id, "last_verified",
                                        f"not verified for {(today - contact.last_verified).days} days "
                                        f"(more than {stale_days}): check the number and update last_verified",
                                        severity="warning"))
            contacts[contact.id] = contact
    for entry_id, entry in entries.items():
        texts = [("answer.zh", entry.answer.zh), ("answer.en", entry.answer.en)]
        texts += [(f"variants.{i}.answer.{lang}", getattr(v.answer, lang))
                  for i, v in enumerate(entry.variants) for lang in ("zh", "en")]
        for field_name, text in texts:
            for ref in CONTACT_REF.findall(text):
                if ref not in contacts:
                    problems.append(Problem(f"{FAQ_DIR}/{entry.category}.yml", entry_id, field_name,
                                            f"unknown contact {{{{contact:{ref}}}}} (see {CONTACTS_FILE})"))
    return contacts


def _collect(root: Path, today: dt.date | None, stale_days: int = CONTACT_STALE_DAYS
             ) -> tuple[dict[str, Entry], dict[str, list[str]], list[Problem], dict[str, Contact]]:
    problems: list[Problem] = []
    entries = _load_entries(root, problems, today or dt.date.today())
    intents = _load_intents(root, problems)
    contacts = _load_contacts(root, entries, problems, today or dt.date.today(), stale_days)
    return entries, intents, problems, contacts


def load_knowledge_base(root: Path, today: dt.date | None = None) -> KnowledgeBase:
    """Load the KB; raise KnowledgeBaseError on anything that makes it unservable.

    Expired entries are not fatal (time passes while a server runs): they are
    kept, flagged in ``problems``, and the policy refuses to serve them. ``today`` (default: the
    calendar's) decides what counts as expired, so tests and "what expires by Friday" need no clock.
    """
    kb, problems = inspect_knowledge_base(root, today)
    if kb is None:
        raise KnowledgeBaseError([p for p in problems if p.severity == "error"])
    return kb


def inspect_knowledge_base(root: Path, today: dt.date | None = None, contact_stale_days: int = CONTACT_STALE_DAYS
                           ) -> tuple[KnowledgeBase | None, list[Problem]]:
    """Every problem, and the KB when none is an error: ``kb validate`` parses each file once."""
    root = Path(root)
    entries, intents, problems, contacts = _collect(root, today, contact_stale_days)
    if any(p.severity == "error" for p in problems):
        return None, problems
    return KnowledgeBase(root=root, entries=entries, intent_examples=intents,
                         version=knowledge_version(root), problems=problems, contacts=contacts), problems


def validate_knowledge_base(root: Path, today: dt.date | None = None,
                            contact_stale_days: int = CONTACT_STALE_DAYS) -> list[Problem]:
    """Every problem, expired entries and stale contacts (warnings) included (as of ``today``):
    what ``kb validate`` reports."""
    return _collect(Path(root), today, contact_stale_days)[2]
