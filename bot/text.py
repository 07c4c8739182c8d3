"""Text normalisation, language detection and domain tokenising.

Everything downstream (retrieval, intents, safety) sees the same normalised
text, so a Traditional-Chinese or full-width question matches the Simplified
KB exactly as a Simplified one does.
"""
from __future__ import annotations

from bot.yaml_files import load_yaml

import functools
import hashlib
import logging
import os
import pickle
import re
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import Literal

import jieba
import opencc
import Stemmer

Language = Literal["zh", "en", "mixed"]
Script = Literal["hans", "hant"]

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[a-z]{2,}")
_SPACES = re.compile(r"\s+")
_T2S = opencc.OpenCC("t2s")
# Simplified → Traditional for replies. Plain s2t (character conversion) rather than s2twp/s2hk:
# Hong Kong, Macao and Taiwan readers all read it, and it never rewrites the KB's vocabulary.
_S2T = opencc.OpenCC("s2t")
_OPENCC_LOCK = threading.Lock()
jieba.setLogLevel(logging.WARNING)
_TOKEN_SPLIT = re.compile(r"[\w\u3400-\u9fff]+", re.UNICODE)
_ASCII_WORD = re.compile(r"[a-z]+")
# Question words carry the intent of an FAQ question ("how" vs "where"), keep them.
_STOP_WORDS_FILE = Path(__file__).resolve().parent / "data" / "english_stop_words.txt"
_EN_STOP_WORDS = frozenset(
    line.strip() for line in _STOP_WORDS_FILE.read_text(encoding="utf-8").splitlines()
    if line.strip() and not line.startswith("#")) - {"how", "where", "when", "what", "why", "who", "which", "not", "no"}


# English contractions: jieba cuts "isn't" into isn / ' / t and "she's" into she / ' / s, and chat drops the
# apostrophe (dont, shes, im). The stray pieces (t, s, isn, don, shes) were content words to BM25 and, as
# words no entry uses, counted against the top entry in the scope model: "my daughter tested positive and shes
# only 4, can i go into isolation with her" scored P 0.29 and was "not covered" over "shes". The negation is
# kept as "not" (a word, not a stop word, here); the rest of a clitic ('s, 'm, 're, 've, 'll, 'd) goes.
_CLITIC = re.compile(r"(?<![a-z])([a-z]+?)(n['’]t|['’](?:s|m|re|ve|ll|d))\b")  # not \b: "我don't" has none
_NEGATED_BASE = {"ca": "can", "wo": "will", "ai": "is", "sha": "shall"}
_NO_APOSTROPHE = {word: word[:-2] for word in (
    "dont", "doesnt", "didnt", "isnt", "arent", "wasnt", "werent", "havent", "hasnt", "hadnt", "couldnt",
    "shouldnt", "wouldnt", "mustnt", "neednt")}
_NO_APOSTROPHE.update({"cant": "can", "wont": "will", "aint": "is"})
# ...and what is left of one without its apostrophe: a pronoun (a stop word, dropped) or a question word (kept: it
# carries the question's intent, "whats" as "what's").
_NO_CLITIC = {"im": "", "ive": "", "youre": "", "youve": "", "theyre": "", "theyve": "", "shes": "", "thats": "",
              "theres": "", "weve": "", "itll": "", "youll": "", "theyll": "",
              "whats": "what", "wheres": "where", "hows": "how", "whos": "who"}


def _expand_contraction(match: re.Match[str]) -> str:
    base, clitic = match.group(1), match.group(2)
    if clitic[0] == "n":
        return f"{_NEGATED_BASE.get(base, base)} not"
    return base


def _file_stamp(path: Path) -> tuple[str, int, int]:
    """jieba's dictionary file is resolved against its package directory."""
    resolved = path if path.is_absolute() else Path(jieba.__file__).parent / path
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


def _write_cache(path: Path, data: bytes) -> None:
    """Written beside and renamed: two processes building the same cache never read half a file. A cache
    that cannot be written (a read-only directory) only costs the next start the slower load."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    except OSError as exc:
        logging.getLogger(__name__).warning("tokenizer cache not written: %s", exc)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        logging.getLogger(__name__).warning("tokenizer cache not written: %s", exc)


def normalise(text: str) -> str:
    """Full/half width (NFKC), Traditional→Simplified, lower case, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = _T2S.convert(text)
    text = text.lower()
    return _SPACES.sub(" ", text).strip()


# Sized for a 10,000-entry KB: ~193k questions and ~20k answers, with room for the edits of many publishes.
@functools.lru_cache(maxsize=2 ** 19)
def normalise_kb_text(text: str) -> str:
    """``normalise`` remembered, for the KB's own questions and answers (never a citizen's text): every
    publish lists and checks all of them again. At 10,000 entries, normalising them (OpenCC) was 3.6 of
    11.4 s of an answer edit's re-index, and 1.5 s of each load of the KB."""
    return normalise(text)


def detect_script(text: str) -> Script | None:
    """Which Chinese script the citizen wrote in, from the RAW text (before normalisation folds it).

    Counts characters that change under Traditional→Simplified (Traditional-only characters) against
    those that change under Simplified→Traditional (Simplified-only ones). None when the text has no
    characters that tell (English, or only characters shared by both scripts): keep the previous script.
    """
    chars = "".join(_CJK.findall(unicodedata.normalize("NFKC", text)))
    if not chars:
        return None
    with _OPENCC_LOCK:
        simplified, traditional = _T2S.convert(chars), _S2T.convert(chars)
    traditional_only = sum(a != b for a, b in zip(chars, simplified)) if len(simplified) == len(chars) else 0
    simplified_only = sum(a != b for a, b in zip(chars, traditional)) if len(traditional) == len(chars) else 0
    if traditional_only > simplified_only:
        return "hant"
    if simplified_only > traditional_only:
        return "hans"
    return None


