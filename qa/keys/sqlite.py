"""API keys in ``<data_dir>/keys.sqlite`` (the embedded default, beside the passage store).

A file of its own, so that ``qa keys`` works while ``qa serve`` runs on the same folder (WAL: the
server reads while the command writes) and a key outlives ``qa reindex`` (which carries the file over).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from qa.keys.base import ApiKey, KeyStore, Role, from_iso, iso
from qa.store.base import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    collections TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT,
    rate_per_second REAL,
    rate_per_minute INTEGER,
    salt BLOB NOT NULL,
    digest BLOB NOT NULL
);
"""
COLUMNS = ("id, name, role, collections, created_at, expires_at, revoked_at, rate_per_second, rate_per_minute, "
           "salt, digest")


def row_to_key(row) -> ApiKey:
    collections = json.loads(row[3]) if isinstance(row[3], str) else row[3]
    return ApiKey(id=row[0], name=row[1], role=Role.named(row[2]),
                  collections=None if collections is None else tuple(collections), created_at=from_iso(row[4]),
                  expires_at=from_iso(row[5]), revoked_at=from_iso(row[6]), rate_per_second=row[7],
                  rate_per_minute=row[8], salt=bytes(row[9]), digest=bytes(row[10]))


def key_to_row(key: ApiKey) -> tuple:
    return (key.id, key.name, key.role.label, None if key.collections is None else json.dumps(list(key.collections)),
            iso(key.created_at), iso(key.expires_at), iso(key.revoked_at), key.rate_per_second,
            key.rate_per_minute, key.salt, key.digest)


class SqliteKeyStore(KeyStore):
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            self._conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a readable qa key store ({exc})") from exc

    def add(self, key: ApiKey) -> None:
        with self._lock:
            self._conn.execute(f"INSERT INTO api_keys ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", key_to_row(key))

    def get(self, key_id: str) -> ApiKey | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        return row_to_key(row) if row else None

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._conn.execute(f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()
        return [row_to_key(r) for r in rows]

    def revoke(self, key_id, at):
        with self._lock:
            self._conn.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                               (iso(at), key_id))
        return self.get(key_id)

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM api_keys").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
