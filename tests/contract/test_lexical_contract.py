"""The lexical-index contract: every LexicalIndex backend must pass this suite.

A backend joins by adding a factory to LEXICAL_BACKENDS: name → callable(tmp_path) returning an
``open`` function; each call of ``open()`` opens the backend on the same storage (a fresh, empty one
the first time), so a test can close an index and reopen it. The suite checks behaviour through the
protocol only, never a backend's internals.

Statistics: after adds (and replays of adds) ``term_stats`` is exact. After removals, ``documents``
is exact and each ``df`` may still count removed passages until the engine compacts them (as Lucene
does), so it lies between the true figure and the figure before the removal.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from qa.index.base import LexicalIndex
from qa.index.tantivy_lexical import TantivyLexicalIndex
from qa.store.base import IndexEntry, SearchFilter

Opener = Callable[[], LexicalIndex]


def _tantivy(tmp_path: Path) -> Opener:
    return lambda: TantivyLexicalIndex(tmp_path / "lexical")


def _milvus(tmp_path: Path) -> Opener:
    """Milvus (the milvus-lite engine the tests serve on 127.0.0.1) with its BM25 statistics in PostgreSQL
    (the server the tests start), both under a name of this test's own."""
    from engines import shared_milvus, shared_postgres, storage_name
    from qa.index.milvus import MilvusConnection, MilvusLexicalIndex
    from qa.index.pg_term_stats import PostgresTermStats
    from qa.store.pg_database import PostgresDatabase

    uri, dsn, name = shared_milvus().uri, shared_postgres().dsn(), storage_name(tmp_path)
    return lambda: MilvusLexicalIndex(MilvusConnection(uri, prefix=name),
                                      PostgresTermStats(PostgresDatabase(dsn, pool_size=3), name, owns_database=True))


LEXICAL_BACKENDS: dict[str, Callable[[Path], Opener]] = {"tantivy": _tantivy, "milvus": _milvus}


@pytest.fixture(params=sorted(LEXICAL_BACKENDS))
def open_index(request, tmp_path) -> Opener:
    opened: list[LexicalIndex] = []

    def open_() -> LexicalIndex:
        index = LEXICAL_BACKENDS[request.param](tmp_path)()
        opened.append(index)
        return index

    yield open_
    for index in opened:
        index.close()


@pytest.fixture
def index(open_index) -> LexicalIndex:
    return open_index()


def entry(rowid: int, text: str, *, collection: str = "default", lang: str = "en", document_id: str | None = None,
          source: str | None = None, published: str | None = None) -> IndexEntry:
    return IndexEntry(rowid=rowid, collection=collection, document_id=document_id or f"doc{rowid}", lang=lang,
                      source=source, published=published, tokens=tuple(text.split()),
                      vector=np.zeros(4, dtype=np.float32))


# A small corpus whose passages differ in length and term frequency, with filter attributes.
CORPUS = [
    entry(1, "solar panel roof install cost", document_id="a", source="wire", published="2025-04-30"),
    entry(2, "solar solar farm grid", document_id="a", source="wire", published="2025-04-30"),
    entry(3, "wind farm offshore grid cable cost", document_id="b", source="blog", published="2024-12-31"),
    entry(4, "solar eclipse viewing tips", document_id="c", source=None, published="2025"),
    entry(5, "grid battery storage solar peak", document_id="d", source="wire", published=None),
    entry(6, "roof repair cost estimate after storm damage", document_id="e", source="blog",
          published="2026-01-15T08:00:00Z"),
    entry(7, "太阳能 电池板 屋顶", lang="zh", document_id="f", source="wire", published="2025-04-30"),
]
TOKENS = sorted({t for e in CORPUS for t in e.tokens})


def scores(index: LexicalIndex, tokens: list[str], lang: str = "en", flt: SearchFilter | None = None,
           k: int = 100) -> dict[int, float]:
    hits = index.search(tokens, lang, k, flt or SearchFilter())
    assert all(h.lang == lang for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), "best first"
    assert all(h.score > 0 for h in hits)
    assert len({h.rowid for h in hits}) == len(hits)
    return {h.rowid: h.score for h in hits}


