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


def test_a_rebuild_keeps_the_trained_lists_of_the_index_it_replaces(vectors, monkeypatch):
    """A publish at 10,000 entries re-ran k-means over every paraphrase for one changed question; the lists
    of the index being replaced are reused (and found things as well) while the size stays within a quarter."""
    import faiss

    monkeypatch.setattr(dense, "EXACT_LIMIT", 1000)
    first = DenseRetriever.build(vectors[:5000])
    trained = []
    monkeypatch.setattr(faiss.IndexIVFFlat, "train", lambda self, x: trained.append(len(x)))
    again = DenseRetriever.build(vectors, previous=first)  # 6,000 vectors: 1.2x
    assert trained == [] and again.size == len(vectors)
    centroids = faiss.extract_index_ivf(first._index).quantizer.reconstruct_n(0, first._index.nlist)  # noqa: SLF001
    np.testing.assert_array_equal(again._index.quantizer.reconstruct_n(0, again._index.nlist), centroids)  # noqa: SLF001
    rng = np.random.default_rng(9)
    hits = sum(int(np.argmax(again.scores(vectors[i])) == i) for i in rng.integers(0, len(vectors), 100))
    assert hits >= 95
    np.testing.assert_allclose(again.vectors(), vectors, atol=1e-6)
    with pytest.raises(RuntimeError):  # half the size: new lists are trained (the patched train trains nothing)
        DenseRetriever.build(vectors[:3000], previous=again)
    assert trained == [min(3000, int(dense.LISTS_PER_ROOT * 3000 ** 0.5) * dense.TRAIN_PER_LIST)]


@pytest.mark.parametrize("limit", [1000, dense.EXACT_LIMIT])
def test_a_publish_update_searches_like_a_build_over_every_vector(vectors, limit, monkeypatch, tmp_path):
    """A publish that adds, drops and moves a few paraphrases: the vectors of the others are copied from
    the index it replaces (inverted lists renumbered, not rebuilt: 2.5 s at 10,000 entries) and only the
    new ones are given to it; every search then equals a build over the new document list."""
    monkeypatch.setattr(dense, "EXACT_LIMIT", limit)
    first = DenseRetriever.build(vectors[:5800])
    rng = np.random.default_rng(10)
    kept = np.delete(np.arange(5800), rng.choice(5800, 40, replace=False))  # 40 paraphrases dropped
    rows = np.insert(kept, [0, 17, 17, 3000, len(kept)], -1)  # 5 added, first, middle and last among them
    fresh = np.flatnonzero(rows < 0)
    added = vectors[5800:5800 + len(fresh)]
    documents = np.empty((len(rows), vectors.shape[1]), dtype=np.float32)
    documents[rows >= 0], documents[fresh] = vectors[rows[rows >= 0]], added
    updated = first.updated(rows, added)
    rebuilt = DenseRetriever.build(documents, previous=first)
    assert updated.size == len(rows) and (updated._matrix is None) == (limit == 1000)  # noqa: SLF001
    np.testing.assert_array_equal(updated.vectors(), documents)
    updated.save(tmp_path / "dense.faiss")  # as a publish's background save writes it, and another process reads it
    loaded = DenseRetriever.load(tmp_path / "dense.faiss")
    for query in [*documents[[0, 17, 18, 2999, -1]], *vectors[rng.integers(0, len(vectors), 20)]]:
        np.testing.assert_array_equal(updated.scores(query), rebuilt.scores(query))
        np.testing.assert_array_equal(loaded.scores(query), rebuilt.scores(query))
    with pytest.raises(ValueError, match="5 new documents but 4 vectors"):
        first.updated(rows, added[:4])
    twice = np.append(rows, rows[1])  # the same text in two entries: one previous vector for two documents
    np.testing.assert_array_equal(first.updated(twice, added).vectors(), np.vstack([documents, documents[1:2]]))
