"""Knowing what the bot does not know: an explicit out-of-KB decision.

A question can share 疫苗 / 隔离 / 证明 with an entry and still be about
something the KB never covers (another vaccine, one named person's case,
another country's rules). A score threshold cannot tell these apart, so the
policy asks a small logistic model for P(the top entry answers this question)
from evidence that generalises across KBs:

- retrieval: fused score, margin to the runner-up, classifier probability,
  dense and lexical parts, whether dense and lexical agree on the top entry;
- topic: P(the KB covers this topic at all) from a classifier (embedding ⊕ char n-grams) trained at
  index time on every KB paraphrase against the out-of-KB training questions;
- their product margin × topic: a wide margin to the runner-up is evidence only when the question is in
  the KB's domain at all (an out-of-KB question often has one entry far ahead of the others, on a shared
  word). A linear model cannot say "both" without it: adding it took the dev half from 184 to 190 questions
  answered right with the same 2 wrong and 3.9 % of the out-of-KB training questions answered (cross-fitted);
  on the test half (``hotline-bot eval``) right answers given directly went from 168 to 170 of 210, 2 wrong and
  22 of 506 out-of-KB questions answered either way (measured 2026-12-02; monotone boosted trees on the same
  features reached 193 on dev and about one more on test: not worth a second kind of model);
- entity mismatch: the IDF-weighted share of the question's words that the top
  entry never mentions, and of words no entry mentions at all (a vaccine,
  disease, medicine, country, person or public service the KB does not talk
  about shows up as exactly such words).

The model is fitted by ``bench/calibrate.py`` on cross-validated KB paraphrases
(positives: top entry right; negatives: top entry wrong) and the TRAIN split of
the out-of-KB set this project wrote (``knowledge/scope/out_of_kb.yml``); its
coefficients and thresholds live in ``knowledge/thresholds/<encoder>.yml``.
The out-of-KB TEST split (``bench/data/out_of_kb_test.yml``) is only reported.
"""
from __future__ import annotations

from bot.yaml_files import load_yaml

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.retrieval import Candidate

FEATURES = ("score", "margin", "prob", "dense", "lexical", "agree", "uncovered_top", "unknown_kb",
            "n_unknown", "english", "in_kb", "margin_in_kb")
OUT_OF_KB_FILE = "scope/out_of_kb.yml"
OTHER_SUBJECTS_FILE = "scope/other_subjects.yml"

_CJK = re.compile(r"[\u3400-\u9fff]")


class Vocabulary:
    """Which words each entry (questions + answers) and the KB as a whole use, with IDF over entries."""

    def __init__(self, entry_words: Mapping[str, Iterable[str]], previous: "Vocabulary | None" = None):
        """``previous``: the vocabulary this one replaces (a publish). Entries whose word set is the very
        object ``previous`` holds are not counted again: at 10,000 entries counting 1.37 M words was
        0.45 s of a one-paraphrase publish. The result is the same as counting everything."""
        self.entry_words = {entry_id: words if isinstance(words, frozenset) else frozenset(words)
                            for entry_id, words in entry_words.items()}
        n = max(len(self.entry_words), 1)
        if previous is None:
            self._df = Counter(word for words in self.entry_words.values() for word in words)
            self.idf = {word: self._idf(n, count) for word, count in self._df.items()}
        else:
            self._df = previous._df.copy()
            changed: set[str] = set()
            for entry_id, words in previous.entry_words.items():
                if self.entry_words.get(entry_id) is not words:
                    self._df.subtract(words)
                    changed.update(words)
            for entry_id, words in self.entry_words.items():
                if previous.entry_words.get(entry_id) is not words:
                    self._df.update(words)
                    changed.update(words)
            if n == max(len(previous.entry_words), 1):  # the same n: only the changed words' idf moves
                self.idf = dict(previous.idf)
                for word in changed:
                    count = self._df[word]
                    if count > 0:
                        self.idf[word] = self._idf(n, count)
                    else:
                        self.idf.pop(word, None)
                        del self._df[word]
            else:
                self._df = +self._df  # drops the words no entry uses any more
                self.idf = {word: self._idf(n, count) for word, count in self._df.items()}
        self.unknown_idf = math.log(n + 1) + 1.0

    @staticmethod
    def _idf(n: int, count: int) -> float:
        return math.log((n + 1) / (count + 1)) + 1.0

    def to_dict(self) -> dict[str, list[str]]:
        return {entry_id: sorted(words) for entry_id, words in self.entry_words.items()}

    @staticmethod
    def content_words(words: Sequence[str]) -> list[str]:
        """Single CJK characters (吗, 的, 我) carry no topic; everything else may."""
        return [w for w in dict.fromkeys(words) if not (len(w) == 1 and _CJK.match(w)) and not w.isdigit()]