def test_add_search_and_count(index):
    assert index.count() == 0 and index.search(["solar"], "en", 10, SearchFilter()) == []
    index.add(CORPUS)
    assert index.count() == len(CORPUS) and index.count("default") == len(CORPUS) and index.count("other") == 0
    found = scores(index, ["solar"])
    assert set(found) == {1, 2, 4, 5}
    assert max(found, key=found.get) == 2, "two occurrences in a short passage score highest"
    best_two = index.search(["solar", "cost"], "en", 2, SearchFilter())
    assert [h.rowid for h in best_two] == list(scores(index, ["solar", "cost"]))[:2]
    assert scores(index, ["nothing-matches"]) == {} and scores(index, []) == {}
    assert index.search(["solar"], "en", 0, SearchFilter()) == []


def test_tokens_are_indexed_exactly_as_given(index):
    index.add([entry(1, "Solar py:taiyang 1+n+1 g60 3.5"), entry(2, "solar")])
    assert set(scores(index, ["Solar"])) == {1} and set(scores(index, ["solar"])) == {2}
    for token in ("py:taiyang", "1+n+1", "g60", "3.5"):
        assert set(scores(index, [token])) == {1}, token
    assert scores(index, ["1"]) == {} and scores(index, ["n"]) == {} and scores(index, ["taiyang"]) == {}
    index.add([IndexEntry(3, "default", "doc3", "en", None, None, ("two words", "x"), np.zeros(4))])
    assert set(scores(index, ["two words"])) == {3} and scores(index, ["two"]) == {}


def test_bm25_formula(index):
    """Scores follow Lucene's BM25 (k1 = 1.2, b = 0.75) on bm25s's scale, up to the backend's length
    rounding (passages of at most 40 tokens here, where tantivy stores lengths exactly)."""
    index.add(CORPUS)
    en = [e for e in CORPUS if e.lang == "en"]
    avgdl = np.mean([len(e.tokens) for e in en])
    for token in ("solar", "cost", "grid", "storm"):
        df = sum(token in e.tokens for e in en)
        idf = np.log1p((len(en) - df + 0.5) / (df + 0.5))
        for e in en:
            tf = e.tokens.count(token)
            want = idf * tf / (tf + 1.2 * (1 - 0.75 + 0.75 * len(e.tokens) / avgdl)) if tf else 0.0
            assert scores(index, [token]).get(e.rowid, 0.0) == pytest.approx(want, rel=1e-5), (token, e.rowid)


def test_repeated_query_token_counts_again(index):
    index.add(CORPUS)
    once, twice = scores(index, ["solar"]), scores(index, ["solar", "solar"])
    grid = scores(index, ["grid"])
    both = scores(index, ["solar", "grid", "solar"])
    assert set(twice) == set(once)
    for rowid in once:
        assert twice[rowid] == pytest.approx(2 * once[rowid], rel=1e-5)
    for rowid in set(once) | set(grid):
        assert both[rowid] == pytest.approx(2 * once.get(rowid, 0) + grid.get(rowid, 0), rel=1e-5)


def test_remove_and_replace(index):
    index.add(CORPUS)
    index.remove("default", [2, 4, 999])
    assert index.count() == len(CORPUS) - 2
    assert set(scores(index, ["solar"])) == {1, 5}
    index.remove("default", [2, 4])  # absent: nothing happens
    index.remove("other", [1])  # another collection: nothing happens
    assert index.count() == len(CORPUS) - 2 and 1 in scores(index, ["solar"])
    index.add([entry(1, "hydro dam turbine", document_id="a2", source="wire")])  # same rowid: replaced
    assert index.count() == len(CORPUS) - 2
    assert 1 not in scores(index, ["solar"]) and set(scores(index, ["hydro"])) == {1}
    assert set(scores(index, ["hydro"], flt=SearchFilter(document_ids=("a2",)))) == {1}
    assert scores(index, ["hydro"], flt=SearchFilter(document_ids=("a",))) == {}
    stats = index.term_stats("default", "en", ["solar", "hydro"])
    assert stats.documents == len(CORPUS) - 3  # the Chinese passage is counted apart
    assert 1 <= stats.df[0] <= 4 and stats.df[1] == 1


def test_last_entry_of_a_rowid_in_one_batch_wins(index):
    index.add([entry(1, "first version"), entry(1, "second version")])
    assert index.count() == 1 and scores(index, ["first"]) == {} and set(scores(index, ["second"])) == {1}


