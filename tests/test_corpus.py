"""The corpus: the store and the two indexes kept in step, collections, filters, catch-up after a crash.

Fast tests with the real USE-m model, the real SQLite store, the real FAISS and tantivy indexes and
real jieba/OpenCC tokenisation; nothing is mocked.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from embeddings.use_m import UseMEmbedder
from qa.index.base import IndexMismatchError
from qa.models import Passage
from qa.retrieval.types import SearchRequest
from qa.settings import Settings
from qa.store import DEFAULT_COLLECTION, CollectionNotFoundError, SearchFilter, StoredPassage
from qa.store.sqlite import new_document
from qa.text.lang import detect_lang
from qa.text.tokenize import tokenize
from qa.wiring import Services, build_corpus, build_services

ZH_PARAGRAPHS = [
    "黄浦区委书记杲云表示,积极构建以金融科技为核心的“1+N+1”产业体系。",
    "松江区委表示,充分发挥长三角G60科创走廊策源地作用,加快打造松江大学城科创源。",
    "复旦大学近期系统布局了六大新工科创新学院,着力培养具备原始创新能力的科技人才。",
    "杨浦正全力打造杨“数”浦新质秀带创新区,加快培育发展“1+2+3+4”创新型现代化产业体系。",
]
EN_PARAGRAPHS = [
    "The harbour master logs every ferry that enters the port after dark.",
    "Glaciers in the northern valley retreated by forty metres last summer.",
    "The orchard grows twelve varieties of apple, including an heirloom russet.",
]


@pytest.fixture(scope="module")
def use_m() -> UseMEmbedder:
    return UseMEmbedder()


def settings_for(data_dir: Path, **extra) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, embedder="use-m", seeds_dir=None,
                    cache_dir=data_dir.parent / "cache", **extra)


@pytest.fixture
def services(tmp_path: Path, use_m) -> Services:
    built = build_services(settings_for(tmp_path / "data"), embedder=use_m)
    yield built
    built.close()


def add(services: Services, doc_id: str, paragraphs: list[str], collection: str = DEFAULT_COLLECTION,
        title: str | None = None, **meta) -> None:
    doc = services.documents.parse("\n\n".join([title or f"Title {doc_id}", *paragraphs]))
    doc.source = meta.get("source")
    doc.published = meta.get("published")
    assert services.documents.add(doc, doc_id, collection).status in ("added", "replaced")


def stored_rowids(services: Services, collection: str | None = None) -> set[int]:
    return {e.rowid for batch in services.corpus.store.iter_entries(collection) for e in batch}


def dense_rowids(services: Services, collection: str = DEFAULT_COLLECTION) -> set[int]:
    dim = services.corpus.dense.dimension
    probe = np.ones(dim, np.float32) / np.sqrt(dim)
    return {h.rowid for h in services.corpus.dense.search(probe, 100_000, SearchFilter(collection))}


def lexical_rowids(services: Services, query: str, lang: str, collection: str = DEFAULT_COLLECTION) -> set[int]:
    return {h.rowid for h in services.corpus.lexical.search(tokenize(query), lang, 100, SearchFilter(collection))}


def assert_in_step(services: Services) -> None:
    corpus = services.corpus
    for c in corpus.store.list_collections():
        assert dense_rowids(services, c.name) == stored_rowids(services, c.name), c.name
        assert corpus.lexical.count(c.name) == corpus.dense.count(c.name) == c.passages, c.name
    assert corpus.dense.applied_seq == corpus.lexical.applied_seq == corpus.store.seq
    assert corpus.lag == 0


def test_writes_and_deletes_follow_in_both_indexes_and_survive_reopen(tmp_path: Path, services: Services, use_m):
    add(services, "zh", ZH_PARAGRAPHS)
    add(services, "en", EN_PARAGRAPHS)
    assert_in_step(services)
    (g60,) = [h for h in services.corpus.lexical.search(tokenize("G60"), "zh", 5, SearchFilter())]
    assert services.corpus.store.passages_by_rowid([g60.rowid])[g60.rowid].text == ZH_PARAGRAPHS[1]
    services.documents.delete("zh")
    assert lexical_rowids(services, "G60", "zh") == set()
    assert g60.rowid not in dense_rowids(services)
    assert_in_step(services)
    services.close()
    reopened = build_services(settings_for(tmp_path / "data"), embedder=use_m)
    try:
        assert_in_step(reopened)
        assert lexical_rowids(reopened, "glaciers valley", "en")
    finally:
        reopened.close()


def test_indexes_replay_the_store_changes_they_missed(tmp_path: Path, services: Services, use_m):
    """A crash between the store commit and the indexes: the next open replays the store's changes."""
    add(services, "zh", ZH_PARAGRAPHS)
    services.corpus.checkpoint()
    text = "\n\n".join(EN_PARAGRAPHS)
    vectors = use_m.encode_passages(EN_PARAGRAPHS)
    passages, start = [], 0
    for n, para in enumerate(EN_PARAGRAPHS, start=1):
        passages.append(StoredPassage(Passage(f"en:{n}", "en", None, n, 0, detect_lang(para), start, start + len(para),
                                              para, "T"), tokenize(para), vectors[n - 1]))
        start += len(para) + 2
    store = services.corpus.store  # written through the store alone, as a process killed after the commit
    store.replace_document(DEFAULT_COLLECTION, new_document("en", "T", "en", None, None, "h-en", {}), text, passages)
    store.delete_document(DEFAULT_COLLECTION, "zh")
    services.close()  # the indexes checkpoint what they have applied: not these changes

    reopened = build_services(settings_for(tmp_path / "data"), embedder=use_m)
    try:
        assert_in_step(reopened)
        (top,) = list(lexical_rowids(reopened, "glaciers", "en"))
        assert reopened.corpus.store.passages_by_rowid([top])[top].text == EN_PARAGRAPHS[1]
        assert lexical_rowids(reopened, "G60", "zh") == set()
    finally:
        reopened.close()