@dataclass(frozen=True)
class ScopeEvidence:
    features: tuple[float, ...]
    unknown_words: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURES, self.features))


def load_out_of_kb(knowledge_dir: Path | str) -> list[str]:
    """The TRAIN split of the out-of-KB questions (empty when the KB ships none)."""
    from pathlib import Path


    path = Path(knowledge_dir) / OUT_OF_KB_FILE
    if not path.exists():
        return []
    return [str(r["text"]) for r in load_yaml(path) or []]


def scope_evidence(candidates: Sequence[Candidate], words: Sequence[str], vocabulary: Vocabulary,
                   language: str, in_kb: float = 1.0, places: Callable[[str], object] | None = None) -> ScopeEvidence:
    """``places``: the gazetteer's lookup. A Chinese city or province is no change of subject (the KB answers
    nationwide, and per region where rules differ), but as a word no entry uses it counted against the top
    entry: "从广州回深圳要做核酸吗" scored P 0.24 and was "not covered"; without the two place names, 0.58."""
    if not candidates:
        return ScopeEvidence(tuple([0.0] * len(FEATURES)))
    top = candidates[0]
    second = candidates[1].score if len(candidates) > 1 else 0.0
    agree = float(top.dense >= max(c.dense for c in candidates) and top.lexical >= max(c.lexical for c in candidates))
    content = vocabulary.content_words(words)
    # ...but a message of place names alone ("广州", "来宾": a city, and "guest") keeps them: nothing else to go by
    content = [w for w in content if places is None or not places(w)] or content
    weights = {w: vocabulary.idf.get(w, vocabulary.unknown_idf) for w in content}
    total = sum(weights.values()) or 1.0
    top_words = vocabulary.entry_words.get(top.entry_id, frozenset())
    unknown = [w for w in content if w not in vocabulary.idf]
    uncovered_top = sum(v for w, v in weights.items() if w not in top_words) / total
    unknown_kb = sum(weights[w] for w in unknown) / total
    margin = top.score - second
    features = (top.score, margin, top.prob, top.dense, top.lexical, agree, uncovered_top, unknown_kb,
                float(min(len(unknown), 3)), float(language == "en"), in_kb, margin * in_kb)
    return ScopeEvidence(tuple(float(f) for f in features), tuple(unknown))


class ScopeModel:
    """Logistic model: P(top entry answers the question) = σ(w·features + b)."""

    def __init__(self, coef: Sequence[float], intercept: float):
        if len(coef) != len(FEATURES):
            raise ValueError(f"scope model needs {len(FEATURES)} coefficients ({', '.join(FEATURES)}), got {len(coef)}")
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)

    def probability(self, evidence: ScopeEvidence) -> float:
        z = float(np.dot(self.coef, evidence.features) + self.intercept)
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


# A country named as where the citizen comes from, or as a nationality, is not "another country's rules".
_ORIGIN_BEFORE = re.compile(r"(从|自|由|离开).?$|\b(from|leaving)\s+(the\s+)?$")
_ORIGIN_AFTER = re.compile(r"^(人|籍|同事|朋友|护照|公民|留学生|客户|员工|老公|老婆|回|来华|来中国|飞回|返)")
RULE_CATEGORIES = frozenset({"policy", "travel"})


_CJK_WORD = re.compile(r"[\u4e00-\u9fff]{1,3}")
_MEASURE_BEFORE = re.compile(r"[这那一几两每哪个\d]$")  # 这张票, 一段话: the "surname" is a measure word
_PLACE_END = re.compile(r"[区市县省州路街镇村乡上下里]$")  # 江北区, 马路上
_NOT_A_GIVEN_NAME = frozenset("能不是了的在有要会可都也还就说给和跟被把让到去来吗呢吧啊么没这那个们")
_SELF_BEFORE = re.compile(r"(我叫|我是|本人)$")
# One pinyin syllable (loosely: an initial and a final); a given name is one or two of them, or two words.
_SYLLABLE = (r"(?:[bpmfdtnlgkhjqxrzcsyw]|zh|ch|sh)?(?:a|ai|an|ang|ao|e|ei|en|eng|er|i|ia|ian|iang|iao|ie|in|ing|"
             r"iong|iu|o|ong|ou|u|ua|uai|uan|uang|ue|ui|un|uo|v|ve)")
