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
    StoreUnavailableError,
    WriteResult,
)

if TYPE_CHECKING:
    from qa.settings import Settings


def create_store(settings: Settings) -> PassageStore:
    """The passage store the settings name (the embedded SQLite file in the data folder by default;
    PostgreSQL with ``QA_STORE=postgres``)."""
    if settings.store == "postgres":
        from qa.store.postgres import PostgresStore

        return PostgresStore(settings.postgres_dsn.get_secret_value(), pool_size=settings.postgres_pool_size,
                             timeout_s=settings.backend_timeout_s)
    from qa.store.sqlite import SqlitePassageStore

    return SqlitePassageStore(settings.data_dir / "store.sqlite")


__all__ = [
    "DEFAULT_COLLECTION", "Collection", "CollectionExistsError", "CollectionNotFoundError", "IndexEntry",
    "InvalidCollectionNameError", "PassageStore", "SearchFilter", "StoredPassage", "StoreError", "StoreUnavailableError", "WriteResult",
    "create_store",
]
