"""Builds, saves and loads everything retrieval needs from one KB version.

Artifacts live in ``<data_dir>/index/<kb_version>-<encoder>/``; a server
loads them when they match the KB on disk and rebuilds them otherwise, so an
edited KB can never be served with a stale index.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.encoders import Encoder, encode
from bot.intents import FAQ_INTENT, IntentClassifier
from bot.kb import KnowledgeBase
from bot.retrieval.dense import DenseRetriever
from bot.retrieval.lexical import LexicalRetriever
from bot.text import DomainTokenizer, normalise

log = logging.getLogger(__name__)

# Bump when what is stored changes shape or meaning (tokeniser, document set),
# so old artifacts are rebuilt instead of loaded.
INDEX_FORMAT = 2


@dataclass
class SearchIndex:
    kb_version: str
    doc_entry_ids: list[str]  # one per question paraphrase (dense and lexical)
    doc_texts: list[str]
    lexical_entry_ids: list[str]  # the paraphrases, then each entry's answers (lexical only)
    lexical: LexicalRetriever
    dense: DenseRetriever
    intents: IntentClassifier


def artifact_dir(index_root: Path, kb_version: str, encoder_key: str) -> Path:
    return index_root / f"v{INDEX_FORMAT}-{kb_version}-{encoder_key}"


def build_retrievers(doc_texts: list[str], doc_vectors: np.ndarray, tokenizer: DomainTokenizer,
                     extra_lexical_texts: list[str] = ()) -> tuple[LexicalRetriever, DenseRetriever]:
    """Dense over the question documents; lexical over those plus any extra texts."""
    lexical = LexicalRetriever.build([tokenizer.tokens(text) for text in [*doc_texts, *extra_lexical_texts]])
    return lexical, DenseRetriever.build(doc_vectors)


def build_index(kb: KnowledgeBase, tokenizer: DomainTokenizer, encoder: Encoder) -> SearchIndex:
    """Every question paraphrase of both languages is one document of its entry.

    Answers are indexed lexically as well: they hold the words citizens type
    ("免费", "72小时") that no paraphrase happens to contain; measured +2 points
    P@1 on the held-out dev half. Dense search stays question-to-question, so
    its cosine keeps meaning "asked the same thing".
    """
    doc_entry_ids: list[str] = []
    doc_texts: list[str] = []
    answer_entry_ids: list[str] = []
    answer_texts: list[str] = []
    for entry in kb.entries.values():
        for question in [*entry.questions.zh, *entry.questions.en]:
            doc_entry_ids.append(entry.id)
            doc_texts.append(normalise(question))
        for answer in (entry.answer.zh, entry.answer.en):
            answer_entry_ids.append(entry.id)
            answer_texts.append(normalise(answer))
    intent_texts, intent_labels = [], []
    for intent, examples in kb.intent_examples.items():
        for example in examples:
            intent_texts.append(normalise(example))
            intent_labels.append(intent)
    vectors = encode(encoder, doc_texts + intent_texts)
    lexical, dense = build_retrievers(doc_texts, vectors[: len(doc_texts)], tokenizer, answer_texts)
    intents = IntentClassifier.train(
        doc_texts + intent_texts, [FAQ_INTENT] * len(doc_texts) + intent_labels, vectors
    )
    return SearchIndex(kb.version, doc_entry_ids, doc_texts, doc_entry_ids + answer_entry_ids,
                       lexical, dense, intents)


def save_index(index: SearchIndex, directory: Path) -> None:
    """Write to a temporary folder, then rename: readers never see half an index."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=directory.parent))
    try:
        (tmp / "docs.json").write_text(json.dumps(
            {"kb_version": index.kb_version, "entry_ids": index.doc_entry_ids, "texts": index.doc_texts,
             "lexical_entry_ids": index.lexical_entry_ids},
            ensure_ascii=False), encoding="utf-8")
        index.dense.save(tmp / "dense.faiss")
        index.lexical.save(tmp / "lexical")
        index.intents.save(tmp / "intents.joblib")
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
        intents=IntentClassifier.load(directory / "intents.joblib"),
    )


def load_or_build_index(kb: KnowledgeBase, tokenizer: DomainTokenizer, encoder: Encoder,
                        index_root: Path, encoder_key: str) -> SearchIndex:
    directory = artifact_dir(index_root, kb.version, encoder_key)
    if (directory / "docs.json").exists():
        try:
            return load_index(directory)
        except Exception as exc:  # a corrupt artifact must not keep the bot down
            log.warning("index at %s unreadable (%s); rebuilding", directory, exc)
    index = build_index(kb, tokenizer, encoder)
    try:
        save_index(index, directory)
    except OSError as exc:
        log.warning("could not save index to %s: %s (serving from memory)", directory, exc)
    return index


