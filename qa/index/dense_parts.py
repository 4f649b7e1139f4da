"""The pieces one collection of :class:`~qa.index.faiss_dense.FaissDenseIndex` is made of.

A collection is a few immutable **segments** (a FAISS HNSW graph over flat or 8-bit scalar-quantised
vectors, built once in the background) and one mutable **tail** (float32 rows searched exactly, to
which every write appends). Both keep each passage's filter attributes beside its vector in compact
arrays: small integer codes into per-part string tables (language, document id, source, published
date), plus an ``alive`` flag; a removal only clears the flag. Segments also keep posting lists
(document → slots, source → slots, published date → slots, sorted) so that a selective filter finds
its few candidates without touching the rest of the segment, and those are scored exactly; a filter
accepting up to a tenth of a segment (at most 30,000 rows) scans the segment's stored vectors (skipping the rest with an
``IDSelectorBitmap``); a broader one searches the HNSW graph with that selector.

Readers never lock: a segment's vectors never change, and the tail's writer fills a row completely
before it raises ``n`` (and swaps in grown arrays before that), so a search that reads ``n`` first
sees only complete rows.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from qa.store.base import IndexEntry, SearchFilter, published_bounds

EF_CONSTRUCTION = 80
MAX_EF_SEARCH = 1024
# a filter accepting at most this share of a segment, and at most this many rows, scans its vectors
# instead of searching the graph (a scan costs about 0.4 µs per accepted row: 11 ms for 25,000)
SCAN_SHARE = 0.1
SCAN_ROWS = 30_000

_EMPTY_F = np.zeros(0, dtype=np.float32)
_EMPTY_I = np.zeros(0, dtype=np.int64)


# --- strings ---------------------------------------------------------------------------------------
class Table:
    """Strings ↔ dense integer codes (append-only)."""

    __slots__ = ("values", "codes", "_array")

    def __init__(self, values: Sequence[str] = ()):
        self.values: list[str] = list(values)
        self.codes: dict[str, int] = {v: i for i, v in enumerate(self.values)}
        self._array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def code(self, value: str) -> int:
        c = self.codes.get(value)
        if c is None:
            c = len(self.values)
            self.values.append(value)
            self.codes[value] = c
        return c

    def lookup(self, values: Sequence[str]) -> np.ndarray:
        """Codes of those ``values`` the table holds."""
        return np.fromiter((c for c in map(self.codes.get, values) if c is not None), dtype=np.int32)

    def array(self) -> np.ndarray:
        """The values as a numpy string array (cached until the table grows)."""
        arr = self._array
        if arr is None or len(arr) != len(self.values):
            arr = self._array = np.array(self.values, dtype=str) if self.values else np.zeros(0, dtype="<U1")
        return arr


def pack_strings(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes of all ``values`` and their end offsets (what ``unpack_strings`` reads back)."""
    encoded = [v.encode("utf-8") for v in values]
    ends = np.cumsum([len(b) for b in encoded], dtype=np.int64) if encoded else np.zeros(0, np.int64)
    return np.frombuffer(b"".join(encoded), dtype=np.uint8).copy(), ends


def unpack_strings(blob: np.ndarray, ends: np.ndarray) -> list[str]:
    data = blob.tobytes()
    starts = [0, *ends[:-1].tolist()]
    return [data[s:e].decode("utf-8") for s, e in zip(starts, ends.tolist())]


