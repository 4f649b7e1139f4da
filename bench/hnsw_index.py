"""The single-FAISS-index design qa served from before the per-collection dense index (qa.index.faiss_dense),
kept for `qa bench --scale`: FAISS inner product over L2-normalised vectors, keyed by passage rowid.

Exact search (``IndexFlatIP``) up to ``approximate_threshold`` passages, HNSW above it (with
``hnsw_sq8``: HNSW over 8-bit scalar-quantised vectors, a quarter of the memory). The index
file is written atomically together with a manifest naming the model, the dimension and the store
generation it reflects. Opening refuses a corrupt file or one built with another model; an index
that merely lags the store (a crash between the store commit and the index write) is caught up
from the vectors kept in the store, so no acknowledged write is lost.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

import faiss
import numpy as np

from qa.index.files import atomic_write, atomic_write_json

log = logging.getLogger(__name__)

FORMAT = "qa-faiss/1"


class IndexMismatchError(RuntimeError):
    """The index on disk belongs to another model or is not a qa index."""


class IndexCorruptError(RuntimeError):
    """The index file on disk cannot be read."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class VectorIndex:
    """FAISS index with int64 ids; thread-safe (searches and writes take one lock)."""

    def __init__(self, dimension: int, model_id: str, *, approximate_threshold: int = 200_000,
                 hnsw_m: int = 32, ef_search: int = 128, hnsw_sq8: bool = False):
        self.dimension = dimension
        self.model_id = model_id
        self.approximate_threshold = approximate_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.hnsw_sq8 = hnsw_sq8
        self.generation = 0
        self._lock = threading.RLock()
        self._index = self._new_index(approximate=False)

    # --- construction ---------------------------------------------------------------------------
    def _new_index(self, approximate: bool) -> faiss.Index:
        if approximate and self.hnsw_sq8:
            # Needs training (per-dimension ranges) before the first add: see rebuild().
            inner = faiss.IndexHNSWSQ(self.dimension, faiss.ScalarQuantizer.QT_8bit, self.hnsw_m,
                                      faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = self.ef_search
            inner.hnsw.efConstruction = 80
        elif approximate:
            inner = faiss.IndexHNSWFlat(self.dimension, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efSearch = self.ef_search
            inner.hnsw.efConstruction = 80
        else:
            inner = faiss.IndexFlatIP(self.dimension)
        return faiss.IndexIDMap2(inner)

    @property
    def approximate(self) -> bool:
        return isinstance(faiss.downcast_index(self._index.index), faiss.IndexHNSW)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    # --- writes ---------------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.shape[1] != self.dimension:
            raise IndexMismatchError(f"vectors have dimension {vectors.shape[1]}, index has {self.dimension}")
        with self._lock:
            self._index.add_with_ids(vectors, np.asarray(ids, dtype=np.int64))

    def remove(self, ids: list[int]) -> bool:
        """Remove ids. Returns False when the index type cannot remove (HNSW): rebuild it instead."""
        if not ids:
            return True
        with self._lock:
            if self.approximate:
                return False
            self._index.remove_ids(np.asarray(ids, dtype=np.int64))
            return True

    def rebuild(self, batches) -> None:
        """Replace the whole index with the (ids, vectors) batches given (from the store)."""
        batches = list(batches)
        total = sum(len(ids) for ids, _ in batches)
        index = self._new_index(approximate=total > self.approximate_threshold)
        if not index.is_trained:  # the scalar quantiser learns its ranges from (a sample of) the data
            sample, have = [], 0
            for _, vecs in batches:
                sample.append(np.asarray(vecs, dtype=np.float32)[: 100_000 - have])
                have += len(sample[-1])
                if have >= 100_000:
                    break
            index.train(np.ascontiguousarray(np.concatenate(sample)))
        for ids, vecs in batches:
            index.add_with_ids(np.ascontiguousarray(vecs, dtype=np.float32), ids)
        with self._lock:
            self._index = index

    # --- search ---------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, allowed: set[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` (scores, ids) per query row; ``allowed`` restricts results to those ids."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        with self._lock:
            n = len(self)
            if n == 0:
                return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
            params = None
            if allowed is not None:
                sel = faiss.IDSelectorBatch(np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
                params = faiss.SearchParametersHNSW(sel=sel, efSearch=self.ef_search) if self.approximate \
                    else faiss.SearchParameters(sel=sel)
            scores, ids = self._index.search(queries, min(k, n), params=params)
        keep = ids[0] >= 0
        return scores[:, keep], ids[:, keep]

    def reconstruct(self, ids: list[int]) -> np.ndarray:
        """Stored vectors of ``ids`` (for scoring lexical-only candidates against the question).

        An id no longer in the index gets a zero vector: the lexical index is rebuilt only when a write
        batch ends, so until then it can still name passages a write has just removed.
        """
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        with self._lock:
            for row, i in enumerate(ids):
                try:
                    out[row] = self._index.reconstruct(int(i))
                except RuntimeError:  # "key not found": removed since the lexical index was built
                    pass
        return out

    # --- persistence ----------------------------------------------------------------------------
    def save(self, folder: Path, generation: int) -> None:
        """Write ``vectors.faiss`` and its manifest atomically, stamped with the store generation."""
        index_path = folder / "vectors.faiss"
        with self._lock:
            atomic_write(index_path, lambda tmp: faiss.write_index(self._index, str(tmp)))
            self.generation = generation
            manifest = {
                "format": FORMAT, "model_id": self.model_id, "dimension": self.dimension,
                "generation": generation, "count": len(self), "approximate": self.approximate,
                "sq8": isinstance(faiss.downcast_index(self._index.index), faiss.IndexHNSWSQ),
                "sha256": _sha256(index_path),
            }
        atomic_write_json(folder / "vectors.json", manifest)

    @classmethod
    def open(cls, folder: Path, dimension: int, model_id: str, **kwargs) -> VectorIndex:
        """Open the index in ``folder`` (a new empty one if there is none), refusing foreign or corrupt files."""
        index = cls(dimension, model_id, **kwargs)
        index_path, manifest_path = folder / "vectors.faiss", folder / "vectors.json"
        if not index_path.exists() and not manifest_path.exists():
            return index
        import json

        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(
                f"{manifest_path} is missing or unreadable ({exc}); the index cannot be trusted. "
                f"Run `qa reindex --data-dir {folder}` to rebuild it from the passage store."
            ) from exc
        if manifest.get("format") != FORMAT:
            raise IndexMismatchError(f"{index_path} is not a qa index (format {manifest.get('format')!r}).")
        if manifest.get("model_id") != model_id or manifest.get("dimension") != dimension:
            raise IndexMismatchError(
                f"The index in {folder} was built with model {manifest.get('model_id')!r} "
                f"(dimension {manifest.get('dimension')}), but the service is configured with {model_id!r} "
                f"(dimension {dimension}). Run `qa reindex --data-dir {folder}` to re-embed every passage "
                "with the configured model, or configure the model the index was built with."
            )
        if not index_path.exists() or _sha256(index_path) != manifest.get("sha256"):
            raise IndexCorruptError(
                f"{index_path} does not match its manifest (corrupt or replaced). "
                f"Run `qa reindex --data-dir {folder}` to rebuild it from the passage store."
            )
        try:
            loaded = faiss.read_index(str(index_path))
        except RuntimeError as exc:
            raise IndexCorruptError(f"{index_path} cannot be read by FAISS: {exc}") from exc
        if loaded.d != dimension:
            raise IndexMismatchError(f"{index_path} has dimension {loaded.d}, expected {dimension}.")
        index._index = loaded
        index.generation = int(manifest.get("generation", 0))
        return index
