"""The fast evaluation paths give exactly what sklearn / numpy give (they exist for latency only)."""
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from bot.intents import BinaryTextClassifier, FastLinear, IntentClassifier, tfidf_row
from bot.retrieval.hybrid import _Grouping

TEXTS = ["核酸结果多久出来", "健康码变黄了怎么办", "where can i get a pcr test", "疫苗在哪里打", "救命 喘不上气",
         "what does a yellow code mean", "做核酸要钱吗", "我想问问"]


def test_tfidf_row_equals_sklearn_transform():
    for kwargs in ({"analyzer": "char_wb", "ngram_range": (1, 3), "sublinear_tf": True},
                   {"analyzer": "word", "sublinear_tf": False}):
        vectorizer = TfidfVectorizer(**kwargs).fit(TEXTS[:6])
        for text in [*TEXTS, "完全没见过的字", ""]:
            expected = vectorizer.transform([text]).toarray()[0]
            got = np.zeros_like(expected)
            indices, values = tfidf_row(vectorizer, text)
            got[indices] = values
            assert np.allclose(got, expected), text


def test_fast_linear_equals_predict_proba():
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(TEXTS), 8))
    labels = ["a", "b", "c", "a", "b", "c", "a", "b"]
    intents = IntentClassifier.train(TEXTS, labels, vectors)
    binary = BinaryTextClassifier.train(TEXTS, [0, 1, 0, 1, 0, 1, 0, 1], vectors)
    for text, vector in zip(TEXTS, vectors):
        features = intents._features(intents._vectorizer.transform([text]), vector.reshape(1, -1))
        expected = intents._model.predict_proba(features)[0]
        assert abs(intents.run(text, vector).confidence - expected.max()) < 1e-9
        stacked = sparse.hstack([sparse.csr_matrix(vector.reshape(1, -1)),
                                 binary._vectorizer.transform([text])]).tocsr()
        assert abs(binary.probability(text, vector) - binary._model.predict_proba(stacked)[0][1]) < 1e-9
    model = LogisticRegression().fit(np.c_[vectors, rng.normal(size=(len(TEXTS), 3))], labels)
    fast = FastLinear(model, 8, [3])
    x = rng.normal(size=3)
    row = (np.arange(3), x)
    assert np.allclose(fast.probabilities(vectors[0], row), model.predict_proba(np.r_[vectors[0], x].reshape(1, -1))[0])


def test_grouped_max_equals_ufunc_at():
    rng = np.random.default_rng(1)
    doc_entry = rng.integers(0, 7, size=50)
    doc_entry[doc_entry == 3] = 4  # entry 3 has no document
    scores = rng.normal(size=50).astype(np.float32)
    expected = np.full(7, -np.inf, dtype=np.float32)
    np.maximum.at(expected, doc_entry, scores)
    assert np.array_equal(_Grouping(doc_entry, 7).max(scores), expected)


def test_the_cached_use_model_encodes_exactly_like_the_package(tmp_path):
    """The fast-loading copy (pickled tokenizer, memory-mapped weights) is the same model."""
    import numpy as np

    from bot.encoders import UniversalSentenceEncoder

    texts = ["核酸检测多少钱", "健康碼變黃怎麼辦", "How long do PCR results take?", "x" * 300]
    reference = UniversalSentenceEncoder(threads=1).encode(texts)
    first = UniversalSentenceEncoder(threads=1, cache_dir=tmp_path)  # writes the cache
    again = UniversalSentenceEncoder(threads=1, cache_dir=tmp_path)  # loads it
    assert list(tmp_path.glob("use-*/table.npy"))
    assert np.allclose(first.encode(texts), reference, atol=1e-6)
    assert np.allclose(again.encode(texts), reference, atol=1e-6)
    assert isinstance(again._model._model.table, np.memmap)
