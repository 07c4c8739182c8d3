"""Builds, saves and loads everything retrieval needs from one KB version.

Artifacts live in ``<data_dir>/index/<kb_version>-<encoder>/``; a server
loads them when they match the KB on disk and rebuilds them otherwise, so an
edited KB can never be served with a stale index.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import gc
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
from threadpoolctl import ThreadpoolController

from bot.encoders import Encoder, encode
from bot.intents import FAQ_INTENT, BinaryTextClassifier, IntentClassifier
from bot.kb import KnowledgeBase
from bot.retrieval.dense import DenseRetriever
from bot.retrieval.entry_classifier import EntryClassifier, TooLarge
from bot.retrieval.lexical import LexicalRetriever
from bot.safety import LearnedEmergencyDetector, load_emergency_examples
from bot.scope import Vocabulary, load_out_of_kb
from bot.text import DomainTokenizer, normalise, normalise_kb_text

log = logging.getLogger(__name__)
_Loadable = TypeVar("_Loadable", IntentClassifier, BinaryTextClassifier, EntryClassifier)
_Function = TypeVar("_Function", bound=Callable[..., Any])

# Bump when what is stored changes shape or meaning (tokeniser, document set),
# so old artifacts are rebuilt instead of loaded.
INDEX_FORMAT = 10  # 10: English contractions folded (tokens), the emergency detector learns from out-of-KB questions, C=64; 9: USE tokenised by the sentencepiece library; 8: models fitted in the row space (the same optimum, 3-6x faster); 5: emergency detector C=16; 6: entry classifier learns from answers, C=16; 7: and models as plain arrays
# Round 6 (2026-12-03, with 93 indirect red flags and 102 hard calm examples more): at the threshold that keeps
# 98 % cross-validated recall, C=64 flagged 16.2 % of the cross-validated calm examples against 18.9 % for C=16
# (and for C=4), the same 2.4 % of dev-half questions, and C=256 / 1024 flagged more again (18.9 / 20.2 %).
EMERGENCY_C = 64.0
MODEL_PARAPHRASES = 8_000  # paraphrases the intent/emergency/aspect/topic models learn from (see build_index)


@dataclass
class SearchIndex:
    kb_version: str
    doc_entry_ids: list[str]  # one per question paraphrase (dense and lexical)
    doc_texts: list[str]
    lexical_entry_ids: list[str]  # the paraphrases, then each entry's answers (lexical only)
    lexical: LexicalRetriever
    dense: DenseRetriever
    intents: IntentClassifier
    entries: EntryClassifier | None  # None: a KB too large for it (entry_classifier.MAX_WEIGHTS)
    emergency: LearnedEmergencyDetector
    vocabulary: Vocabulary
    aspects: IntentClassifier | None = None  # what a question asks (cause, remedy, cost...), from entries' aspects
    crisis_kinds: IntentClassifier | None = None  # medical vs mental_health, from the labelled red flags
    topic: BinaryTextClassifier | None = None  # P(the KB covers this topic): paraphrases vs out-of-KB questions
    # Every text the models were trained on (paraphrases, intent/emergency/out-of-KB examples, answers) and its
    # vector: a publish seeds its VectorMemo with them, so it encodes only what changed. Without them the first
    # publish after a start re-encoded ~1,900 example texts (≈2.5 s of an 8.5 s paraphrase publish).
    training_vectors: tuple[list[str], np.ndarray] | None = None
    # True: the question paraphrases changed but the trained models are still the previous version's
    # (``update_index(quick=True)``). A publish serves such an index at once — the new paraphrases are in
    # the dense and lexical indexes — and ``retrain_index`` replaces it seconds later (issue 9: a
    # paraphrase publish took 8.5 s before anyone got the new version, most of it the entry classifier).
    provisional: bool = False


def artifact_dir(index_root: Path, kb_version: str, encoder_key: str) -> Path:
    return index_root / f"v{INDEX_FORMAT}-{kb_version}-{encoder_key}"


def build_retrievers(doc_texts: list[str], doc_vectors: np.ndarray, tokenizer: DomainTokenizer | _MemoTokenizer,
                     extra_lexical_texts: Sequence[str] = (), previous: DenseRetriever | None = None,
                     previous_lexical: LexicalRetriever | None = None) -> tuple[LexicalRetriever, DenseRetriever]:
    """Dense over the question documents; lexical over those plus any extra texts. ``previous``: the dense
    index being replaced (its trained inverted lists are reused, see ``DenseRetriever.build``);
    ``previous_lexical``: the lexical one (its counts of unchanged texts are reused)."""
    with _phase("lexical index"):
        lexical = LexicalRetriever.build([*doc_texts, *extra_lexical_texts], tokenizer.tokens, previous_lexical)
    with _phase("dense index"):
        dense = DenseRetriever.build(doc_vectors, previous)
    return lexical, dense


def _without_gc(function: _Function) -> _Function:
    """Run an index build with Python's cyclic garbage collector paused (restored after, if it was on).

    A build allocates millions of small objects (token lists, BM25's per-document structures), and each
    allocation burst triggers collections that walk the whole heap, which at 10,000 entries holds ~200k
    token lists and vectors: an answer edit's re-index took 11.45 s with the collector and 6.88 s without
    (same process, 2026-12-01). A build creates no cycles that need collecting meanwhile."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()
    return cast(_Function, wrapper)


@contextlib.contextmanager
def _phase(name: str) -> Iterator[None]:
    """Log how long one step of a build took: what an operator of a large KB needs to see."""
    started = time.perf_counter()
    yield
    log.info("index: %s took %.1f s", name, time.perf_counter() - started)


class VectorMemo:
    """Vectors of texts already encoded, by normalised text: a publish re-encodes only the
    questions that are new or changed (the encoder is the slow part of a rebuild), and
    every other vector is reused. Thread-safe enough: a dict read/assign is atomic."""

    def __init__(self) -> None:
        self._vectors: dict[str, np.ndarray] = {}
        self.encoded = 0  # texts that went through the encoder (not reused): measured in tests

    def encode(self, encoder: Encoder, texts: list[str], progress: Callable[[int, int], None] | None = None,
               step: int = 2048) -> np.ndarray:
        """``progress(done, total)`` after each ``step`` texts encoded; an encoder with ``encode_batches``
        (the built-in ones) encodes several steps at once when it has more than one thread."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            batches = [missing[start:start + step] for start in range(0, len(missing), step)]
            batched = getattr(encoder, "encode_batches", None)
            done = 0
            for batch, vectors in zip(batches, batched(batches) if batched is not None
                                      else (encode(encoder, batch) for batch in batches)):
                for text, vector in zip(batch, vectors):
                    self._vectors[text] = vector
                done += len(batch)
                if progress is not None:
                    progress(done, len(missing))
            self.encoded += len(missing)
        if not texts:
            return encode(encoder, [])
        # np.array over the rows, not np.vstack: 0.17 s instead of 1.08 s for 193,868 vectors in memory already
        # touched; in a publish the first gather into a fresh 400 MB matrix costs ~1 s either way (page faults)
        return np.array([self._vectors[t] for t in texts], dtype=np.float32)

    def remember(self, texts: list[str], vectors: np.ndarray) -> None:
        # Plain ndarray rows, not np.memmap ones (a saved index's training vectors are memory-mapped): indexing
        # a memmap and stacking its rows costs ~5x more (0.47 vs 0.09 s to remember 193,868 vectors); the
        # rows still view the mapped pages.
        for text, vector in zip(texts, np.asarray(vectors)):
            self._vectors.setdefault(text, vector)


class _MemoTokenizer:
    """``tokenizer.tokens`` and ``words`` remembered per text: a publish re-tokenises only what changed,
    and one build runs jieba once per text (it ran three times — retrievers, entry classifier,
    vocabulary: 160 of 522 s of a 10,000-entry build under the profiler)."""

    def __init__(self, tokenizer: DomainTokenizer, memo: dict[str, list[str]]):
        self._tokenizer, self._memo = tokenizer, memo
        self._words: dict[str, list[str]] = {}

    def tokens(self, text: str, words: list[str] | None = None) -> list[str]:
        found = self._memo.get(text)
        if found is None:
            found = self._memo[text] = self._tokenizer.tokens(text, self.words(text) if words is None else words)
        return found

    def words(self, text: str) -> list[str]:
        found = self._words.get(text)
        if found is None:
            found = self._words[text] = self._tokenizer.words(text)
        return found


@_without_gc
def build_index(kb: KnowledgeBase, tokenizer: DomainTokenizer, encoder: Encoder,
                memo: VectorMemo | None = None, previous: SearchIndex | None = None,
                previous_kb: KnowledgeBase | None = None, token_memo: dict[str, list[str]] | None = None,
                progress: Callable[[int, int], None] | None = None) -> SearchIndex:
    """Every question paraphrase of both languages is one document of its entry.

    Answers are indexed lexically as well: they hold the words citizens type
    ("免费", "72小时") that no paraphrase happens to contain; measured +2 points
    P@1 on the held-out dev half. Dense search stays question-to-question, so
    its cosine keeps meaning "asked the same thing".

    ``progress(done, total)`` is called as texts are encoded (the longest step: ``hotline-bot index``
    shows it as a progress bar); each step's time is logged.
    """
    doc_entry_ids, doc_texts, answer_entry_ids, answer_texts = _documents(kb)
    intent_texts, intent_labels = [], []
    for intent, examples in kb.intent_examples.items():
        for example in examples:
            intent_texts.append(normalise(example))
            intent_labels.append(intent)
    emergency_texts, calm_texts, kinds = load_emergency_examples(kb.root, with_kinds=True)
    emergency_texts = [normalise(t) for t in emergency_texts]
    calm_texts = [normalise(t) for t in calm_texts]
    out_of_kb = [normalise(t) for t in load_out_of_kb(kb.root)]
    # Answers' vectors only train the entry classifier: a KB too large for it does not encode them (answers
    # are long: at 10,000 entries their 20,000 vectors were most of the encoder's time).
    classified = EntryClassifier.affordable(len(kb.entries))
    encoded_answers = answer_texts if classified else []
    every_text = doc_texts + intent_texts + emergency_texts + calm_texts + out_of_kb + encoded_answers
    with _phase(f"encoding {len(every_text):,} texts"):
        vectors = (memo or VectorMemo()).encode(encoder, every_text, progress)
    training_vectors = (every_text, vectors)
    answer_vectors = vectors[len(vectors) - len(encoded_answers):]
    vectors = vectors[:len(vectors) - len(encoded_answers)]
    out_of_kb_vectors = vectors[len(vectors) - len(out_of_kb):]
    vectors = vectors[:len(vectors) - len(out_of_kb)]
    n_docs, n_intents = len(doc_texts), len(intent_texts)
    doc_vectors, intent_vectors = vectors[:n_docs], vectors[n_docs:n_docs + n_intents]
    tokens_of = _MemoTokenizer(tokenizer, {} if token_memo is None else token_memo)
    doc_tokens: list[list[str]] = []
    answer_tokens: list[list[str]] = []
    if classified:  # only the entry classifier reads every text's tokens; the lexical index tokenises
        # what it does not hold yet (nothing when a provisional index is completed: 46 s at 10,000 entries)
        with _phase("tokenising"):
            doc_tokens = [tokens_of.tokens(text) for text in doc_texts]
            answer_tokens = [tokens_of.tokens(t) for t in answer_texts]
    # The six models train on two threads (their fits spend most of their time in BLAS and sparse products,
    # which release the GIL), the entry classifier first: it is the longest. Two fits with a 2-thread BLAS
    # each ran 4 threads on 2 cores (129 s instead of 27 s for today's KB): one BLAS thread each meanwhile.
    sample = np.unique(np.linspace(0, n_docs - 1, min(n_docs, MODEL_PARAPHRASES)).round().astype(np.int64))
    model_texts, model_vectors = [doc_texts[i] for i in sample], doc_vectors[sample]
    aspect_rows: list[tuple[str, str, int]] = [(doc_texts[i], str(kb.entries[doc_entry_ids[i]].aspect), int(i))
                                               for i in sample if kb.entries[doc_entry_ids[i]].aspect]
    example_vectors = vectors[n_docs + n_intents:n_docs + n_intents + len(emergency_texts)]
    with ThreadpoolController().limit(limits=1, user_api="blas"), \
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="index-models") as pool:
        entries_job = pool.submit(_train_entries, doc_texts, doc_tokens, doc_entry_ids, doc_vectors,
                                  (answer_texts, answer_tokens, answer_entry_ids, answer_vectors) if encoded_answers
                                  else ([], [], [], answer_vectors),
                                  previous.entries if previous else None)
        # The intent, emergency, aspect and topic models see the paraphrases as one class among others: a
        # sample spread over every entry is enough, and keeps their fit flat in the KB's size (all of
        # today's 1,825; a 10,000-entry KB's 124,152 took 118 s of fitting).
        aspects_job = pool.submit(IntentClassifier.train, [r[0] for r in aspect_rows], [r[1] for r in aspect_rows],
                                  doc_vectors[[r[2] for r in aspect_rows]],
                                  previous=previous.aspects if previous else None) \
            if len({a for _, a, _ in aspect_rows}) >= 2 else None
        intents_job = pool.submit(IntentClassifier.train, model_texts + intent_texts,
                                  [FAQ_INTENT] * len(model_texts) + intent_labels,
                                  np.vstack([model_vectors, intent_vectors]),
                                  previous=previous.intents if previous else None)
        emergency_job = pool.submit(train_emergency_detector, model_texts, model_vectors, intent_texts,
                                    intent_labels, intent_vectors, emergency_texts, calm_texts + out_of_kb,
                                    np.vstack([vectors[n_docs + n_intents:], out_of_kb_vectors]),
                                    previous=previous.emergency if previous else None)
        crisis_job = pool.submit(IntentClassifier.train, emergency_texts, kinds, example_vectors,
                                 previous=previous.crisis_kinds if previous else None) if len(set(kinds)) >= 2 else None
        topic_job = pool.submit(train_topic_classifier, model_texts, model_vectors, out_of_kb, out_of_kb_vectors,
                                previous=previous.topic if previous else None) if out_of_kb else None
        with _phase("lexical and dense indexes, and the models"):
            if previous is not None and previous.provisional and previous.kb_version == kb.version \
                    and previous.doc_texts == doc_texts and previous.lexical_entry_ids == doc_entry_ids + answer_entry_ids:
                # completing a provisional index: its retrievers are this version's already (rebuilding
                # BM25 took 26 of the 36.5 s of a retraining at 10,000 entries)
                lexical, dense = previous.lexical, previous.dense
            else:
                lexical, dense = build_retrievers(doc_texts, doc_vectors, tokens_of, answer_texts,
                                                  previous.dense if previous is not None else None,
                                                  previous.lexical if previous is not None else None)
            entries, intents, emergency = entries_job.result(), intents_job.result(), emergency_job.result()
            aspects = aspects_job.result() if aspects_job else None
            crisis_kinds = crisis_job.result() if crisis_job else None
            topic = topic_job.result() if topic_job else None
    with _phase("vocabulary"):
        vocabulary = build_vocabulary(kb, tokens_of, previous.vocabulary if previous else None,
                                      _unchanged(kb, previous_kb))
    return SearchIndex(kb.version, doc_entry_ids, doc_texts, doc_entry_ids + answer_entry_ids,
                       lexical, dense, intents, entries, emergency, vocabulary, aspects,
                       crisis_kinds, topic, training_vectors)


def _train_entries(texts: list[str], tokens: list[list[str]], labels: list[str], vectors: np.ndarray,
                   answers: tuple[list[str], list[list[str]], list[str], np.ndarray],
                   previous: EntryClassifier | None) -> EntryClassifier | None:
    if not EntryClassifier.affordable(len(set(labels))):
        log.warning("%d entries: no entry classifier (retrieval alone ranks them)", len(set(labels)))
        return None
    try:
        return EntryClassifier.train(texts, tokens, labels, vectors, answers=answers, previous=previous)
    except TooLarge as exc:
        log.warning("no entry classifier: %s (retrieval alone ranks the entries)", exc)
        return None


@_without_gc
def update_index(kb: KnowledgeBase, tokenizer: DomainTokenizer, encoder: Encoder, previous: SearchIndex | None,
                 previous_kb: KnowledgeBase | None, memo: VectorMemo,
                 token_memo: dict[str, list[str]] | None = None, quick: bool = False) -> SearchIndex:
    """The index of ``kb``, rebuilding only what its changes touch (a publish).

    When the question paraphrases, their entries and aspects are unchanged (an answer, a source,
    a date or a follow-up was edited), the trained models and the dense index are reused and
    only the lexical index (it holds the answers) and the vocabulary are rebuilt: well under a
    second. When only paraphrases changed (same entries, same aspects) and ``quick`` is set, the
    dense index is rebuilt too and the models are reused: a *provisional* index, also well under
    a second, that ``retrain_index`` completes. Otherwise everything is retrained, but only new or
    changed texts go through the encoder (``memo`` holds the vectors of every text seen before,
    seeded from ``previous``)."""
    doc_entry_ids, doc_texts, answer_entry_ids, answer_texts = _documents(kb)
    same_entries = (previous is not None and previous_kb is not None
                    and kb.entries.keys() == previous_kb.entries.keys()
                    and all(kb.entries[e].aspect == previous_kb.entries[e].aspect for e in kb.entries))
    same_docs = (same_entries and previous is not None and previous.doc_texts == doc_texts
                 and previous.doc_entry_ids == doc_entry_ids)
    if previous is None or not (same_docs or (quick and same_entries)):
        if previous is not None:  # texts will be encoded: reuse every vector known
            if previous.dense.size == len(previous.doc_texts):
                memo.remember(previous.doc_texts, previous.dense.vectors())
            if previous.training_vectors is not None:
                memo.remember(*previous.training_vectors)
        # retrain, each model warm-started from the previous fit
        return build_index(kb, tokenizer, encoder, memo, previous=previous, previous_kb=previous_kb,
                           token_memo=token_memo)
    tokens_of = _MemoTokenizer(tokenizer, {} if token_memo is None else token_memo)
    vocabulary = build_vocabulary(kb, tokenizer, previous.vocabulary, _unchanged(kb, previous_kb))
    if same_docs:  # provisional stays what it was: the models are the previous index's either way
        lexical = LexicalRetriever.build([*doc_texts, *answer_texts], tokens_of.tokens, previous.lexical)
        return dataclasses.replace(previous, kb_version=kb.version, lexical=lexical,
                                   lexical_entry_ids=doc_entry_ids + answer_entry_ids, vocabulary=vocabulary)
    with _phase("lexical index"):
        lexical = LexicalRetriever.build([*doc_texts, *answer_texts], tokens_of.tokens, previous.lexical)
    with _phase("dense index"):
        # Only new paraphrases are encoded; the others keep their place in the previous index (a retraining
        # later remembers every vector of this one).
        if previous.dense.size == len(previous.doc_texts):
            position = {text: row for row, text in enumerate(previous.doc_texts)}
            rows = np.fromiter((position.get(text, -1) for text in doc_texts), dtype=np.int64, count=len(doc_texts))
            fresh = [doc_texts[i] for i in np.flatnonzero(rows < 0)]
            dense = previous.dense.updated(rows, memo.encode(encoder, fresh))
        else:
            dense = DenseRetriever.build(memo.encode(encoder, doc_texts), previous.dense)
    return dataclasses.replace(previous, kb_version=kb.version, doc_entry_ids=doc_entry_ids, doc_texts=doc_texts,
                               lexical_entry_ids=doc_entry_ids + answer_entry_ids, lexical=lexical, dense=dense,
                               vocabulary=vocabulary, provisional=True)


def retrain_index(kb: KnowledgeBase, tokenizer: DomainTokenizer, encoder: Encoder, provisional: SearchIndex,
                  memo: VectorMemo, token_memo: dict[str, list[str]] | None = None) -> SearchIndex:
    """The complete index of ``kb`` from a provisional one: every model retrained, warm-started from the
    models the provisional index still carries; its vectors and vocabulary are reused."""
    if provisional.training_vectors is not None:
        memo.remember(*provisional.training_vectors)
    memo.remember(provisional.doc_texts, provisional.dense.vectors())
    return build_index(kb, tokenizer, encoder, memo, previous=provisional, previous_kb=kb, token_memo=token_memo)


def _unchanged(kb: KnowledgeBase, previous_kb: KnowledgeBase | None) -> set[str]:
    if previous_kb is None:
        return set()
    return {e for e in kb.entries if e in previous_kb.entries and kb.entries[e] == previous_kb.entries[e]}


def _documents(kb: KnowledgeBase) -> tuple[list[str], list[str], list[str], list[str]]:
    doc_entry_ids: list[str] = []
    doc_texts: list[str] = []
    answer_entry_ids: list[str] = []
    answer_texts: list[str] = []
    for entry in kb.entries.values():
        for question in [*entry.questions.zh, *entry.questions.en]:
            doc_entry_ids.append(entry.id)
            doc_texts.append(normalise_kb_text(question))
        for answer in (entry.answer.zh, entry.answer.en):
            answer_entry_ids.append(entry.id)
            answer_texts.append(normalise_kb_text(answer))
    return doc_entry_ids, doc_texts, answer_entry_ids, answer_texts


def train_topic_classifier(doc_texts: list[str], doc_vectors: np.ndarray, out_of_kb_texts: list[str],
                           out_of_kb_vectors: np.ndarray,
                           previous: BinaryTextClassifier | None = None) -> BinaryTextClassifier:
    """In the KB (every paraphrase) vs in the domain but not in the KB (the out-of-KB training questions)."""
    return BinaryTextClassifier.train([*doc_texts, *out_of_kb_texts], [1] * len(doc_texts) + [0] * len(out_of_kb_texts),
                                      np.vstack([doc_vectors, out_of_kb_vectors]), previous=previous)


def build_vocabulary(kb: KnowledgeBase, tokenizer: DomainTokenizer | _MemoTokenizer, previous: Vocabulary | None = None,
                     unchanged: Set[str] = frozenset()) -> Vocabulary:
    """Words of each entry's questions and answers (all variants), for the scope model's entity mismatch.
    Entries in ``unchanged`` keep their words from ``previous`` (a publish re-tokenises only edits)."""
    words: dict[str, Set[str]] = {}
    reused = previous.entry_words if previous is not None and unchanged else {}
    for entry in kb.entries.values():
        if entry.id in unchanged and entry.id in reused:
            words[entry.id] = reused[entry.id]  # the same object: Vocabulary does not count it again
            continue
        texts = [*entry.questions.zh, *entry.questions.en, entry.answer.zh, entry.answer.en]
        for variant in entry.variants:
            texts += [variant.answer.zh, variant.answer.en]
        words[entry.id] = {w for text in texts for w in tokenizer.words(normalise(text))}
    return Vocabulary(words, previous if reused else None)


def train_emergency_detector(doc_texts: list[str], doc_vectors: np.ndarray, intent_texts: list[str],
                             intent_labels: list[str], intent_vectors: np.ndarray, emergency_texts: list[str],
                             calm_texts: list[str], example_vectors: np.ndarray,
                             previous: LearnedEmergencyDetector | None = None) -> LearnedEmergencyDetector:
    """Positives: the red-flag examples and the ``emergency`` intent; negatives: every KB paraphrase,
    the other intents and the hard non-emergency examples (questions ABOUT symptoms and rules) — which the
    caller extends with the out-of-KB questions: none is an emergency, and without them a question off the
    KB's topics had nothing to be compared with but red flags. Round 6 (2026-12-03) measured it on 220
    off-topic questions written by someone who never saw the KB: at the threshold that keeps 98 % recall, 11
    of them ("mycoplasma pneumonia in kids is it serious", a complaint about a rude nurse) alarmed."""
    texts = [*emergency_texts, *calm_texts, *doc_texts, *intent_texts]
    labels = ([1] * len(emergency_texts) + [0] * len(calm_texts) + [0] * len(doc_texts)
              + [int(label == "emergency") for label in intent_labels])
    vectors = np.vstack([example_vectors, doc_vectors, intent_vectors])
    # EMERGENCY_C (weaker regularisation than the other binary models' 4): measured on 5-fold CV of the examples,
    # 2026-11-30 (C=16 against 4: 2.6 % of the hard non-emergency ones flagged at the 98%-recall threshold against
    # 4.6 %) and for round 6 (C=64, at its definition).
    return LearnedEmergencyDetector.train(texts, labels, vectors, C=EMERGENCY_C, previous=previous)


PROVISIONAL = "provisional"  # a marker file in an artifact folder: its models are the previous version's


def is_complete(directory: Path) -> bool:
    """A saved index of this folder exists and is not provisional."""
    return (directory / "docs.json").exists() and not (directory / PROVISIONAL).exists()


def save_index(index: SearchIndex, directory: Path) -> None:
    """Write to a temporary folder, then rename: readers never see half an index. A provisional
    index never replaces a complete one (its save may finish after the retrained index's). Savers of one
    folder (a publish's background save of the provisional index and the retraining's save, or two
    processes) take turns for the replacement: two at once both removed the old folder, and one failed."""
    if index.provisional and is_complete(directory):
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=directory.parent))
    try:
        (tmp / "docs.json").write_text(json.dumps(
            {"kb_version": index.kb_version, "entry_ids": index.doc_entry_ids, "texts": index.doc_texts,
             "lexical_entry_ids": index.lexical_entry_ids},
            ensure_ascii=False), encoding="utf-8")
        index.dense.save(tmp / "dense.faiss")
        index.lexical.save(tmp / "lexical")
        index.intents.save(tmp / "intents.pickle")
        if index.entries is not None:
            index.entries.save(tmp / "entries.pickle")
        if index.aspects is not None:
            index.aspects.save(tmp / "aspects.pickle")
        if index.crisis_kinds is not None:
            index.crisis_kinds.save(tmp / "crisis_kinds.pickle")
        if index.topic is not None:
            index.topic.save(tmp / "topic.pickle")
        index.emergency.save(tmp / "emergency.pickle")
        (tmp / "vocabulary.json").write_text(json.dumps(index.vocabulary.to_dict(), ensure_ascii=False),
                                             encoding="utf-8")
        if index.training_vectors is not None:
            texts, vectors = index.training_vectors
            (tmp / "training.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
            np.save(tmp / "training.npy", np.ascontiguousarray(vectors, dtype=np.float32))
        if index.provisional:
            (tmp / PROVISIONAL).touch()
        with _build_lock(directory, "save"):
            if index.provisional and is_complete(directory):
                return  # the retrained index landed while this was written
            if directory.exists():
                shutil.rmtree(directory)
            tmp.rename(directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def load_index(directory: Path) -> SearchIndex:
    docs = json.loads((directory / "docs.json").read_text(encoding="utf-8"))
    return SearchIndex(
        kb_version=docs["kb_version"], doc_entry_ids=docs["entry_ids"], doc_texts=docs["texts"],
        lexical_entry_ids=docs["lexical_entry_ids"],
        lexical=LexicalRetriever.load(directory / "lexical"),
        dense=DenseRetriever.load(directory / "dense.faiss"),
        intents=IntentClassifier.load(directory / "intents.pickle"),
        entries=_optional(EntryClassifier, directory / "entries.pickle"),
        emergency=LearnedEmergencyDetector.load(directory / "emergency.pickle"),
        vocabulary=Vocabulary(json.loads((directory / "vocabulary.json").read_text(encoding="utf-8"))),
        aspects=_optional(IntentClassifier, directory / "aspects.pickle"),
        crisis_kinds=_optional(IntentClassifier, directory / "crisis_kinds.pickle"),
        topic=_optional(BinaryTextClassifier, directory / "topic.pickle"),
        training_vectors=_training_vectors(directory),
        provisional=(directory / PROVISIONAL).exists(),
    )


def _training_vectors(directory: Path) -> tuple[list[str], np.ndarray] | None:
    """Memory-mapped: only a publish reads them."""
    if not (directory / "training.npy").exists():
        return None
    texts = json.loads((directory / "training.json").read_text(encoding="utf-8"))
    return texts, np.load(directory / "training.npy", mmap_mode="r")


def _optional(cls: type[_Loadable], path: Path) -> _Loadable | None:
    return cls.load(path) if path.exists() else None


def load_or_build_index(kb: KnowledgeBase, tokenizer: DomainTokenizer, encoder: Encoder,
                        index_root: Path, encoder_key: str) -> SearchIndex:
    """The saved index of this KB version, or a new one built and saved. Processes that start together
    on one machine build it once: the first takes a lock, the others wait and then load what it saved
    (two test workers each built the same index at once: ~45 s of two cores instead of ~25 s of one)."""
    directory = artifact_dir(index_root, kb.version, encoder_key)
    found = _load_saved(directory)
    if found is not None:
        return found
    with _build_lock(directory):
        found = _load_saved(directory)  # built by another process while this one waited
        if found is not None:
            return found
        index = build_index(kb, tokenizer, encoder)
        try:
            save_index(index, directory)
        except OSError as exc:
            log.warning("could not save index to %s: %s (serving from memory)", directory, exc)
        return index


def _load_saved(directory: Path) -> SearchIndex | None:
    if not is_complete(directory):  # a start builds a complete index rather than serve a provisional one
        return None
    try:
        return load_index(directory)
    except Exception as exc:  # a corrupt artifact must not keep the bot down
        log.warning("index at %s unreadable (%s); rebuilding", directory, exc)
        return None


@contextlib.contextmanager
def _build_lock(directory: Path, purpose: str = "") -> Iterator[None]:
    """An advisory lock beside the artifact folder (one per ``purpose``: the build holds its own while it
    saves); no lock (just build) where the folder is not writable. Threads of one process exclude each
    other too: each open() is its own open file description."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        handle = open(directory.parent / f".{directory.name}{'.' + purpose if purpose else ''}.lock", "w")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


