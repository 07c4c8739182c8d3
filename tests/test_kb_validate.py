"""KB validation: real files on disk, errors that name file, entry and field."""
import datetime as dt
import shutil
import subprocess
import sys

import pytest

from bot.config import PROJECT_ROOT
from bot.kb.loader import KnowledgeBaseError, load_knowledge_base, validate_knowledge_base

ENTRY = """
  - id: testing.{name}
    category: testing
    questions:
      zh: [{q}一, {q}二, {q}三]
      en: [{q} one, {q} two]
    answer: {{zh: 答案, en: answer}}
    source: {{name: 国家卫生健康委员会, name_en: National Health Commission, url: "https://www.nhc.gov.cn/"}}
    updated: 2026-10-01
"""
# The shipped KB has entries valid until 2027-02-28: every check runs as of a fixed day, not the calendar.
TODAY = dt.date(2026, 12, 1)


@pytest.fixture()
def kb_copy(tmp_path):
    root = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", root)
    return root


def test_shipped_knowledge_base_is_valid_and_large_enough():
    assert validate_knowledge_base(PROJECT_ROOT / "knowledge", TODAY) == []
    kb = load_knowledge_base(PROJECT_ROOT / "knowledge", TODAY)
    assert len(kb.entries) >= 120
    categories = {e.category for e in kb.entries.values()}
    assert {"policy", "testing", "health_code", "quarantine", "vaccination", "travel", "hotline", "meta"} <= categories
    for intent in ("greet", "goodbye", "thanks", "ask_human", "emergency", "complaint", "out_of_scope"):
        assert len(kb.intent_examples[intent]) >= 10, intent


def _append(root, text):
    path = root / "faq" / "testing.yml"
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + "\n" + text, encoding="utf-8")


def test_missing_language_names_file_entry_and_field(kb_copy):
    _append(kb_copy, ENTRY.format(name="no_english", q="无英文").replace("en: answer", "xx: answer"))
    problems = validate_knowledge_base(kb_copy, TODAY)
    messages = [str(p) for p in problems]
    assert any(p.file == "faq/testing.yml" and p.entry == "testing.no_english" and p.field == "answer.en"
               for p in problems), messages
    with pytest.raises(KnowledgeBaseError):
        load_knowledge_base(kb_copy)


def test_duplicate_ids_and_broken_follow_ups(kb_copy):
    _append(kb_copy, ENTRY.format(name="pcr_fee", q="重复"))
    _append(kb_copy, ENTRY.format(name="dangling", q="悬空") + "    follow_ups: [testing.nowhere]\n")
    problems = validate_knowledge_base(kb_copy, TODAY)
    assert any(p.entry == "testing.pcr_fee" and p.field == "id" and "duplicate" in p.message for p in problems)
    assert any(p.entry == "testing.dangling" and p.field == "follow_ups.0" for p in problems)


def test_covers_names_existing_other_entries_and_goes_one_way(kb_copy):
    _append(kb_copy, ENTRY.format(name="general", q="通用")
            + "    covers: [testing.pcr_fee, testing.nowhere, testing.general, testing.specific]\n")
    _append(kb_copy, ENTRY.format(name="specific", q="具体") + "    covers: [testing.general]\n")
    _append(kb_copy, ENTRY.format(name="general2", q="通用二") + "    covers: [testing.specific]\n")
    problems = {(p.entry, p.field): p.message for p in validate_knowledge_base(kb_copy, TODAY)}
    assert "unknown entry id" in problems[("testing.general", "covers.1")]
    assert "cannot cover itself" in problems[("testing.general", "covers.2")]
    assert "testing.specific covers testing.general too" in problems[("testing.general", "covers.3")]  # both ways
    assert "testing.general covers testing.specific too" in problems[("testing.specific", "covers.0")]


def test_covers_goes_round_no_circle(kb_copy):
    """Three entries covering each other in a circle, all near-tied, all left the candidate list (review)."""
    for name, target in (("ring_a", "ring_b"), ("ring_b", "ring_c"), ("ring_c", "ring_a")):
        _append(kb_copy, ENTRY.format(name=name, q=name) + f"    covers: [testing.{target}]\n")
    problems = {(p.entry, p.field) for p in validate_knowledge_base(kb_copy, TODAY)}
    assert {("testing.ring_a", "covers.0"), ("testing.ring_b", "covers.0"), ("testing.ring_c", "covers.0")} <= problems
    assert ("testing.general", "covers.0") not in problems and ("testing.general2", "covers.0") not in problems


