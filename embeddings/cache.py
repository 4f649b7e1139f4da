"""Embedding caches: passage vectors on disk (SQLite), question vectors in memory (LRU)."""

from __future__ import annotations

import hashlib
import os
import re
import sqlite3
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .base import Embedder, Titles, WrappingEmbedder

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    model_id TEXT NOT NULL,
    text_sha256 BLOB NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_id, text_sha256)
) WITHOUT ROWID
"""
_MAX_PARAMS = 500  # keys per SELECT, well under SQLite's parameter limit
# Passages handed to the model at once: enough for well-filled passes, few enough that progress is
# reported (and an abandoned upload stops) every few seconds of model time.
CHUNK_TEXTS = 64


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class EmbeddingCache:
    """Passage vectors keyed by ``(model_id, sha256(text))`` in a SQLite file.

    WAL mode and a 60 s busy timeout make it safe to share between threads and processes (one
    connection per process, guarded by a lock; a forked child opens its own).
    """

    def __init__(self, path: Path, timeout_s: float = 60.0):
        self.path = Path(path).expanduser()
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        with self._lock:
            self._connection()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=self._timeout, check_same_thread=False, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, model_id: str, texts: Sequence[str]) -> list[np.ndarray | None]:
        """The cached vector of each text, or ``None`` where there is none."""
        keys = [_text_key(t) for t in texts]
        found: dict[bytes, np.ndarray] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            conn = self._connection()
            for start in range(0, len(unique), _MAX_PARAMS):
                part = unique[start : start + _MAX_PARAMS]
                rows = conn.execute(
                    "SELECT text_sha256, dim, vector FROM vectors WHERE model_id = ? AND text_sha256 IN "
                    f"({','.join('?' * len(part))})",
                    [model_id, *part],
                ).fetchall()
                for key, dim, blob in rows:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    if vector.shape == (dim,):
                        found[bytes(key)] = vector.copy()
        return [found.get(k) for k in keys]

    def put_many(self, model_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store one vector per text (replacing any stored before), in one transaction."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(texts) != len(vectors):
            raise ValueError(f"{len(texts)} texts but {len(vectors)} vectors")
        rows = [
            (model_id, _text_key(t), int(v.shape[0]), np.ascontiguousarray(v).tobytes())
            for t, v in zip(texts, vectors)
        ]
        if not rows:
            return
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO vectors (model_id, text_sha256, dim, vector) VALUES (?, ?, ?, ?)", rows
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def count(self, model_id: str | None = None) -> int:
        """Vectors stored (for one model, or for all)."""
        with self._lock:
            conn = self._connection()
            if model_id is None:
                return conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
            return conn.execute("SELECT COUNT(*) FROM vectors WHERE model_id = ?", (model_id,)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _length_batches(items_longest_first: list, size: int, key: Callable = len) -> list[list]:
    """Batches of at most ``size`` texts of similar length (``key`` gives the length): a batch closes
    when a text is under half as long as its first, so a long passage is never padded together with
    short sentences."""
    batches: list[list] = []
    for item in items_longest_first:
        if batches and len(batches[-1]) < size and 2 * key(item) >= key(batches[-1][0]):
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches


def _titled_key(text: str, title: str | None) -> str:
    """The cache key of a passage encoded with its document's title in the prompt: the text alone when
    there is no title (so untitled vectors keep their keys), else title and text."""
    return text if not title else f"title\x1f{title}\x1f{text}"


def _span_key(text: str, start: int, end: int) -> str:
    """The cache key of a span pooled inside ``text`` (the passage and the offsets together)."""
    return f"{start}:{end}\x1f{text}"


_TRUNCATED = re.compile(r"^(.*)/d(\d+)(.*)$")


def normalise_query(text: str) -> str:
    """The form a question is encoded (and cached) in: NFC, whitespace collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