def test_drop_collection(index):
    index.add(CORPUS + [entry(10, "solar wind", collection="hr"), entry(11, "太阳能", collection="hr", lang="zh")])
    index.drop_collection("hr")
    assert index.count("hr") == 0 and index.count() == len(CORPUS)
    assert index.search(["solar"], "en", 10, SearchFilter(collection="hr")) == []
    assert index.term_stats("hr", "zh", ["太阳能"]).documents == 0
    assert set(scores(index, ["solar"])) == {1, 2, 4, 5}
    index.drop_collection("hr")  # again: nothing happens
    index.drop_collection("never-existed")
    index.add([entry(12, "solar again", collection="hr")])  # the name can be used again
    assert set(scores(index, ["solar"], flt=SearchFilter(collection="hr"))) == {12}


def _check_filter(index: LexicalIndex, tokens: list[str], flt: SearchFilter, lang: str = "en") -> dict[int, float]:
    """The filtered search returns exactly the unfiltered matches ``flt.accepts``, with the same scores."""
    unfiltered = scores(index, tokens, lang, SearchFilter(collection=flt.collection))
    by_rowid = {e.rowid: e for e in CORPUS}
    want = {rowid: s for rowid, s in unfiltered.items() if flt.accepts(by_rowid[rowid])}
    got = scores(index, tokens, lang, flt)
    assert set(got) == set(want), flt
    for rowid in got:
        assert got[rowid] == pytest.approx(want[rowid], rel=1e-6), "a filter must not change scores"
    return got


