"""Creating, listing and revoking keys, and telling who a request's key belongs to (with a short cache).

Authentication is required as soon as one key exists (revoked and expired keys count, so revoking the
last key does not open the service). Key records and the number of keys are cached for ``cache_s``
seconds (``QA_KEY_CACHE_S``): a revocation through this service takes effect at once here, and within
``cache_s`` everywhere else (another replica, a server whose keys were changed with ``qa keys``); so
does the first key created elsewhere. A cache hit costs one HMAC-SHA256 and no I/O.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime

from qa.keys.base import OPEN, ApiKey, KeyStore, Principal, Role, new_key, parse_key, utcnow
from qa.store.base import check_collection_name

MAX_CACHED = 10_000  # key ids remembered (unknown ones too, so a flood of one bad key stays cheap)


class KeyRefused(Exception):
    """No usable key: ``reason`` is missing_key, invalid_key, expired_key or revoked_key (all answer 401)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason, self.message = reason, message


class KeyService:
    def __init__(self, open_store: Callable[[], KeyStore], cache_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic):
        self._open_store, self.cache_s, self._clock = open_store, cache_s, clock
        self._store: KeyStore | None = None
        self._lock = threading.Lock()
        self._records: dict[str, tuple[float, ApiKey | None]] = {}
        self._count: tuple[float, int] | None = None

    @property
    def store(self) -> KeyStore:
        """Opened on first use (a PostgreSQL store that is down answers 503 until it is back)."""
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = self._open_store()
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    # --- managing keys ---------------------------------------------------------------------------
    def create(self, role: Role, collections: Iterable[str] | None, name: str = "",
               expires_at: datetime | None = None, rate_per_second: float | None = None,
               rate_per_minute: int | None = None) -> tuple[str, ApiKey]:
        """A new key (the string is shown once; only its salted hash is kept). ValueError for a bad request."""
        if collections is not None:
            collections = [check_collection_name(c) for c in collections]
            if role is Role.ADMIN:
                raise ValueError("an admin key manages keys and collections, so it covers every collection: "
                                 "give no collections")
            if not collections:
                raise ValueError("name at least one collection, or none at all for every collection")
        if expires_at is not None and expires_at <= utcnow():
            raise ValueError(f"the expiry {expires_at.isoformat()} has passed already")
        for value, what in ((rate_per_second, "rate_per_second"), (rate_per_minute, "rate_per_minute")):
            if value is not None and value < 0:
                raise ValueError(f"{what} must be 0 (no limit) or more")
        token, record = new_key(name, role, collections, expires_at, rate_per_second, rate_per_minute)
        self.store.add(record)
        self._count = None
        return token, record

    def list(self) -> list[ApiKey]:
        return self.store.list()

    def revoke(self, key_id: str) -> ApiKey | None:
        record = self.store.revoke(key_id, utcnow())
        self._records.pop(key_id, None)
        return record

    # --- authentication --------------------------------------------------------------------------
    def _fresh(self, entry: tuple[float, object] | None) -> bool:
        return entry is not None and entry[0] > self._clock()

    def needs_store(self, token: str | None) -> bool:
        """Whether :meth:`authenticate` would read the store (a cache miss): callers on an event loop run
        it in a thread then."""
        if not self._fresh(self._count):
            return True
        parsed = parse_key(token) if token and self._count[1] else None
        return parsed is not None and not self._fresh(self._records.get(parsed[0]))

    def auth_required(self) -> bool:
        if not self._fresh(self._count):
            self._count = (self._clock() + self.cache_s, self.store.count())
        return self._count[1] > 0

    def _record(self, key_id: str) -> ApiKey | None:
        entry = self._records.get(key_id)
        if not self._fresh(entry):
            if len(self._records) >= MAX_CACHED:
                self._records.clear()
            entry = (self._clock() + self.cache_s, self.store.get(key_id))
            self._records[key_id] = entry
        return entry[1]

    def authenticate(self, token: str | None) -> Principal:
        """The holder of ``token`` (the Bearer credential); :data:`OPEN` while no key exists (a key sent
        to an open service is not checked). Raises :class:`KeyRefused`."""
        if not self.auth_required():
            return OPEN
        if not token:
            raise KeyRefused("missing_key", "this service needs an API key: send Authorization: Bearer <key>")
        parsed = parse_key(token)
        record = self._record(parsed[0]) if parsed else None
        if record is None or not record.matches(parsed[1]):
            raise KeyRefused("invalid_key", "the API key is not valid")
        state = record.state()
        if state != "active":
            raise KeyRefused(f"{state}_key", f"the API key {record.id} is {state}")
        return record.principal()
