"""SQLite passage store: the source of truth from which every index can be restored.

One transaction per document write, so a process killed mid-ingest leaves the last committed state.
Each passage row's integer ``rowid`` is its key in the vector and lexical indexes (AUTOINCREMENT:
ids are never reused). A ``generation`` counter, bumped in every write transaction, lets the indexes
tell whether they are up to date with the store.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from qa.models import Document, Passage

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    lang TEXT NOT NULL,
    source TEXT,
    published TEXT,
    content_hash TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    section TEXT,
    paragraph INTEGER NOT NULL,
    part INTEGER NOT NULL,
    lang TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    text TEXT NOT NULL,
    tokens TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS sentences (
    passage_rowid INTEGER NOT NULL REFERENCES passages(rowid) ON DELETE CASCADE,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_document ON passages(document_id);
CREATE INDEX IF NOT EXISTS sentences_passage ON sentences(passage_rowid);
CREATE UNIQUE INDEX IF NOT EXISTS documents_hash ON documents(content_hash);
"""

_PASSAGE_COLUMNS = (
    'p.rowid, p.id, p.document_id, p.section, p.paragraph, p.part, p.lang, p.start, p."end", p.text, '
    "d.title, d.source, d.published"
)


@dataclass(frozen=True)
class StoredPassage:
    """A passage ready to be written: the record, its lexical tokens and its vector."""

    passage: Passage
    tokens: list[str]
    vector: np.ndarray
    sentences: tuple[tuple[int, int], ...] = ()  # (start, end) document offsets of the passage's sentences
    sentence_vectors: np.ndarray | None = None  # one row per sentence, same model as ``vector``


