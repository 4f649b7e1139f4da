"""BM25 statistics of the Milvus lexical index, kept in PostgreSQL.

Milvus scores candidates; exact BM25 needs, per qa collection and language, the number of passages,
their total length and each token's document frequency, over exactly the passages the index holds.
This table set records which passages the index holds (with their tokens) and those counts, and
updates both in one transaction per batch, relative to what it recorded before: applying the same
add or remove twice (a replay after a crash, before or after the Milvus write went through) leaves
the counts exact. Rows are locked in sorted order, so concurrent writers never deadlock.

Tables are named after the Milvus prefix (``<prefix>_lex_passages``, ``_lex_df``, ``_lex_lang``), so
several deployments may share one database.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from qa.store.base import IndexEntry
from qa.store.pg_database import PostgresDatabase

SCHEMA_LOCK = 7_310_003
_PREFIX = re.compile(r"[a-z][a-z0-9_]{0,40}")


class PostgresTermStats:
    """Which passages the lexical index holds and their BM25 statistics, per collection and language."""

    def __init__(self, db: PostgresDatabase, prefix: str, owns_database: bool = False):
        self.owns_database = owns_database
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"{prefix!r} is not a valid index prefix (lower-case letters, digits, '_')")
        self.db = db
        self.passages, self.df, self.lang = f"{prefix}_lex_passages", f"{prefix}_lex_df", f"{prefix}_lex_lang"
        self.db.ensure_schema(self.lang, f"""
            CREATE TABLE IF NOT EXISTS {self.passages} (
                rowid bigint PRIMARY KEY, collection text NOT NULL, lang text NOT NULL, tokens text[] NOT NULL);
            CREATE INDEX IF NOT EXISTS {self.passages}_collection ON {self.passages} (collection);
            CREATE TABLE IF NOT EXISTS {self.df} (
                collection text NOT NULL, lang text NOT NULL, token text NOT NULL, df bigint NOT NULL,
                PRIMARY KEY (collection, lang, token));
            CREATE TABLE IF NOT EXISTS {self.lang} (
                collection text NOT NULL, lang text NOT NULL, passages bigint NOT NULL, tokens bigint NOT NULL,
                PRIMARY KEY (collection, lang));
        """, SCHEMA_LOCK)

    # --- writes --------------------------------------------------------------------------------------
    def add(self, entries: Sequence[IndexEntry]) -> None:
        """Record ``entries`` (one per rowid: the caller keeps the last), replacing earlier versions."""
        if not entries:
            return
        with self.db.tx() as cur:
            rowids = sorted(e.rowid for e in entries)
            cur.execute(f"SELECT rowid, collection, lang, tokens FROM {self.passages} WHERE rowid = ANY(%s)"
                        " ORDER BY rowid FOR UPDATE", (rowids,))
            old = cur.fetchall()
            delta = _Delta()
            for _, collection, lang, tokens in old:
                delta.count(collection, lang, tokens, -1)
            for e in entries:
                delta.count(e.collection, e.lang, e.tokens, 1)
            by_rowid = {e.rowid: e for e in entries}
            ordered = [by_rowid[r] for r in rowids]
            cur.executemany(
                f"INSERT INTO {self.passages} VALUES (%s, %s, %s, %s) ON CONFLICT (rowid) DO UPDATE SET"
                " collection = EXCLUDED.collection, lang = EXCLUDED.lang, tokens = EXCLUDED.tokens",
                [(e.rowid, e.collection, e.lang, list(e.tokens)) for e in ordered])
            delta.apply(cur, self.df, self.lang)

    def remove(self, collection: str, rowids: Sequence[int]) -> None:
        if not len(rowids):
            return
        with self.db.tx() as cur:
            cur.execute(f"DELETE FROM {self.passages} WHERE collection = %s AND rowid = ANY(%s)"
                        " RETURNING collection, lang, tokens", (collection, sorted(int(r) for r in rowids)))
            delta = _Delta()
            for collection_, lang, tokens in cur.fetchall():
                delta.count(collection_, lang, tokens, -1)
            delta.apply(cur, self.df, self.lang)

    def drop_collection(self, collection: str) -> None:
        with self.db.tx() as cur:
            for table in (self.passages, self.df, self.lang):
                cur.execute(f"DELETE FROM {table} WHERE collection = %s", (collection,))

    def reset(self) -> None:
        with self.db.tx() as cur:
            cur.execute(f"TRUNCATE {self.passages}, {self.df}, {self.lang}")

    # --- reads ---------------------------------------------------------------------------------------
    def statistics(self, collection: str, lang: str, tokens: Sequence[str]) -> tuple[int, int, list[int]]:
        """(passages of ``lang`` in ``collection``, their total token count, each token's document frequency),
        read in one statement (one snapshot, one round trip: this is on every lexical search)."""
        passages, total, df = self.db.read_one(
            f"SELECT l.passages, l.tokens, (SELECT json_object_agg(d.token, d.df) FROM {self.df} d"
            f" WHERE d.collection = %(c)s AND d.lang = %(l)s AND d.token = ANY(%(t)s))"
            f" FROM (VALUES (1)) AS one LEFT JOIN {self.lang} l ON l.collection = %(c)s AND l.lang = %(l)s",
            {"c": collection, "l": lang, "t": sorted(set(tokens))})
        df = df or {}
        return int(passages or 0), int(total or 0), [int(df.get(t, 0)) for t in tokens]

    def count(self, collection: str | None = None) -> int:
        if collection is None:
            return self.db.one(f"SELECT count(*) FROM {self.passages}")[0]
        return self.db.one(f"SELECT count(*) FROM {self.passages} WHERE collection = %s", (collection,))[0]


    def close(self) -> None:
        if self.owns_database:
            self.db.close()


class _Delta:
    """Changes to document frequencies and per-language totals of one batch."""

    def __init__(self) -> None:
        self.df: Counter[tuple[str, str, str]] = Counter()
        self.lang: Counter[tuple[str, str]] = Counter()
        self.length: Counter[tuple[str, str]] = Counter()

    def count(self, collection: str, lang: str, tokens: Sequence[str], sign: int) -> None:
        self.df.update({(collection, lang, t): sign for t in set(tokens)})
        self.lang[(collection, lang)] += sign
        self.length[(collection, lang)] += sign * len(tokens)

    def apply(self, cur, df_table: str, lang_table: str) -> None:
        langs = sorted(k for k in self.lang if self.lang[k] or self.length[k])
        if langs:
            cur.execute(
                f"INSERT INTO {lang_table} SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[])"
                f" ORDER BY 1, 2 ON CONFLICT (collection, lang) DO UPDATE SET"
                f" passages = {lang_table}.passages + EXCLUDED.passages, tokens = {lang_table}.tokens + EXCLUDED.tokens",
                ([k[0] for k in langs], [k[1] for k in langs], [self.lang[k] for k in langs],
                 [self.length[k] for k in langs]))
        keys = sorted(k for k, v in self.df.items() if v)
        if keys:
            cur.execute(
                f"INSERT INTO {df_table} SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[])"
                f" ORDER BY 1, 2, 3 ON CONFLICT (collection, lang, token) DO UPDATE SET df = {df_table}.df + EXCLUDED.df",
                ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys], [self.df[k] for k in keys]))
