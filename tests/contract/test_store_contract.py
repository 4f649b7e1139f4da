"""The passage-store contract: every PassageStore backend must pass this suite.

A backend joins by adding a factory to STORE_BACKENDS (name → callable(tmp_path) returning a fresh,
empty store). The embedded SQLite store is the first; the suite checks behaviour through the
protocol only, never a backend's internals.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qa.models import Document, Passage, passage_id
from qa.store.base import (
    DEFAULT_COLLECTION,
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidCollectionNameError,
    PassageStore,
    StoredPassage,
    check_collection_name,
)
from qa.store.sqlite import SqlitePassageStore, new_document

DIM = 8


def _sqlite(tmp_path: Path) -> PassageStore:
    return SqlitePassageStore(tmp_path / "store.sqlite")


def _postgres(tmp_path: Path) -> PassageStore:
    """PostgreSQL (the server the tests start), one database per test folder (reopened, the same one)."""
    from engines import shared_postgres, storage_name
    from qa.store.postgres import PostgresStore

    return PostgresStore(shared_postgres().database(storage_name(tmp_path)), pool_size=2)


STORE_BACKENDS: dict[str, Callable[[Path], PassageStore]] = {"sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(STORE_BACKENDS))
def store(request, tmp_path) -> PassageStore:
    made = STORE_BACKENDS[request.param](tmp_path)
    made.set_meta("dimension", str(DIM))
    made.ensure_collection(DEFAULT_COLLECTION)
    yield made
    made.close()


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def make_doc(doc_id: str, paragraphs: list[str], collection: str = DEFAULT_COLLECTION, lang: str = "en",
             source: str | None = "wire", published: str | None = "2025-04-30", content_hash: str | None = None,
             seed: int = 0) -> tuple[Document, str, list[StoredPassage]]:
    text = "\n\n".join(paragraphs)
    passages, start = [], 0
    for n, para in enumerate(paragraphs, 1):
        end = start + len(para)
        p = Passage(id=passage_id(doc_id, n, 0), document_id=doc_id, section="Intro" if n == 1 else None,
                    paragraph=n, part=0, lang=lang, start=start, end=end, text=para, title=f"T {doc_id}",
                    source=source, published=published, collection=collection, page=n if n > 1 else None)
        mid = start + len(para) // 2
        passages.append(StoredPassage(
            passage=p, tokens=para.lower().split(), vector=unit(seed + n),
            sentences=((start, mid), (mid, end)), sentence_vectors=np.stack([unit(seed + 100 + n), unit(seed + 200 + n)]),
        ))
        start = end + 2
    doc = new_document(doc_id, f"T {doc_id}", lang, source, published, content_hash or f"hash-{doc_id}-{seed}", {"k": "v"},
                       collection)
    return doc, text, passages


def write(store: PassageStore, doc_id: str, paragraphs: list[str], collection: str = DEFAULT_COLLECTION, **kw):
    doc, text, passages = make_doc(doc_id, paragraphs, collection, **kw)
    return store.replace_document(collection, doc, text, passages), passages


# --- collections ----------------------------------------------------------------------------------
def test_collections_create_list_get_delete(store):
    created = store.create_collection("hr-handbook", "People things")
    assert (created.name, created.description, created.documents, created.passages) == ("hr-handbook", "People things", 0, 0)
    assert created.created_at
    assert [c.name for c in store.list_collections()] == ["default", "hr-handbook"]
    with pytest.raises(CollectionExistsError):
        store.create_collection("hr-handbook")
    assert store.ensure_collection("hr-handbook").description == "People things"  # kept, not reset
    write(store, "a", ["one two", "three four"], "hr-handbook")
    got = store.get_collection("hr-handbook")
    assert (got.documents, got.passages) == (1, 2)
    before = store.seq
    result = store.delete_collection("hr-handbook")
    assert result is not None and result.seq > before
    assert store.changes_since(before)[-1].op == "drop"
    assert store.get_collection("hr-handbook") is None
    assert store.get_document("hr-handbook", "a") is None
    assert store.delete_collection("hr-handbook") is None
    assert store.count_passages() == 0


@pytest.mark.parametrize("name", ["", "x" * 65, "../x", "a b", "Upper", "-lead", "a/b", "ä"])
def test_invalid_collection_names_refused(store, name):
    with pytest.raises(InvalidCollectionNameError):
        store.create_collection(name)
    with pytest.raises(InvalidCollectionNameError):
        check_collection_name(name)


def test_write_to_unknown_collection_refused(store):
    doc, text, passages = make_doc("a", ["x y"], "nowhere")
    with pytest.raises(CollectionNotFoundError) as err:
        store.replace_document("nowhere", doc, text, passages)
    assert "default" in err.value.known
    assert store.count_documents() == 0 and store.seq == 0


# --- documents ------------------------------------------------------------------------------------
def test_replace_document_round_trip(store):
    result, stored = write(store, "a", ["alpha beta", "gamma delta"])
    assert len(result.added) == 2 and result.removed == [] and result.seq == store.seq
    doc, text = store.get_document(DEFAULT_COLLECTION, "a")
    assert text == "alpha beta\n\ngamma delta"
    assert (doc.passage_count, doc.collection, doc.metadata, doc.source) == (2, "default", {"k": "v"}, "wire")
    by_rowid = store.passages_by_rowid(result.added)
    assert [by_rowid[r].text for r in result.added] == ["alpha beta", "gamma delta"]
    for rowid, sp in zip(result.added, stored):
        p = by_rowid[rowid]
        assert text[p.start:p.end] == p.text
        assert (p.title, p.source, p.published, p.collection, p.page, p.section) == (
            sp.passage.title, "wire", "2025-04-30", "default", sp.passage.page, sp.passage.section)
    assert store.passage(DEFAULT_COLLECTION, "a:2").text == "gamma delta"
    assert [p.id for p in store.passages_of_document(DEFAULT_COLLECTION, "a")] == ["a:1", "a:2"]
    vectors = store.vectors_of([result.added[1], 999_999, result.added[0]])
    assert np.allclose(vectors[0], stored[1].vector, atol=2e-3) and not vectors[1].any()
    assert np.allclose(vectors[2], stored[0].vector, atol=2e-3)
    sentences = store.sentences_of(result.added)
    spans, vecs = sentences[result.added[0]]
    assert spans == list(stored[0].sentences) and vecs.shape == (2, DIM)
    assert np.allclose(vecs, stored[0].sentence_vectors, atol=2e-3)


def test_replace_removes_the_earlier_version(store):
    first, _ = write(store, "a", ["one", "two", "three"])
    second, _ = write(store, "a", ["uno"], seed=5)
    assert sorted(second.removed) == sorted(first.added)
    assert store.passages_by_rowid(first.added) == {}
    assert store.count_passages() == 1 and store.count_documents() == 1
    assert not set(second.added) & set(first.added)  # rowids are never reused
    changes = store.changes_since(first.seq)
    assert [c.op for c in changes] == ["remove"] * 3 + ["add"]


def test_delete_document(store):
    first, _ = write(store, "a", ["one", "two"])
    write(store, "b", ["three"])
    result = store.delete_document(DEFAULT_COLLECTION, "a")
    assert sorted(result.removed) == sorted(first.added)
    assert store.get_document(DEFAULT_COLLECTION, "a") is None
    assert store.delete_document(DEFAULT_COLLECTION, "a") is None
    assert store.get_collection(DEFAULT_COLLECTION).passages == 1 == store.count_passages()


def test_ids_and_hashes_are_per_collection(store):
    store.create_collection("other")
    write(store, "a", ["same words"], content_hash="H")
    write(store, "a", ["other words"], "other", content_hash="H")
    assert store.document_by_hash(DEFAULT_COLLECTION, "H") == "a" == store.document_by_hash("other", "H")
    assert store.document_hash("other", "a") == "H"
    assert store.get_document("other", "a")[1] == "other words"
    assert store.get_document(DEFAULT_COLLECTION, "a")[1] == "same words"
    assert store.passage("other", "a:1").text == "other words"
    store.delete_document("other", "a")
    assert store.get_document(DEFAULT_COLLECTION, "a") is not None
    assert store.count_documents("other") == 0 and store.count_documents() == 1


def test_list_documents_pages_in_id_order(store):
    for doc_id in ["c", "a", "b"]:
        write(store, doc_id, [f"text {doc_id}"])
    assert [d.id for d in store.list_documents(DEFAULT_COLLECTION, 2, 0)] == ["a", "b"]
    assert [d.id for d in store.list_documents(DEFAULT_COLLECTION, 2, 2)] == ["c"]
    assert all(d.passage_count == 1 for d in store.list_documents(DEFAULT_COLLECTION))


# --- what the indexes follow ------------------------------------------------------------------------
def test_entries_and_iteration(store):
    store.create_collection("other")
    a, stored = write(store, "a", ["Alpha Beta", "Gamma"])
    write(store, "b", ["Delta"], "other", lang="zh", source=None, published=None)
    entries = store.entries([a.added[1], 123_456, a.added[0]])
    assert [e.rowid for e in entries] == sorted(a.added)
    e = entries[0]
    assert (e.collection, e.document_id, e.lang, e.source, e.published, e.tokens) == (
        "default", "a", "en", "wire", "2025-04-30", ("alpha", "beta"))
    assert np.allclose(e.vector, stored[0].vector, atol=2e-3)
    everything = [e for batch in store.iter_entries(batch=1) for e in batch]
    assert len(everything) == 3
    other = [e for batch in store.iter_entries("other") for e in batch]
    assert [(e.document_id, e.lang, e.source) for e in other] == [("b", "zh", None)]


def test_change_sequence_and_pruning(store):
    assert store.seq == 0 and store.changes_since(0) == []
    a, _ = write(store, "a", ["one", "two"])
    changes = store.changes_since(0)
    assert [(c.op, c.rowid, c.collection) for c in changes] == [("add", r, "default") for r in a.added]
    assert changes[-1].seq == a.seq == store.seq
    assert len(store.changes_since(0, limit=1)) == 1
    d = store.delete_document(DEFAULT_COLLECTION, "a")
    assert [c.op for c in store.changes_since(a.seq)] == ["remove", "remove"]
    store.prune_changes(a.seq)
    assert store.pruned_upto == a.seq
    assert [c.seq for c in store.changes_since(0)] == [c.seq for c in store.changes_since(a.seq)]
    store.prune_changes(d.seq)
    assert store.changes_since(0) == [] and store.seq == d.seq  # the sequence never goes back
    b, _ = write(store, "b", ["three"])
    assert b.seq > d.seq


def test_meta(store):
    assert store.get_meta("nothing") is None
    store.set_meta("model_id", "m@1")
    store.set_meta("model_id", "m@2")
    assert store.get_meta("model_id") == "m@2"


def test_reopen_keeps_everything(request, tmp_path):
    backend = request.node.callspec.params.get("store") if hasattr(request.node, "callspec") else None
    for name, factory in STORE_BACKENDS.items():
        if backend not in (None, name):
            continue
        folder = tmp_path / name
        folder.mkdir()
        first = factory(folder)
        first.set_meta("dimension", str(DIM))
        first.ensure_collection(DEFAULT_COLLECTION)
        result, _ = write(first, "a", ["kept words"])
        first.close()
        again = factory(folder)
        assert again.get_document(DEFAULT_COLLECTION, "a")[1] == "kept words"
        assert again.seq == result.seq
        again.close()
