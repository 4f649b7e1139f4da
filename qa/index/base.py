"""The index seams: a dense (vector) index and a lexical (BM25) index, both derived from the store.

Both follow the store's change sequence: ``add``/``remove``/``drop_collection`` apply changes in
memory (cost proportional to the change, never to the corpus), ``mark_applied(seq)`` records how far
they got, and ``checkpoint()`` makes that state durable (off the request path). After a crash an
index reopens at its last checkpoint and the corpus replays ``store.changes_since(applied_seq)``;
replaying a change twice is harmless (adds of an id already present replace it, removes of an
absent id do nothing).

Filters arrive as a :class:`~qa.store.base.SearchFilter` value and are evaluated inside the index,
so a remote engine turns them into its own filter expression. Term statistics (what fusion and
calibration use) come through :meth:`LexicalIndex.term_stats`, not from a library's internals.

Every backend passes ``tests/contract/test_dense_contract.py`` or ``tests/contract/test_lexical_contract.py``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from qa.store.base import IndexEntry, SearchFilter


class IndexMismatchError(RuntimeError):
    """The index on disk (or on the server) belongs to another model or dimension, or is not a qa index."""


class IndexCorruptError(RuntimeError):
    """The index on disk cannot be read."""


class IndexUnavailableError(RuntimeError):
    """The index cannot answer right now (a remote engine down); the caller answers 503."""


@dataclass(frozen=True)
class IndexHit:
    rowid: int
    score: float
    lang: str


@dataclass(frozen=True)
class TermStats:
    """BM25 statistics of some tokens among the passages of one language in one collection."""

    documents: int  # passages of that language in the collection
    df: tuple[int, ...]  # passages holding each token, in the order asked

    def idf(self) -> np.ndarray:
        """Lucene/BM25 inverse document frequency of each token (unseen tokens: the maximum)."""
        df = np.asarray(self.df, dtype=np.float64)
        return np.log1p((self.documents - df + 0.5) / (df + 0.5))

    def known(self, tokens: Sequence[str]) -> list[str]:
        """The ``tokens`` some passage uses (``tokens`` in the order the stats were asked for)."""
        return [t for t, d in zip(tokens, self.df) if d > 0]


class DerivedIndex(ABC):
    """What both kinds of index share: following the store's changes and persisting that state."""

    @property
    @abstractmethod
    def applied_seq(self) -> int:
        """The store sequence number up to which changes have been applied (in memory)."""

    @property
    @abstractmethod
    def durable_seq(self) -> int:
        """The sequence number the last checkpoint made durable (what a restart reopens at)."""

    @abstractmethod
    def add(self, entries: Sequence[IndexEntry]) -> None:
        """Index passages (an id already present is replaced)."""

    @abstractmethod
    def remove(self, collection: str, rowids: Sequence[int]) -> None:
        """Unindex passages (absent ids are ignored)."""

    def apply(self, removed: Mapping[str, Sequence[int]], entries: Sequence[IndexEntry]) -> None:
        """Removals (collection → rowids), then additions, as one change: a backend that commits may
        commit once. The default applies them one call at a time."""
        for collection, rowids in removed.items():
            if rowids:
                self.remove(collection, rowids)
        if entries:
            self.add(entries)

    @abstractmethod
    def drop_collection(self, collection: str) -> None:
        """Unindex every passage of a collection."""

    @abstractmethod
    def mark_applied(self, seq: int) -> None:
        """Every change up to ``seq`` has been applied."""

    @abstractmethod
    def checkpoint(self) -> None:
        """Persist the applied state so that a restart resumes from it; safe to call from a background
        thread while searches and writes go on."""

    @abstractmethod
    def count(self, collection: str | None = None) -> int:
        """Passages indexed (in one collection, or in all)."""

    @abstractmethod
    def reset(self) -> None:
        """Forget everything (before a full rebuild from the store)."""

    def close(self) -> None:
        """Release resources (does not checkpoint: the caller decides)."""


class DenseIndex(DerivedIndex):
    """Nearest passages by inner product of unit vectors."""

    dimension: int
    model_id: str

    @abstractmethod
    def search(self, vector: np.ndarray, k: int, flt: SearchFilter) -> list[IndexHit]:
        """The ``k`` passages nearest to ``vector`` among those ``flt`` accepts, best first."""

    @abstractmethod
    def vectors(self, collection: str, rowids: Sequence[int]) -> np.ndarray:
        """Stored vectors of ``rowids`` in order (a zero row for an id not indexed)."""


class LexicalIndex(DerivedIndex):
    """BM25 over passage tokens, with statistics per collection and language (k1 = 1.2, b = 0.75)."""

    @abstractmethod
    def search(self, tokens: Sequence[str], lang: str, k: int, flt: SearchFilter) -> list[IndexHit]:
        """The ``k`` best BM25 matches of ``tokens`` (a repeated token counts again) among the passages
        of language ``lang`` that ``flt`` accepts; only positive scores, best first."""

    @abstractmethod
    def term_stats(self, collection: str, lang: str, tokens: Sequence[str]) -> TermStats:
        """How many passages of ``lang`` in ``collection`` hold each token, and how many there are."""