@dataclass
class Columns:
    """Attribute columns of some rows plus the tables their codes refer to. ``src`` and ``pub`` are
    shifted by one: 0 means "none"."""

    rowid: np.ndarray  # int64
    lang: np.ndarray  # int16 code into langs
    doc: np.ndarray  # int32 code into docs
    src: np.ndarray  # int32 (0 = no source, else 1 + code into sources)
    pub: np.ndarray  # int32 (0 = not published, else 1 + code into pubs)
    langs: Table
    docs: Table
    sources: Table
    pubs: Table

    def take(self, rows: np.ndarray) -> Columns:
        return Columns(self.rowid[rows], self.lang[rows], self.doc[rows], self.src[rows], self.pub[rows],
                       self.langs, self.docs, self.sources, self.pubs)

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything as named arrays (for ``np.savez``)."""
        out = {"rowid": self.rowid, "lang": self.lang, "doc": self.doc, "src": self.src, "pub": self.pub}
        for name in ("langs", "docs", "sources", "pubs"):
            out[name + "_blob"], out[name + "_ends"] = pack_strings(getattr(self, name).values)
        return out

    @classmethod
    def from_arrays(cls, data) -> Columns:
        tables = {name: Table(unpack_strings(data[name + "_blob"], data[name + "_ends"]))
                  for name in ("langs", "docs", "sources", "pubs")}
        return cls(np.asarray(data["rowid"], np.int64), np.asarray(data["lang"], np.int16),
                   np.asarray(data["doc"], np.int32), np.asarray(data["src"], np.int32),
                   np.asarray(data["pub"], np.int32), **tables)

    @classmethod
    def concat(cls, parts: Sequence[Columns]) -> Columns:
        """One set of columns over new tables holding every part's values (codes remapped)."""
        out = {name: Table() for name in ("langs", "docs", "sources", "pubs")}
        cols = {"lang": [], "doc": [], "src": [], "pub": []}
        for p in parts:
            for col, name, shift in (("lang", "langs", 0), ("doc", "docs", 0), ("src", "sources", 1),
                                     ("pub", "pubs", 1)):
                table = out[name]
                remap = np.fromiter((table.code(v) for v in getattr(p, name).values), dtype=np.int32,
                                    count=len(getattr(p, name)))
                if shift:
                    remap = np.concatenate([[-1], remap]).astype(np.int32)
                cols[col].append(remap[getattr(p, col)] + shift)
        cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
        return cls(cat([p.rowid for p in parts], np.int64), cat(cols["lang"], np.int16), cat(cols["doc"], np.int32),
                   cat(cols["src"], np.int32), cat(cols["pub"], np.int32), **out)

    def compact(self) -> Columns:
        """The same rows over tables that hold only the values these rows use."""
        def shrink(codes: np.ndarray, table: Table, shift: int) -> tuple[np.ndarray, Table]:
            used = np.unique(codes[codes >= shift]) - shift
            remap = np.zeros(len(table) + shift, dtype=np.int32)
            remap[used + shift] = np.arange(shift, len(used) + shift, dtype=np.int32)
            return remap[codes].astype(codes.dtype), Table([table.values[i] for i in used.tolist()])

        lang, langs = shrink(self.lang, self.langs, 0)
        doc, docs = shrink(self.doc, self.docs, 0)
        src, sources = shrink(self.src, self.sources, 1)
        pub, pubs = shrink(self.pub, self.pubs, 1)
        return Columns(self.rowid, lang, doc, src, pub, langs, docs, sources, pubs)

    def sorted_pubs(self) -> Columns:
        """The same rows with the published table in sorted order (so a date range is a code range)."""
        values = self.pubs.values
        order = sorted(range(len(values)), key=values.__getitem__)
        remap = np.zeros(len(values) + 1, dtype=np.int32)
        remap[np.asarray(order, dtype=np.int64) + 1] = np.arange(1, len(values) + 1, dtype=np.int32)
        return Columns(self.rowid, self.lang, self.doc, self.src, remap[self.pub],
                       self.langs, self.docs, self.sources, Table([values[i] for i in order]))


def entry_columns(entries: Sequence[IndexEntry], langs: Table, docs: Table, sources: Table, pubs: Table) -> Columns:
    """Columns of ``entries`` with codes added to the given tables."""
    return Columns(
        np.fromiter((e.rowid for e in entries), dtype=np.int64, count=len(entries)),
        np.fromiter((langs.code(e.lang) for e in entries), dtype=np.int16, count=len(entries)),
        np.fromiter((docs.code(e.document_id) for e in entries), dtype=np.int32, count=len(entries)),
        np.fromiter((0 if e.source is None else 1 + sources.code(e.source) for e in entries), dtype=np.int32,
                    count=len(entries)),
        np.fromiter((1 + pubs.code(e.published[:10]) if e.published else 0 for e in entries), dtype=np.int32,
                    count=len(entries)),
        langs, docs, sources, pubs)


