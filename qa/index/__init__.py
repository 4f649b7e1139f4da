"""Search indexes derived from the passage store: dense vectors and lexical BM25.

``create_dense_index`` / ``create_lexical_index`` build the configured backends; :mod:`qa.index.base`
holds the protocols.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from qa.index.base import (
    DenseIndex,
    IndexCorruptError,
    IndexHit,
    IndexMismatchError,
    IndexUnavailableError,
    LexicalIndex,
    TermStats,
)

if TYPE_CHECKING:
    from qa.settings import Settings


def create_dense_index(settings: Settings, model_id: str, dimension: int) -> DenseIndex:
    """The dense index the settings name (FAISS files in the data folder by default; Milvus with
    ``QA_INDEX=milvus``)."""
    if settings.index == "milvus":
        from qa.index.milvus import MilvusDenseIndex

        return MilvusDenseIndex(milvus_connection(settings), dimension, model_id, settings.milvus_index_type)
    from qa.index.faiss_dense import FaissDenseIndex

    return FaissDenseIndex(
        settings.data_dir / "vectors", dimension, model_id, approximate_threshold=settings.approximate_threshold,
        hnsw_m=settings.hnsw_m, ef_search=settings.hnsw_ef_search, hnsw_sq8=settings.hnsw_sq8,
    )


def create_lexical_index(settings: Settings) -> LexicalIndex:
    """The lexical index the settings name (tantivy in the data folder by default; Milvus, with its BM25
    statistics in the PostgreSQL database of the store, with ``QA_INDEX=milvus``)."""
    if settings.index == "milvus":
        from qa.index.milvus import MilvusLexicalIndex
        from qa.index.pg_term_stats import PostgresTermStats
        from qa.store.pg_database import PostgresDatabase

        database = PostgresDatabase(settings.postgres_dsn.get_secret_value(), pool_size=settings.postgres_pool_size,
                                    timeout_s=settings.backend_timeout_s, name="qa-lexical-stats")
        return MilvusLexicalIndex(milvus_connection(settings),
                                  PostgresTermStats(database, settings.milvus_prefix, owns_database=True))
    from qa.index.tantivy_lexical import TantivyLexicalIndex

    return TantivyLexicalIndex(settings.data_dir / "lexical")


def milvus_connection(settings: Settings):
    """A client of the Milvus server the settings name (its token never leaves this object)."""
    from qa.index.milvus import MilvusConnection

    token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
    return MilvusConnection(settings.milvus_uri, token, timeout_s=settings.backend_timeout_s,
                            prefix=settings.milvus_prefix)


__all__ = [
    "DenseIndex", "IndexCorruptError", "IndexHit", "IndexMismatchError", "IndexUnavailableError", "LexicalIndex",
    "TermStats", "create_dense_index", "create_lexical_index",
]