def test_duplicate_question_across_entries(kb_copy):
    kb = load_knowledge_base(PROJECT_ROOT / "knowledge")
    existing = kb.entries["testing.pcr_fee"].questions.zh[0]
    _append(kb_copy, ENTRY.format(name="copycat", q="抄袭").replace("抄袭一", existing))
    problems = validate_knowledge_base(kb_copy, TODAY)
    assert any(p.entry == "testing.copycat" and p.field == "questions.zh.0" and "testing.pcr_fee" in p.message
               for p in problems), [str(p) for p in problems]


def test_a_question_repeated_in_its_own_entry_is_a_warning_that_names_it(kb_copy):
    """Round 6 pasted 19 paraphrases that an entry already had (some differing only in case or a question mark):
    nothing said so, and an editor would edit one copy and leave the other."""
    _append(kb_copy, ENTRY.format(name="twice", q="重复").replace("重复三", "重复一？").replace("重复 two", "重复 ONE"))
    problems = [p for p in validate_knowledge_base(kb_copy, TODAY) if p.entry == "testing.twice"]
    assert sorted((p.field, p.severity) for p in problems) == [("questions.en.1", "warning"),
                                                               ("questions.zh.2", "warning")], problems
    assert all("repeated in this entry" in p.message for p in problems)
    assert load_knowledge_base(kb_copy, TODAY).entries["testing.twice"]  # a warning: still loadable


def test_expired_entry_is_reported_but_still_loadable(kb_copy):
    _append(kb_copy, ENTRY.format(name="old_rule", q="旧规定") + "    valid_until: 2020-01-31\n")
    problems = validate_knowledge_base(kb_copy, TODAY)
    assert [(p.entry, p.field, p.severity) for p in problems] == [("testing.old_rule", "valid_until", "expired")]
    kb = load_knowledge_base(kb_copy)  # a server keeps running when an entry expires
    assert kb.entries["testing.old_rule"].valid_until.year == 2020


def test_unparseable_yaml_is_named(kb_copy):
    (kb_copy / "faq" / "travel.yml").write_text("category: travel\nentries: [\n", encoding="utf-8")
    problems = validate_knowledge_base(kb_copy, TODAY)
    assert problems[0].file == "faq/travel.yml" and "cannot parse" in problems[0].message


