"""The passage store, the FAISS vector index, the BM25 lexical index and the corpus that keeps them in step.

Fast unit tests with the real USE-m model and real jieba/OpenCC tokenisation; nothing is mocked.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from embeddings.use_m import UseMEmbedder
from qa.corpus import Corpus
from qa.index.lexical import LexicalIndex
from qa.index.vectors import IndexCorruptError, IndexMismatchError, VectorIndex
from qa.models import Passage
from qa.retrieval.types import SearchRequest
from qa.settings import Settings
from qa.store import PassageStore, StoredPassage
from qa.store.sqlite import StoreError, new_document
from qa.text.lang import detect_lang
from qa.text.tokenize import tokenize
from qa.wiring import build_services

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


def document_with(doc_id: str, paragraphs: list[str], embedder: UseMEmbedder, title: str = "T"
                  ) -> tuple[object, str, list[StoredPassage]]:
    """A document whose text is its paragraphs separated by blank lines, with exact passage offsets."""
    text = "\n\n".join(paragraphs)
    vectors = embedder.encode_passages(paragraphs)
    passages, start = [], 0
    for n, para in enumerate(paragraphs, start=1):
        end = start + len(para)
        assert text[start:end] == para
        passages.append(StoredPassage(
            Passage(f"{doc_id}:{n}", doc_id, None, n, 0, detect_lang(para), start, end, para, title),
            tokenize(para), vectors[n - 1]))
        start = end + 2
    doc = new_document(doc_id, title, detect_lang(text), None, None, f"hash-{doc_id}-{hash(text)}", {})
    return doc, text, passages


# --- store ------------------------------------------------------------------------------------------
def test_store_replace_delete_and_generation(tmp_path: Path, use_m):
    store = PassageStore(tmp_path / "store.sqlite")
    assert store.generation == 0 and store.count_passages() == 0

    doc, text, passages = document_with("a", ZH_PARAGRAPHS[:2], use_m)
    removed, added = store.replace_document(doc, text, passages)
    assert removed == [] and len(added) == 2
    assert store.generation == 1
    assert store.count_documents() == 1 and store.count_passages() == 2
    stored_doc, stored_text = store.get_document("a")
    assert stored_text == text and stored_doc.passage_count == 2

    # replace: the old rows go, new rows get new rowids (never reused)
    doc2, text2, passages2 = document_with("a", ZH_PARAGRAPHS[1:], use_m)
    removed2, added2 = store.replace_document(doc2, text2, passages2)
    assert sorted(removed2) == sorted(added) and len(added2) == 3
    assert min(added2) > max(added)
    assert store.generation == 2 and store.count_passages() == 3
    assert store.get_document("a")[1] == text2
    assert store.passages_by_rowid(added) == {}

    # delete
    assert store.delete_document("missing") is None
    assert store.generation == 2  # nothing written, nothing bumped
    assert sorted(store.delete_document("a")) == sorted(added2)
    assert store.generation == 3
    assert store.get_document("a") is None and store.count_passages() == 0
    assert store.passage("a:1") is None

    doc3, text3, passages3 = document_with("b", EN_PARAGRAPHS, use_m)
    _, added3 = store.replace_document(doc3, text3, passages3)
    assert min(added3) > max(added2), "rowids of deleted passages were reused"
    store.close()


def test_store_reads_back_exactly_and_survives_reopen(tmp_path: Path, use_m):
    path = tmp_path / "store.sqlite"
    store = PassageStore(path)
    doc, text, passages = document_with("mix", ZH_PARAGRAPHS[:2] + EN_PARAGRAPHS[:1], use_m)
    _, rowids = store.replace_document(doc, text, passages)
    store.close()

    store = PassageStore(path)
    assert store.generation == 1
    by_rowid = store.passages_by_rowid(rowids)
    for rowid, sp in zip(rowids, passages):
        assert by_rowid[rowid] == sp.passage
        assert store.passage(sp.passage.id) == sp.passage
        assert text[by_rowid[rowid].start:by_rowid[rowid].end] == by_rowid[rowid].text
    ids, vecs = next(store.iter_vectors())
    assert ids.tolist() == rowids
    np.testing.assert_array_equal(vecs, np.stack([sp.vector for sp in passages]))
    assert [(r, lang, toks) for r, lang, toks in store.iter_tokens()] == [
        (r, sp.passage.lang, sp.tokens) for r, sp in zip(rowids, passages)]
    assert store.rowids_of_lang("en") == {rowids[2]} and store.rowids_of_lang("zh") == set(rowids[:2])
    assert store.rowids_of_documents(["mix", "other"]) == set(rowids)
    assert store.document_by_hash(doc.content_hash) == "mix" and store.document_hash("mix") == doc.content_hash
    assert [d.id for d in store.list_documents()] == ["mix"]
    store.close()


def test_store_refuses_a_second_document_with_the_same_content(tmp_path: Path, use_m):
    """The unique content hash is the last line of defence of the duplicate policy."""
    store = PassageStore(tmp_path / "store.sqlite")
    doc, text, passages = document_with("one", EN_PARAGRAPHS[:1], use_m)
    store.replace_document(doc, text, passages)
    twin = new_document("two", doc.title, doc.lang, None, None, doc.content_hash, {})
    with pytest.raises(sqlite3.IntegrityError):
        store.replace_document(twin, text, [])
    assert store.get_document("two") is None and store.generation == 1  # rolled back whole
    store.close()


def test_store_refuses_a_file_that_is_not_a_store(tmp_path: Path):
    path = tmp_path / "store.sqlite"
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(StoreError, match="not a readable qa store"):
        PassageStore(path)


# --- vector index -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vectors(use_m) -> np.ndarray:
    return use_m.encode_passages(ZH_PARAGRAPHS + EN_PARAGRAPHS)


def test_vector_index_add_search_remove(use_m, vectors):
    index = VectorIndex(use_m.dimension, use_m.model_id)
    assert len(index) == 0
    scores, ids = index.search(vectors[0], 5)
    assert ids.shape == (1, 0)

    rowids = np.arange(100, 100 + len(vectors), dtype=np.int64)
    index.add(rowids, vectors)
    assert len(index) == len(vectors)
    q = use_m.encode_queries(["G60科创走廊在哪个区？"])[0]
    scores, ids = index.search(q, len(vectors))
    expected = vectors @ q
    np.testing.assert_allclose(scores[0], np.sort(expected)[::-1], rtol=1e-5, atol=1e-6)
    assert ids[0, 0] == 101  # the Songjiang paragraph
    np.testing.assert_allclose(index.reconstruct([102, 100]), vectors[[2, 0]], rtol=1e-6)

    # restricted to some ids
    _, only = index.search(q, 10, allowed={100, 104})
    assert set(only[0].tolist()) == {100, 104}

    assert index.remove([101]) is True
    assert len(index) == len(vectors) - 1
    _, ids = index.search(q, len(vectors))
    assert 101 not in ids[0].tolist()
    # a removed id reconstructs as zeros (the lexical index may still name it until its rebuild)
    rec = index.reconstruct([101, 100])
    assert not rec[0].any() and np.allclose(rec[1], vectors[0])

    with pytest.raises(IndexMismatchError):
        index.add(np.array([1]), np.zeros((1, 7), np.float32))


def test_vector_index_persists_and_reopens(tmp_path: Path, use_m, vectors):
    index = VectorIndex(use_m.dimension, use_m.model_id)
    index.add(np.arange(len(vectors)), vectors)
    index.save(tmp_path, generation=7)
    reopened = VectorIndex.open(tmp_path, use_m.dimension, use_m.model_id)
    assert reopened.generation == 7 and len(reopened) == len(vectors)
    q = vectors[3]
    a, b = index.search(q, 4), reopened.search(q, 4)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0])
    assert b[1][0, 0] == 3

    # an empty folder opens as an empty index
    assert len(VectorIndex.open(tmp_path / "none", use_m.dimension, use_m.model_id)) == 0


def test_vector_index_refuses_another_model_or_a_damaged_file(tmp_path: Path, use_m, vectors):
    index = VectorIndex(use_m.dimension, use_m.model_id)
    index.add(np.arange(len(vectors)), vectors)
    index.save(tmp_path, generation=1)
    with pytest.raises(IndexMismatchError, match="qa reindex") as info:
        VectorIndex.open(tmp_path, 768, "embeddinggemma-300m@abc")
    assert use_m.model_id in str(info.value)
    with pytest.raises(IndexMismatchError, match="qa reindex"):
        VectorIndex.open(tmp_path, 256, use_m.model_id)

    raw = bytearray((tmp_path / "vectors.faiss").read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit
    (tmp_path / "vectors.faiss").write_bytes(bytes(raw))
    with pytest.raises(IndexCorruptError, match="qa reindex"):
        VectorIndex.open(tmp_path, use_m.dimension, use_m.model_id)
    (tmp_path / "vectors.json").unlink()
    with pytest.raises(IndexCorruptError, match="qa reindex"):
        VectorIndex.open(tmp_path, use_m.dimension, use_m.model_id)


def test_vector_index_switches_to_hnsw_above_the_threshold(tmp_path: Path, use_m, vectors):
    rng = np.random.default_rng(0)
    extra = rng.normal(size=(40, use_m.dimension)).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    allv = np.vstack([vectors, extra])
    ids = np.arange(1000, 1000 + len(allv), dtype=np.int64)
    index = VectorIndex(use_m.dimension, use_m.model_id, approximate_threshold=20)
    index.rebuild([(ids[:25], allv[:25]), (ids[25:], allv[25:])])
    assert index.approximate and len(index) == len(allv)
    for i in (0, 5, 30):
        _, found = index.search(allv[i], 1)
        assert found[0, 0] == ids[i]
    _, found = index.search(allv[0], 5, allowed={int(ids[3]), int(ids[40])})
    assert set(found[0].tolist()) <= {int(ids[3]), int(ids[40])} and found.size
    assert index.remove([int(ids[0])]) is False  # HNSW cannot remove: the caller rebuilds
    index.save(tmp_path, generation=3)
    reopened = VectorIndex.open(tmp_path, use_m.dimension, use_m.model_id, approximate_threshold=20)
    assert reopened.approximate and len(reopened) == len(allv)


# --- lexical index ----------------------------------------------------------------------------------
@pytest.fixture
def lexical() -> tuple[LexicalIndex, dict[int, str]]:
    texts = dict(enumerate(ZH_PARAGRAPHS + EN_PARAGRAPHS, start=1))
    index = LexicalIndex()
    index.rebuild(((rowid, detect_lang(t), tokenize(t)) for rowid, t in texts.items()), generation=5)
    return index, texts


def _top(index: LexicalIndex, query: str, lang: str, **kw) -> list[int]:
    return [rowid for rowid, _ in index.search(tokenize(query), lang, 10, **kw)]


def test_lexical_search_per_language_with_jieba(lexical):
    index, texts = lexical
    assert len(index) == len(texts)
    assert _top(index, "复旦大学新工科学院", "zh")[0] == 3
    # Traditional characters fold to Simplified
    assert _top(index, "復旦大學佈局了幾個新工科創新學院", "zh")[0] == 3
    # codes match whole and beat their parts
    assert _top(index, "1+N+1", "zh")[0] == 1
    assert _top(index, "G60", "zh") == [2]
    assert _top(index, "g60科创走廊", "zh")[0] == 2
    assert _top(index, "Ｇ６０", "zh") == [2]  # full-width
    # English
    assert _top(index, "ferry harbour", "en")[0] == 5
    assert _top(index, "Which GLACIERS retreated?", "en")[0] == 6
    # one language never answers for the other, and stopwords alone match nothing
    assert _top(index, "ferry harbour", "zh") == []
    assert all(texts[r] in EN_PARAGRAPHS for r in _top(index, "the apple orchard 2024", "en"))
    assert _top(index, "什么是", "zh") == [] and _top(index, "what is the", "en") == []
    assert _top(index, "复旦", "ja") == []


def test_lexical_search_restricted_to_allowed_rowids(lexical):
    index, _ = lexical
    assert _top(index, "创新", "zh", allowed={4}) == [4]
    assert _top(index, "复旦大学", "zh", allowed={1, 4}) == []
    assert _top(index, "复旦大学", "zh", allowed={2, 4}) == [2]  # 松江大学城 shares the word 大学


def test_lexical_index_persists_and_recovers(tmp_path: Path, lexical):
    index, _ = lexical
    index.save(tmp_path)
    loaded = LexicalIndex.load(tmp_path)
    assert loaded is not None and loaded.generation == 5 and len(loaded) == len(index)
    for query, lang in [("复旦大学", "zh"), ("1+N+1", "zh"), ("glaciers valley", "en")]:
        before, after = index.search(tokenize(query), lang, 5), loaded.search(tokenize(query), lang, 5)
        assert before and [r for r, _ in after] == [r for r, _ in before]
        assert [s for _, s in after] == pytest.approx([s for _, s in before])

    # killed between the two renames of save(): the previous copy is used
    (tmp_path / "lexical").rename(tmp_path / "lexical.old")
    assert LexicalIndex.load(tmp_path).generation == 5
    # unreadable: None, and the corpus rebuilds it from the store
    (tmp_path / "lexical.old" / "manifest.json").write_text("{", encoding="utf-8")
    assert LexicalIndex.load(tmp_path) is None
    assert LexicalIndex.load(tmp_path / "nothing") is None


def test_lexical_index_tolerates_passages_without_tokens():
    index = LexicalIndex()
    index.rebuild([(1, "zh", []), (2, "zh", tokenize("上海创智学院"))], generation=1)
    assert [r for r, _ in index.search(tokenize("创智学院"), "zh", 5)] == [2]


# --- corpus: store and indexes in step ------------------------------------------------------------
def _corpus(tmp_path: Path, use_m) -> Corpus:
    return Corpus(tmp_path / "data", use_m.model_id, use_m.dimension, settings_for(tmp_path / "data"))


def _vector_ids(corpus: Corpus) -> set[int]:
    n = len(corpus.vectors)
    if n == 0:
        return set()
    return set(corpus.vectors.search(np.ones(corpus.vectors.dimension, np.float32), n)[1][0].tolist())


def _store_ids(corpus: Corpus) -> set[int]:
    return {int(r) for ids, _ in corpus.store.iter_vectors() for r in ids}


def test_corpus_write_and_delete_follow_in_both_indexes(tmp_path: Path, use_m):
    corpus = _corpus(tmp_path, use_m)
    doc, text, passages = document_with("zh", ZH_PARAGRAPHS, use_m)
    corpus.write_document(doc, text, passages)
    doc2, text2, passages2 = document_with("en", EN_PARAGRAPHS, use_m)
    corpus.write_document(doc2, text2, passages2)
    assert _vector_ids(corpus) == _store_ids(corpus) and len(corpus.lexical) == corpus.store.count_passages() == 7
    g60 = corpus.lexical.search(tokenize("G60"), "zh", 5)[0][0]
    assert corpus.passages([g60])[g60].text == ZH_PARAGRAPHS[1]

    # the index files on disk are stamped with the store generation after each write
    manifest = VectorIndex.open(corpus.data_dir, use_m.dimension, use_m.model_id)
    assert manifest.generation == corpus.store.generation == 2 and len(manifest) == 7
    assert LexicalIndex.load(corpus.data_dir).generation == 2

    assert corpus.delete_document("zh") is True
    assert corpus.delete_document("zh") is False
    assert _vector_ids(corpus) == _store_ids(corpus) and len(corpus.lexical) == 3
    assert corpus.lexical.search(tokenize("G60"), "zh", 5) == []
    assert g60 not in _vector_ids(corpus)

    corpus.close()
    reopened = _corpus(tmp_path, use_m)
    assert _vector_ids(reopened) == _store_ids(reopened) and len(reopened.lexical) == 3
    reopened.close()


def test_corpus_batch_persists_once_at_the_end(tmp_path: Path, use_m):
    corpus = _corpus(tmp_path, use_m)
    with corpus.batch():
        for n, para in enumerate(EN_PARAGRAPHS):
            doc, text, passages = document_with(f"d{n}", [para], use_m)
            corpus.write_document(doc, text, passages)
            assert len(corpus.vectors) == n + 1  # the vector index follows each write in memory
        assert not (corpus.data_dir / "vectors.faiss").exists()  # ... and is written when the batch ends
    assert VectorIndex.open(corpus.data_dir, use_m.dimension, use_m.model_id).generation == 3
    assert len(corpus.lexical) == 3
    corpus.close()


def test_corpus_catches_up_an_index_that_lags_the_store(tmp_path: Path, use_m):
    corpus = _corpus(tmp_path, use_m)
    doc, text, passages = document_with("zh", ZH_PARAGRAPHS, use_m)
    corpus.write_document(doc, text, passages)
    # a write the indexes never saw (the process died between the commit and the index write)
    doc2, text2, passages2 = document_with("en", EN_PARAGRAPHS, use_m)
    corpus.store.replace_document(doc2, text2, passages2)
    corpus.store.delete_document("zh")
    corpus.close()

    reopened = _corpus(tmp_path, use_m)
    assert _vector_ids(reopened) == _store_ids(reopened) and len(reopened.lexical) == 3
    assert reopened.vectors.generation == reopened.store.generation == reopened.lexical.generation == 3
    (top, _), = reopened.lexical.search(tokenize("glaciers"), "en", 3)
    assert reopened.passages([top])[top].text == EN_PARAGRAPHS[1]
    assert reopened.lexical.search(tokenize("G60"), "zh", 3) == []
    reopened.close()


def test_corpus_refuses_a_store_of_another_model(tmp_path: Path, use_m):
    corpus = _corpus(tmp_path, use_m)
    corpus.close()
    with pytest.raises(IndexMismatchError, match="qa reindex"):
        Corpus(tmp_path / "data", "embeddinggemma-300m@abc", 768, settings_for(tmp_path / "data"))


def test_search_during_an_open_write_batch_does_not_fail(tmp_path: Path, use_m):
    """Between a delete and the end of its write batch the lexical index still names the removed
    passages; a search in that window (another request's thread) must still answer."""
    services = build_services(settings_for(tmp_path / "data"), embedder=use_m)
    try:
        for doc_id, paras in (("zh", ZH_PARAGRAPHS), ("en", EN_PARAGRAPHS)):
            doc = services.ingest.parse("\n\n".join(["Title " + doc_id] + paras))
            services.ingest.ingest(doc, doc_id)
        with services.corpus.batch():
            services.corpus.delete_document("zh")
            result = services.search.search(SearchRequest(query="G60科创走廊", top_k=5))
            assert all(h.passage.document_id == "en" for h in result.hits)
            doc = services.ingest.parse("Replaced\n\nThe harbour master now logs ferries at dawn as well.")
            services.ingest.ingest(doc, "en")
            result = services.search.search(SearchRequest(query="harbour master ferry", top_k=5))
            assert [h.passage.text for h in result.hits] == ["The harbour master now logs ferries at dawn as well."]
    finally:
        services.close()


def test_language_balance_keeps_the_order_within_a_language_and_lets_languages_meet_on_meaning(tmp_path: Path, use_m):
    """BM25 only scores the question's language: its bonus must reorder those passages, not lift them
    all above a better answer in the other language (and must change nothing in a one-language pool)."""
    services = build_services(settings_for(tmp_path / "data"), embedder=use_m)
    try:
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
    finally:
        services.close()


def test_cross_language_strength_counts_only_words_the_other_language_uses(lexical):
    """An English question looked up in Chinese passages: "district" or "secretary" can never match
    there, so only the words that can (here "g60") set what a full match would score."""
    index, _ = lexical
    tokens = ["g60", "district", "secretary", "corridor"]
    assert index.strength(tokens, "zh", known_only=True) == pytest.approx(index.strength(["g60"], "zh"))
    assert index.strength(tokens, "zh") > 3 * index.strength(tokens, "zh", known_only=True)
    assert index.strength(["district"], "zh", known_only=True) == 0.0