class CachedEmbedder(WrappingEmbedder):
    """Wraps an embedder so passages already embedded (by any process) are never encoded again.

    Passages: looked up in the :class:`EmbeddingCache`; the missing ones are sorted by token length
    (longest first) and handed to the model in chunks of at most ``chunk_texts``, within which the model
    (or the micro-batcher, together with other callers' chunks) plans its forward passes so that they pad
    little (:mod:`embeddings.passes`); each chunk is stored as soon as it is done, so an interrupted run
    keeps its work. Questions: a thread-safe in-memory LRU of
    ``query_cache_size`` entries keyed by the normalised question (see :func:`normalise_query`).

    Progress: set the attribute ``on_progress`` to a callable ``(done, total)``; during
    ``encode_passages`` it is called once with the cache hits and then after every chunk, where
    ``total`` is the number of texts passed and ``done`` counts those that have a vector.
    """

    def __init__(self, inner: Embedder, cache: EmbeddingCache, batch_size: int = 8, query_cache_size: int = 4096,
                 chunk_texts: int = CHUNK_TEXTS):
        self.inner = inner
        self.cache = cache
        self.batch_size = max(1, batch_size)  # passages pooled from their passage's pass: per model call
        self.chunk_texts = max(1, chunk_texts)
        self.on_progress: Callable[[int, int], None] | None = None
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self._query_lock = threading.Lock()
        self.persist_queries = False

    def _checked(self, vectors: np.ndarray, n: int) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (n, self.dimension):
            raise ValueError(f"{self.model_id} returned shape {vectors.shape}, expected {(n, self.dimension)}")
        return vectors

    def encode_passages(self, texts: Sequence[str], titles: Titles = None) -> np.ndarray:
        """Cached vectors, keyed by the text (and its title, when it has one: see :func:`_titled_key`)."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        titles = list(titles) if titles is not None else [None] * len(texts)
        keys = [_titled_key(text, title) for text, title in zip(texts, titles)]
        model_id = self.model_id
        missing: dict[str, list[int]] = {}
        for i, (key, vector) in enumerate(zip(keys, self.cache.get_many(model_id, keys))):
            if vector is not None and vector.shape == (self.dimension,):
                out[i] = vector
            else:
                missing.setdefault(key, []).append(i)
        self._fill_from_full_size(model_id, missing, out)
        done = len(texts) - sum(len(rows) for rows in missing.values())
        self._report(done, len(texts))
        tokens = {key: self.count_tokens(texts[rows[0]]) for key, rows in missing.items()}
        todo = sorted(missing, key=tokens.__getitem__, reverse=True)
        for start in range(0, len(todo), self.chunk_texts):  # the model plans its passes within a chunk
            batch = todo[start : start + self.chunk_texts]
            first = [missing[key][0] for key in batch]
            vectors = self._checked(self.inner.encode_passages([texts[i] for i in first], [titles[i] for i in first]),
                                    len(batch))
            self.cache.put_many(model_id, batch, vectors)
            for key, vector in zip(batch, vectors):
                out[missing[key]] = vector
                done += len(missing[key])
            self._report(done, len(texts))
        return out

    def encode_passages_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                                   titles: Titles = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Like :meth:`encode_passages`, for passages whose spans are pooled from the passage's own pass
        (which carries the context a title would give, so ``titles`` are not used): span vectors are
        cached under ``<model>#span`` keyed by passage text and offsets, and a passage is encoded again
        only if it or one of its spans is missing."""
        if not self.contextual_spans:
            return super().encode_passages_with_spans(texts, spans, titles)
        texts, spans = list(texts), [list(own) for own in spans]
        dim, model_id = self.dimension, self.model_id
        passages = np.zeros((len(texts), dim), dtype=np.float32)
        span_vectors = [np.zeros((len(own), dim), dtype=np.float32) for own in spans]
        keys = [[_span_key(text, s, e) for s, e in own] for text, own in zip(texts, spans)]
        cached = iter(self.cache.get_many(model_id + "#span", [k for own in keys for k in own]))
        found = self.cache.get_many(model_id, texts)
        todo = []
        for i, vector in enumerate(found):
            complete = vector is not None and vector.shape == (dim,)
            for k in range(len(spans[i])):
                piece = next(cached)
                if piece is not None and piece.shape == (dim,):
                    span_vectors[i][k] = piece
                else:
                    complete = False
            if complete:
                passages[i] = vector
            else:
                todo.append(i)
        done = len(texts) - len(todo)
        self._report(done, len(texts))
        todo.sort(key=lambda i: len(texts[i]), reverse=True)
        for batch in _length_batches(todo, self.batch_size, key=lambda i: len(texts[i])):
            vectors, pieces = self.inner.encode_passages_with_spans([texts[i] for i in batch], [spans[i] for i in batch])
            vectors = self._checked(vectors, len(batch))
            self.cache.put_many(model_id, [texts[i] for i in batch], vectors)
            batch_keys = [k for i in batch for k in keys[i]]
            if batch_keys:
                self.cache.put_many(model_id + "#span", batch_keys, np.concatenate(pieces))
            for i, vector, piece in zip(batch, vectors, pieces):
                passages[i], span_vectors[i] = vector, self._checked(piece, len(spans[i]))
            done += len(batch)
            self._report(done, len(texts))
        return passages, span_vectors

    def _fill_from_full_size(self, model_id: str, missing: dict[str, list[int]], out: np.ndarray) -> None:
        """A Matryoshka-truncated model (``…/d<N>``) reuses the cached full-size vectors: truncating and
        re-normalising them gives exactly what the truncated model computes."""
        match = _TRUNCATED.match(model_id)
        if not match or not missing:
            return
        base = match.group(1) + match.group(3)
        texts = list(missing)
        found = [(t, v) for t, v in zip(texts, self.cache.get_many(base, texts)) if v is not None]
        if not found:
            return
        dim = self.dimension
        vectors = np.stack([v[:dim] for _, v in found]).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)
        self.cache.put_many(model_id, [t for t, _ in found], vectors)
        for (text, _), vector in zip(found, vectors):
            out[missing.pop(text)] = vector

    def _report(self, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(done, total)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        keys = [normalise_query(t) for t in texts]
        out = np.zeros((len(keys), self.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._query_lock:
            for i, key in enumerate(keys):
                vector = self._queries.get(key)
                if vector is not None:
                    self._queries.move_to_end(key)
                    out[i] = vector
                else:
                    missing.setdefault(key, []).append(i)
        if missing:
            todo = list(missing)
            vectors = self._encode_new_queries(todo)
            with self._query_lock:
                for key, vector in zip(todo, vectors):
                    out[missing[key]] = vector
                    self._queries[key] = vector.copy()
                    self._queries.move_to_end(key)
                while len(self._queries) > self._query_cache_size:
                    self._queries.popitem(last=False)
        return out

    def _encode_new_queries(self, todo: list[str]) -> np.ndarray:
        """Encode questions missing from the LRU; with ``persist_queries`` they also go through the disk
        cache (off by default: a service should not keep its users' questions on disk; the benchmark
        commands turn it on so reruns do not re-encode thousands of questions)."""
        if not self.persist_queries:
            return self._checked(self.inner.encode_queries(todo), len(todo))
        namespace = self.model_id + "#query"
        vectors = np.zeros((len(todo), self.dimension), dtype=np.float32)
        unseen = []
        for i, vector in enumerate(self.cache.get_many(namespace, todo)):
            if vector is not None and vector.shape == (self.dimension,):
                vectors[i] = vector
            else:
                unseen.append(i)
        if unseen:
            fresh = self._checked(self.inner.encode_queries([todo[i] for i in unseen]), len(unseen))
            vectors[unseen] = fresh
            self.cache.put_many(namespace, [todo[i] for i in unseen], fresh)
        return vectors