_GIVEN = rf"(?:{_SYLLABLE}){{1,2}}(?:[ -]{_SYLLABLE})?"
_LATIN_LETTER = re.compile(r"[a-z]")
_LATIN_SELF_BEFORE = re.compile(r"\b(my name is|i am|i'm|this is|called)\s*$")


def _words(items: Iterable[str]) -> str:
    return "|".join(re.escape(i.lower()) for i in sorted(items, key=len, reverse=True))


class PersonNames:
    """One named person in a question ("王芳的健康码现在是什么颜色", "我同事刘洋是不是阳了"): what only a record or
    a person can answer. The lists are the ``persons`` section of ``other_subjects.yml``; ``frequency`` is
    the tokenizer's dictionary (None or 0: not a word of its own, which a name usually is not). Measured on
    the KB's 2,834 questions, the 468 held-out questions and the 340 emergency training examples: no false
    name; on the out-of-KB training split 11 names, all real (钟南山 included). The test split is the eval's."""

    def __init__(self, surnames: str, titles: Sequence[str], relations: Sequence[str],
                 frequency: Callable[[str], int | None], rare: int = 20, latin: Mapping[str, Sequence[str]] | None = None):
        """``latin``: the lists for pinyin names in English questions (``surnames``, ``english_words``,
        ``honorifics``, ``titles``, ``relations``); none when absent."""
        self.surnames = frozenset(surnames)
        self.titles = frozenset(titles)
        self.relations = tuple(relations)
        self.frequency = frequency
        self.rare = rare  # dictionary words rarer than this that look like names are names (李秀英: 3)
        self._latin: list[re.Pattern[str]] = []
        latin = latin or {}
        if latin.get("surnames"):
            every = _words(latin["surnames"])
            not_words = _words(set(latin["surnames"]) - set(latin.get("english_words") or ()))
            end = r"(?![a-z0-9-])"
            for titles, surnames in (("honorifics", every), ("titles", not_words)):  # Mr He, Auntie Li
                if latin.get(titles):
                    self._latin.append(re.compile(rf"(?<![a-z])(?:{_words(latin[titles])})\.?\s+"
                                                  rf"(?P<name>(?:{surnames}){end})"))
            # Chen Ming's, Zhang Xiaoming's (not "a long time's wait")
            self._latin.append(re.compile(rf"(?<![a-z])(?P<name>(?:{not_words}) {_GIVEN})['’]s(?![a-z])"))
            if latin.get("relations"):  # my colleague Zhang Wei
                self._latin.append(re.compile(rf"(?<![a-z])(?:{_words(latin['relations'])})s?,?\s+"
                                              rf"(?P<name>(?:{not_words}) {_GIVEN}){end}"))

    def find(self, words: Sequence[str]) -> tuple[str, ...]:
        """The names among ``words`` (jieba words of the normalised question)."""
        found: list[str] = []
        for i, word in enumerate(words):
            if not _CJK_WORD.fullmatch(word) or word[0] not in self.surnames and word[0] not in "老小":
                continue
            before = "".join(words[max(0, i - 2):i])
            if _SELF_BEFORE.search(before):
                continue
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if len(word) == 1:  # a surname cut off its title or given name: 黄 小姐, 我先生 吴 建华
                if nxt in self.titles or (before.endswith(self.relations) and _CJK_WORD.fullmatch(nxt)
                                          and len(nxt) <= 2 and not set(nxt) & _NOT_A_GIVEN_NAME):
                    found.append(word + nxt)
            elif word[0] in self.surnames and word[1:] in self.titles:  # 陈老师, 刘阿姨
                found.append(word)
            elif len(word) == 2 and word[0] in "老小" and word[1] in self.surnames:  # 老李, 小王
                found.append(word)
            elif (word[0] in self.surnames and not set(word[1:]) & _NOT_A_GIVEN_NAME
                  and (self.frequency(word) or 0) < self.rare and not _MEASURE_BEFORE.search(before)
                  and not _PLACE_END.search(word)):
                found.append(word)
        return tuple(dict.fromkeys(found))

    def find_latin(self, normalised_question: str) -> tuple[str, ...]:
        """The pinyin names in an English question (lower case, as ``normalise`` leaves it). Not the
        citizen's own ("my name is Mr Wang"), but "I'm Zhang Wei's mother" asks about Zhang Wei."""
        if not self._latin or not _LATIN_LETTER.search(normalised_question):  # most questions are Chinese
            return ()
        found = [m.group("name") for pattern in self._latin for m in pattern.finditer(normalised_question)
                 if normalised_question[m.end("name"):m.end("name") + 2] in ("'s", "’s")
                 or not _LATIN_SELF_BEFORE.search(normalised_question[:m.start()])]
        return tuple(dict.fromkeys(found))


