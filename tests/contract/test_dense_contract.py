"""The dense-index contract: every DenseIndex backend must pass this suite.

A backend joins by adding a :class:`Backend` to DENSE_BACKENDS: ``open(tmp_path)`` returns an opener,
and each call of the opener opens the backend on the same storage (a fresh, empty one the first
time), so a test can close an index and reopen it. The suite checks behaviour through the protocol
only: results against brute force over ``SearchFilter.accepts``, stored vectors, removal, reopening
after ``checkpoint()`` and replay idempotence. ``exact`` backends must return exactly the brute-force
top k; approximate ones (HNSW) must return only accepted passages, as many as asked for when that many
match, with scores close to the true inner products and recall@k of at least ``min_recall``.

The FAISS backend appears three times: exact, HNSW and HNSW over 8-bit scalar-quantised vectors
(both with a tiny approximate threshold, so that the background builds, seals, merges and
compactions run during the tests). FAISS-specific behaviour (threshold crossing, compaction, file
corruption, kill -9 during checkpoints) is tested after the contract.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from qa.index.base import DenseIndex
from qa.index.faiss_dense import FaissDenseIndex
from qa.store.base import IndexEntry, SearchFilter

DIM = 32
MODEL = "contract-model"
Opener = Callable[[], DenseIndex]


@dataclass(frozen=True)
class Backend:
    open: Callable[[Path], Opener]
    exact: bool  # search returns the brute-force top k exactly
    score_atol: float  # |score - true inner product|
    vector_atol: float  # |vectors() - the vector added|
    min_recall: float = 1.0


def _faiss(**kwargs) -> Callable[[Path], Opener]:
    return lambda tmp_path: (lambda: FaissDenseIndex(tmp_path / "dense", DIM, MODEL, **kwargs))


# tiny thresholds: a few hundred passages go through every approximate path (seal, merge, compaction);
# exact_limit 8 sends all but the most selective filters through the HNSW search with a selector
_HNSW = dict(approximate_threshold=40, tail_limit=30, exact_limit=8, merge_factor=3, ef_search=64)
DENSE_BACKENDS: dict[str, Backend] = {
    "faiss-exact": Backend(_faiss(), exact=True, score_atol=1e-5, vector_atol=0.0),
    "faiss-hnsw": Backend(_faiss(**_HNSW), exact=False, score_atol=1e-5, vector_atol=0.0, min_recall=0.97),
    "faiss-hnsw-sq8": Backend(_faiss(hnsw_sq8=True, **_HNSW), exact=False, score_atol=0.03, vector_atol=0.03,
                              min_recall=0.9),
}




def _milvus(tmp_path: Path) -> Opener:
    """Milvus (the milvus-lite engine the tests serve on 127.0.0.1), FLAT: exact inner products."""
    from engines import shared_milvus, storage_name
    from qa.index.milvus import MilvusConnection, MilvusDenseIndex

    uri = shared_milvus().uri
    return lambda: MilvusDenseIndex(MilvusConnection(uri, prefix=storage_name(tmp_path)), DIM, MODEL)


DENSE_BACKENDS["milvus"] = Backend(_milvus, exact=True, score_atol=1e-5, vector_atol=0.0)


@pytest.fixture(params=sorted(DENSE_BACKENDS))
def backend(request) -> Backend:
    return DENSE_BACKENDS[request.param]


@pytest.fixture
def open_index(backend, tmp_path) -> Opener:
    opened: list[DenseIndex] = []

    def open_() -> DenseIndex:
        index = backend.open(tmp_path)()
        opened.append(index)
        return index

    yield open_
    for index in opened:
        index.close()


@pytest.fixture
def index(open_index) -> DenseIndex:
    return open_index()


# --- data ------------------------------------------------------------------------------------------
LANGS = ("en", "zh", "fr")
SOURCES = ("wire", "blog", None, "wire", "rare-feed")
DATES = ("2025-04-30", "2024-12-31", "2025", "2025-03", None, "2026-01-15T08:00:00Z", "", "2025-03-02")


def unit(rng: np.random.Generator, n: int, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + 0.35 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def make_entries(n: int, *, start: int = 1, collection: str = "default", seed: int = 0) -> list[IndexEntry]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).standard_normal((12, DIM))
    vecs = unit(rng, n, centres)
    out = []
    for i in range(n):
        r = start + i
        out.append(IndexEntry(rowid=r, collection=collection, document_id=f"doc{r // 4}", lang=LANGS[r % 7 % 3],
                              source=SOURCES[r % 5] if r % 61 else "rare-feed", published=DATES[r % 8],
                              tokens=(), vector=vecs[i]))
    return out


def queries(n: int, seed: int = 7) -> np.ndarray:
    return unit(np.random.default_rng(seed), n, np.random.default_rng(99).standard_normal((12, DIM)))


FILTERS = [
    SearchFilter(),
    SearchFilter(lang="en"),
    SearchFilter(lang="zh"),
    SearchFilter(lang="xx"),
    SearchFilter(document_ids=("doc3", "doc10", "doc40", "no-such-doc")),
    SearchFilter(document_ids=("doc7",)),
    SearchFilter(sources=("wire",)),
    SearchFilter(sources=("rare-feed",)),
    SearchFilter(sources=("blog", "rare-feed")),
    SearchFilter(sources=("unknown",)),
    SearchFilter(published_from="2025-03-01"),
    SearchFilter(published_to="2024-12-31"),
    SearchFilter(published_from="2025", published_to="2025"),
    SearchFilter(published_from="2025-03", published_to="2025-03-31"),
    SearchFilter(published_from="2026-01-15", published_to="2026-01-15"),
    SearchFilter(lang="en", sources=("wire",)),
    SearchFilter(lang="zh", published_from="2025-01-01"),
    SearchFilter(document_ids=tuple(f"doc{i}" for i in range(0, 80, 3)), lang="fr", sources=("wire", "blog")),
    SearchFilter(lang="en", sources=("blog", "wire"), published_from="2025-03", published_to="2025-12"),
    SearchFilter(document_ids=()),
    SearchFilter(sources=()),
    SearchFilter(collection="other"),
]


def brute_force(entries: dict[int, IndexEntry], q: np.ndarray, k: int, flt: SearchFilter) -> list[tuple[int, float]]:
    scored = [(e.rowid, float(np.dot(e.vector, q))) for e in entries.values() if flt.accepts(e)]
    return sorted(scored, key=lambda x: -x[1])[:k]


def check_search(backend: Backend, index: DenseIndex, entries: dict[int, IndexEntry], flt: SearchFilter,
                 qs: np.ndarray, k: int = 10) -> tuple[int, int]:
    """Assert the contract for one filter over some queries; returns (expected hits found, expected)."""
    found = wanted = 0
    for q in qs:
        hits = index.search(q, k, flt)
        truth = brute_force(entries, q, k, flt)
        ids = [h.rowid for h in hits]
        assert len(set(ids)) == len(ids), "no passage twice"
        assert len(hits) == len(truth), (flt, len(hits), len(truth))
        for h in hits:
            e = entries.get(h.rowid)
            assert e is not None and flt.accepts(e), (flt, h)
            assert h.lang == e.lang
            assert abs(h.score - float(np.dot(e.vector, q))) <= backend.score_atol + 1e-6
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), "best first"
        if backend.exact:
            assert ids == [r for r, _ in truth], flt
        found += len(set(ids) & {r for r, _ in truth})
        wanted += len(truth)
    return found, wanted


def check_all(backend: Backend, index: DenseIndex, entries: dict[int, IndexEntry], n_queries: int = 6) -> None:
    qs = queries(n_queries)
    found = wanted = 0
    for flt in FILTERS:
        f, w = check_search(backend, index, entries, flt, qs)
        found, wanted = found + f, wanted + w
    assert found >= backend.min_recall * wanted, f"recall {found / max(wanted, 1):.3f}"


def settle(index: DenseIndex) -> None:
    """Let a backend with background work finish it (results must be right before and after)."""
    wait = getattr(index, "settle", None)
    if wait is not None:
        assert wait(60.0)


# --- the contract ----------------------------------------------------------------------------------
def test_search_matches_brute_force_with_every_filter(backend, index):
    entries = {e.rowid: e for e in make_entries(400)}
    other = {e.rowid: e for e in make_entries(60, start=1000, collection="other", seed=1)}
    index.add(list(entries.values()))
    index.add(list(other.values()))
    assert index.count() == 460 and index.count("default") == 400 and index.count("other") == 60
    assert index.count("nowhere") == 0
    check_all(backend, index, {**entries, **other})  # before any background work finished
    settle(index)
    check_all(backend, index, {**entries, **other})
    assert index.search(queries(1)[0], 5, SearchFilter(collection="nowhere")) == []
    assert index.search(queries(1)[0], 0, SearchFilter()) == []


def test_remove_and_replace(backend, index):
    entries = {e.rowid: e for e in make_entries(300)}
    index.add(list(entries.values()))
    settle(index)
    gone = list(range(1, 300, 3))
    index.remove("default", gone + [99999])  # an absent id is ignored
    index.remove("nowhere", [1, 2])
    for r in gone:
        entries.pop(r)
    assert index.count("default") == len(entries)
    check_all(backend, index, entries)
    # re-adding an id replaces its vector and attributes
    fresh = make_entries(20, start=2, seed=5)
    fresh = [IndexEntry(e.rowid, "default", "replaced-doc", "fr", "new-source", "2030-01-01", (), e.vector)
             for e in fresh]
    index.add(fresh)
    entries.update({e.rowid: e for e in fresh})
    assert index.count("default") == len(entries)
    check_all(backend, index, entries)
    hits = index.search(fresh[0].vector, 3, SearchFilter(document_ids=("replaced-doc",)))
    assert hits[0].rowid == fresh[0].rowid and hits[0].lang == "fr"
    settle(index)
    check_all(backend, index, entries)


def test_many_small_writes_with_removals(backend, index):
    """Writes the size of a document (3 passages) interleaved with removals, crossing any threshold."""
    pool = make_entries(360)
    entries: dict[int, IndexEntry] = {}
    rng = np.random.default_rng(3)
    for i in range(0, len(pool), 3):
        batch = pool[i:i + 3]
        index.add(batch)
        entries.update({e.rowid: e for e in batch})
        if i % 9 == 0 and len(entries) > 10:
            victims = rng.choice(sorted(entries), 2, replace=False).tolist()
            index.remove("default", victims)
            for r in victims:
                entries.pop(r)
        if i % 60 == 0:
            check_search(backend, index, entries, SearchFilter(lang="en"), queries(2))
    assert index.count("default") == len(entries)
    check_all(backend, index, entries)
    settle(index)
    check_all(backend, index, entries)


def test_drop_collection_and_collections_are_independent(backend, index):
    a = {e.rowid: e for e in make_entries(120, collection="alpha")}
    b = {e.rowid: e for e in make_entries(120, start=500, collection="beta", seed=2)}
    index.add(list(a.values()) + list(b.values()))
    index.remove("alpha", list(b)[:50])  # beta's ids in alpha: nothing happens
    assert index.count("beta") == 120
    q = queries(1)[0]
    assert {h.rowid for h in index.search(q, 200, SearchFilter(collection="alpha"))} <= set(a)
    index.drop_collection("alpha")
    assert index.count("alpha") == 0 and index.count() == 120
    assert index.search(q, 5, SearchFilter(collection="alpha")) == []
    check_search(backend, index, b, SearchFilter(collection="beta"), queries(4))
    index.drop_collection("never-was")
    index.add(list(a.values())[:10])  # a dropped collection can come back
    assert index.count("alpha") == 10
    settle(index)
    check_search(backend, index, b, SearchFilter(collection="beta"), queries(4))


def test_vectors(backend, index):
    entries = make_entries(200)
    index.add(entries)
    index.remove("default", [5, 6])
    settle(index)
    asked = [3, 5, 150, 99999, 3, 200]
    got = index.vectors("default", asked)
    assert got.shape == (len(asked), DIM) and got.dtype == np.float32
    by_id = {e.rowid: e.vector for e in entries}
    for row, r in enumerate(asked):
        want = by_id[r] if r in by_id and r not in (5, 6) else np.zeros(DIM, np.float32)
        np.testing.assert_allclose(got[row], want, atol=backend.vector_atol + 1e-6)
    assert not index.vectors("nowhere", [3]).any()
    assert index.vectors("default", []).shape == (0, DIM)


def test_reopen_after_checkpoint(backend, open_index):
    index = open_index()
    assert index.durable_seq == 0 and index.applied_seq == 0 and index.count() == 0
    entries = {e.rowid: e for e in make_entries(250)}
    other = {e.rowid: e for e in make_entries(40, start=900, collection="other", seed=4)}
    index.add(list(entries.values()) + list(other.values()))
    settle(index)
    index.remove("default", list(range(1, 60)))
    for r in range(1, 60):
        entries.pop(r)
    index.drop_collection("other")
    index.mark_applied(17)
    assert index.applied_seq == 17
    index.checkpoint()
    assert index.durable_seq == 17
    # after the checkpoint: the sequence is not durable until the next one (the passages themselves may
    # be, in a remote engine that persists every acknowledged write)
    late = make_entries(5, start=5000, seed=9)
    index.add(late)
    index.mark_applied(18)
    index.close()

    index = open_index()
    assert index.durable_seq == 17 and index.applied_seq == 17
    index.add(late)  # the store replays change 18
    entries.update({e.rowid: e for e in late})
    assert index.count() == len(entries) == index.count("default")
    check_all(backend, index, entries)
    # a second checkpoint on the reopened index, after more changes
    more = {e.rowid: e for e in make_entries(40, start=3000, seed=6)}
    index.add(list(more.values()))
    entries.update(more)
    index.remove("default", [100, 101])
    entries.pop(100), entries.pop(101)
    index.mark_applied(25)
    index.checkpoint()
    index.checkpoint()  # nothing new: harmless
    index.close()
    index = open_index()
    assert index.durable_seq == 25 and index.count() == len(entries)
    check_all(backend, index, entries, n_queries=3)


def test_replay_is_idempotent(backend, open_index):
    entries = make_entries(150)
    index = open_index()
    index.add(entries[:100])
    index.remove("default", [10, 11, 12])
    index.mark_applied(3)
    index.checkpoint()
    index.add(entries[100:])
    index.remove("default", [20])
    index.close()
    # the restart replays every change after the checkpoint, some twice (re-adds, absent removes)
    index = open_index()
    for _ in range(2):
        index.add(entries[90:])
        index.remove("default", [20, 10])
    index.mark_applied(5)
    expect = {e.rowid: e for e in entries if e.rowid not in (10, 11, 12, 20)}
    assert index.count() == len(expect)
    check_all(backend, index, expect, n_queries=3)
    settle(index)
    check_all(backend, index, expect, n_queries=3)


def test_reset(backend, index):
    index.add(make_entries(50))
    index.mark_applied(4)
    index.reset()
    assert index.count() == 0 and index.applied_seq == 0
    assert index.search(queries(1)[0], 5, SearchFilter()) == []
    index.add(make_entries(10))
    assert index.count() == 10


def test_searches_during_writes_and_checkpoints(backend, index):
    """Many searching threads, one writer, checkpoints from another thread: every answer is valid."""
    base = make_entries(200)
    index.add(base)
    stop = threading.Event()
    errors: list[BaseException] = []
    flt = SearchFilter(lang="en", sources=("wire", "blog"))

    def searcher(seed: int) -> None:
        qs = queries(20, seed)
        try:
            while not stop.is_set():
                for q in qs:
                    for h in index.search(q, 5, flt):
                        assert h.lang == "en"
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def checkpointer() -> None:
        try:
            while not stop.is_set():
                index.checkpoint()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=searcher, args=(s,)) for s in range(3)] + [threading.Thread(target=checkpointer)]
    for t in threads:
        t.start()
    extra = make_entries(240, start=1000, seed=8)
    for i in range(0, len(extra), 3):
        index.add(extra[i:i + 3])
        index.remove("default", [extra[i].rowid - 1000 + 1])
        index.mark_applied(i + 1)
    stop.set()
    for t in threads:
        t.join()
    assert not errors, errors
    live = {e.rowid: e for e in base + extra}
    for i in range(0, len(extra), 3):
        live.pop(extra[i].rowid - 1000 + 1, None)
    assert index.count() == len(live)
    check_search(backend, index, live, flt, queries(3))
