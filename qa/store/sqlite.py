"""SQLite passage store: the embedded source of truth from which every index can be restored.

One transaction per document write, so a process killed mid-ingest leaves the last committed state.
Each passage row's integer ``rowid`` is its key in the derived indexes (AUTOINCREMENT: never
reused). Every write appends its passage-level changes to ``changes`` in the same transaction; the
indexes replay them after a crash (see :mod:`qa.store.base`).

Vectors are kept as float16 (half the bytes; inner products move by less than 1e-3), a passage's text
is read from its document's text by its offsets (stored once), and the file is created with
incremental auto-vacuum, so deleted documents give their pages back.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qa.models import Document, Passage
from qa.store.base import (
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

SCHEMA_VERSION = "2"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS collections (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    documents INTEGER NOT NULL DEFAULT 0,
    passages INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS documents (
    collection TEXT NOT NULL REFERENCES collections(name),
    id TEXT NOT NULL,
    title TEXT NOT NULL,
    lang TEXT NOT NULL,
    source TEXT,
    published TEXT,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    passage_count INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (collection, id)
);
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    collection TEXT NOT NULL,
    id TEXT NOT NULL,
    document_id TEXT NOT NULL,
    section TEXT,
    paragraph INTEGER NOT NULL,
    part INTEGER NOT NULL,
    lang TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    page INTEGER,
    page_end INTEGER,
    ocr_confidence REAL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sentences (
    passage_rowid INTEGER NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    op TEXT NOT NULL,
    collection TEXT NOT NULL,
    rowid INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS passages_id ON passages(collection, id);
CREATE INDEX IF NOT EXISTS passages_document ON passages(collection, document_id);
CREATE INDEX IF NOT EXISTS sentences_passage ON sentences(passage_rowid);
CREATE UNIQUE INDEX IF NOT EXISTS documents_hash ON documents(collection, content_hash);
"""

# A passage's text is its document's text between its offsets: kept once, in the document row (the
# passage row's own text column stays empty; older folders that filled it read the same).
_PASSAGE_COLUMNS = (
    'p.rowid, p.id, p.document_id, p.section, p.paragraph, p.part, p.lang, p.start, p."end", '
    'substr(d.text, p.start + 1, p."end" - p.start), '
    "d.title, d.source, d.published, p.collection, p.page, p.page_end, p.ocr_confidence"
)
_PASSAGE_JOIN = "passages p JOIN documents d ON d.collection = p.collection AND d.id = p.document_id"
_DOC_COLUMNS = ("id, title, lang, source, published, content_hash, metadata, created_at, passage_count, collection")
_VECTOR_DTYPE = np.float16


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pack(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype=_VECTOR_DTYPE).tobytes()


def _unpack(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=_VECTOR_DTYPE).astype(np.float32)


def _row_to_passage(row: sqlite3.Row) -> tuple[int, Passage]:
    return row[0], Passage(
        id=row[1], document_id=row[2], section=row[3], paragraph=row[4], part=row[5], lang=row[6],
        start=row[7], end=row[8], text=row[9], title=row[10], source=row[11], published=row[12],
        collection=row[13], page=row[14], page_end=row[15], ocr_confidence=row[16],
    )