class StoreError(RuntimeError):
    """The store file cannot be used as it is."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _row_to_passage(row: sqlite3.Row) -> tuple[int, Passage]:
    return row[0], Passage(
        id=row[1], document_id=row[2], section=row[3], paragraph=row[4], part=row[5], lang=row[6],
        start=row[7], end=row[8], text=row[9], title=row[10], source=row[11], published=row[12],
    )


class PassageStore:
    """Documents and passages in ``<data_dir>/store.sqlite`` (WAL, one writer, many readers)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        try:
            self._conn().executescript(SCHEMA)
            with self._connect() as conn:
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', '1')")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"{self.path} is not a readable qa store ({exc}). Move it away and re-ingest your documents."
            ) from exc

    # --- connections -------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
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
        with self._connect() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    @staticmethod
    def _bump(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    # --- writes --------------------------------------------------------------------------------
    def replace_document(
        self, document: Document, text: str, passages: Sequence[StoredPassage]
    ) -> tuple[list[int], list[int]]:
        """Write a document and its passages, replacing any earlier version, in one transaction.

        Returns (rowids removed, rowids added) so the indexes can follow.
        """
        with self._connect() as conn:
            removed = [r[0] for r in conn.execute("SELECT rowid FROM passages WHERE document_id=?", (document.id,))]
            conn.execute("DELETE FROM sentences WHERE passage_rowid IN (SELECT rowid FROM passages WHERE document_id=?)",
                         (document.id,))
            conn.execute("DELETE FROM passages WHERE document_id=?", (document.id,))
            conn.execute("DELETE FROM documents WHERE id=?", (document.id,))
            conn.execute(
                "INSERT INTO documents VALUES (?,?,?,?,?,?,?,?,?)",
                (document.id, document.title, document.lang, document.source, document.published,
                 document.content_hash, text, json.dumps(document.metadata, ensure_ascii=False), document.created_at),
            )
            added = []
            for sp in passages:
                p = sp.passage
                cur = conn.execute(
                    'INSERT INTO passages (id, document_id, section, paragraph, part, lang, start, "end", text, tokens, vector)'
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (p.id, document.id, p.section, p.paragraph, p.part, p.lang, p.start, p.end, p.text,
                     " ".join(sp.tokens), np.asarray(sp.vector, dtype=np.float32).tobytes()),
                )
                added.append(cur.lastrowid)
                if sp.sentence_vectors is not None and len(sp.sentences):
                    conn.executemany(
                        'INSERT INTO sentences (passage_rowid, start, "end", vector) VALUES (?,?,?,?)',
                        [(cur.lastrowid, s, e, np.asarray(v, dtype=np.float32).tobytes())
                         for (s, e), v in zip(sp.sentences, sp.sentence_vectors)],
                    )
            self._bump(conn)
        return removed, added

    def delete_document(self, document_id: str) -> list[int] | None:
        """Delete a document and its passages; returns the removed rowids, or None if it was unknown."""
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM documents WHERE id=?", (document_id,)).fetchone() is None:
                return None
            removed = [r[0] for r in conn.execute("SELECT rowid FROM passages WHERE document_id=?", (document_id,))]
            conn.execute("DELETE FROM sentences WHERE passage_rowid IN (SELECT rowid FROM passages WHERE document_id=?)",
                         (document_id,))
            conn.execute("DELETE FROM passages WHERE document_id=?", (document_id,))
            conn.execute("DELETE FROM documents WHERE id=?", (document_id,))
            self._bump(conn)
        return removed

    # --- reads ---------------------------------------------------------------------------------
    def document_by_hash(self, content_hash: str) -> str | None:
        row = self._conn().execute("SELECT id FROM documents WHERE content_hash=?", (content_hash,)).fetchone()
        return row[0] if row else None

    def document_hash(self, document_id: str) -> str | None:
        row = self._conn().execute("SELECT content_hash FROM documents WHERE id=?", (document_id,)).fetchone()
        return row[0] if row else None

    def _document(self, row: sqlite3.Row) -> Document:
        return Document(
            id=row[0], title=row[1], lang=row[2], source=row[3], published=row[4], content_hash=row[5],
            metadata=json.loads(row[6]), created_at=row[7], passage_count=row[8],
        )

    _DOC_SELECT = (
        "SELECT d.id, d.title, d.lang, d.source, d.published, d.content_hash, d.metadata, d.created_at,"
        " (SELECT COUNT(*) FROM passages p WHERE p.document_id = d.id) FROM documents d"
    )

    def list_documents(self, limit: int = 100, offset: int = 0) -> list[Document]:
        rows = self._conn().execute(self._DOC_SELECT + " ORDER BY d.id LIMIT ? OFFSET ?", (limit, offset))
        return [self._document(r) for r in rows]

    def get_document(self, document_id: str) -> tuple[Document, str] | None:
        row = self._conn().execute(self._DOC_SELECT + " WHERE d.id=?", (document_id,)).fetchone()
        if row is None:
            return None
        text = self._conn().execute("SELECT text FROM documents WHERE id=?", (document_id,)).fetchone()[0]
        return self._document(row), text

    def count_documents(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM documents").fetchone()[0]

    def count_passages(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM passages").fetchone()[0]

    def passages_by_rowid(self, rowids: Sequence[int]) -> dict[int, Passage]:
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        rows = self._conn().execute(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.document_id"
            f" WHERE p.rowid IN ({marks})", list(rowids),
        )
        return dict(_row_to_passage(r) for r in rows)

    def passage(self, passage_id: str) -> Passage | None:
        row = self._conn().execute(
            f"SELECT {_PASSAGE_COLUMNS} FROM passages p JOIN documents d ON d.id = p.document_id WHERE p.id=?",
            (passage_id,),
        ).fetchone()
        return _row_to_passage(row)[1] if row else None

    def rowids_of_documents(self, document_ids: Sequence[str]) -> set[int]:
        marks = ",".join("?" * len(document_ids))
        rows = self._conn().execute(f"SELECT rowid FROM passages WHERE document_id IN ({marks})", list(document_ids))
        return {r[0] for r in rows}

    def rowids_of_lang(self, lang: str) -> set[int]:
        return {r[0] for r in self._conn().execute("SELECT rowid FROM passages WHERE lang=?", (lang,))}

    def sentences_of(self, rowids: Sequence[int]) -> dict[int, tuple[list[tuple[int, int]], np.ndarray]]:
        """Sentence spans and vectors of the given passages (absent for passages stored without them)."""
        if not rowids:
            return {}
        marks = ",".join("?" * len(rowids))
        rows = self._conn().execute(
            f'SELECT passage_rowid, start, "end", vector FROM sentences WHERE passage_rowid IN ({marks})'
            ' ORDER BY passage_rowid, start', list(rowids),
        ).fetchall()
        grouped: dict[int, tuple[list[tuple[int, int]], list[np.ndarray]]] = {}
        for rowid, start, end, blob in rows:
            spans, vecs = grouped.setdefault(rowid, ([], []))
            spans.append((start, end))
            vecs.append(np.frombuffer(blob, dtype=np.float32))
        return {rowid: (spans, np.stack(vecs)) for rowid, (spans, vecs) in grouped.items()}

    def iter_vectors(self, batch: int = 4096) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """All (rowids, vectors) in batches, for rebuilding the vector index without re-embedding."""
        cur = self._conn().execute("SELECT rowid, vector FROM passages ORDER BY rowid")
        while rows := cur.fetchmany(batch):
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            yield ids, vecs

    def iter_tokens(self) -> Iterator[tuple[int, str, list[str]]]:
        """All (rowid, lang, tokens), for rebuilding the lexical index without re-tokenising."""
        for rowid, lang, tokens in self._conn().execute("SELECT rowid, lang, tokens FROM passages ORDER BY rowid"):
            yield rowid, lang, tokens.split(" ") if tokens else []

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def new_document(document_id: str, title: str, lang: str, source: str | None, published: str | None,
                 content_hash: str, metadata: dict[str, str]) -> Document:
    return Document(id=document_id, title=title, lang=lang, source=source, published=published,
                    content_hash=content_hash, passage_count=0, created_at=_now(), metadata=metadata)