def test_an_index_behind_the_forgotten_changes_is_rebuilt(tmp_path: Path, services: Services, use_m):
    add(services, "zh", ZH_PARAGRAPHS)
    add(services, "en", EN_PARAGRAPHS)
    services.corpus.checkpoint()
    assert services.corpus.store.pruned_upto == services.corpus.store.seq  # both indexes hold every change
    services.close()
    import shutil

    shutil.rmtree(tmp_path / "data" / "lexical")  # lost: it cannot be replayed from forgotten changes
    reopened = build_services(settings_for(tmp_path / "data"), embedder=use_m)
    try:
        assert_in_step(reopened)
        assert lexical_rowids(reopened, "G60", "zh")
    finally:
        reopened.close()


def test_a_store_of_another_model_is_refused(tmp_path: Path, services: Services):
    services.close()
    with pytest.raises(IndexMismatchError, match="qa reindex"):
        build_corpus(settings_for(tmp_path / "data"), "embeddinggemma-300m@abc", 768)


def test_collections_are_separate_knowledge_bases(services: Services):
    services.documents.create_collection("glaciology", "Ice")
    add(services, "report", EN_PARAGRAPHS[:2])
    add(services, "report", [EN_PARAGRAPHS[1], "Meltwater lakes formed below the glacier snout."], "glaciology")
    assert_in_step(services)
    ask = "How far did the glaciers retreat?"
    default = services.search.search(SearchRequest(query=ask, top_k=5))
    ice = services.search.search(SearchRequest(query=ask, top_k=5, collection="glaciology"))
    assert {h.passage.collection for h in default.hits} == {"default"}
    assert {h.passage.collection for h in ice.hits} == {"glaciology"}
    assert ice.hits[0].passage.text == EN_PARAGRAPHS[1]
    # statistics are per collection: the word appears in 1 of 2 passages in each
    stats = services.corpus.lexical.term_stats("glaciology", "en", ["meltwater", "ferry"])
    assert (stats.documents, stats.df) == (2, (1, 0))
    services.documents.delete_collection("glaciology")
    assert_in_step(services)
    with pytest.raises(CollectionNotFoundError) as err:
        services.search.search(SearchRequest(query=ask, collection="glaciology"))
    assert err.value.known == ["default"]
    assert services.search.search(SearchRequest(query=ask)).hits[0].passage.document_id == "report"


def test_an_empty_collection_answers_unanswerable(services: Services):
    services.documents.create_collection("empty")
    result = services.search.search(SearchRequest(query="When does the ferry leave?", collection="empty"))
    assert (result.answerable, result.hits) == (False, [])