FILTERS = {
    "document_ids": SearchFilter(document_ids=("a", "d")),
    "document_ids_unknown": SearchFilter(document_ids=("zzz",)),
    "sources": SearchFilter(sources=("blog",)),
    "sources_two": SearchFilter(sources=("blog", "wire")),
    "published_year": SearchFilter(published_from="2025", published_to="2025"),
    "published_from": SearchFilter(published_from="2025-01-01"),
    "published_to": SearchFilter(published_to="2025-04"),
    "published_day": SearchFilter(published_from="2025-04-30", published_to="2025-04-30"),
    "published_empty_range": SearchFilter(published_from="2030", published_to="2031"),
    "lang": SearchFilter(lang="en"),
    "combined": SearchFilter(document_ids=("a", "b", "c", "e"), sources=("wire", "blog"), published_from="2025"),
    "combined_lang": SearchFilter(lang="en", sources=("wire",), published_to="2025-12-31"),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters(index, name):
    index.add(CORPUS)
    got = _check_filter(index, ["solar", "cost", "grid", "roof"], FILTERS[name])
    expected_nonempty = name not in ("document_ids_unknown", "published_empty_range")
    assert bool(got) == expected_nonempty


def test_filters_that_match_nothing(index):
    index.add(CORPUS)
    for flt in (SearchFilter(document_ids=()), SearchFilter(sources=()), SearchFilter(lang="zh"),
                SearchFilter(collection="other")):
        assert index.search(["solar"], "en", 10, flt) == [], flt


def test_published_filter_examples(index):
    index.add(CORPUS)
    tokens = ["solar", "cost", "grid", "roof"]
    assert set(scores(index, tokens, flt=SearchFilter(published_from="2025", published_to="2025"))) == {1, 2}
    assert set(scores(index, tokens, flt=SearchFilter(published_to="2025-01-01"))) == {3, 4}  # "2025" < "2025-01-01"
    assert set(scores(index, tokens, flt=SearchFilter(published_from="2026-01-15"))) == {6}


def test_term_stats(index):
    index.add(CORPUS)
    stats = index.term_stats("default", "en", ["solar", "cost", "unseen", "solar", "太阳能"])
    assert stats.documents == 6
    assert stats.df == (4, 3, 0, 4, 0)
    assert stats.known(["solar", "cost", "unseen", "solar", "太阳能"]) == ["solar", "cost", "solar"]
    zh = index.term_stats("default", "zh", ["太阳能", "solar"])
    assert zh.documents == 1 and zh.df == (1, 0)
    empty = index.term_stats("nowhere", "en", ["solar"])
    assert empty.documents == 0 and empty.df == (0,)
    assert index.term_stats("default", "en", []).df == ()


def test_statistics_are_per_collection(index):
    index.add(CORPUS)
    before = scores(index, ["solar", "grid"])
    before_stats = index.term_stats("default", "en", ["solar", "grid"])
    index.add([entry(100 + i, "solar solar solar grid common words", collection="other") for i in range(20)])
    assert scores(index, ["solar", "grid"]) == pytest.approx(before, rel=1e-6)
    assert index.term_stats("default", "en", ["solar", "grid"]) == before_stats
    other = index.term_stats("other", "en", ["solar", "grid"])
    assert other.documents == 20 and other.df == (20, 20)
    assert set(scores(index, ["solar"], flt=SearchFilter(collection="other"))) == set(range(100, 120))


def test_languages_are_separate(index):
    index.add(CORPUS)
    before = scores(index, ["solar"])
    index.add([entry(200 + i, "solar 太阳能", lang="zh") for i in range(10)])
    assert scores(index, ["solar"]) == pytest.approx(before, rel=1e-6), "Chinese passages change no English score"
    assert set(scores(index, ["solar"], lang="zh")) == set(range(200, 210))
    assert set(scores(index, ["太阳能"], lang="zh")) == {7} | set(range(200, 210))
    assert scores(index, ["太阳能"], lang="en") == {}
    assert index.term_stats("default", "zh", ["solar"]).documents == 11


def test_replaying_changes_is_idempotent(index):
    index.add(CORPUS)
    index.remove("default", [3])
    state = (index.count(), scores(index, TOKENS), index.term_stats("default", "en", TOKENS))
    for _ in range(2):  # the store replays every change after the last checkpoint
        index.add(CORPUS)
        index.remove("default", [3])
    assert (index.count(), scores(index, TOKENS), index.term_stats("default", "en", TOKENS)) == state
    index.drop_collection("default")
    index.drop_collection("default")
    assert index.count() == 0


def test_reopen_at_the_last_checkpoint(open_index):
    index = open_index()
    assert index.applied_seq == 0 and index.durable_seq == 0
    index.add(CORPUS)
    index.mark_applied(7)
    assert index.applied_seq == 7 and index.durable_seq == 0
    index.checkpoint()
    assert index.durable_seq == 7
    before = (scores(index, TOKENS), index.term_stats("default", "en", TOKENS), index.count())
    index.add([entry(50, "solar late arrival")])
    index.mark_applied(8)  # applied, never checkpointed
    index.close()

    reopened = open_index()
    assert reopened.durable_seq == 7 and reopened.applied_seq == 7
    reopened.remove("default", [50])  # the store replays change 8 (the add, then its later removal)
    reopened.mark_applied(9)
    assert (scores(reopened, TOKENS), reopened.term_stats("default", "en", TOKENS), reopened.count()) == before
    reopened.checkpoint()
    reopened.close()
    assert open_index().durable_seq == 9


def test_reset_forgets_everything(open_index):
    index = open_index()
    index.add(CORPUS + [entry(10, "solar", collection="hr")])
    index.mark_applied(12)
    index.checkpoint()
    index.reset()
    assert index.count() == 0 and index.applied_seq == 0 and index.durable_seq == 0
    assert index.search(["solar"], "en", 10, SearchFilter()) == []
    index.add([entry(1, "solar after reset")])
    index.close()
    reopened = open_index()
    assert reopened.durable_seq == 0 and reopened.count() == 1


def test_searches_during_writes(index):
    """Many threads search while one writes: every answer is consistent (only ids ever added, best first)."""
    index.add(CORPUS)
    errors: list[BaseException] = []
    done = threading.Event()

    def searcher() -> None:
        try:
            while not done.is_set():
                found = scores(index, ["solar", "grid"], k=1000)
                assert {1, 2, 3, 4, 5} <= set(found) <= {1, 2, 3, 4, 5} | set(range(1000, 1100)), found
                index.term_stats("default", "en", ["solar"])
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(0, 100, 10):
            index.add([entry(1000 + j, "solar grid extra words here") for j in range(i, i + 10)])
            index.remove("default", [1000 + i])
            index.checkpoint()
    finally:
        done.set()
        for t in threads:
            t.join()
    assert not errors, errors[0]
    assert index.count() == len(CORPUS) + 90


def test_published_values_that_are_not_iso_dates(index):
    """Dates are compared as strings (their first 10 characters), whatever they hold."""
    odd = [entry(1, "solar", published="2025/04/30"), entry(2, "solar", published="spring 2025"),
           entry(3, "solar", published="2025-04-30"), entry(4, "solar", published="2025-4-1"),
           entry(5, "solar", published="")]
    index.add(odd)
    for low, high in [("2025", "2026"), ("2025", "2025"), ("2025-04", None), (None, "2025-04-30"), ("2024", None)]:
        flt = SearchFilter(published_from=low, published_to=high)
        want = {e.rowid for e in odd if flt.accepts(e)}
        assert set(scores(index, ["solar"], flt=flt)) == want, (low, high)
    assert set(scores(index, ["solar"], flt=SearchFilter(published_from="2025", published_to="2026"))) == {1, 3, 4}
