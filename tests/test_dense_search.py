"""Dense search: exact up to EXACT_LIMIT paraphrases, inverted lists beyond (a 10,000-entry KB has
124,152 paraphrases: scoring all of them read 254 MB of vectors per query)."""
import numpy as np
import pytest

from bot.retrieval import dense
from bot.retrieval.dense import DenseRetriever


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture()
def vectors() -> np.ndarray:
    rng = np.random.default_rng(7)
    centres = _unit(rng.normal(size=(200, 64)))
    return _unit(centres[rng.integers(0, 200, 6000)] + 0.3 * rng.normal(size=(6000, 64)))


def test_beyond_the_exact_limit_the_nearest_documents_are_found_approximately(vectors, tmp_path, monkeypatch):
    monkeypatch.setattr(dense, "EXACT_LIMIT", 1000)
    approximate = DenseRetriever.build(vectors)
    assert approximate._matrix is None  # noqa: SLF001 - the approximate path is the one under test
    rng = np.random.default_rng(8)
    hits = 0
    for i in rng.integers(0, len(vectors), 100):
        query = _unit(vectors[i:i + 1] + 0.05 * rng.normal(size=(1, 64)))[0]
        scores = approximate.scores(query)
        assert scores.shape == (len(vectors),)
        assert np.count_nonzero(scores) <= dense.TOP_K
        hits += int(np.argmax(scores) == np.argmax(vectors @ query))
    assert hits >= 95  # recall@1 of the inverted lists against brute force
    np.testing.assert_allclose(approximate.vectors(), vectors, atol=1e-6)  # a publish reuses them
    approximate.save(tmp_path / "dense.faiss")
    loaded = DenseRetriever.load(tmp_path / "dense.faiss")
    np.testing.assert_allclose(loaded.vectors(), vectors, atol=1e-6)
    query = vectors[42]
    np.testing.assert_allclose(loaded.scores(query), approximate.scores(query), atol=1e-6)


def test_up_to_the_limit_every_document_is_scored_exactly(vectors):
    retriever = DenseRetriever.build(vectors[:500])
    query = vectors[3]
    np.testing.assert_allclose(retriever.scores(query), vectors[:500] @ query, atol=1e-5)
