"""The embedded dense index: FAISS per collection, incremental writes, background upkeep, checkpoints.

Each collection is a few immutable HNSW **segments** plus one mutable exact **tail**
(:mod:`qa.index.dense_parts`). Under ``approximate_threshold`` live passages a collection is its
tail alone (exact inner product, like ``IndexFlatIP``). Writes cost what they change: an add appends
to the tail (an id already present is first marked removed, so replays are idempotent), a removal
clears an ``alive`` flag, dropping a collection forgets it. One background thread does the heavy
work off the request path, each job built from a snapshot while searches and writes go on, then
swapped in with the writes made meanwhile replayed onto it:

* crossing the threshold: the tail becomes an HNSW segment (flat, or over 8-bit scalar-quantised
  vectors with ``hnsw_sq8``); afterwards a tail of ``tail_limit`` rows is sealed into a new segment;
* a segment whose dead share passes ``compact_dead_share`` is rebuilt from its live rows;
* ``merge_factor`` segments of one size tier are merged into one (so there are few segments);
* under the threshold, a tail with many dead rows is compacted.

Filters are evaluated inside the parts (see :mod:`qa.index.dense_parts`): a selective one scores its
few candidates exactly, a broad one runs the HNSW search with an ``IDSelectorBitmap``.

**Durability.** ``checkpoint()`` (from any thread; searches and writes go on) snapshots the changed
collections under the write lock (flags and row counts only), then writes outside it: each new
segment once (index + attributes), the tail rows appended since the last checkpoint (chunks merged
like a binary counter, so there are few), and the ``alive`` bitmaps; every file is written to a
temporary name, fsynced and renamed, with its size and CRC-32 recorded in the manifest
``dense.json``, whose atomic replacement commits the checkpoint. Files no manifest names are deleted
afterwards (and at start-up, after a crash). ``durable_seq`` is the store sequence of the last
committed checkpoint; after a restart the corpus replays ``store.changes_since(durable_seq)``.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import traceback
import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from qa.index.base import DenseIndex, IndexCorruptError, IndexHit, IndexMismatchError
from qa.index.dense_parts import Columns, Segment, Tail, new_hnsw, sq_trained, train_sq
from qa.index.files import atomic_write, atomic_write_json
from qa.store.base import IndexEntry, SearchFilter

log = logging.getLogger(__name__)

FORMAT = "qa-faiss-dense/1"
MANIFEST = "dense.json"
BUILD_CHUNK = 50_000  # vectors gathered at a time while a job builds a segment
TRAIN_SAMPLE = 100_000  # vectors the scalar quantiser learns its ranges from
_OWN_FILE = re.compile(r"(?:[sta]\d+\.(?:faiss|npz)|\..+\.tmp)")
_COLLECTION_DIR = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def _file_record(path: Path) -> dict:
    crc, size = 0, 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
            size += len(block)
    return {"file": path.name, "size": size, "crc32": crc}


def _write(path: Path, write: Callable[[Path], None]) -> dict:
    atomic_write(path, write)
    return _file_record(path)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> dict:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return _write(path, write)


@dataclass
class _Coll:
    name: str
    parts: tuple[tuple[Segment, ...], Tail]  # replaced whole, so a reader sees one consistent pair
    version: int = 0  # raised by every change (what a checkpoint compares)
    saved_version: int = -1
    log: list | None = None  # writes made while a job builds (replayed onto its result)
    trained: np.ndarray | None = None  # the collection's scalar-quantiser ranges (hnsw_sq8)
    trained_on: int = 0  # from how many vectors
    failed_version: int = -1  # a job failed at this version: not retried until the collection changes


@dataclass(frozen=True)
class _Job:
    coll: _Coll
    replace: tuple[Segment, ...]  # segments rebuilt into the result
    take_tail: bool  # the tail's rows go into the result (and a fresh tail replaces it)
    to_hnsw: bool  # the result is a segment (else a compacted tail)
    what: str


@dataclass
class _Snapshot:
    coll: _Coll
    version: int
    segments: tuple[Segment, ...]
    seg_alive: list[np.ndarray]
    tail: Tail
    tail_n: int
    tail_alive: np.ndarray
    tail_vec: np.ndarray
    tail_cols: Columns


class FaissDenseIndex(DenseIndex):
    """FAISS dense index, one per collection, in ``folder``: many searching threads, one writer, one
    background thread for builds and compaction, checkpoints from any thread."""

    def __init__(self, folder: Path | str, dimension: int, model_id: str, *, approximate_threshold: int = 200_000,
                 hnsw_m: int = 32, ef_search: int = 128, hnsw_sq8: bool = False, tail_limit: int = 10_000,
                 exact_limit: int = 4096, compact_dead_share: float = 0.2, merge_factor: int = 4,
                 data_dir: Path | str | None = None):
        self.folder = Path(folder)
        self.dimension = int(dimension)
        self.model_id = model_id
        self.approximate_threshold = approximate_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self.hnsw_sq8 = hnsw_sq8
        self.tail_limit = max(1, tail_limit)
        self.exact_limit = exact_limit
        self.compact_dead_share = compact_dead_share
        self.merge_factor = max(2, merge_factor)
        self._data_dir = Path(data_dir) if data_dir is not None else self.folder
        self._lock = threading.RLock()  # the writer, job snapshots and swaps, checkpoint snapshots
        self._cond = threading.Condition(self._lock)
        self._checkpoint_lock = threading.Lock()
        self._colls: dict[str, _Coll] = {}
        self._records: dict[str, dict] = {}  # what the last manifest says of each collection
        self._applied = 0
        self._durable = 0
        self._next_id = 1
        self._busy = False
        self._closed = False
        self._failures: list[str] = []
        self._load()
        self._thread = threading.Thread(target=self._maintain, name="dense-index-upkeep", daemon=True)
        self._thread.start()

    @classmethod
    def open(cls, folder: Path | str, dimension: int, model_id: str, **kwargs) -> FaissDenseIndex:
        """The index in ``folder`` (empty if there is none); refuses foreign or corrupt files."""
        return cls(folder, dimension, model_id, **kwargs)

    # --- sequence --------------------------------------------------------------------------------
    @property
    def applied_seq(self) -> int:
        return self._applied

    @property
    def durable_seq(self) -> int:
        return self._durable

    def mark_applied(self, seq: int) -> None:
        with self._lock:
            self._applied = int(seq)

    # --- writes ----------------------------------------------------------------------------------
    def add(self, entries: Sequence[IndexEntry]) -> None:
        if not entries:
            return
        groups: dict[str, dict[int, IndexEntry]] = defaultdict(dict)
        for e in entries:
            if np.asarray(e.vector).size != self.dimension:
                raise IndexMismatchError(f"passage {e.rowid} has a vector of dimension {np.asarray(e.vector).size}, "
                                         f"the index has {self.dimension}")
            group = groups[e.collection]
            group.pop(e.rowid, None)
            group[e.rowid] = e  # the last of an id wins
        with self._lock:
            for name, group in groups.items():
                coll = self._colls.get(name)
                if coll is None:
                    coll = self._colls[name] = _Coll(name, ((), Tail(self.dimension)))
                batch = list(group.values())
                rowids = np.fromiter(group.keys(), dtype=np.int64, count=len(group))
                self._kill(coll, rowids)
                coll.parts[1].append_entries(batch)
                if coll.log is not None:
                    coll.log.append(("kill", rowids))
                    coll.log.append(("add", batch))
                coll.version += 1
            self._cond.notify_all()
        self._hold_back(list(groups))

    def remove(self, collection: str, rowids: Sequence[int]) -> None:
        ids = np.unique(np.asarray(list(rowids), dtype=np.int64))
        if not len(ids):
            return
        with self._lock:
            coll = self._colls.get(collection)
            if coll is None:
                return
            if self._kill(coll, ids) and coll.log is not None:
                coll.log.append(("kill", ids))
            coll.version += 1
            self._cond.notify_all()

    def drop_collection(self, collection: str) -> None:
        with self._lock:
            self._colls.pop(collection, None)

    def reset(self) -> None:
        with self._lock:
            self._colls.clear()
            self._applied = 0

    @staticmethod
    def _kill(coll: _Coll, rowids: np.ndarray) -> int:
        segments, tail = coll.parts
        return tail.kill(rowids.tolist()) + sum(s.kill(rowids) for s in segments)

    def _hold_back(self, names: list[str]) -> None:
        """Make a bulk writer wait while a collection's tail is far beyond what the background thread
        seals (keeps memory and exact-search cost bounded; an ordinary write never waits)."""
        def small() -> bool:
            if self._closed or (not self._busy and self._next_job() is None):
                return True
            for name in names:
                coll = self._colls.get(name)
                if coll is not None:
                    segments, tail = coll.parts
                    limit = 4 * self.tail_limit + (0 if segments else self.approximate_threshold)
                    if tail.n > limit:
                        return False
            return True

        with self._cond:
            while not self._cond.wait_for(small, timeout=60.0):
                log.info("dense index: waiting for the background thread to seal a large tail")

    # --- reads -----------------------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int, flt: SearchFilter) -> list[IndexHit]:
        if k <= 0 or flt.matches_nothing:
            return []
        coll = self._colls.get(flt.collection)
        if coll is None:
            return []
        q = np.ascontiguousarray(np.asarray(vector, dtype=np.float32).reshape(1, -1))
        if q.shape[1] != self.dimension:
            raise IndexMismatchError(f"query vector has dimension {q.shape[1]}, the index has {self.dimension}")
        segments, tail = coll.parts
        hits: list[tuple[float, int, str]] = []
        for seg in segments:
            scores, slots = seg.search(q, k, flt, self.ef_search, self.exact_limit)
            langs = seg.cols.langs.values
            hits += zip(scores.tolist(), seg.cols.rowid[slots].tolist(), (langs[c] for c in seg.cols.lang[slots]))
        scores, slots = tail.search(q, k, flt)
        langs = tail.langs.values
        hits += zip(scores.tolist(), tail.rowid[slots].tolist(), (langs[c] for c in tail.lang[slots]))
        hits.sort(key=lambda h: -h[0])
        out, seen = [], set()
        for score, rowid, lang in hits:
            if rowid not in seen:  # a row re-added during this search can show in two parts
                seen.add(rowid)
                out.append(IndexHit(rowid, score, lang))
                if len(out) == k:
                    break
        return out

    def vectors(self, collection: str, rowids: Sequence[int]) -> np.ndarray:
        ids = np.asarray(list(rowids), dtype=np.int64)
        out = np.zeros((len(ids), self.dimension), dtype=np.float32)
        coll = self._colls.get(collection)
        if coll is None or not len(ids):
            return out
        segments, tail = coll.parts
        found = np.zeros(len(ids), dtype=bool)
        where, slots = tail.locate(ids)
        if len(where):
            out[where] = tail.vec[slots]
            found[where] = True
        for seg in segments:
            where, slots = seg.locate(ids)
            keep = ~found[where]
            if keep.any():
                out[where[keep]] = seg.vectors(slots[keep])
                found[where[keep]] = True
        return out

    def count(self, collection: str | None = None) -> int:
        colls = list(self._colls.values()) if collection is None else [self._colls.get(collection)]
        total = 0
        for coll in colls:
            if coll is not None:
                segments, tail = coll.parts
                total += tail.live + sum(s.live for s in segments)
        return total

    def stats(self, collection: str) -> dict:
        """How a collection is held (for benchmarks and tests): its segments and its tail."""
        coll = self._colls.get(collection)
        if coll is None:
            return {"segments": [], "tail_rows": 0, "tail_dead": 0, "approximate": False}
        segments, tail = coll.parts
        return {"segments": [{"id": s.id, "rows": s.n, "dead": s.dead, "sq8": s.sq8} for s in segments],
                "tail_rows": tail.n, "tail_dead": tail.dead, "approximate": bool(segments)}

    # --- background upkeep -----------------------------------------------------------------------
    def settle(self, timeout: float | None = None) -> bool:
        """Wait until the background thread has nothing left to do (True) or ``timeout`` passes;
        raises ``RuntimeError`` if a background job failed since the last call."""
        with self._cond:
            self._cond.notify_all()
            done = self._cond.wait_for(lambda: self._closed or (not self._busy and self._next_job() is None), timeout)
            failures, self._failures = self._failures, []
        if failures:
            raise RuntimeError("dense index background work failed: " + "; ".join(failures))
        return done

    def _next_job(self) -> _Job | None:
        for coll in self._colls.values():
            if coll.failed_version == coll.version:
                continue
            job = self._plan(coll)
            if job is not None:
                return job
        return None

    def _plan(self, coll: _Coll) -> _Job | None:
        segments, tail = coll.parts
        if not segments:
            if tail.live > self.approximate_threshold:
                return _Job(coll, (), True, True, "threshold crossed: building the approximate index")
            if tail.dead >= 64 and tail.dead > self.compact_dead_share * tail.n:
                return _Job(coll, (), True, False, "compacting the exact index")
            return None
        if tail.n >= self.tail_limit:
            return _Job(coll, (), True, True, "sealing recent writes into a segment")
        for seg in segments:
            if seg.dead and seg.dead >= self.compact_dead_share * seg.n:
                return _Job(coll, (seg,), False, True, f"compacting a segment ({seg.dead:,} of {seg.n:,} removed)")
        tiers: dict[int, list[Segment]] = defaultdict(list)
        for seg in segments:
            tiers[int(math.log(max(seg.live, self.tail_limit) / self.tail_limit, self.merge_factor))].append(seg)
        for tier in sorted(tiers):
            members = tiers[tier]
            if len(members) >= self.merge_factor:
                group = tuple(sorted(members, key=lambda s: s.live)[: self.merge_factor])
                return _Job(coll, group, False, True, f"merging {len(group)} segments")
        return None

    def _maintain(self) -> None:
        while True:
            with self._cond:
                job = None
                while not self._closed:
                    job = self._next_job()
                    if job is not None:
                        self._busy = True
                        break
                    self._cond.wait(timeout=5.0)
                if job is None:
                    return
            try:
                self._run(job)
            except Exception:  # a failed job leaves the collection as it was
                log.exception("dense index: %s in collection %r failed", job.what, job.coll.name)
                with self._lock:
                    job.coll.log = None
                    job.coll.failed_version = job.coll.version
                    self._failures.append(f"{job.what} in {job.coll.name!r}: {traceback.format_exc(limit=3)}")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _run(self, job: _Job) -> None:
        coll = job.coll
        with self._lock:
            if self._colls.get(coll.name) is not coll:
                return
            segments, tail = coll.parts
            if any(s not in segments for s in job.replace):
                return
            sources = [(s.cols, np.flatnonzero(s.alive), s.vectors) for s in job.replace]
            if job.take_tail:
                n0, vec = tail.n, tail.vec
                sources.append((tail.columns(n0), np.flatnonzero(tail.alive[:n0]), lambda slots, v=vec: v[slots]))
            seg_id = self._new_id()
            coll.log = []
        log.info("dense index: %s in collection %r", job.what, coll.name)
        built = self._build(coll, job, sources, seg_id)
        with self._lock:
            writes, coll.log = coll.log, None
            if self._closed or self._colls.get(coll.name) is not coll:
                return
            segments, tail = coll.parts
            fresh = (built,) if isinstance(built, Segment) else ()
            new_segments = tuple(s for s in segments if s not in job.replace) + fresh
            new_tail = tail
            if job.take_tail:
                new_tail = built if isinstance(built, Tail) else Tail(self.dimension)
            for op, payload in writes:  # what the writer did meanwhile, onto the new parts
                if op == "kill":
                    for seg in fresh:
                        seg.kill(payload)
                    if job.take_tail:
                        new_tail.kill(payload.tolist())
                elif job.take_tail:
                    new_tail.append_entries(payload)
            coll.parts = (new_segments, new_tail)
            coll.version += 1
            self._cond.notify_all()

    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id - 1

    def _build(self, coll: _Coll, job: _Job, sources: list, seg_id: int) -> Segment | Tail | None:
        """The live rows of ``sources`` as one segment sorted by rowid (or one compacted tail)."""
        cols = Columns.concat([c.take(slots) for c, slots, _ in sources])
        owner = np.repeat(np.arange(len(sources)), [len(slots) for _, slots, _ in sources])
        local = np.concatenate([np.arange(len(slots)) for _, slots, _ in sources]) if sources else owner
        total = len(cols.rowid)

        def gather(positions: np.ndarray) -> np.ndarray:
            out = np.empty((len(positions), self.dimension), dtype=np.float32)
            for i, (_, slots, fetch) in enumerate(sources):
                here = np.flatnonzero(owner[positions] == i)
                if len(here):
                    out[here] = fetch(slots[local[positions[here]]])
            return out

        if not job.to_hnsw:
            tail = Tail(self.dimension, capacity=max(256, total))
            order = np.arange(total)
            for lo in range(0, total, BUILD_CHUNK):
                chunk = order[lo:lo + BUILD_CHUNK]
                tail.append_rows(gather(chunk), cols.take(chunk))
            return tail
        if total == 0:
            return None
        order = np.argsort(cols.rowid, kind="stable")
        cols = cols.take(order).compact().sorted_pubs()
        # the quantiser's ranges are learnt once from a large enough sample, then kept (so that merging
        # segments re-encodes decoded vectors to the same codes); a small first sample is replaced later
        retrain = coll.trained is None or (coll.trained_on < TRAIN_SAMPLE and total >= 2 * coll.trained_on)
        index = new_hnsw(self.dimension, self.hnsw_m, self.hnsw_sq8, None if retrain else coll.trained)
        if not index.is_trained:
            sample = order[np.linspace(0, total - 1, min(total, TRAIN_SAMPLE)).astype(np.int64)]
            train_sq(index, gather(np.sort(sample)))
            coll.trained, coll.trained_on = sq_trained(index), min(total, TRAIN_SAMPLE)
        for lo in range(0, total, BUILD_CHUNK):
            index.add(gather(order[lo:lo + BUILD_CHUNK]))
        return Segment(seg_id, index, cols)

    # --- durability ------------------------------------------------------------------------------
    def checkpoint(self) -> None:
        with self._checkpoint_lock:
            with self._lock:
                seq = self._applied
                snaps: dict[str, _Snapshot | None] = {}
                for name, coll in self._colls.items():
                    if coll.saved_version == coll.version and name in self._records:
                        snaps[name] = None
                        continue
                    segments, tail = coll.parts
                    n = tail.n
                    snaps[name] = _Snapshot(coll, coll.version, segments, [s.alive.copy() for s in segments],
                                            tail, n, tail.alive[:n].copy(), tail.vec, tail.columns(n))
            if seq == self._durable and set(snaps) == set(self._records) and not any(snaps.values()):
                return
            records = {name: self._records[name] if snap is None else self._write_collection(name, snap)
                       for name, snap in snaps.items()}
            atomic_write_json(self.folder / MANIFEST, {
                "format": FORMAT, "model_id": self.model_id, "dimension": self.dimension, "seq": seq,
                "next_id": self._next_id, "collections": records})
            with self._lock:
                self._records = records
                self._durable = seq
                for snap in snaps.values():
                    if snap is not None:
                        snap.coll.saved_version = snap.version
            self._remove_unreferenced(records)

    def _write_collection(self, name: str, snap: _Snapshot) -> dict:
        folder = self.folder / name
        folder.mkdir(parents=True, exist_ok=True)
        segments = []
        for seg in snap.segments:
            if seg.record is None:  # a segment never changes: written once
                index = _write(folder / f"s{seg.id}.faiss", lambda tmp, s=seg: faiss.write_index(s.index, str(tmp)))
                attrs = _write_npz(folder / f"s{seg.id}.npz", seg.cols.arrays())
                seg.record = {"id": seg.id, "rows": seg.n, "sq8": seg.sq8, "index": index, "attrs": attrs}
            segments.append(seg.record)
        tail, n = snap.tail, snap.tail_n
        if n > tail.persisted:  # the rows appended since: one chunk (merged with smaller ones before it)
            start, chunks = tail.persisted, list(tail.chunks)
            while chunks and chunks[-1]["rows"] <= n - start:
                start -= chunks.pop()["rows"]
            rows = slice(start, n)
            arrays = snap.tail_cols.take(rows).compact().arrays()
            arrays["vec"] = snap.tail_vec[rows]
            record = _write_npz(folder / f"t{self._new_id()}.npz", arrays)
            record["rows"] = n - start
            tail.chunks, tail.persisted = [*chunks, record], n
        alive = {f"s{seg.id}": np.packbits(a, bitorder="little") for seg, a in zip(snap.segments, snap.seg_alive)}
        alive["tail"] = np.packbits(snap.tail_alive, bitorder="little")
        return {"segments": segments, "tail": {"rows": n, "chunks": list(tail.chunks)},
                "alive": _write_npz(folder / f"a{self._new_id()}.npz", alive)}

    def _remove_unreferenced(self, records: dict[str, dict]) -> None:
        """Delete this index's files that no manifest names (old checkpoints, a crashed one's)."""
        if not self.folder.is_dir():
            return
        keep: dict[str, set[str]] = {}
        for name, rec in records.items():
            files = {rec["alive"]["file"]} | {c["file"] for c in rec["tail"]["chunks"]}
            for seg in rec["segments"]:
                files |= {seg["index"]["file"], seg["attrs"]["file"]}
            keep[name] = files
        for child in self.folder.iterdir():
            if child.is_file() and child.name.startswith(f".{MANIFEST}.") and child.name.endswith(".tmp"):
                child.unlink(missing_ok=True)
            if not child.is_dir() or not _COLLECTION_DIR.fullmatch(child.name):
                continue
            wanted = keep.get(child.name, set())
            for f in child.iterdir():
                if f.is_file() and _OWN_FILE.fullmatch(f.name) and f.name not in wanted:
                    f.unlink(missing_ok=True)
            if child.name not in keep and not any(child.iterdir()):
                child.rmdir()

    # --- opening ---------------------------------------------------------------------------------
    def _reindex(self) -> str:
        return f"Run `qa reindex --data-dir {self._data_dir}` to rebuild it from the passage store."

    def _load(self) -> None:
        path = self.folder / MANIFEST
        if not path.exists():
            self._remove_unreferenced({})
            return
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"{path} is missing or unreadable ({exc}); the index cannot be trusted. "
                                    + self._reindex()) from exc
        if manifest.get("format") != FORMAT:
            raise IndexMismatchError(f"{path} is not a qa index (format {manifest.get('format')!r}).")
        if manifest.get("model_id") != self.model_id or manifest.get("dimension") != self.dimension:
            raise IndexMismatchError(
                f"The index in {self.folder} was built with model {manifest.get('model_id')!r} "
                f"(dimension {manifest.get('dimension')}), but the service is configured with {self.model_id!r} "
                f"(dimension {self.dimension}). Run `qa reindex --data-dir {self._data_dir}` to re-embed every "
                "passage with the configured model, or configure the model the index was built with.")
        try:
            for name, rec in manifest["collections"].items():
                self._colls[name] = self._load_collection(self.folder / name, name, rec)
            self._records = dict(manifest["collections"])
            self._applied = self._durable = int(manifest["seq"])
            self._next_id = int(manifest["next_id"])
        except IndexCorruptError:
            raise
        except (KeyError, TypeError, ValueError, OSError, RuntimeError) as exc:
            raise IndexCorruptError(f"the index in {self.folder} cannot be read ({type(exc).__name__}: {exc}). "
                                    + self._reindex()) from exc
        self._remove_unreferenced(self._records)

    def _verified(self, folder: Path, record: dict) -> Path:
        path = folder / record["file"]
        try:
            actual = _file_record(path)
        except OSError as exc:
            raise IndexCorruptError(f"{path} cannot be read ({exc}). " + self._reindex()) from exc
        if actual["size"] != record["size"] or actual["crc32"] != record["crc32"]:
            raise IndexCorruptError(f"{path} does not match its manifest (corrupt or replaced). " + self._reindex())
        return path

    def _load_collection(self, folder: Path, name: str, rec: dict) -> _Coll:
        with np.load(self._verified(folder, rec["alive"])) as alive:
            bitmaps = {key: alive[key] for key in alive.files}
        segments = []
        for srec in rec["segments"]:
            path = self._verified(folder, srec["index"])
            try:
                index = faiss.read_index(str(path))
            except RuntimeError as exc:
                raise IndexCorruptError(f"{path} cannot be read by FAISS: {exc}. " + self._reindex()) from exc
            if index.d != self.dimension:
                raise IndexMismatchError(f"{path} has dimension {index.d}, expected {self.dimension}.")
            with np.load(self._verified(folder, srec["attrs"])) as data:
                cols = Columns.from_arrays(data)
            rows = int(srec["rows"])
            if index.ntotal != rows or len(cols.rowid) != rows:
                raise IndexCorruptError(f"{path} holds {index.ntotal} vectors, its manifest {rows}. " + self._reindex())
            alive = np.unpackbits(bitmaps[f"s{srec['id']}"], count=rows, bitorder="little").astype(bool)
            seg = Segment(int(srec["id"]), index, cols, alive)
            seg.record = srec
            segments.append(seg)
        rows = int(rec["tail"]["rows"])
        tail = Tail(self.dimension, capacity=max(256, rows))
        for chunk in rec["tail"]["chunks"]:
            with np.load(self._verified(folder, chunk)) as data:
                tail.append_rows(np.asarray(data["vec"], dtype=np.float32), Columns.from_arrays(data))
        if tail.n != rows:
            raise IndexCorruptError(f"the tail of {folder} holds {tail.n} rows, its manifest {rows}. " + self._reindex())
        tail.chunks, tail.persisted = list(rec["tail"]["chunks"]), rows
        alive = np.unpackbits(bitmaps["tail"], count=rows, bitorder="little").astype(bool)
        tail.kill_slots(np.flatnonzero(~alive))
        sq8 = max((s for s in segments if s.sq8), key=lambda s: s.n, default=None)
        return _Coll(name, (tuple(segments), tail), saved_version=0, trained=sq_trained(sq8.index) if sq8 else None,
                     trained_on=min(sq8.n, TRAIN_SAMPLE) if sq8 else 0)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)