def test_cli_exit_codes(kb_copy):
    cmd = [sys.executable, "-m", "connectors.cli", "kb", "validate", "--today", TODAY.isoformat()]
    ok = subprocess.run(cmd, env={"HOTLINE_KNOWLEDGE_DIR": str(kb_copy), "PATH": "/usr/bin:/bin"},
                        capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert ok.returncode == 0, ok.stderr
    assert "OK:" in ok.stdout
    _append(kb_copy, ENTRY.format(name="dangling", q="悬空") + "    follow_ups: [testing.nowhere]\n")
    bad = subprocess.run(cmd, env={"HOTLINE_KNOWLEDGE_DIR": str(kb_copy), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert bad.returncode == 1
    assert "faq/testing.yml: entry testing.dangling: field follow_ups.0: unknown entry id 'testing.nowhere'" in bad.stderr


def test_source_needs_an_english_name(kb_copy):
    _append(kb_copy, ENTRY.format(name="no_name_en", q="无英文来源").replace(", name_en: National Health Commission", ""))
    problems = validate_knowledge_base(kb_copy, TODAY)
    assert any(p.entry == "testing.no_name_en" and p.field == "source.name_en" for p in problems), problems


VARIANTS = """
    variants:
      - region: {first}
        answer: {{zh: 北京的答案, en: Beijing answer}}
      - region: {second}
        answer: {{zh: 另一个答案, en: another answer}}
"""


def test_regional_variants_are_validated_against_the_gazetteer(kb_copy):
    good = ENTRY.format(name="with_variants", q="有地区版本") + VARIANTS.format(first="北京市", second="上海市")
    _append(kb_copy, good)
    assert validate_knowledge_base(kb_copy, TODAY) == []
    kb = load_knowledge_base(kb_copy)
    assert kb.entries["testing.with_variants"].variant_regions == ["北京市", "上海市"]
    assert "北京市" in kb.variant_regions


def test_unknown_and_duplicate_variant_regions_name_the_field(kb_copy):
    _append(kb_copy, ENTRY.format(name="bad_variants", q="坏地区版本") + VARIANTS.format(first="北平", second="北平"))
    problems = validate_knowledge_base(kb_copy, TODAY)
    fields = {(p.file, p.entry, p.field) for p in problems}
    assert ("faq/testing.yml", "testing.bad_variants", "variants.0.region") in fields, problems
    assert any(p.field == "variants.1.region" and "duplicate" in p.message for p in problems), problems
    with pytest.raises(KnowledgeBaseError):
        load_knowledge_base(kb_copy)


def test_unknown_entry_region_and_regional_entry_with_variants(kb_copy):
    entry = ENTRY.format(name="regional", q="地区条目").replace("    updated:", "    region: 火星市\n    updated:")
    _append(kb_copy, entry + VARIANTS.format(first="北京市", second="上海市"))
    problems = validate_knowledge_base(kb_copy, TODAY)
    fields = {p.field for p in problems if p.entry == "testing.regional"}
    assert {"region", "variants"} <= fields, problems


def test_expiry_is_checked_as_of_an_injected_day():
    """Regression: validation used the calendar, so the suite started failing on 2027-03-01."""
    assert validate_knowledge_base(PROJECT_ROOT / "knowledge", TODAY) == []
    later = validate_knowledge_base(PROJECT_ROOT / "knowledge", dt.date(2027, 3, 1))
    stale = [p for p in later if p.file == "contacts.yml"]  # contacts unverified for 30+ days by then (issue 9)
    assert stale and all(p.severity == "warning" and p.field == "last_verified" for p in stale)
    later = [p for p in later if p not in stale]
    assert later and {p.severity for p in later} == {"expired"}
    assert all(p.field == "valid_until" and "2027-02-28" in p.message for p in later)


def test_cli_validates_as_of_a_given_day(kb_copy):
    env = {"HOTLINE_KNOWLEDGE_DIR": str(kb_copy), "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "connectors.cli", "kb", "validate", "--today"]
    later = subprocess.run(base + ["2027-03-01"], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert later.returncode == 1 and "EXPIRED" in later.stderr and "valid_until" in later.stderr
    bad = subprocess.run(base + ["next friday"], env=env, capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert bad.returncode == 2 and "--today" in bad.stderr and "YYYY-MM-DD" in bad.stderr


def test_a_changed_file_is_validated_again_and_unchanged_files_are_not(kb_copy):
    """A publish loads the whole KB back and a draft save validates it, but an edit changes one file: unchanged
    files' entries are reused by content (at 10,000 entries parsing every file took 11.5 s of a 26 s publish),
    and a file whose bytes changed is parsed and checked again."""
    first = load_knowledge_base(kb_copy, TODAY)
    testing = kb_copy / "faq" / "testing.yml"
    original = testing.read_text(encoding="utf-8")
    testing.write_text(original.replace("  - id: testing.pcr_fee\n", "  - id: testing.pcr_fee\n    colour: red\n", 1),
                       encoding="utf-8")
    problems = validate_knowledge_base(kb_copy, TODAY)
    assert ("faq/testing.yml", "testing.pcr_fee", "colour") in [(p.file, p.entry, p.field) for p in problems]
    testing.write_text(original, encoding="utf-8")
    assert validate_knowledge_base(kb_copy, TODAY) == []
    again = load_knowledge_base(kb_copy, TODAY)
    assert again.entries["vaccination.how_to_book"] is first.entries["vaccination.how_to_book"]  # reused
    assert again.entries == first.entries and again.version == first.version
    from bot.kb.loader import forget_parsed_files

    forget_parsed_files()  # bench.bigkb times each `kb validate` repeat cold
    cold = load_knowledge_base(kb_copy, TODAY)
    assert cold.entries["vaccination.how_to_book"] is not first.entries["vaccination.how_to_book"]
    assert cold.entries == first.entries
