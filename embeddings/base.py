"""The one small interface every embedding backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


class Embedder(ABC):
    """Turns questions and passages into L2-normalised float32 vectors.

    Questions and passages may be encoded differently (EmbeddingGemma uses prompts), so the two
    verbs are separate. ``model_id`` identifies the weights (and any truncation) and is stored with
    every index so that an index is never searched with vectors of another model.
    """

    @property
    @abstractmethod
    def model_id(self) -> str:
        """Stable identity of the model, e.g. ``embeddinggemma-300m@cbf5a783`` (name @ weights hash)."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        """Length of the vectors returned."""

    @abstractmethod
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Encode questions: shape (len(texts), dimension), float32, rows L2-normalised."""

    @abstractmethod
    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Encode passages: shape (len(texts), dimension), float32, rows L2-normalised."""

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for ``text`` (backends with a tokenizer override this)."""
        return max(1, len(text) // 2)


class WrappingEmbedder(Embedder):
    """An embedder that adds behaviour around another (caching, batching): identity, size and token
    counts are the wrapped model's."""

    inner: Embedder

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)
