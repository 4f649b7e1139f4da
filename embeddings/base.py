"""The one small interface every embedding backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np


QUERY_BATCH_SIZE = 64  # questions per forward pass of a local model (passages use the configured batch size)


def truncate_normalised(vectors: np.ndarray, dim: int | None) -> np.ndarray:
    """``vectors`` cut to their first ``dim`` components and re-normalised (Matryoshka truncation);
    with ``dim`` None, as they are. Always contiguous float32."""
    if dim:
        vectors = vectors[:, :dim]
        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def titled_prompt(prompt: str, title: str | None) -> str:
    """``prompt`` with a document's ``title`` in its title slot, for models whose passage prompt has one
    (EmbeddingGemma: ``title: none | text: `` → ``title: {title} | text: ``); otherwise ``prompt``.
    Underscores (file and wiki names) become spaces, whitespace runs one space."""
    title = " ".join((title or "").replace("_", " ").split())
    if title and "title: none" in prompt:
        return prompt.replace("title: none", f"title: {title}", 1)
    return prompt


Titles = Sequence[str | None] | None  # per text: the title of its document (None: no title)


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
    def encode_passages(self, texts: Sequence[str], titles: Titles = None) -> np.ndarray:
        """Encode passages: shape (len(texts), dimension), float32, rows L2-normalised. ``titles`` (one
        per text) go into the model's passage prompt where it has a slot for them (see
        :func:`titled_prompt`); models without one ignore them."""

    @property
    def contextual_spans(self) -> bool:
        """Whether :meth:`encode_passages_with_spans` pools spans from the passage's own forward pass."""
        return False

    def encode_passages_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                                   titles: Titles = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Passage vectors, and for each passage one vector per ``(start, end)`` character span of it.

        This default encodes every span as a passage of its own, with its passage's title (from
        ``titles``) in the prompt: a sentence alone loses the subject its paragraph gave it ("it",
        "he"), and the title gives it back (docs/quality.md has what that does to the evidence).
        Passages themselves are encoded without it. Backends that can pool spans from the passage's
        forward pass override this (and say so in :attr:`contextual_spans`).
        """
        texts = list(texts)
        titles = list(titles) if titles is not None else [None] * len(texts)
        pieces = [text[s:e] for text, own in zip(texts, spans) for s, e in own]
        piece_titles = [title for title, own in zip(titles, spans) for _ in own]
        vectors = self.encode_passages(texts + pieces, [None] * len(texts) + piece_titles)
        out, cursor = [], len(texts)
        for own in spans:
            out.append(vectors[cursor : cursor + len(own)])
            cursor += len(own)
        return vectors[: len(texts)], out

    def count_tokens(self, text: str) -> int:
        """Tokens the model would see for ``text`` (backends with a tokenizer override this)."""
        return max(1, len(text) // 2)

    def warm_up(self) -> None:
        """Pay the model's first-use costs (weights paged in, kernels prepared for the shapes questions take)
        before the service says it is ready; this default encodes a short and a long question."""
        self.encode_queries(["warm-up"])
        self.encode_queries(["When did the warm-up start, and which stages of the search did it run through?"])


class LocalModelEmbedder(Embedder):
    """A model loaded from a local folder: its id names the folder, the weights' sha256 and any
    Matryoshka truncation (``<folder name>@<sha8>[/d<dim>]<suffix>``); vectors are truncated to ``dim``."""

    _model_id: str
    _dim: int | None
    _full: int

    def _identify(self, folder_name: str, digest: str, full: int, dim: int | None, suffix: str = "") -> None:
        """Set the id and size from the model's full vector size ``full`` and the wanted ``dim``."""
        if dim is not None and not 0 < dim <= full:
            raise ValueError(f"embedding_dim must be between 1 and {full}, got {dim}")
        self._dim = dim if dim is not None and dim < full else None
        self._full = full
        self._model_id = f"{folder_name}@{digest[:8]}" + (f"/d{self._dim}" if self._dim else "") + suffix

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dimension(self) -> int:
        return self._dim or self._full

    def _truncated(self, vectors: np.ndarray) -> np.ndarray:
        """``vectors`` cut to ``dim`` and re-normalised when the model is truncated (Matryoshka)."""
        return truncate_normalised(vectors, self._dim)


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

    @property
    def contextual_spans(self) -> bool:
        return self.inner.contextual_spans

    def encode_passages_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                                   titles: Titles = None) -> tuple[np.ndarray, list[np.ndarray]]:
        if not self.contextual_spans:  # spans are plain passages: let this wrapper's encode_passages see them
            return super().encode_passages_with_spans(texts, spans, titles)
        return self.inner.encode_passages_with_spans(texts, spans, titles)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def warm_up(self) -> None:
        self.inner.warm_up()
