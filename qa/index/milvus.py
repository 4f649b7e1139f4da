"""Milvus indexes: the dense and the lexical seam served by a Milvus server shared by every replica.

Two Milvus collections per deployment (``<prefix>_dense``, ``<prefix>_lexical``), one entity per
passage keyed by the store's rowid, with the attributes every :class:`SearchFilter` needs as scalar
fields (the qa collection, language, document id, source, the first ten characters of the
published date); each filter becomes a Milvus boolean expression. A third, ``<prefix>_state``,
keeps how far each index has applied the store's change sequence, so any replica's outbox worker
resumes where the last one stopped.

The lexical leg is BM25 (k1 = 1.2, b = 0.75, the Lucene form the embedded index uses) over ``qa``'s
own tokens (jieba words for Chinese): each passage is a sparse vector of its tokens' BM25 document
weights (token ids are a stable 32-bit hash; the average length is the one when it was written),
the query a sparse vector of IDF weights, so Milvus returns candidates by inner product; the best
``rescore_depth`` of them (100, or ``k`` when more are asked; only the average length differs
between Milvus's order and the exact one, so the exact top 50 lies among them) are then scored
exactly from their tokens and the current statistics (read in one statement),
which PostgreSQL keeps per collection and language (:mod:`qa.index.pg_term_stats`, updated
idempotently before each Milvus write). Milvus's own BM25 function is not used: its statistics span
the whole Milvus collection, not one qa collection and language, and lite cannot tokenise with jieba.

milvus-lite (the engine the tests run) has no partition keys or HNSW; the qa collection is a
filtered scalar field and the dense index type is a setting (FLAT: exact, like the embedded index).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from qa.index.base import (
    DenseIndex,
    DerivedIndex,
    IndexHit,
    IndexMismatchError,
    IndexUnavailableError,
    LexicalIndex,
    TermStats,
)
from qa.index.pg_term_stats import PostgresTermStats
from qa.store.base import IndexEntry, SearchFilter, published_bounds

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
K1, B = 1.2, 0.75
UPSERT_BATCH = 512
MAX_VARCHAR = 65_535
SEARCH_LIMIT = 16_384  # Milvus's largest top-k


def redact_uri(uri: str) -> str:
    """A Milvus URI without user information (``http://user:pass@host`` → ``http://host``)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return uri.rsplit("@", 1)[-1]
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def quote(value: str) -> str:
    """A Milvus expression string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _in(field: str, values: Sequence[str]) -> str:
    return f"{field} in [{', '.join(quote(v) for v in values)}]"


def filter_expression(flt: SearchFilter, lang: str | None = None) -> str:
    """The Milvus boolean expression of a filter (``lang`` narrows it further, e.g. the lexical leg's language)."""
    parts = [f"kb == {quote(flt.collection)}"]
    for value in {flt.lang, lang} - {None}:
        parts.append(f"lang == {quote(value)}")
    if flt.document_ids is not None:
        parts.append(_in("document_id", flt.document_ids))
    if flt.sources is not None:
        parts.append(_in("source", flt.sources))
    if flt.published_from is not None or flt.published_to is not None:
        low, high = published_bounds(flt.published_from, flt.published_to)
        parts.append(f"published >= {quote(low)} and published <= {quote(high)}")
    return " and ".join(parts)


def token_id(token: str) -> int:
    """A token's sparse dimension: a stable 32-bit hash (collisions only blur candidate generation;
    the final scores are computed from the tokens themselves)."""
    return zlib.crc32(token.encode("utf-8"))


def bm25_weight(tf: int | np.ndarray, length: int, average_length: float):
    """BM25's document side of one term (Lucene form, without the constant k1 + 1)."""
    norm = K1 * (1 - B + B * length / average_length) if average_length > 0 else K1
    return tf / (tf + norm)


def idf(documents: int, df: int) -> float:
    return math.log1p(max(0.0, documents - df + 0.5) / (df + 0.5))


class MilvusConnection:
    """One ``MilvusClient`` per process; every call goes through :meth:`call`, which turns an unreachable
    or failing server into :class:`IndexUnavailableError` naming its address (never its token)."""

    def __init__(self, uri: str, token: str | None = None, timeout_s: float = 10.0, prefix: str = "qa"):
        from pymilvus import MilvusClient

        self.uri = uri
        self.address = redact_uri(uri)
        self.timeout_s = timeout_s
        self.prefix = prefix
        self._lock = threading.Lock()
        try:
            self.client = MilvusClient(uri=uri, token=token or "", timeout=timeout_s)
        except Exception as exc:
            raise IndexUnavailableError(
                f"Milvus at {self.address} is unreachable ({type(exc).__name__}). Check QA_MILVUS_URI (and "
                "QA_MILVUS_TOKEN) and that the server is running."
            ) from None
        self._state_ready = False

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from pymilvus.exceptions import MilvusException

        kwargs.setdefault("timeout", self.timeout_s)
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except MilvusException as exc:
            if _is_outage(exc):
                raise IndexUnavailableError(f"Milvus at {self.address} is unavailable: {exc.message}") from None
            raise
        except Exception as exc:  # grpc errors, closed channels, timeouts
            if type(exc).__module__.startswith(("grpc", "pymilvus")) or isinstance(exc, (ConnectionError, TimeoutError)):
                raise IndexUnavailableError(f"Milvus at {self.address} is unavailable: {type(exc).__name__}") from None
            raise

    # --- how far each index has applied the store's changes ------------------------------------------
    @property
    def state_collection(self) -> str:
        return f"{self.prefix}_state"

    def _ensure_state(self) -> None:
        if self._state_ready:
            return
        from pymilvus import DataType

        with self._lock:
            if not self.call("has_collection", self.state_collection):
                schema = self.client.create_schema(auto_id=False, description="qa: applied change sequence")
                schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=64)
                schema.add_field("seq", DataType.INT64)
                schema.add_field("unused", DataType.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field
                params = self.client.prepare_index_params()
                params.add_index("unused", index_type="FLAT", metric_type="L2")
                self.call("create_collection", self.state_collection, schema=schema, index_params=params,
                          consistency_level="Strong")
            self._state_ready = True

    def get_seq(self, name: str) -> int:
        self._ensure_state()
        rows = self.call("get", self.state_collection, ids=[name], output_fields=["seq"])
        return int(rows[0]["seq"]) if rows else 0

    def set_seq(self, name: str, seq: int) -> None:
        self._ensure_state()
        self.call("upsert", self.state_collection, [{"name": name, "seq": int(seq), "unused": [0.0, 0.0]}])

    def forget_state(self) -> None:
        if self.call("has_collection", self.state_collection):
            self.call("drop_collection", self.state_collection)
        self._state_ready = False

    def drop_indexes(self) -> None:
        """Drop this deployment's Milvus collections (``qa reindex`` rebuilds them from the store)."""
        for kind in ("dense", "lexical", "state"):
            name = f"{self.prefix}_{kind}"
            if self.call("has_collection", name):
                self.call("drop_collection", name)
        self._state_ready = False

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # already closed or never connected
            pass


def _is_outage(exc: Exception) -> bool:
    text = f"{getattr(exc, 'message', '')} {exc}".lower()
    return any(word in text for word in ("unavailable", "connect", "deadline", "timeout", "timed out", "closed",
                                         "not ready", "fail to", "rpc error"))


class _MilvusIndex(DerivedIndex):
    """What both Milvus indexes share: one Milvus collection with the filter fields, the applied state."""

    kind = ""  # "dense" | "lexical"

    def __init__(self, connection: MilvusConnection, identity: dict[str, Any]):
        self.db = connection
        self.name = f"{connection.prefix}_{self.kind}"
        self.identity = {"qa": SCHEMA_VERSION, "kind": self.kind, **identity}
        self._open()
        self._applied = self.durable_seq

    # --- schema --------------------------------------------------------------------------------------
    def _open(self) -> None:
        if self.db.call("has_collection", self.name):
            self._check_identity()
        else:
            self._create()
        self.db.call("load_collection", self.name)

    def _check_identity(self) -> None:
        described = self.db.call("describe_collection", self.name)
        try:
            stored = json.loads(described.get("description") or "")
        except ValueError:
            stored = None
        if not isinstance(stored, dict) or stored.get("qa") is None:
            raise IndexMismatchError(
                f"The Milvus collection {self.name!r} at {self.db.address} is not a qa index. Choose another "
                "QA_MILVUS_PREFIX, or drop that collection and run `qa reindex` to rebuild it from the store.")
        if stored != self.identity:
            differences = ", ".join(f"{k}: {stored.get(k)!r} there, {v!r} configured"
                                    for k, v in self.identity.items() if stored.get(k) != v)
            raise IndexMismatchError(
                f"The Milvus collection {self.name!r} at {self.db.address} was built for another configuration "
                f"({differences}). Run `qa reindex` to rebuild it from the store with the configured model, or "
                "configure the model it was built with.")

    def _create(self) -> None:
        from pymilvus import DataType

        schema = self.db.client.create_schema(auto_id=False, description=json.dumps(self.identity, sort_keys=True))
        schema.add_field("rowid", DataType.INT64, is_primary=True)
        schema.add_field("kb", DataType.VARCHAR, max_length=64)
        schema.add_field("document_id", DataType.VARCHAR, max_length=1024)
        schema.add_field("lang", DataType.VARCHAR, max_length=16)
        schema.add_field("source", DataType.VARCHAR, max_length=2048)
        schema.add_field("published", DataType.VARCHAR, max_length=16)
        params = self.db.client.prepare_index_params()
        self._add_fields(schema, params)
        self.db.call("create_collection", self.name, schema=schema, index_params=params, consistency_level="Strong")

    def _add_fields(self, schema, params) -> None:
        raise NotImplementedError

    def _row(self, entry: IndexEntry) -> dict[str, Any]:
        return {"rowid": int(entry.rowid), "kb": entry.collection, "document_id": entry.document_id[:1024],
                "lang": entry.lang, "source": (entry.source or "")[:2048], "published": (entry.published or "")[:10]}

    # --- DerivedIndex --------------------------------------------------------------------------------
    @property
    def applied_seq(self) -> int:
        return self._applied

    @property
    def durable_seq(self) -> int:
        """The sequence recorded in Milvus (read afresh: any replica's worker may have moved it)."""
        return self.db.get_seq(self.name)

    def mark_applied(self, seq: int) -> None:
        self._applied = int(seq)

    def checkpoint(self) -> None:
        """Record the applied sequence in Milvus (the passages themselves are durable once acknowledged)."""
        self.db.set_seq(self.name, self._applied)

    def add(self, entries: Sequence[IndexEntry]) -> None:
        last = {e.rowid: e for e in entries}  # the last entry of a rowid wins
        unique = list(last.values())
        for start in range(0, len(unique), UPSERT_BATCH):
            rows = self._rows(unique[start:start + UPSERT_BATCH])
            if rows:
                self.db.call("upsert", self.name, rows)

    def _rows(self, entries: Sequence[IndexEntry]) -> list[dict[str, Any]]:
        return [self._row(e) for e in entries]

    def remove(self, collection: str, rowids: Sequence[int]) -> None:
        ids = sorted({int(r) for r in rowids})
        for start in range(0, len(ids), UPSERT_BATCH):
            self.db.call("delete", self.name,
                         filter=f"kb == {quote(collection)} and rowid in {ids[start:start + UPSERT_BATCH]}")

    def drop_collection(self, collection: str) -> None:
        self.db.call("delete", self.name, filter=f"kb == {quote(collection)}")

    def count(self, collection: str | None = None) -> int:
        expression = "" if collection is None else f"kb == {quote(collection)}"
        rows = self.db.call("query", self.name, filter=expression, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def reset(self) -> None:
        self.db.call("drop_collection", self.name)
        self.db.set_seq(self.name, 0)
        self._applied = 0
        self._create()
        self.db.call("load_collection", self.name)

    def close(self) -> None:
        self.db.close()

    def _search(self, data: list, field: str, limit: int, expression: str, output: list[str]) -> list[dict]:
        result = self.db.call("search", self.name, data=data, anns_field=field, limit=min(limit, SEARCH_LIMIT),
                              filter=expression, output_fields=output, search_params={"metric_type": "IP"})
        return list(result[0]) if result else []


class MilvusDenseIndex(_MilvusIndex, DenseIndex):
    """Passage vectors in Milvus (inner product of unit vectors; FLAT is exact)."""

    kind = "dense"

    def __init__(self, connection: MilvusConnection, dimension: int, model_id: str, index_type: str = "FLAT"):
        self.dimension = int(dimension)
        self.model_id = model_id
        self.index_type = index_type
        super().__init__(connection, {"model_id": model_id, "dimension": self.dimension})

    def _add_fields(self, schema, params) -> None:
        from pymilvus import DataType

        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dimension)
        params.add_index("vector", index_type=self.index_type, metric_type="IP")

    def _row(self, entry: IndexEntry) -> dict[str, Any]:
        vector = np.asarray(entry.vector, dtype=np.float32)
        if vector.shape != (self.dimension,):
            raise IndexMismatchError(f"a vector of shape {vector.shape} for a {self.dimension}-d index")
        return {**super()._row(entry), "vector": vector.tolist()}

    def search(self, vector: np.ndarray, k: int, flt: SearchFilter) -> list[IndexHit]:
        if k <= 0 or flt.matches_nothing:
            return []
        query = np.asarray(vector, dtype=np.float32).reshape(-1).tolist()
        hits = self._search([query], "vector", k, filter_expression(flt), ["lang"])
        return [IndexHit(int(h["id"]), float(h["distance"]), h["entity"]["lang"]) for h in hits]

    def vectors(self, collection: str, rowids: Sequence[int]) -> np.ndarray:
        ids = [int(r) for r in rowids]
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        if not ids:
            return out
        rows = self.db.call("query", self.name, filter=f"kb == {quote(collection)} and rowid in {ids}",
                            output_fields=["rowid", "vector"])
        found = {int(r["rowid"]): r["vector"] for r in rows}
        for i, rowid in enumerate(ids):
            if rowid in found:
                out[i] = np.asarray(found[rowid], dtype=np.float32)
        return out


class MilvusLexicalIndex(_MilvusIndex, LexicalIndex):
    """BM25 over qa's tokens: Milvus sparse vectors for candidates, exact scores from the statistics in
    PostgreSQL."""

    kind = "lexical"

    def __init__(self, connection: MilvusConnection, statistics: PostgresTermStats, rescore_depth: int = 100):
        self.statistics = statistics
        self.rescore_depth = rescore_depth
        super().__init__(connection, {})

    def _add_fields(self, schema, params) -> None:
        from pymilvus import DataType

        schema.add_field("tokens", DataType.VARCHAR, max_length=MAX_VARCHAR)
        schema.add_field("terms", DataType.SPARSE_FLOAT_VECTOR)
        params.add_index("terms", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")

    def add(self, entries: Sequence[IndexEntry]) -> None:
        last = list({e.rowid: e for e in entries}.values())
        for start in range(0, len(last), UPSERT_BATCH):
            self.statistics.add(last[start:start + UPSERT_BATCH])  # first: a replay then finds them counted
            super().add(last[start:start + UPSERT_BATCH])

    def remove(self, collection: str, rowids: Sequence[int]) -> None:
        self.statistics.remove(collection, rowids)
        super().remove(collection, rowids)

    def drop_collection(self, collection: str) -> None:
        self.statistics.drop_collection(collection)
        super().drop_collection(collection)

    def reset(self) -> None:
        self.statistics.reset()
        super().reset()

    def close(self) -> None:
        super().close()
        self.statistics.close()

    def _rows(self, entries: Sequence[IndexEntry]) -> list[dict[str, Any]]:
        averages: dict[tuple[str, str], float] = {}
        rows = []
        for entry in entries:
            key = (entry.collection, entry.lang)
            if key not in averages:
                documents, total, _ = self.statistics.statistics(entry.collection, entry.lang, [])
                averages[key] = total / documents if documents else 0.0
            rows.append(self._lexical_row(entry, averages[key]))
        return rows

    def _lexical_row(self, entry: IndexEntry, average_length: float) -> dict[str, Any]:
        terms: dict[int, float] = {}
        for token, tf in Counter(entry.tokens).items():
            weight = float(bm25_weight(tf, len(entry.tokens), average_length or len(entry.tokens)))
            terms[token_id(token)] = terms.get(token_id(token), 0.0) + weight
        tokens = list(entry.tokens)
        text = json.dumps(tokens, ensure_ascii=False)
        while len(text.encode("utf-8")) > MAX_VARCHAR:  # an absurdly long passage: keep what fits
            tokens = tokens[: len(tokens) * 3 // 4]
            text = json.dumps(tokens, ensure_ascii=False)
        return {**self._row(entry), "tokens": text, "terms": terms or {0: 1e-9}}  # Milvus refuses empty vectors

    def term_stats(self, collection: str, lang: str, tokens: Sequence[str]) -> TermStats:
        documents, _, df = self.statistics.statistics(collection, lang, list(tokens))
        return TermStats(documents=documents, df=tuple(df))

    def search(self, tokens: Sequence[str], lang: str, k: int, flt: SearchFilter) -> list[IndexHit]:
        if k <= 0 or not tokens or flt.matches_nothing or (flt.lang is not None and flt.lang != lang):
            return []
        documents, total, df = self.statistics.statistics(flt.collection, lang, list(tokens))
        weights: dict[str, float] = {}
        for token, d in zip(tokens, df):
            if d > 0:
                weights[token] = weights.get(token, 0.0) + idf(documents, d)  # a repeated token counts again
        if not weights:
            return []
        query: dict[int, float] = {}
        for token, w in weights.items():
            query[token_id(token)] = query.get(token_id(token), 0.0) + w
        hits = self._search([query], "terms", max(k, self.rescore_depth), filter_expression(flt, lang), ["tokens"])
        average = total / documents
        scored = []
        for hit in hits:  # exact BM25 of the query's terms (list.count: no Counter of the passage's every token)
            passage_tokens = json.loads(hit["entity"]["tokens"])
            length = len(passage_tokens)
            score = 0.0
            for t, w in weights.items():
                if tf := passage_tokens.count(t):
                    score += w * bm25_weight(tf, length, average)
            if score > 0:
                scored.append((score, int(hit["id"])))
        scored.sort(key=lambda s: (-s[0], s[1]))
        return [IndexHit(rowid, score, lang) for score, rowid in scored[:k]]


def open_milvus_indexes(connection: MilvusConnection, database, dimension: int, model_id: str,
                        index_type: str = "FLAT") -> tuple[MilvusDenseIndex, MilvusLexicalIndex]:
    """The dense and lexical index of one deployment (``database``: the PostgreSQL database of the
    lexical statistics, a :class:`~qa.store.pg_database.PostgresDatabase`)."""
    return (MilvusDenseIndex(connection, dimension, model_id, index_type),
            MilvusLexicalIndex(connection, PostgresTermStats(database, connection.prefix)))


__all__ = ["MilvusConnection", "MilvusDenseIndex", "MilvusLexicalIndex", "filter_expression", "open_milvus_indexes",
           "redact_uri"]