def test_filters_combine_inside_the_indexes(services: Services):
    add(services, "a", EN_PARAGRAPHS, source="Harbour Gazette", published="2024-03-01")
    add(services, "b", ZH_PARAGRAPHS, source="文汇报", published="2025-04-30")
    add(services, "c", ["The ferry to the northern valley leaves at dawn."], source="Harbour Gazette",
        published="2025-06-15")

    def docs(**kw) -> list[str]:
        result = services.search.search(SearchRequest(query="ferry harbour valley", top_k=20, **kw))
        return sorted({h.passage.document_id for h in result.hits})

    assert docs() == ["a", "b", "c"]
    assert docs(lang="zh") == ["b"]
    assert docs(sources=("Harbour Gazette",)) == ["a", "c"]
    assert docs(published_from="2025") == ["b", "c"]
    assert docs(published_from="2025-05", published_to="2025-12-31") == ["c"]
    assert docs(sources=("Harbour Gazette",), published_to="2024-12") == ["a"]
    assert docs(document_ids=("a", "b"), lang="en") == ["a"]
    assert docs(document_ids=()) == [] and docs(sources=("nobody",)) == []


def test_searches_run_while_documents_are_written(services: Services):
    add(services, "en", EN_PARAGRAPHS)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search_loop() -> None:
        try:
            while not stop.is_set():
                result = services.search.search(SearchRequest(query="harbour master ferry", top_k=3))
                assert result.hits
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=search_loop) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for n in range(15):
            add(services, f"zh{n % 3}", [ZH_PARAGRAPHS[n % 4], EN_PARAGRAPHS[n % 3] + f" Note {n}."])
            if n % 4 == 3:
                services.documents.delete(f"zh{n % 3}")
            if n == 7:
                services.corpus.checkpoint()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert_in_step(services)


def test_language_balance_keeps_the_order_within_a_language_and_lets_languages_meet_on_meaning(services: Services):
    """BM25 only scores the question's language: its bonus must reorder those passages, not lift them
    all above a better answer in the other language (and must change nothing in a one-language pool)."""
    search = services.search

    def fused():
        rows = {1: (0.50, 0.8), 2: (0.52, 0.2), 3: (0.60, 0.0)}  # rowid: (dense, lexical); 1 and 2 zh, 3 en
        out = {r: {"dense": d, "sentence": d, "lexical": lex} for r, (d, lex) in rows.items()}
        for comp in out.values():
            comp["score"] = search._combine(comp)
        return out

    plain = fused()
    assert sorted(plain, key=lambda r: -plain[r]["score"]) == [1, 3, 2]  # the zh bonus wins without balance
    balanced = fused()
    search._balance_languages(balanced, {1, 2})
    assert sorted(balanced, key=lambda r: -balanced[r]["score"]) == [3, 1, 2]
    assert balanced[1]["score"] == pytest.approx(search._semantic(balanced[1]))  # best zh: meaning alone
    one_language = {r: c for r, c in fused().items() if r != 3}
    search._balance_languages(one_language, {1, 2})
    assert sorted(one_language, key=lambda r: -one_language[r]["score"]) == [1, 2]


def test_cross_language_strength_counts_only_words_the_other_language_uses(services: Services):
    """An English question looked up in Chinese passages: "district" or "secretary" can never match
    there, so only the words that can (here "g60") set what a full match would score."""
    add(services, "zh", ZH_PARAGRAPHS)
    strength = services.search._strength
    tokens = ["g60", "district", "secretary", "corridor"]
    assert strength(tokens, "zh", DEFAULT_COLLECTION, known_only=True) == pytest.approx(
        strength(["g60"], "zh", DEFAULT_COLLECTION))
    assert strength(tokens, "zh", DEFAULT_COLLECTION) > 3 * strength(tokens, "zh", DEFAULT_COLLECTION, known_only=True)
    assert strength(["district"], "zh", DEFAULT_COLLECTION, known_only=True) == 0.0


def test_deleting_a_collection_that_is_being_written_to_is_safe(services: Services):
    """A write racing the deletion of its collection either lands before it (and is deleted with it) or
    is refused with CollectionNotFoundError; nothing is left half-written in the store or the indexes."""
    services.documents.create_collection("busy")
    outcomes: list[str] = []

    def writer() -> None:
        for n in range(12):
            try:
                add(services, f"d{n}", [EN_PARAGRAPHS[n % 3] + f" Entry {n}."], "busy")
                outcomes.append("added")
            except CollectionNotFoundError:
                outcomes.append("refused")

    thread = threading.Thread(target=writer)
    thread.start()
    while not outcomes:
        threading.Event().wait(0.01)
    services.documents.delete_collection("busy")
    thread.join()
    assert "refused" in outcomes and outcomes.index("refused") > 0, outcomes
    assert outcomes[outcomes.index("refused"):] == ["refused"] * (len(outcomes) - outcomes.index("refused"))
    assert services.corpus.store.get_collection("busy") is None
    assert not stored_rowids(services, "busy")
    assert_in_step(services)
