"""PostgreSQL passage store: the source of truth shared by any number of ``qa`` replicas.

Tables (prefixed ``qa_`` so the store can share a database): collections, documents with their
text, passages with their tokens, vector and sentence spans/vectors (vectors as float16 ``bytea``),
and the change sequence, which doubles as the outbox of index work: every write records the passages it
removed and added in the same transaction as the data, so the index follows (``qa.index.outbox``)
without ever losing a change.

Concurrency: a write takes an advisory lock on its document (two replicas writing the same document
queue up), a share lock on its collection (so a collection deleted meanwhile waits), and, last and
briefly, the row of the sequence counter, so sequence numbers commit in order (a reader that sees
change ``n`` sees every change before it).

Connections come from a pool (:mod:`qa.store.pg_database`); an unreachable or failing server raises
:class:`~qa.store.base.StoreUnavailableError` naming the server's address, never its password.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import numpy as np

from qa.models import Document, Passage
from qa.store.pg_database import PostgresDatabase, redact_dsn
from qa.store.base import (
    DEFAULT_COLLECTION,
    Change,
    Collection,
    CollectionExistsError,
    CollectionNotFoundError,
    IndexEntry,
    PassageStore,
    StoredPassage,
    StoreError,
    WriteResult,
    check_collection_name,
)

log = logging.getLogger(__name__)

VECTOR_DTYPE = np.float16  # half the bytes of float32; cosine to the float32 vector >= 0.9999

SCHEMA = """
CREATE TABLE IF NOT EXISTS qa_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS qa_sequence (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL);
INSERT INTO qa_sequence VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS qa_collections (
    name text PRIMARY KEY,
    description text NOT NULL,
    created_at text NOT NULL
);
CREATE TABLE IF NOT EXISTS qa_documents (
    collection text NOT NULL REFERENCES qa_collections(name) ON DELETE CASCADE,
    id text NOT NULL,
    title text NOT NULL,
    lang text NOT NULL,
    source text,
    published text,
    content_hash text NOT NULL,
    text text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{}',
    created_at text NOT NULL,
    PRIMARY KEY (collection, id)
);
CREATE INDEX IF NOT EXISTS qa_documents_hash ON qa_documents (collection, content_hash);
CREATE TABLE IF NOT EXISTS qa_passages (
    rowid bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    collection text NOT NULL,
    document_id text NOT NULL,
    id text NOT NULL,
    section text,
    paragraph int NOT NULL,
    part int NOT NULL,
    lang text NOT NULL,
    start_offset int NOT NULL,
    end_offset int NOT NULL,
    text text NOT NULL,
    page int,
    page_end int,
    ocr_confidence real,
    tokens text[] NOT NULL,
    vector bytea NOT NULL,
    sentence_spans int[],
    sentence_vectors bytea,
    UNIQUE (collection, id),
    FOREIGN KEY (collection, document_id) REFERENCES qa_documents (collection, id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS qa_passages_document ON qa_passages (collection, document_id);
CREATE TABLE IF NOT EXISTS qa_changes (
    seq bigint PRIMARY KEY,
    op text NOT NULL,
    collection text NOT NULL,
    rowid bigint NOT NULL
);
"""
SCHEMA_LOCK = 7_310_001  # advisory lock serialising schema creation between replicas starting together
CHANGES_CHANNEL = "qa_changes"  # NOTIFY'd by every write, so index workers wake at once

_PASSAGE_SELECT = (
    "SELECT p.rowid, p.id, p.document_id, p.section, p.paragraph, p.part, p.lang, p.start_offset,"
    " p.end_offset, p.text, d.title, d.source, d.published, p.collection, p.page, p.page_end, p.ocr_confidence"
    " FROM qa_passages p JOIN qa_documents d ON d.collection = p.collection AND d.id = p.document_id"
)
_DOC_SELECT = (
    "SELECT d.id, d.title, d.lang, d.source, d.published, d.content_hash, d.passage_count, d.created_at,"
    " d.metadata, d.collection FROM (SELECT *, (SELECT count(*) FROM qa_passages p WHERE p.collection ="
    " qa_documents.collection AND p.document_id = qa_documents.id) AS passage_count FROM qa_documents) d"
)
_ENTRY_SELECT = (
    "SELECT p.rowid, p.collection, p.document_id, p.lang, d.source, d.published, p.tokens, p.vector"
    " FROM qa_passages p JOIN qa_documents d ON d.collection = p.collection AND d.id = p.document_id"
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def encode_vector(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=VECTOR_DTYPE).tobytes()


def decode_vectors(blob: bytes, rows: int | None = None) -> np.ndarray:
    vectors = np.frombuffer(blob, dtype=VECTOR_DTYPE).astype(np.float32)
    return vectors if rows is None else vectors.reshape(rows, -1)


def _passage(row: tuple) -> tuple[int, Passage]:
    return row[0], Passage(
        id=row[1], document_id=row[2], section=row[3], paragraph=row[4], part=row[5], lang=row[6],
        start=row[7], end=row[8], text=row[9], title=row[10], source=row[11], published=row[12],
        collection=row[13], page=row[14], page_end=row[15], ocr_confidence=row[16],
    )


def _document(row: tuple) -> Document:
    return Document(id=row[0], title=row[1], lang=row[2], source=row[3], published=row[4], content_hash=row[5],
                    passage_count=row[6], created_at=row[7], metadata=dict(row[8] or {}), collection=row[9])


def _entry(row: tuple) -> IndexEntry:
    return IndexEntry(rowid=row[0], collection=row[1], document_id=row[2], lang=row[3], source=row[4],
                      published=row[5], tokens=tuple(row[6]), vector=decode_vectors(row[7]))


class PostgresStore(PassageStore):
    """Documents, passages and vectors in PostgreSQL, reached through a connection pool."""

    def __init__(self, dsn: str, pool_size: int = 8, timeout_s: float = 10.0):
        self.db = PostgresDatabase(dsn, pool_size, timeout_s, name="qa-store")
        self.address = self.db.address
        self.db.ensure_schema("qa_changes", SCHEMA, SCHEMA_LOCK)
        self.ensure_collection(DEFAULT_COLLECTION)

    def exclusive(self, key: int):
        """Whether this process holds the advisory lock ``key`` (until the ``with`` block ends)."""
        return self.db.exclusive(key)

    def close(self) -> None:
        self.db.close()

    # --- collections -----------------------------------------------------------------------------
    _COLLECTION_SELECT = (
        "SELECT c.name, c.description, c.created_at,"
        " (SELECT count(*) FROM qa_documents d WHERE d.collection = c.name),"
        " (SELECT count(*) FROM qa_passages p WHERE p.collection = c.name) FROM qa_collections c"
    )

    def create_collection(self, name: str, description: str = "") -> Collection:
        check_collection_name(name)
        row = self.db.one("INSERT INTO qa_collections VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING created_at",
                        (name, description, _now()))
        if row is None:
            raise CollectionExistsError(name)
        return Collection(name, description, row[0])

    def ensure_collection(self, name: str, description: str = "") -> Collection:
        check_collection_name(name)
        self.db.execute("INSERT INTO qa_collections VALUES (%s, %s, %s) ON CONFLICT DO NOTHING", (name, description, _now()))
        collection = self.get_collection(name)
        assert collection is not None
        return collection

    def get_collection(self, name: str) -> Collection | None:
        row = self.db.one(self._COLLECTION_SELECT + " WHERE c.name = %s", (name,))
        return Collection(*row) if row else None

    def list_collections(self) -> list[Collection]:
        return [Collection(*row) for row in self.db.all(self._COLLECTION_SELECT + " ORDER BY c.name")]

    def delete_collection(self, name: str) -> WriteResult | None:
        with self.db.tx() as cur:
            cur.execute("SELECT 1 FROM qa_collections WHERE name = %s FOR UPDATE", (name,))
            if cur.fetchone() is None:
                return None
            cur.execute("SELECT rowid FROM qa_passages WHERE collection = %s ORDER BY rowid", (name,))
            removed = [r[0] for r in cur.fetchall()]
            cur.execute("DELETE FROM qa_passages WHERE collection = %s", (name,))
            cur.execute("DELETE FROM qa_collections WHERE name = %s", (name,))
            seq = self._record(cur, [("drop", name, 0)])
        return WriteResult(removed=removed, seq=seq)

    # --- writes ----------------------------------------------------------------------------------
    def _lock_collection(self, cur, collection: str) -> None:
        cur.execute("SELECT 1 FROM qa_collections WHERE name = %s FOR SHARE", (collection,))
        if cur.fetchone() is None:
            cur.execute("SELECT name FROM qa_collections ORDER BY name")
            raise CollectionNotFoundError(collection, [r[0] for r in cur.fetchall()])

    @staticmethod
    def _lock_document(cur, collection: str, document_id: str) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"{collection}\x1f{document_id}",))

    def _remove_passages(self, cur, collection: str, document_id: str) -> list[int]:
        cur.execute("DELETE FROM qa_passages WHERE collection = %s AND document_id = %s RETURNING rowid",
                    (collection, document_id))
        return sorted(r[0] for r in cur.fetchall())

    @staticmethod
    def _record(cur, changes: Sequence[tuple[str, str, int]]) -> int:
        """Append changes to the sequence (taking the counter's row lock until commit); the new sequence."""
        cur.execute("UPDATE qa_sequence SET seq = seq + %s WHERE id = 1 RETURNING seq", (len(changes),))
        last = cur.fetchone()[0]
        if changes:
            first = last - len(changes) + 1
            cur.executemany("INSERT INTO qa_changes VALUES (%s, %s, %s, %s)",
                            [(first + i, op, coll, rowid) for i, (op, coll, rowid) in enumerate(changes)])
            cur.execute("SELECT pg_notify(%s, %s)", (CHANGES_CHANNEL, str(last)))
        return last

    def replace_document(self, collection: str, document: Document, text: str,
                         passages: Sequence[StoredPassage]) -> WriteResult:
        with self.db.tx() as cur:
            self._lock_collection(cur, collection)
            self._lock_document(cur, collection, document.id)
            removed = self._remove_passages(cur, collection, document.id)
            cur.execute(
                "INSERT INTO qa_documents VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (collection, id) DO UPDATE SET title = EXCLUDED.title, lang = EXCLUDED.lang,"
                " source = EXCLUDED.source, published = EXCLUDED.published, content_hash = EXCLUDED.content_hash,"
                " text = EXCLUDED.text, metadata = EXCLUDED.metadata, created_at = EXCLUDED.created_at",
                (collection, document.id, document.title, document.lang, document.source, document.published,
                 document.content_hash, text, json.dumps(document.metadata, ensure_ascii=False), document.created_at),
            )
            added: list[int] = []
            if passages:
                cur.executemany(
                    "INSERT INTO qa_passages (collection, document_id, id, section, paragraph, part, lang, start_offset,"
                    " end_offset, text, page, page_end, ocr_confidence, tokens, vector, sentence_spans, sentence_vectors)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING rowid",
                    [self._passage_row(collection, document.id, sp) for sp in passages], returning=True,
                )
                while True:
                    added.append(cur.fetchone()[0])
                    if not cur.nextset():
                        break
            seq = self._record(cur, [("remove", collection, r) for r in removed]
                               + [("add", collection, r) for r in added])
        return WriteResult(removed=removed, added=added, seq=seq)

    @staticmethod
    def _passage_row(collection: str, document_id: str, sp: StoredPassage) -> tuple:
        p = sp.passage
        has_sentences = sp.sentence_vectors is not None and len(sp.sentences) > 0
        spans = [x for span in sp.sentences for x in span] if has_sentences else None
        sentence_vectors = encode_vector(sp.sentence_vectors) if has_sentences else None
        return (collection, document_id, p.id, p.section, p.paragraph, p.part, p.lang, p.start, p.end, p.text,
                p.page, p.page_end, p.ocr_confidence, list(sp.tokens), encode_vector(sp.vector), spans,
                sentence_vectors)

    def delete_document(self, collection: str, document_id: str) -> WriteResult | None:
        with self.db.tx() as cur:
            self._lock_document(cur, collection, document_id)
            cur.execute("SELECT 1 FROM qa_collections WHERE name = %s FOR SHARE", (collection,))
            cur.execute("SELECT 1 FROM qa_documents WHERE collection = %s AND id = %s", (collection, document_id))
            if cur.fetchone() is None:
                return None
            removed = self._remove_passages(cur, collection, document_id)
            cur.execute("DELETE FROM qa_documents WHERE collection = %s AND id = %s", (collection, document_id))
            seq = self._record(cur, [("remove", collection, r) for r in removed])
        return WriteResult(removed=removed, seq=seq)

    # --- documents -------------------------------------------------------------------------------
    def document_by_hash(self, collection: str, content_hash: str) -> str | None:
        row = self.db.one("SELECT id FROM qa_documents WHERE collection = %s AND content_hash = %s ORDER BY id LIMIT 1",
                        (collection, content_hash))
        return row[0] if row else None

    def document_hash(self, collection: str, document_id: str) -> str | None:
        row = self.db.one("SELECT content_hash FROM qa_documents WHERE collection = %s AND id = %s",
                        (collection, document_id))
        return row[0] if row else None

    def get_document(self, collection: str, document_id: str) -> tuple[Document, str] | None:
        with self.db.tx() as cur:
            cur.execute(_DOC_SELECT + " WHERE d.collection = %s AND d.id = %s", (collection, document_id))
            row = cur.fetchone()
            if row is None:
                return None
            cur.execute("SELECT text FROM qa_documents WHERE collection = %s AND id = %s", (collection, document_id))
            return _document(row), cur.fetchone()[0]

    def list_documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[Document]:
        rows = self.db.all(_DOC_SELECT + " WHERE d.collection = %s ORDER BY d.id LIMIT %s OFFSET %s",
                         (collection, limit, offset))
        return [_document(r) for r in rows]

    def count_documents(self, collection: str | None = None) -> int:
        if collection is None:
            return self.db.one("SELECT count(*) FROM qa_documents")[0]
        return self.db.one("SELECT count(*) FROM qa_documents WHERE collection = %s", (collection,))[0]

    def count_passages(self, collection: str | None = None) -> int:
        if collection is None:
            return self.db.one("SELECT count(*) FROM qa_passages")[0]
        return self.db.one("SELECT count(*) FROM qa_passages WHERE collection = %s", (collection,))[0]

    # --- passages --------------------------------------------------------------------------------
    def passages_by_rowid(self, rowids: Sequence[int]) -> dict[int, Passage]:
        if not len(rowids):
            return {}
        rows = self.db.all(_PASSAGE_SELECT + " WHERE p.rowid = ANY(%s)", ([int(r) for r in rowids],))
        return dict(_passage(r) for r in rows)

    def passage(self, collection: str, passage_id: str) -> Passage | None:
        row = self.db.one(_PASSAGE_SELECT + " WHERE p.collection = %s AND p.id = %s", (collection, passage_id))
        return _passage(row)[1] if row else None

    def passages_of_document(self, collection: str, document_id: str) -> list[Passage]:
        rows = self.db.all(_PASSAGE_SELECT + " WHERE p.collection = %s AND p.document_id = %s"
                         " ORDER BY p.start_offset, p.paragraph, p.part", (collection, document_id))
        return [_passage(r)[1] for r in rows]

    def sentences_of(self, rowids: Sequence[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        if not len(rowids):
            return {}
        rows = self.db.all("SELECT rowid, sentence_spans, sentence_vectors FROM qa_passages"
                         " WHERE rowid = ANY(%s) AND sentence_vectors IS NOT NULL", ([int(r) for r in rowids],))
        out = {}
        for rowid, spans, blob in rows:
            pairs = [(spans[i], spans[i + 1]) for i in range(0, len(spans), 2)]
            out[rowid] = (pairs, decode_vectors(blob, len(pairs)))
        return out

    def vectors_of(self, rowids: Sequence[int]) -> np.ndarray:
        ids = [int(r) for r in rowids]
        found = dict(self.db.all("SELECT rowid, vector FROM qa_passages WHERE rowid = ANY(%s)", (ids,))) if ids else {}
        dimension = self._dimension(found)
        out = np.zeros((len(ids), dimension), dtype=np.float32)
        for i, rowid in enumerate(ids):
            if rowid in found:
                out[i] = decode_vectors(found[rowid])
        return out

    def _dimension(self, found: dict[int, bytes]) -> int:
        for blob in found.values():
            return len(blob) // np.dtype(VECTOR_DTYPE).itemsize
        stored = self.get_meta("dimension")
        if stored:
            return int(stored)
        row = self.db.one("SELECT length(vector) FROM qa_passages LIMIT 1")
        return row[0] // np.dtype(VECTOR_DTYPE).itemsize if row else 0

    # --- what the derived indexes follow ---------------------------------------------------------
    def entries(self, rowids: Sequence[int]) -> list[IndexEntry]:
        if not len(rowids):
            return []
        rows = self.db.all(_ENTRY_SELECT + " WHERE p.rowid = ANY(%s) ORDER BY p.rowid", ([int(r) for r in rowids],))
        return [_entry(r) for r in rows]

    def iter_entries(self, collection: str | None = None, batch: int = 4096) -> Iterator[list[IndexEntry]]:
        after = 0
        while True:
            if collection is None:
                rows = self.db.all(_ENTRY_SELECT + " WHERE p.rowid > %s ORDER BY p.rowid LIMIT %s", (after, batch))
            else:
                rows = self.db.all(_ENTRY_SELECT + " WHERE p.rowid > %s AND p.collection = %s ORDER BY p.rowid LIMIT %s",
                                 (after, collection, batch))
            if not rows:
                return
            yield [_entry(r) for r in rows]
            after = rows[-1][0]

    def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        rows = self.db.all("SELECT seq, op, collection, rowid FROM qa_changes WHERE seq > %s ORDER BY seq LIMIT %s",
                         (seq, limit))
        return [Change(seq=r[0], op=r[1], collection=r[2], rowid=r[3]) for r in rows]

    @property
    def seq(self) -> int:
        return self.db.one("SELECT seq FROM qa_sequence WHERE id = 1")[0]

    def prune_changes(self, upto: int) -> None:
        with self.db.tx() as cur:
            cur.execute("DELETE FROM qa_changes WHERE seq <= %s", (upto,))
            cur.execute("INSERT INTO qa_meta VALUES ('pruned_upto', %s) ON CONFLICT (key) DO UPDATE SET value ="
                        " greatest(qa_meta.value::bigint, EXCLUDED.value::bigint)::text", (str(int(upto)),))

    @property
    def pruned_upto(self) -> int:
        """Changes up to this sequence number are forgotten: an index behind it is rebuilt, not replayed."""
        return int(self.get_meta("pruned_upto") or 0)

    # --- meta ------------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.one("SELECT value FROM qa_meta WHERE key = %s", (key,))
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO qa_meta VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                   (key, value))


__all__ = ["PostgresStore", "StoreError", "redact_dsn"]
