"""The API-key seam: what a key is, who its holder is, and what a key store keeps.

A key is ``qa_<id>_<secret>``: a public id (12 hex characters, safe to log and to name in ``qa keys
revoke``) and a 256-bit random secret. A store keeps, per key, its id, name, role, collections,
expiry, revocation, rate limits and a per-key random salt with ``HMAC-SHA256(salt, secret)``, never
the secret itself. Keys are random secrets, not passwords, so one HMAC (about a microsecond) is as
strong as a slow password hash here and keeps every request cheap.

Roles are ordered: ``read`` (search, chat, documents, files, jobs, models, embeddings, MCP) <
``write`` (add and delete documents) < ``admin`` (collections, keys, everything). A key sees the
collections it names, or all of them (``collections`` is ``None``); admin keys always cover all.

Every backend passes ``tests/contract/test_key_store_contract.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from enum import IntEnum

KEY_PREFIX = "qa"
_KEY = re.compile(r"qa_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"


class Role(IntEnum):
    READ = 1
    WRITE = 2
    ADMIN = 3

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"{name!r} is not a role: read, write or admin") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Principal:
    """Who is asking: a key's id, role, collections (``None``: every collection) and its own rate limits
    (``None``: the settings' defaults)."""

    key_id: str | None
    role: Role
    collections: frozenset[str] | None = None
    rate_per_second: float | None = None
    rate_per_minute: int | None = None

    def allows(self, role: Role) -> bool:
        return self.role >= role

    def sees(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    @property
    def sees_all(self) -> bool:
        return self.collections is None

    def visible(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.sees(n)]


OPEN = Principal(None, Role.ADMIN)  # no keys are required: everyone may do everything (loopback default)


@dataclass(frozen=True)
class ApiKey:
    """A stored key: everything but its secret."""

    id: str
    name: str
    role: Role
    collections: tuple[str, ...] | None  # None: every collection
    created_at: datetime
    salt: bytes
    digest: bytes
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    rate_per_second: float | None = None  # None: the settings' default; 0: no limit
    rate_per_minute: int | None = None

    def state(self, now: datetime | None = None) -> str:
        now = now or utcnow()
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.digest, digest(self.salt, secret))

    def principal(self) -> Principal:
        return Principal(self.id, self.role, None if self.collections is None else frozenset(self.collections),
                         self.rate_per_second, self.rate_per_minute)

    def revoked(self, at: datetime) -> ApiKey:
        return self if self.revoked_at is not None else replace(self, revoked_at=at)


class KeyStore(ABC):
    """Where keys live: beside the passage store (SQLite in the data folder, or PostgreSQL)."""

    @abstractmethod
    def add(self, key: ApiKey) -> None:
        """Store a new key (its id is new)."""

    @abstractmethod
    def get(self, key_id: str) -> ApiKey | None: ...

    @abstractmethod
    def list(self) -> list[ApiKey]:
        """Every key, revoked and expired ones included, oldest first."""

    @abstractmethod
    def revoke(self, key_id: str, at: datetime) -> ApiKey | None:
        """Mark the key revoked (a revoked key keeps its first revocation time); ``None`` when unknown."""

    @abstractmethod
    def count(self) -> int:
        """How many keys were ever created (revoked ones count: revoking the last key does not open the
        service)."""

    def close(self) -> None:  # noqa: B027 — nothing to release by default
        pass


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).digest()


def new_key(name: str, role: Role, collections: Iterable[str] | None, expires_at: datetime | None = None,
            rate_per_second: float | None = None, rate_per_minute: int | None = None) -> tuple[str, ApiKey]:
    """A fresh key: the string to hand out (once) and the record to store."""
    key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_bytes(16)
    scope = None if collections is None or role is Role.ADMIN else tuple(sorted(set(collections)))
    record = ApiKey(key_id, name, role, scope, utcnow(), salt, digest(salt, secret), expires_at, None,
                    rate_per_second, rate_per_minute)
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


def parse_key(token: str) -> tuple[str, str] | None:
    """``(id, secret)`` of a well-formed key, else ``None``."""
    match = _KEY.fullmatch(token)
    return (match.group(1), match.group(2)) if match else None


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def from_iso(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)
