"""The passage store seam: what ingest, the indexes, search and the routers need of a store.

The store is the source of truth. It issues every passage's integer ``rowid`` (the key the derived
indexes use), keeps documents, passages, sentence spans and vectors per collection, and records every
change in a sequence (``changes_since``) that derived indexes replay to catch up after a crash or
an outage. Everything that crosses this seam is a plain value (no cursors or connections), so a
remote store (PostgreSQL) implements the same protocol with batched calls.

Duplicate policy (explicit, every backend): document ids are unique within a collection;
``replace_document`` replaces an id's earlier version whole; ``document_by_hash`` finds stored
content within one collection, so the same file may live in two collections.

Every backend passes ``tests/contract/test_store_contract.py``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from qa.models import Document, Passage

DEFAULT_COLLECTION = "default"
COLLECTION_RULE = "1 to 64 characters: lower-case letters, digits, '-' or '_', starting with a letter or digit"
COLLECTION_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # the same rule, published in the OpenAPI schema
_COLLECTION_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


class StoreError(RuntimeError):
    """The store cannot be used as it is (unreadable file, unreachable server)."""


class StoreUnavailableError(StoreError):
    """A remote store cannot be reached or answer right now (the caller answers 503 and retries later)."""


class CollectionNotFoundError(LookupError):
    def __init__(self, name: str, known: Sequence[str] = ()):
        super().__init__(f"no collection named {name!r}" + (f"; collections: {', '.join(known)}" if known else ""))
        self.name = name
        self.known = list(known)


class CollectionExistsError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"a collection named {name!r} exists already")
        self.name = name


class InvalidCollectionNameError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"{name!r} is not a valid collection name: {COLLECTION_RULE}")
        self.name = name


def check_collection_name(name: str) -> str:
    """``name`` when it follows :data:`COLLECTION_RULE`, else :class:`InvalidCollectionNameError`."""
    if not isinstance(name, str) or not _COLLECTION_NAME.fullmatch(name):
        raise InvalidCollectionNameError(name)
    return name


@dataclass(frozen=True)
class Collection:
    name: str
    description: str
    created_at: str
    documents: int = 0
    passages: int = 0


@dataclass(frozen=True)
class SearchFilter:
    """Restrictions every index applies itself, given as values (a remote engine turns them into its
    own filter expression). ``None`` means "no restriction"; an empty tuple matches nothing."""

    collection: str = DEFAULT_COLLECTION
    lang: str | None = None
    document_ids: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    published_from: str | None = None  # ISO date (YYYY-MM-DD or a prefix of it), inclusive
    published_to: str | None = None  # inclusive

    @property
    def matches_nothing(self) -> bool:
        return self.document_ids == () or self.sources == ()

    def accepts(self, entry: IndexEntry) -> bool:
        """Reference semantics of the filter on one entry (backends may evaluate it any way they like,
        but must agree with this)."""
        if entry.collection != self.collection:
            return False
        if self.lang is not None and entry.lang != self.lang:
            return False
        if self.document_ids is not None and entry.document_id not in self.document_ids:
            return False
        if self.sources is not None and entry.source not in self.sources:
            return False
        if self.published_from is not None or self.published_to is not None:
            if not entry.published:
                return False
            low, high = published_bounds(self.published_from, self.published_to)
            if not low <= entry.published[:10] <= high:
                return False
        return True


def published_bounds(published_from: str | None, published_to: str | None) -> tuple[str, str]:
    """Inclusive ISO-date bounds as comparable strings ("2025" → 2025-01-01 … 2025-12-31)."""
    low = (published_from or "0000-01-01")[:10]
    low = low + "-01-01"[len(low) - 4:] if len(low) < 10 else low
    high = (published_to or "9999-12-31")[:10]
    high = high + "-12-31"[len(high) - 4:] if len(high) < 10 else high
    return low, high


@dataclass(frozen=True)
class StoredPassage:
    """A passage ready to be written: the record, its lexical tokens and its vectors."""

    passage: Passage
    tokens: list[str]
    vector: np.ndarray
    sentences: tuple[tuple[int, int], ...] = ()  # (start, end) document offsets of the passage's sentences
    sentence_vectors: np.ndarray | None = None  # one row per sentence, same model as ``vector``


@dataclass(frozen=True)
class IndexEntry:
    """What the derived indexes hold of one passage: its key, the attributes filters use, its tokens
    and its vector."""

    rowid: int
    collection: str
    document_id: str
    lang: str
    source: str | None
    published: str | None
    tokens: tuple[str, ...]
    vector: np.ndarray


@dataclass(frozen=True)
class Change:
    """One step of the store's change sequence. ``add``/``remove``: one passage; ``drop``: a whole
    collection (``rowid`` 0)."""

    seq: int
    op: Literal["add", "remove", "drop"]
    collection: str
    rowid: int = 0


@dataclass(frozen=True)
class WriteResult:
    """What one write did: passage rowids removed and added, and the store's sequence after it."""

    removed: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    seq: int = 0