# --- filters ---------------------------------------------------------------------------------------
def has_restriction(flt: SearchFilter) -> bool:
    return (flt.lang is not None or flt.document_ids is not None or flt.sources is not None
            or flt.published_from is not None or flt.published_to is not None)


def has_dates(flt: SearchFilter) -> bool:
    return flt.published_from is not None or flt.published_to is not None


def accept_rows(flt: SearchFilter, cols: Columns, alive: np.ndarray, rows) -> np.ndarray:
    """``SearchFilter.accepts`` (collection aside) for ``rows`` (a slice or index array), and alive."""
    mask = np.array(alive[rows], dtype=bool, copy=True)
    if flt.lang is not None:
        code = cols.langs.codes.get(flt.lang)
        if code is None:
            return np.zeros_like(mask)
        mask &= cols.lang[rows] == code
    if flt.document_ids is not None:
        codes = cols.docs.lookup(flt.document_ids)
        if not len(codes):
            return np.zeros_like(mask)
        mask &= np.isin(cols.doc[rows], codes)
    if flt.sources is not None:
        codes = cols.sources.lookup(flt.sources) + 1
        if not len(codes):
            return np.zeros_like(mask)
        mask &= np.isin(cols.src[rows], codes)
    if has_dates(flt):
        low, high = published_bounds(flt.published_from, flt.published_to)
        values = cols.pubs.array()
        ok = np.zeros(len(values) + 1, dtype=bool)
        ok[1:] = (values >= low) & (values <= high)
        mask &= ok[cols.pub[rows]]
    return mask


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest finite ``scores``, best first."""
    if len(scores) > k:
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(len(scores))
    part = part[np.isfinite(scores[part])]
    return part[np.argsort(-scores[part], kind="stable")]


class Postings:
    """Slots grouped by code (CSR): the slots holding some codes cost what they are, not the segment."""

    __slots__ = ("order", "starts")

    def __init__(self, codes: np.ndarray, ncodes: int):
        self.order = np.argsort(codes, kind="stable").astype(np.int32)
        self.starts = np.searchsorted(codes[self.order], np.arange(ncodes + 1)).astype(np.int64)

    def size(self, codes: np.ndarray) -> int:
        return int((self.starts[codes + 1] - self.starts[codes]).sum())

    def slots(self, codes: np.ndarray) -> np.ndarray:
        return np.concatenate([self.order[self.starts[c]:self.starts[c + 1]] for c in codes.tolist()]) \
            if len(codes) else np.zeros(0, np.int32)

    def range(self, first: int, end: int) -> np.ndarray:
        """Slots whose code is in ``[first, end)`` (one contiguous run)."""
        return self.order[self.starts[first]:self.starts[end]]


# --- segments --------------------------------------------------------------------------------------
def new_hnsw(dimension: int, m: int, sq8: bool, trained: np.ndarray | None) -> faiss.Index:
    if sq8:
        index = faiss.IndexHNSWSQ(dimension, faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
        if trained is not None:
            storage = faiss.downcast_index(index.storage)
            faiss.copy_array_to_vector(np.asarray(trained, dtype=np.float32), storage.sq.trained)
            storage.is_trained = True
            index.is_trained = True
    else:
        index = faiss.IndexHNSWFlat(dimension, m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EF_CONSTRUCTION
    return index


def train_sq(index: faiss.Index, sample: np.ndarray) -> None:
    """Learn an HNSW-SQ index's per-dimension ranges from ``sample``, with room for values outside it
    (more room when the sample is small, as it is for the first segment of a small collection)."""
    storage = faiss.downcast_index(index.storage)
    storage.sq.rangestat_arg = 0.05 if len(sample) >= 10_000 else 0.3
    index.train(sample)


def sq_trained(index: faiss.Index) -> np.ndarray | None:
    """The scalar quantiser's learnt ranges of an HNSW-SQ index (None for other kinds)."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexHNSWSQ):
        return faiss.vector_to_array(faiss.downcast_index(index.storage).sq.trained)
    return None