def to_script(text: str, script: str | None) -> str:
    """Render a (Simplified) KB text in the citizen's script."""
    if script != "hant" or not text:
        return text
    with _OPENCC_LOCK:
        return str(_S2T.convert(text))


def detect_language(text: str) -> Language:
    """zh, en or mixed, from the share of CJK characters vs Latin words."""
    cjk = len(_CJK.findall(text))
    latin = len(_LATIN_WORD.findall(text.lower()))
    if cjk and latin:
        # A Chinese sentence with "PCR" in it is Chinese; an English sentence
        # quoting one term like 健康码 is English.
        if latin >= 3 and cjk <= 4:
            return "en"
        if cjk >= 2 * latin:
            return "zh"
        return "mixed"
    if cjk:
        return "zh"
    if latin:
        return "en"
    return "zh"


def reply_language(language: Language) -> Literal["zh", "en"]:
    """Answer in the user's language; mixed input gets Chinese."""
    return "en" if language == "en" else "zh"


class SynonymMap:
    """Maps every surface form of a domain term to its canonical form."""

    def __init__(self, groups: list[list[str]]):
        self.canonical: dict[str, str] = {}
        for group in groups:
            forms = [normalise(str(word)) for word in group if str(word).strip()]
            if not forms:
                continue
            for form in forms:
                self.canonical.setdefault(form, forms[0])

    @classmethod
    def from_file(cls, path: Path) -> "SynonymMap":
        if not path.exists():
            return cls([])
        data = load_yaml(path) or {}
        return cls(data.get("groups") or [])

    def __call__(self, token: str) -> str:
        return self.canonical.get(token, token)


class DomainTokenizer:
    """jieba with the domain user dictionary, synonyms folded to one form.

    Tokens are words for both languages plus Chinese character bigrams, which
    keep lexical matching robust when jieba splits a colloquial phrase oddly.
    """

    def __init__(self, userdict: Path | None = None, synonyms: SynonymMap | None = None,
                 cache_dir: Path | None = None):
        """``cache_dir``: where the finished dictionary (jieba's, the user dictionary's words and the synonyms'
        surface forms added) is kept as a pickle. jieba keeps its own as a marshal file, and reading it was the
        largest single cost of loading a Bot: 0.53–0.62 s for its 498k words and prefixes, against 0.15–0.17 s
        for the same dict pickled (2026-12-03); every server start, test process and CLI command paid it."""
        self._jieba = jieba.Tokenizer()
        self.synonyms = synonyms or SynonymMap([])
        added = [form for form in self.synonyms.canonical if _CJK.search(form) and " " not in form]
        path = None
        if cache_dir is not None:
            key = hashlib.sha256(repr((jieba.__version__, _file_stamp(Path(jieba.DEFAULT_DICT_NAME)), added)).encode())
            if userdict is not None and userdict.exists():
                key.update(userdict.read_bytes())
            path = cache_dir / f"jieba-{key.hexdigest()[:16]}.pickle"
        if not (path is not None and self._load_dictionary(path)):
            self._jieba.initialize()
            if userdict is not None and userdict.exists():
                self._jieba.load_userdict(str(userdict))
            # Synonym surface forms must survive segmentation as whole words.
            for form in added:
                self._jieba.add_word(form, freq=2000)
            if path is not None:
                _write_cache(path, pickle.dumps((self._jieba.FREQ, self._jieba.total), protocol=5))
        self._lock = threading.Lock()
        self._stemmer = Stemmer.Stemmer("english")

    def _load_dictionary(self, path: Path) -> bool:
        try:
            with open(path, "rb") as f:
                self._jieba.FREQ, self._jieba.total = pickle.load(f)
        except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError):  # unreadable: rebuilt
            return False
        self._jieba.initialized = True  # what jieba's own initialize() sets once FREQ and total are there
        return True

    def words(self, normalised_text: str) -> list[str]:
        with self._lock:  # jieba's structures and the stemmer are not built for concurrent use
            if "'" in normalised_text or "’" in normalised_text:
                normalised_text = _CLITIC.sub(_expand_contraction, normalised_text)
            pieces = self._jieba.lcut(normalised_text)
            out = []
            for piece in pieces:
                piece = piece.strip()
                if not piece or not _TOKEN_SPLIT.fullmatch(piece):
                    continue
                canonical = self.synonyms(piece)
                if canonical == piece and _ASCII_WORD.fullmatch(piece):
                    if piece in _NO_APOSTROPHE:
                        if _NO_APOSTROPHE[piece] not in _EN_STOP_WORDS:
                            out.append(self._stemmer.stemWord(_NO_APOSTROPHE[piece]))
                        out.append("not")
                        continue
                    if piece in _NO_CLITIC:
                        if _NO_CLITIC[piece]:
                            out.append(_NO_CLITIC[piece])
                        continue
                    if piece in _EN_STOP_WORDS:
                        continue
                    canonical = self._stemmer.stemWord(piece)
                out.append(canonical)
        return out

    def frequency(self, word: str) -> int | None:
        """jieba's dictionary count of ``word`` (None: not in it; 0: only the start of longer words)."""
        count: int | None = self._jieba.FREQ.get(word)
        return count

    def tokens(self, normalised_text: str, words: list[str] | None = None) -> list[str]:
        """Words plus character bigrams; pass ``words`` when already computed (saves a jieba pass)."""
        words = self.words(normalised_text) if words is None else words
        chars = [c for c in normalised_text if _CJK.match(c)]
        bigrams = ["#" + a + b for a, b in zip(chars, chars[1:])]
        return words + bigrams