def _row_to_document(row: sqlite3.Row) -> Document:
    return Document(
        id=row[0], title=row[1], lang=row[2], source=row[3], published=row[4], content_hash=row[5],
        metadata=json.loads(row[6]), created_at=row[7], passage_count=row[8], collection=row[9],
    )


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SqlitePassageStore(PassageStore):
    """Documents and passages in ``<data_dir>/store.sqlite`` (WAL, ``synchronous=FULL``, one writer,
    many readers; each thread its own connection)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            conn = self._conn()
            version = self._schema_version(conn)
            if version not in (None, SCHEMA_VERSION):
                raise StoreError(
                    f"{self.path} holds a qa store of schema {version}, this qa needs schema {SCHEMA_VERSION}. "
                    f"Move the data folder away and ingest the documents again (`qa ingest`), or run the qa "
                    f"version that wrote it."
                )
            if version is None:
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only takes effect before the first table
            conn.executescript(SCHEMA)
            with self._transaction() as tx:
                tx.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a readable qa store ({exc}). Move it away and re-ingest your documents."
            ) from exc

    @staticmethod
    def _schema_version(conn: sqlite3.Connection) -> str | None:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone() is None:
            return None
        row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
        return row[0] if row else None

    # --- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- meta ----------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def seq(self) -> int:
        row = self._conn().execute("SELECT seq FROM sqlite_sequence WHERE name='changes'").fetchone()
        return int(row[0]) if row else 0

    # --- collections ---------------------------------------------------------------------------
    def _collection(self, conn: sqlite3.Connection, name: str) -> Collection | None:
        row = conn.execute("SELECT name, description, created_at, documents, passages FROM collections WHERE name=?",
                           (name,)).fetchone()
        return Collection(*row) if row else None

    def create_collection(self, name: str, description: str = "") -> Collection:
        check_collection_name(name)
        with self._transaction() as conn:
            if self._collection(conn, name) is not None:
                raise CollectionExistsError(name)
            conn.execute("INSERT INTO collections (name, description, created_at) VALUES (?,?,?)",
                         (name, description, _now()))
        return self.get_collection(name)

    def ensure_collection(self, name: str, description: str = "") -> Collection:
        check_collection_name(name)
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO collections (name, description, created_at) VALUES (?,?,?)",
                         (name, description, _now()))
        return self.get_collection(name)

    def get_collection(self, name: str) -> Collection | None:
        return self._collection(self._conn(), name)

    def list_collections(self) -> list[Collection]:
        rows = self._conn().execute(
            "SELECT name, description, created_at, documents, passages FROM collections ORDER BY name")
        return [Collection(*r) for r in rows]

    def delete_collection(self, name: str) -> WriteResult | None:
        with self._transaction() as conn:
            if self._collection(conn, name) is None:
                return None
            conn.execute("DELETE FROM sentences WHERE passage_rowid IN (SELECT rowid FROM passages WHERE collection=?)",
                         (name,))
            conn.execute("DELETE FROM passages WHERE collection=?", (name,))
            conn.execute("DELETE FROM documents WHERE collection=?", (name,))
            conn.execute("DELETE FROM collections WHERE name=?", (name,))
            conn.execute("INSERT INTO changes (op, collection) VALUES ('drop', ?)", (name,))
            seq = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        self._reclaim()
        return WriteResult([], [], seq)

    # --- writes --------------------------------------------------------------------------------
    def _remove_document(self, conn: sqlite3.Connection, collection: str, document_id: str) -> list[int] | None:
        """Delete one document's rows and log its passages' removal; None when it is not there."""
        row = conn.execute("SELECT passage_count FROM documents WHERE collection=? AND id=?",
                           (collection, document_id)).fetchone()
        if row is None:
            return None
        removed = [r[0] for r in conn.execute("SELECT rowid FROM passages WHERE collection=? AND document_id=?",
                                              (collection, document_id))]
        if removed:
            marks = _marks(len(removed))
            conn.execute(f"DELETE FROM sentences WHERE passage_rowid IN ({marks})", removed)
            conn.execute(f"DELETE FROM passages WHERE rowid IN ({marks})", removed)
            conn.executemany("INSERT INTO changes (op, collection, rowid) VALUES ('remove', ?, ?)",
                             [(collection, r) for r in removed])
        conn.execute("DELETE FROM documents WHERE collection=? AND id=?", (collection, document_id))
        conn.execute("UPDATE collections SET documents = documents - 1, passages = passages - ? WHERE name=?",
                     (len(removed), collection))
        return removed

    def replace_document(self, collection: str, document: Document, text: str,
                         passages: Sequence[StoredPassage]) -> WriteResult:
        with self._transaction() as conn:
            if self._collection(conn, collection) is None:
                raise CollectionNotFoundError(collection, [c.name for c in self.list_collections()])
            removed = self._remove_document(conn, collection, document.id) or []
            conn.execute(
                f"INSERT INTO documents ({_DOC_COLUMNS}, text) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (document.id, document.title, document.lang, document.source, document.published,
                 document.content_hash, json.dumps(document.metadata, ensure_ascii=False), document.created_at,
                 len(passages), collection, text),
            )
            added = []
            for sp in passages:
                p = sp.passage
                cur = conn.execute(
                    'INSERT INTO passages (collection, id, document_id, section, paragraph, part, lang, start, "end",'
                    " page, page_end, ocr_confidence, text, tokens, vector) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (collection, p.id, document.id, p.section, p.paragraph, p.part, p.lang, p.start, p.end,
                     p.page, p.page_end, p.ocr_confidence, "", " ".join(sp.tokens), _pack(sp.vector)),
                )
                rowid = cur.lastrowid
                added.append(rowid)
                if sp.sentence_vectors is not None and len(sp.sentences):
                    conn.executemany(
                        'INSERT INTO sentences (passage_rowid, start, "end", vector) VALUES (?,?,?,?)',
                        [(rowid, s, e, _pack(v)) for (s, e), v in zip(sp.sentences, sp.sentence_vectors)],
                    )
            conn.executemany("INSERT INTO changes (op, collection, rowid) VALUES ('add', ?, ?)",
                             [(collection, r) for r in added])
            conn.execute("UPDATE collections SET documents = documents + 1, passages = passages + ? WHERE name=?",
                         (len(added), collection))
            seq = self._last_seq(conn)
        return WriteResult(removed, added, seq)

    @staticmethod
    def _last_seq(conn: sqlite3.Connection) -> int:
        row = conn.execute("SELECT seq FROM sqlite_sequence WHERE name='changes'").fetchone()
        return int(row[0]) if row else 0

    def delete_document(self, collection: str, document_id: str) -> WriteResult | None:
        with self._transaction() as conn:
            removed = self._remove_document(conn, collection, document_id)
            if removed is None:
                return None
            seq = self._last_seq(conn)
        self._reclaim()
        return WriteResult(removed, [], seq)

    def _reclaim(self) -> None:
        """Give the pages freed by deletes back to the file system (a few at a time: bounded cost)."""
        try:
            self._conn().execute("PRAGMA incremental_vacuum(2000)").fetchall()
        except sqlite3.OperationalError:  # busy: the next delete does it
            pass

    # --- documents -----------------------------------------------------------------------------
    def document_by_hash(self, collection: str, content_hash: str) -> str | None:
        row = self._conn().execute("SELECT id FROM documents WHERE collection=? AND content_hash=?",
                                   (collection, content_hash)).fetchone()
        return row[0] if row else None

    def document_hash(self, collection: str, document_id: str) -> str | None:
        row = self._conn().execute("SELECT content_hash FROM documents WHERE collection=? AND id=?",
                                   (collection, document_id)).fetchone()
        return row[0] if row else None

    def list_documents(self, collection: str, limit: int = 100, offset: int = 0) -> list[Document]:
        rows = self._conn().execute(
            f"SELECT {_DOC_COLUMNS} FROM documents WHERE collection=? ORDER BY id LIMIT ? OFFSET ?",
            (collection, limit, offset))
        return [_row_to_document(r) for r in rows]

    def get_document(self, collection: str, document_id: str) -> tuple[Document, str] | None:
        row = self._conn().execute(f"SELECT {_DOC_COLUMNS}, text FROM documents WHERE collection=? AND id=?",
                                   (collection, document_id)).fetchone()
        return (_row_to_document(row), row[10]) if row else None

    def count_documents(self, collection: str | None = None) -> int:
        if collection is None:
            return self._conn().execute("SELECT COALESCE(SUM(documents), 0) FROM collections").fetchone()[0]
        row = self._conn().execute("SELECT documents FROM collections WHERE name=?", (collection,)).fetchone()
        return row[0] if row else 0

    def count_passages(self, collection: str | None = None) -> int:
        if collection is None:
            return self._conn().execute("SELECT COALESCE(SUM(passages), 0) FROM collections").fetchone()[0]
        row = self._conn().execute("SELECT passages FROM collections WHERE name=?", (collection,)).fetchone()
        return row[0] if row else 0

    # --- passages ------------------------------------------------------------------------------
    def passages_by_rowid(self, rowids: Sequence[int]) -> dict[int, Passage]:
        if not rowids:
            return {}
        rows = self._conn().execute(
            f"SELECT {_PASSAGE_COLUMNS} FROM {_PASSAGE_JOIN} WHERE p.rowid IN ({_marks(len(rowids))})", list(rowids))
        return dict(_row_to_passage(r) for r in rows)

    def passage(self, collection: str, passage_id: str) -> Passage | None:
        row = self._conn().execute(
            f"SELECT {_PASSAGE_COLUMNS} FROM {_PASSAGE_JOIN} WHERE p.collection=? AND p.id=?",
            (collection, passage_id)).fetchone()
        return _row_to_passage(row)[1] if row else None

    def passages_of_document(self, collection: str, document_id: str) -> list[Passage]:
        rows = self._conn().execute(
            f"SELECT {_PASSAGE_COLUMNS} FROM {_PASSAGE_JOIN} WHERE p.collection=? AND p.document_id=?"
            " ORDER BY p.start, p.rowid", (collection, document_id))
        return [_row_to_passage(r)[1] for r in rows]

    def sentences_of(self, rowids: Sequence[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        if not rowids:
            return {}
        rows = self._conn().execute(
            f'SELECT passage_rowid, start, "end", vector FROM sentences WHERE passage_rowid IN ({_marks(len(rowids))})'
            " ORDER BY passage_rowid, start", list(rowids),
        ).fetchall()
        grouped: dict[int, tuple[list[tuple[int, int]], list[bytes]]] = {}
        for rowid, start, end, blob in rows:
            spans, blobs = grouped.setdefault(rowid, ([], []))
            spans.append((start, end))
            blobs.append(blob)
        return {rowid: (spans, np.frombuffer(b"".join(blobs), dtype=_VECTOR_DTYPE).reshape(len(spans), -1)
                        .astype(np.float32)) for rowid, (spans, blobs) in grouped.items()}

    def vectors_of(self, rowids: Sequence[int]) -> np.ndarray:
        dimension = int(self.get_meta("dimension") or 0)
        out = np.zeros((len(rowids), dimension), dtype=np.float32)
        if not rowids:
            return out
        rows = self._conn().execute(f"SELECT rowid, vector FROM passages WHERE rowid IN ({_marks(len(rowids))})",
                                    list(rowids))
        found = {r: _unpack(blob) for r, blob in rows}
        for i, rowid in enumerate(rowids):
            if rowid in found:
                out[i] = found[rowid]
        return out

    # --- what the derived indexes follow -------------------------------------------------------
    _ENTRY_SELECT = ("SELECT p.rowid, p.collection, p.document_id, p.lang, d.source, d.published, p.tokens, p.vector "
                     f"FROM {_PASSAGE_JOIN}")

    @staticmethod
    def _entry(row: sqlite3.Row) -> IndexEntry:
        return IndexEntry(rowid=row[0], collection=row[1], document_id=row[2], lang=row[3], source=row[4],
                          published=row[5], tokens=tuple(row[6].split(" ")) if row[6] else (),
                          vector=_unpack(row[7]))

    def entries(self, rowids: Sequence[int]) -> list[IndexEntry]:
        out: list[IndexEntry] = []
        rowids = list(rowids)
        for i in range(0, len(rowids), 900):
            part = rowids[i:i + 900]
            rows = self._conn().execute(
                f"{self._ENTRY_SELECT} WHERE p.rowid IN ({_marks(len(part))}) ORDER BY p.rowid", part)
            out.extend(self._entry(r) for r in rows)
        return out

    def iter_entries(self, collection: str | None = None, batch: int = 4096) -> Iterator[list[IndexEntry]]:
        where, args = ("WHERE p.collection=?", [collection]) if collection is not None else ("", [])
        cur = self._conn().execute(f"{self._ENTRY_SELECT} {where} ORDER BY p.rowid", args)
        while rows := cur.fetchmany(batch):
            yield [self._entry(r) for r in rows]

    def changes_since(self, seq: int, limit: int = 10_000) -> list[Change]:
        rows = self._conn().execute("SELECT seq, op, collection, rowid FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (seq, limit))
        return [Change(*r) for r in rows]

    def prune_changes(self, upto: int) -> None:
        if upto <= self.pruned_upto:
            return
        with self._transaction() as conn:
            conn.execute("DELETE FROM changes WHERE seq <= ?", (upto,))
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_upto', ?)", (str(upto),))

    @property
    def pruned_upto(self) -> int:
        return int(self.get_meta("pruned_upto") or 0)

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def new_document(document_id: str, title: str, lang: str, source: str | None, published: str | None,
                 content_hash: str, metadata: dict[str, str], collection: str = "default") -> Document:
    return Document(id=document_id, title=title, lang=lang, source=source, published=published,
                    content_hash=content_hash, passage_count=0, created_at=_now(), metadata=metadata,
                    collection=collection)