class Segment:
    """An immutable HNSW index over rows sorted by rowid (FAISS id = slot), with attribute columns,
    posting lists and a mutable ``alive`` array."""

    def __init__(self, seg_id: int, index: faiss.Index, cols: Columns, alive: np.ndarray | None = None):
        self.id = seg_id
        self.index = index
        self.cols = cols
        self.n = len(cols.rowid)
        self.alive = np.ones(self.n, dtype=bool) if alive is None else alive
        self.dead = int(self.n - np.count_nonzero(self.alive))
        self.version = 0  # raised on every removal (invalidates the cached bitmap)
        self._bitmap: tuple[int, np.ndarray] | None = None
        self.record: dict | None = None  # its files once a checkpoint has written them
        self.sq8 = isinstance(faiss.downcast_index(index), faiss.IndexHNSWSQ)
        self.doc_post = Postings(cols.doc, len(cols.docs))
        self.src_post = Postings(cols.src, len(cols.sources) + 1)
        self.pub_post = Postings(cols.pub, len(cols.pubs) + 1)  # pubs table sorted: a date range is a code range

    @property
    def live(self) -> int:
        return self.n - self.dead

    def locate(self, rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``rowids``, slots) of the ids alive here."""
        pos = np.searchsorted(self.cols.rowid, rowids)
        inside = pos < self.n
        hit = np.zeros(len(rowids), dtype=bool)
        hit[inside] = self.cols.rowid[pos[inside]] == rowids[inside]
        where = np.flatnonzero(hit)
        slots = pos[where]
        keep = self.alive[slots]
        return where[keep], slots[keep]

    def kill(self, rowids: np.ndarray) -> int:
        _, slots = self.locate(rowids)
        if len(slots):
            self.alive[slots] = False
            self.dead += len(slots)
            self.version += 1
        return len(slots)

    def vectors(self, slots: np.ndarray) -> np.ndarray:
        if not len(slots):
            return np.zeros((0, self.index.d), dtype=np.float32)
        return self.index.reconstruct_batch(np.asarray(slots, dtype=np.int64))

    def _alive_bitmap(self) -> np.ndarray:
        cached = self._bitmap
        version = self.version
        if cached is None or cached[0] != version:
            cached = self._bitmap = (version, np.packbits(self.alive, bitorder="little"))
        return cached[1]

    def _candidates(self, flt: SearchFilter, limit: int) -> np.ndarray | None:
        """The slots of the most selective posting list the filter names, if it holds at most ``limit``."""
        options = []
        if flt.document_ids is not None:
            codes = self.cols.docs.lookup(flt.document_ids)
            options.append((self.doc_post.size(codes), lambda c=codes: self.doc_post.slots(c)))
        if flt.sources is not None:
            codes = self.cols.sources.lookup(flt.sources) + 1
            options.append((self.src_post.size(codes), lambda c=codes: self.src_post.slots(c)))
        if has_dates(flt):
            low, high = published_bounds(flt.published_from, flt.published_to)
            values = self.cols.pubs.values
            first, end = bisect.bisect_left(values, low) + 1, bisect.bisect_right(values, high) + 1
            end = max(first, end)
            options.append((int(self.pub_post.starts[end] - self.pub_post.starts[first]),
                            lambda a=first, b=end: self.pub_post.range(a, b)))
        if not options:
            return None
        size, slots = min(options, key=lambda o: o[0])
        return slots() if size <= limit else None

    def search(self, q: np.ndarray, k: int, flt: SearchFilter, ef_search: int, exact_limit: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """(scores, slots) of the best ``k`` alive rows the filter accepts."""
        if self.live == 0:
            return _EMPTY_F, _EMPTY_I
        if not has_restriction(flt):
            matching = self.live
            bitmap = self._alive_bitmap() if self.dead else None
        else:
            cand = self._candidates(flt, exact_limit)
            if cand is not None:  # selective: score the few candidates exactly
                cand = cand[accept_rows(flt, self.cols, self.alive, cand)]
                return self._exact(q, k, cand)
            mask = accept_rows(flt, self.cols, self.alive, slice(None))
            matching = int(np.count_nonzero(mask))
            if matching <= exact_limit:
                return self._exact(q, k, np.flatnonzero(mask))
            bitmap = np.packbits(mask, bitorder="little")
        k = min(k, matching)
        share = matching / self.n
        selector = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap)) if bitmap is not None else None
        if selector is not None and share <= SCAN_SHARE and matching <= SCAN_ROWS:
            return self._scan(q, k, selector)
        # a filter that leaves a fraction s of the graph needs a wider beam to find k of them
        ef = int(min(MAX_EF_SEARCH, max(ef_search, k, ef_search * 0.5 / share if share < 0.5 else 0)))
        params = faiss.SearchParametersHNSW(efSearch=ef)
        if selector is not None:
            params.sel = selector
        scores, slots = self.index.search(q, k, params=params)
        found = slots[0] >= 0
        if int(found.sum()) < k:  # the beam ran dry before k matches: scan the accepted rows instead
            selector = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bitmap if bitmap is not None
                                                                   else self._alive_bitmap()))
            return self._scan(q, k, selector)
        return scores[0][found], slots[0][found]

    def _scan(self, q: np.ndarray, k: int, selector: faiss.IDSelector) -> tuple[np.ndarray, np.ndarray]:
        """Exact search of the graph's own vector storage over the rows ``selector`` accepts (a scan
        that skips the others: for filters too narrow for the graph, too broad for posting lists)."""
        params = faiss.SearchParameters()
        params.sel = selector
        scores, slots = faiss.downcast_index(self.index.storage).search(q, k, params=params)
        found = slots[0] >= 0
        return scores[0][found], slots[0][found]

    def _exact(self, q: np.ndarray, k: int, slots: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not len(slots):
            return _EMPTY_F, _EMPTY_I
        scores = self.vectors(slots) @ q[0]
        best = top_k(scores, k)
        return scores[best], np.asarray(slots, dtype=np.int64)[best]


# --- the tail --------------------------------------------------------------------------------------
class Tail:
    """Mutable float32 rows searched exactly: where writes land (the whole collection under the
    approximate threshold). One writer; readers read ``n`` first and never see a half-written row."""

    def __init__(self, dimension: int, capacity: int = 256):
        self.dimension = dimension
        self.langs, self.docs, self.sources, self.pubs = Table(), Table(), Table(), Table()
        self.n = 0
        self.dead = 0
        self.where: dict[int, int] = {}  # alive rowid → slot
        self.persisted = 0  # rows [0, persisted) are in ``chunks`` on disk
        self.chunks: list[dict] = []
        self._allocate(capacity)

    def _allocate(self, capacity: int) -> None:
        def grow(old: np.ndarray | None, shape, dtype) -> np.ndarray:
            new = np.zeros(shape, dtype=dtype)
            if old is not None:
                new[: self.n] = old[: self.n]
            return new

        get = (lambda name: getattr(self, name, None))
        vec = grow(get("vec"), (capacity, self.dimension), np.float32)
        rowid, lang = grow(get("rowid"), capacity, np.int64), grow(get("lang"), capacity, np.int16)
        doc, src, pub = grow(get("doc"), capacity, np.int32), grow(get("src"), capacity, np.int32), \
            grow(get("pub"), capacity, np.int32)
        alive = grow(get("alive"), capacity, bool)
        self.vec, self.rowid, self.lang, self.doc, self.src, self.pub, self.alive = \
            vec, rowid, lang, doc, src, pub, alive
        self.capacity = capacity

    @property
    def live(self) -> int:
        return self.n - self.dead

    def columns(self, n: int | None = None) -> Columns:
        n = self.n if n is None else n
        return Columns(self.rowid[:n], self.lang[:n], self.doc[:n], self.src[:n], self.pub[:n],
                       self.langs, self.docs, self.sources, self.pubs)

    def append(self, vectors: np.ndarray, cols: Columns) -> None:
        """Append rows whose ``cols`` codes refer to this tail's tables (see :func:`entry_columns`)."""
        m = len(cols.rowid)
        if not m:
            return
        if self.n + m > self.capacity:
            self._allocate(max(self.capacity * 2, self.n + m))
        lo, hi = self.n, self.n + m
        self.vec[lo:hi] = vectors
        self.rowid[lo:hi], self.lang[lo:hi], self.doc[lo:hi] = cols.rowid, cols.lang, cols.doc
        self.src[lo:hi], self.pub[lo:hi] = cols.src, cols.pub
        self.alive[lo:hi] = True
        self.where.update(zip(cols.rowid.tolist(), range(lo, hi)))
        self.n = hi  # last: readers that saw the old n ignore these rows

    def append_entries(self, entries: Sequence[IndexEntry]) -> None:
        if entries:
            vectors = np.stack([np.asarray(e.vector, dtype=np.float32).reshape(-1) for e in entries])
            self.append(vectors, entry_columns(entries, self.langs, self.docs, self.sources, self.pubs))

    def append_rows(self, vectors: np.ndarray, cols: Columns) -> None:
        """Append rows whose codes refer to other tables (recoded into this tail's)."""
        self.append(vectors, _recode(cols, self))

    def kill(self, rowids: Sequence[int]) -> int:
        killed = 0
        for r in rowids:
            slot = self.where.pop(r, None)
            if slot is not None:
                self.alive[slot] = False
                killed += 1
        self.dead += killed
        return killed

    def kill_slots(self, slots: np.ndarray) -> None:
        """Mark rows dead by position (reopening a checkpoint: a dead row's id may be alive later on)."""
        for slot in slots.tolist():
            if self.alive[slot]:
                self.alive[slot] = False
                self.dead += 1
                if self.where.get(int(self.rowid[slot])) == slot:
                    del self.where[int(self.rowid[slot])]

    def locate(self, rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pairs = [(i, s) for i, s in enumerate(map(self.where.get, rowids.tolist())) if s is not None]
        return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))

    def search(self, q: np.ndarray, k: int, flt: SearchFilter) -> tuple[np.ndarray, np.ndarray]:
        n = self.n  # first (see the class docstring)
        vec, alive = self.vec, self.alive
        if n == 0:
            return _EMPTY_F, _EMPTY_I
        cols = Columns(self.rowid, self.lang, self.doc, self.src, self.pub,
                       self.langs, self.docs, self.sources, self.pubs)
        if not has_restriction(flt):
            mask = alive[:n] if self.dead else None
        else:
            mask = accept_rows(flt, cols, alive, slice(0, n))
        if mask is None:
            scores = vec[:n] @ q[0]
            best = top_k(scores, k)
            return scores[best], best.astype(np.int64)
        rows = np.flatnonzero(mask)
        if len(rows) * 4 < n:  # few: gather them
            scores = vec[rows] @ q[0]
            best = top_k(scores, k)
            return scores[best], rows[best].astype(np.int64)
        scores = vec[:n] @ q[0]
        scores[~mask] = -np.inf
        best = top_k(scores, k)
        return scores[best], best.astype(np.int64)


def _recode(cols: Columns, tail: Tail) -> Columns:
    """``cols`` with codes into ``tail``'s tables."""
    def remap(src: Table, dst: Table, shift: int) -> np.ndarray:
        out = np.fromiter((dst.code(v) for v in src.values), dtype=np.int32, count=len(src))
        return np.concatenate([[-1], out]).astype(np.int32) if shift else out

    lang = remap(cols.langs, tail.langs, 0)[cols.lang].astype(np.int16)
    doc = remap(cols.docs, tail.docs, 0)[cols.doc]
    src = remap(cols.sources, tail.sources, 1)[cols.src] + 1
    pub = remap(cols.pubs, tail.pubs, 1)[cols.pub] + 1
    return Columns(cols.rowid, lang, doc, src.astype(np.int32), pub.astype(np.int32),
                   tail.langs, tail.docs, tail.sources, tail.pubs)