class OtherSubjects:
    """Other vaccines, diseases and countries (``knowledge/scope/other_subjects.yml``), and named persons:
    the entity mismatch a score cannot see. "打完HPV疫苗多久可以怀孕" matches the COVID-vaccine pregnancy entry
    on every word but one, and that one word changes the subject; so does "英国" in "英国现在还戴口罩吗"
    against our mask rules, and "王芳" in "王芳的健康码是什么颜色" against the colours entry.
    ``find`` names the subjects the question mentions that the matched entry's own text (questions,
    answers, variants) never mentions. Countries count only against a rules entry and only when the
    country is not where the citizen comes from nor a nationality."""

    def __init__(self, subjects: Mapping[str, Sequence[str]], countries: Mapping[str, Sequence[str]] | None = None,
                 persons: PersonNames | None = None):
        self._patterns = {name: p for name, p in ((n, _alias_pattern(a)) for n, a in subjects.items()) if p}
        self._countries = {name: p for name, p in ((n, _alias_pattern(a)) for n, a in (countries or {}).items())
                           if p}
        self.persons = persons

    @classmethod
    def from_dir(cls, knowledge_dir: Path | str,
                 frequency: Callable[[str], int | None] | None = None) -> "OtherSubjects":
        """The KB's list, or an empty one when the KB ships none. Names are looked for only with the
        tokenizer's ``frequency``."""
        path = Path(knowledge_dir) / OTHER_SUBJECTS_FILE
        data = (load_yaml(path) or {}) if path.exists() else {}

        def lists(key: str) -> dict[str, list[str]]:
            return {str(k): [str(a) for a in v or []] for k, v in (data.get(key) or {}).items()}

        persons = data.get("persons") or {}
        names = None
        if frequency is not None and persons.get("surnames"):
            latin = {key: [str(v) for v in persons.get(f"{key}_latin") or []]
                     for key in ("surnames", "honorifics", "titles", "relations")}
            latin["english_words"] = [str(v) for v in persons.get("english_words") or []]
            names = PersonNames(str(persons["surnames"]), [str(t) for t in persons.get("titles") or []],
                                [str(r) for r in persons.get("relations") or []], frequency, latin=latin)
        return cls(lists("subjects"), lists("countries"), names)

    def find(self, normalised_question: str, entry_text: str, rules_entry: bool = True,
             words: Sequence[str] = ()) -> tuple[str, ...]:
        """``words``: the question's jieba words, where named persons are looked for."""
        found = [name for name, pattern in self._patterns.items()
                 if pattern.search(normalised_question) and not pattern.search(entry_text)]
        if self.persons is not None:
            found += [f"person:{name}" for name in (self.persons.find(words) if words else ()) if name not in entry_text]
            found += [f"person:{name}" for name in self.persons.find_latin(normalised_question)  # "li" is in "line"
                      if not re.search(_alias_part(name), entry_text)]
        if rules_entry:  # the short question first: searching the entry's whole text for every country was
            # 0.12 ms of a message's ~1.7 ms of understanding (cProfile, 2026-12-02)
            found += [name for name, pattern in self._countries.items()
                      if any(not _ORIGIN_BEFORE.search(normalised_question[max(0, m.start() - 12):m.start()])
                             and not _ORIGIN_AFTER.match(normalised_question[m.end():])
                             for m in pattern.finditer(normalised_question))
                      and not pattern.search(entry_text)]
        return tuple(found)


def _alias_pattern(aliases: Sequence[str]) -> re.Pattern[str] | None:
    # ASCII aliases as whole words among ASCII letters (a CJK neighbour is a boundary: "打完hpv疫苗").
    parts = [_alias_part(a) for a in aliases if a]
    return re.compile("|".join(parts)) if parts else None


def _alias_part(alias: str) -> str:
    if alias.isascii():
        return r"(?<![a-z0-9])" + re.escape(alias.lower()) + r"(?![a-z0-9])"
    # An alias ending in Latin letters ends a word there, and "X值" names a value, not X: "做ct" is a CT scan,
    # "做ct值多少算阳性" asks about a PCR result's Ct value.
    return re.escape(alias) + (r"(?![a-z0-9]|值)" if alias[-1].isascii() and alias[-1].isalnum() else "")
