"""Passage store: the source of truth (documents, passages, sentences, vectors, collections, changes).

``create_store(settings)`` builds the configured backend; :mod:`qa.store.base` is the protocol.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qa.store.base import (
    DEFAULT_COLLECTION,
    Collection,
    CollectionExistsError,
    CollectionNotFoundError,
    IndexEntry,
    InvalidCollectionNameError,
    PassageStore,
    SearchFilter,
    StoredPassage,
    StoreError,
    WriteResult,
)

if TYPE_CHECKING:
    from qa.settings import Settings


def create_store(settings: Settings) -> PassageStore:
    """The passage store the settings name (the embedded SQLite file in the data folder by default)."""
    from qa.store.sqlite import SqlitePassageStore

    return SqlitePassageStore(settings.data_dir / "store.sqlite")


__all__ = [
    "DEFAULT_COLLECTION", "Collection", "CollectionExistsError", "CollectionNotFoundError", "IndexEntry",
    "InvalidCollectionNameError", "PassageStore", "SearchFilter", "StoredPassage", "StoreError", "WriteResult",
    "create_store",
]
