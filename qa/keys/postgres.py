"""API keys in PostgreSQL (``QA_STORE=postgres``): one table beside the passage store's, so every
replica sees every key (and, after its cache of ``QA_KEY_CACHE_S``, every revocation)."""

from __future__ import annotations

from qa.keys.base import ApiKey, KeyStore, iso
from qa.keys.sqlite import COLUMNS, key_to_row, row_to_key
from qa.store.pg_database import PostgresDatabase

SCHEMA = """
CREATE TABLE IF NOT EXISTS qa_api_keys (
    id text PRIMARY KEY,
    name text NOT NULL,
    role text NOT NULL,
    collections text,
    created_at text NOT NULL,
    expires_at text,
    revoked_at text,
    rate_per_second double precision,
    rate_per_minute integer,
    salt bytea NOT NULL,
    digest bytea NOT NULL
);
"""
SCHEMA_LOCK = 7_310_002  # advisory lock serialising the table's creation between replicas starting together


class PostgresKeyStore(KeyStore):
    def __init__(self, dsn: str, timeout_s: float = 10.0):
        self.db = PostgresDatabase(dsn, pool_size=2, timeout_s=timeout_s, name="qa-keys")
        self.address = self.db.address
        self.db.ensure_schema("qa_api_keys", SCHEMA, SCHEMA_LOCK)

    def add(self, key: ApiKey) -> None:
        self.db.execute(f"INSERT INTO qa_api_keys ({COLUMNS}) VALUES ({', '.join(['%s'] * 11)})", key_to_row(key))

    def get(self, key_id: str) -> ApiKey | None:
        row = self.db.one(f"SELECT {COLUMNS} FROM qa_api_keys WHERE id = %s", (key_id,))
        return row_to_key(row) if row else None

    def list(self) -> list[ApiKey]:
        return [row_to_key(r) for r in self.db.all(f"SELECT {COLUMNS} FROM qa_api_keys ORDER BY created_at, id")]

    def revoke(self, key_id, at):
        self.db.execute("UPDATE qa_api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL",
                        (iso(at), key_id))
        return self.get(key_id)

    def count(self) -> int:
        return self.db.one("SELECT count(*) FROM qa_api_keys")[0]

    def close(self) -> None:
        self.db.close()
