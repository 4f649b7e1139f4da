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
    """The dense index the settings name (FAISS files in the data folder by default)."""
    from qa.index.faiss_dense import FaissDenseIndex

    return FaissDenseIndex(
        settings.data_dir / "vectors", dimension, model_id, approximate_threshold=settings.approximate_threshold,
        hnsw_m=settings.hnsw_m, ef_search=settings.hnsw_ef_search, hnsw_sq8=settings.hnsw_sq8,
    )


def create_lexical_index(settings: Settings) -> LexicalIndex:
    """The lexical index the settings name (tantivy in the data folder by default)."""
    from qa.index.tantivy_lexical import TantivyLexicalIndex

    return TantivyLexicalIndex(settings.data_dir / "lexical")


__all__ = [
    "DenseIndex", "IndexCorruptError", "IndexHit", "IndexMismatchError", "IndexUnavailableError", "LexicalIndex",
    "TermStats", "create_dense_index", "create_lexical_index",
]
