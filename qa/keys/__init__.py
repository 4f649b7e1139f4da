"""API keys: scoped to collections and a role, kept as salted hashes beside the passage store.

``create_key_store(settings)`` builds the configured backend (:mod:`qa.keys.base` is the protocol);
:class:`~qa.keys.service.KeyService` creates, lists, revokes and authenticates (docs/security.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qa.keys.base import OPEN, ApiKey, KeyStore, Principal, Role, parse_key
from qa.keys.service import KeyRefused, KeyService

if TYPE_CHECKING:
    from qa.settings import Settings


def create_key_store(settings: Settings) -> KeyStore:
    """Where the keys live: with the passage store (``<data_dir>/keys.sqlite``, or PostgreSQL with
    ``QA_STORE=postgres`` so that every replica sees them)."""
    if settings.store == "postgres":
        from qa.keys.postgres import PostgresKeyStore

        return PostgresKeyStore(settings.postgres_dsn.get_secret_value(), timeout_s=settings.backend_timeout_s)
    from qa.keys.sqlite import SqliteKeyStore

    return SqliteKeyStore(settings.data_dir / "keys.sqlite")


__all__ = ["OPEN", "ApiKey", "KeyRefused", "KeyService", "KeyStore", "Principal", "Role", "create_key_store",
           "parse_key"]
