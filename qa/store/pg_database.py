"""One PostgreSQL database reached through a connection pool (psycopg 3), shared by the PostgreSQL
passage store and the Milvus lexical index's statistics.

Every failure to reach or hear from the server becomes :class:`~qa.store.base.StoreUnavailableError`
naming the server's address (never its password), so callers answer 503 and retry later; the pool
checks connections before handing them out, so a restarted server is used again without a restart
of ``qa``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from qa.store.base import StoreUnavailableError


def redact_dsn(dsn: str) -> str:
    """``postgresql://user@host:port/dbname`` of a DSN (URI or key=value), without its password."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(dsn)
    except Exception:  # not parseable: say so without echoing it
        return "(an unparseable PostgreSQL DSN)"
    host = parts.get("host") or "localhost"
    port = parts.get("port") or "5432"
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"postgresql://{user}{host}:{port}/{parts.get('dbname') or ''}"


class PostgresDatabase:
    """A connection pool with one-transaction helpers and schema creation that replicas may race on."""

    def __init__(self, dsn: str, pool_size: int = 8, timeout_s: float = 10.0, name: str = "qa"):
        import psycopg
        from psycopg_pool import ConnectionPool

        self.address = redact_dsn(dsn)
        self.timeout_s = timeout_s
        self._psycopg = psycopg
        self.pool = ConnectionPool(
            dsn, min_size=1, max_size=max(2, pool_size), timeout=timeout_s, open=False, name=name,
            kwargs={"connect_timeout": max(1, int(timeout_s)), "autocommit": False},
            check=ConnectionPool.check_connection, reconnect_timeout=0,
        )
        try:
            self.pool.open(wait=True, timeout=timeout_s)
        except Exception as exc:
            self.pool.close()
            raise StoreUnavailableError(
                f"PostgreSQL at {self.address} is unreachable ({type(exc).__name__}). Check QA_POSTGRES_DSN and "
                "that the server is running."
            ) from None

    @contextmanager
    def _connection(self) -> Iterator:
        """A pooled connection; a server that cannot be reached or heard becomes StoreUnavailableError."""
        psycopg = self._psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection(timeout=self.timeout_s) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise StoreUnavailableError(f"PostgreSQL at {self.address} is unavailable: {first_line}") from None

    @contextmanager
    def tx(self) -> Iterator:
        """A cursor inside one transaction (committed on success, rolled back on error)."""
        with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            yield cur

    def read_one(self, sql: str, params: Sequence = ()) -> tuple | None:
        """One read-only statement outside a transaction block (one round trip instead of BEGIN, the
        statement and COMMIT; a single statement reads one snapshot anyway): for reads on the search path."""
        with self._connection() as conn:
            conn.autocommit = True  # a client-side switch: nothing is sent
            try:
                return conn.execute(sql, params).fetchone()
            finally:
                conn.autocommit = False

    def ensure_schema(self, probe_table: str, schema: str, lock_key: int) -> None:
        """Create the tables unless ``probe_table`` exists (the last one the schema creates), one
        process at a time."""
        if self.one("SELECT to_regclass(%s) IS NULL", (probe_table,))[0]:
            with self.tx() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
                # still missing once the lock is ours? (a schema need not be idempotent) Read pg_class itself:
                # to_regclass may answer from a catalog snapshot older than the lock
                cur.execute("SELECT NOT EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n"
                            " ON n.oid = c.relnamespace WHERE c.relname = %s AND n.nspname = ANY(current_schemas(false)))",
                            (probe_table,))
                if cur.fetchone()[0]:
                    cur.execute(schema)

    @contextmanager
    def exclusive(self, key: int) -> Iterator[bool]:
        """Whether this process got the advisory lock ``key`` (held, with a connection, until the block ends)."""
        with self.tx() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,))
            yield bool(cur.fetchone()[0])

    def one(self, sql: str, params: Sequence = ()) -> tuple | None:
        with self.tx() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def all(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self.tx() as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def execute(self, sql: str, params: Sequence = ()) -> None:
        with self.tx() as cur:
            cur.execute(sql, params)

    def close(self) -> None:
        self.pool.close()
