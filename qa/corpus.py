"""The corpus: the passage store and the indexes derived from it, kept in step.

The store is written first (one transaction per document); the indexes follow in memory and are
persisted at the end of each write batch. On open, an index that lags the store (the process died
between the two) is caught up from the vectors and tokens kept in the store.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from qa.index.lexical import LexicalIndex
from qa.index.vectors import IndexMismatchError, VectorIndex
from qa.models import Document, Passage
from qa.settings import Settings
from qa.store import PassageStore, StoredPassage

log = logging.getLogger(__name__)


class Corpus:
    """Store + dense index + lexical index for one data folder and one embedding model."""

    def __init__(self, data_dir: Path, model_id: str, dimension: int, settings: Settings):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = PassageStore(self.data_dir / "store.sqlite")
        self._check_model(model_id, dimension)
        self.vectors = VectorIndex.open(
            self.data_dir, dimension, model_id, approximate_threshold=settings.approximate_threshold,
            hnsw_m=settings.hnsw_m, ef_search=settings.hnsw_ef_search, hnsw_sq8=settings.hnsw_sq8,
        )
        self.lexical = LexicalIndex.load(self.data_dir) or LexicalIndex()
        self._write_lock = threading.RLock()
        self._batch_depth = 0
        self._lang_rowids: dict[str, tuple[tuple[str, int], frozenset[int]]] = {}
        self._catch_up()

    def _check_model(self, model_id: str, dimension: int) -> None:
        stored = self.store.get_meta("model_id")
        if stored is None:
            self.store.set_meta("model_id", model_id)
            self.store.set_meta("dimension", str(dimension))
        elif stored != model_id:
            raise IndexMismatchError(
                f"The passages in {self.data_dir} were embedded with {stored!r}, but the service is configured "
                f"with {model_id!r}. Run `qa reindex --data-dir {self.data_dir}` to re-embed them with the "
                "configured model, or configure the model they were embedded with."
            )

    def _catch_up(self) -> None:
        generation = self.store.generation
        if self.vectors.generation != generation or len(self.vectors) != self.store.count_passages():
            if generation:
                log.warning("vector index is at generation %s, store at %s: restoring it from the stored vectors",
                            self.vectors.generation, generation)
            self.vectors.rebuild(self.store.iter_vectors())
            self.vectors.save(self.data_dir, generation)
        if self.lexical.generation != generation:
            self.lexical.rebuild(self.store.iter_tokens(), generation)
            self.lexical.save(self.data_dir)

    # --- writes ---------------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes: indexes are persisted once, when the outermost batch ends."""
        with self._write_lock:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0:
                    self._persist()

    def _persist(self) -> None:
        generation = self.store.generation
        if self.lexical.generation != generation:
            self.lexical.rebuild(self.store.iter_tokens(), generation)
            self.lexical.save(self.data_dir)
        if self.vectors.generation != generation:
            self.vectors.save(self.data_dir, generation)

    def write_document(self, document: Document, text: str, passages: Sequence[StoredPassage]) -> None:
        with self.batch():
            removed, added = self.store.replace_document(document, text, passages)
            self._follow(removed, added, passages)

    def delete_document(self, document_id: str) -> bool:
        with self.batch():
            removed = self.store.delete_document(document_id)
            if removed is None:
                return False
            self._follow(removed, [], [])
            return True

    def _follow(self, removed: list[int], added: list[int], passages: Sequence[StoredPassage]) -> None:
        if not self.vectors.remove(removed):
            self.vectors.rebuild(self.store.iter_vectors())
        elif added:
            self.vectors.add(np.asarray(added, dtype=np.int64), np.stack([p.vector for p in passages]))
        if len(self.vectors) > self.vectors.approximate_threshold and not self.vectors.approximate:
            self.vectors.rebuild(self.store.iter_vectors())

    def reindex(self) -> None:
        """Rebuild both indexes from the store (no re-embedding)."""
        with self._write_lock:
            generation = self.store.generation
            self.vectors.rebuild(self.store.iter_vectors())
            self.vectors.save(self.data_dir, generation)
            self.lexical.rebuild(self.store.iter_tokens(), generation)
            self.lexical.save(self.data_dir)

    # --- reads ----------------------------------------------------------------------------------
    def allowed_rowids(self, lang: str | None, document_ids: Sequence[str] | None) -> set[int] | None:
        allowed: set[int] | None = None
        if document_ids is not None:
            allowed = self.store.rowids_of_documents(document_ids)
        if lang is not None:
            by_lang = self.rowids_of_lang(lang)
            allowed = by_lang if allowed is None else allowed & by_lang
        return allowed

    def rowids_of_lang(self, lang: str) -> frozenset[int]:
        """Passage ids of one language, cached until the next write (not reloaded per request)."""
        key = (lang, self.store.generation)
        cached = self._lang_rowids.get(lang)
        if cached is None or cached[0] != key:
            cached = (key, frozenset(self.store.rowids_of_lang(lang)))
            self._lang_rowids[lang] = cached
        return cached[1]

    def passages(self, rowids: Sequence[int]) -> dict[int, Passage]:
        return self.store.passages_by_rowid(rowids)

    def close(self) -> None:
        self.store.close()