class PassageStore(ABC):
    """Documents, passages, sentences and vectors per collection; the source of truth."""

    # --- collections -----------------------------------------------------------------------------
    @abstractmethod
    def create_collection(self, name: str, description: str = "") -> Collection:
        """A new, empty collection (:class:`CollectionExistsError` when the name is taken)."""

    @abstractmethod
    def ensure_collection(self, name: str, description: str = "") -> Collection:
        """The collection, created empty when missing."""

    @abstractmethod
    def get_collection(self, name: str) -> Collection | None: ...

    @abstractmethod
    def list_collections(self) -> list[Collection]: ...

    @abstractmethod
    def delete_collection(self, name: str) -> WriteResult | None:
        """Remove a collection with all its documents and passages in one transaction (one ``drop``
        change); None when there is no such collection."""

    # --- writes ----------------------------------------------------------------------------------
    @abstractmethod
    def replace_document(self, collection: str, document: Document, text: str,
                         passages: Sequence[StoredPassage]) -> WriteResult:
        """Write a document and its passages, replacing any earlier version of its id in that
        collection, in one transaction; every removed and added passage becomes a change."""

    @abstractmethod
    def delete_document(self, collection: str, document_id: str) -> WriteResult | None:
        """Delete a document and its passages in one transaction; None if it was unknown."""

    # --- documents -------------------------------------------------------------------------------
    @abstractmethod
    def document_by_hash(self, collection: str, content_hash: str) -> str | None: ...

    @abstractmethod
    def document_hash(self, collection: str, document_id: str) -> str | None: ...

    @abstractmethod
    def get_document(self, collection: str, document_id: str) -> tuple[Document, str] | None:
        """The document (with its passage count) and its text."""

    @abstractmethod
    def list_documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[Document]:
        """Documents of a collection ordered by id."""

    @abstractmethod
    def count_documents(self, collection: str | None = None) -> int: ...

    @abstractmethod
    def count_passages(self, collection: str | None = None) -> int: ...

    # --- passages --------------------------------------------------------------------------------
    @abstractmethod
    def passages_by_rowid(self, rowids: Sequence[int]) -> dict[int, Passage]: ...

    @abstractmethod
    def passage(self, collection: str, passage_id: str) -> Passage | None: ...

    @abstractmethod
    def passages_of_document(self, collection: str, document_id: str) -> list[Passage]:
        """A document's passages in document order."""

    @abstractmethod
    def sentences_of(self, rowids: Sequence[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        """Sentence spans (document offsets) and vectors of the given passages (absent for passages
        stored without them)."""

    @abstractmethod
    def vectors_of(self, rowids: Sequence[int]) -> np.ndarray:
        """Passage vectors in the order asked (a zero row for an unknown rowid)."""

    # --- what the derived indexes follow ---------------------------------------------------------
    @abstractmethod
    def entries(self, rowids: Sequence[int]) -> list[IndexEntry]:
        """Index entries of the passages that still exist among ``rowids`` (in rowid order)."""

    @abstractmethod
    def iter_entries(self, collection: str | None = None, batch: int = 4096) -> Iterator[list[IndexEntry]]:
        """Every passage's index entry, in batches, for a full rebuild."""

    @abstractmethod
    def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        """Changes after ``seq`` in order, at most ``limit`` of them."""

    @property
    @abstractmethod
    def seq(self) -> int:
        """The sequence number of the last committed change (0 for a new store)."""

    @abstractmethod
    def prune_changes(self, upto: int) -> None:
        """Forget changes up to ``upto`` (every index has applied and persisted them); remembered as
        :attr:`pruned_upto`."""

    @property
    @abstractmethod
    def pruned_upto(self) -> int:
        """Changes up to this sequence number are forgotten: an index behind it is rebuilt, not replayed."""

    # --- meta ------------------------------------------------------------------------------------
    @abstractmethod
    def get_meta(self, key: str) -> str | None: ...

    @abstractmethod
    def set_meta(self, key: str, value: str) -> None: ...

    def close(self) -> None:
        """Release connections."""
