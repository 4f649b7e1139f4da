"""Chunker and sentence splitter: exact offsets, numbering, sentence-end splits. Fast, no models."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.ingest.chunker import chunk_document
from qa.ingest.parsers import parse_document
from qa.models import PassageDraft
from qa.text.sentences import split_sentences

SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_cf4ae71d46783a76.txt"
chars = len  # a token counter for tests: one token per character


def assert_exact(text: str, drafts: list[PassageDraft]) -> None:
    for d in drafts:
        assert text[d.start:d.end] == d.text, d
        assert d.text == d.text.strip() and d.text


# --- sentences ------------------------------------------------------------------------------


def sentences(text: str, start: int = 0) -> list[str]:
    return [text[a - start:b - start] for a, b in split_sentences(text, start)]


def test_sentences_chinese_with_closing_quotes() -> None:
    text = "他说:“好的。”然后走了!真的吗?是的;结束"
    assert sentences(text) == ["他说:“好的。”", "然后走了!", "真的吗?", "是的;", "结束"]
    text = "“上海承担着使命。”  全场鼓掌！！大家说：「太好了！」（完）"
    assert sentences(text) == ["“上海承担着使命。”", "全场鼓掌！！", "大家说：「太好了！」", "（完）"]


def test_sentences_english() -> None:
    text = 'Pi is about 3.14 here. It works (really.) "Does it?" she asked. Visit example.com today! Done'
    assert sentences(text) == [
        "Pi is about 3.14 here.", "It works (really.)", '"Does it?"', "she asked.", "Visit example.com today!", "Done",
    ]
    assert sentences("Use e.g. this one. And J. K. Rowling wrote it.") == [
        "Use e.g.", "this one.", "And J. K. Rowling wrote it.",
    ]
    assert sentences("See http://x.com/a?b=1&c=2 now.") == ["See http://x.com/a?b=1&c=2 now."]


def test_sentences_offsets_and_whitespace_only_between() -> None:
    text = "  第一句。  Second one. \n\n Third\nline  "
    spans = split_sentences(text, start=100)
    assert [text[a - 100:b - 100] for a, b in spans] == ["第一句。", "Second one.", "Third\nline"]
    cursor = 100
    for a, b in spans:
        assert not text[cursor - 100:a - 100].strip()
        cursor = b
    assert not text[cursor - 100:].strip()
    assert split_sentences("   ") == [] and split_sentences("") == []


def test_sentences_blank_line_ends_sentence() -> None:
    assert sentences("no period here\n\nnext part") == ["no period here", "next part"]
    assert sentences("one line\ncontinues.") == ["one line\ncontinues."]


# --- the seed report ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed_doc():
    return parse_document(SEED.read_bytes(), SEED.name)


def test_seed_chunks(seed_doc) -> None:
    drafts = chunk_document(seed_doc, chars, 400)
    assert_exact(seed_doc.text, drafts)
    assert [d.paragraph for d in drafts] == list(range(1, 30))
    assert all(d.part == 0 for d in drafts)
    assert all(d.lang == "zh" for d in drafts)
    assert all("信息来源" not in d.text for d in drafts)
    assert drafts[0].section == "抢抓机遇勇攀新高峰"
    assert next(d for d in drafts if d.text.startswith("人工智能技术加速迭代")).section == "在人工智能各方面走在前列"
    assert drafts[-1].text == "习近平总书记重要讲话精神" and drafts[-1].section == "加强政策支持和人才培养"
    sections = [d.section for d in drafts]
    assert [(s, sections.count(s)) for s in dict.fromkeys(sections)] == [
        ("抢抓机遇勇攀新高峰", 1), ("在人工智能各方面走在前列", 7), ("“关键变量”转化为“最大增量”", 12), ("加强政策支持和人才培养", 9),
    ]


def test_seed_chunks_with_small_budget(seed_doc) -> None:
    drafts = chunk_document(seed_doc, chars, 80)
    assert_exact(seed_doc.text, drafts)
    assert all(len(d.text) <= 80 for d in drafts)
    assert sorted({d.paragraph for d in drafts}) == list(range(1, 30))
    for n in range(1, 30):
        parts = [d for d in drafts if d.paragraph == n]
        if len(parts) == 1:
            assert parts[0].part == 0
        else:
            assert [d.part for d in parts] == list(range(1, len(parts) + 1))
            assert all(a.end <= b.start for a, b in zip(parts, parts[1:]))
            # nothing but whitespace is lost between parts
            assert "".join(seed_doc.text[a.end:b.start] for a, b in zip(parts, parts[1:])).strip() == ""


# --- over-long paragraphs -------------------------------------------------------------------


def _doc(text: str, filename: str = "x.txt"):
    return parse_document(text, filename)


def test_long_english_paragraph_splits_at_sentence_ends() -> None:
    sentence_list = [f"Sentence number {i} talks about the corridor." for i in range(12)]
    para = " ".join(sentence_list)
    doc = _doc("Title\n\nSection A\n" + para + "\n")
    drafts = chunk_document(doc, chars, 120)
    assert_exact(doc.text, drafts)
    assert len(drafts) > 1
    assert [d.part for d in drafts] == list(range(1, len(drafts) + 1))
    assert all(d.paragraph == 1 and d.section == "Section A" and d.lang == "en" for d in drafts)
    for d in drafts:
        assert len(d.text) <= 120
        assert d.text.endswith(".") and d.text.startswith("Sentence number")
    # greedy packing: two 46-char sentences fit 120, three do not
    assert drafts[0].text == " ".join(sentence_list[:2])
    assert drafts[0].start == doc.text.index(para) and drafts[-1].end == doc.text.index(para) + len(para)


def test_long_chinese_paragraph_splits_at_sentence_ends() -> None:
    para = "".join(f"第{i}句话讲述了长三角科创走廊的发展。" for i in range(20))
    doc = _doc("标题\n\n" + para + "\n")
    drafts = chunk_document(doc, chars, 50)
    assert_exact(doc.text, drafts)
    assert len(drafts) > 1 and all(len(d.text) <= 50 for d in drafts)
    assert all(d.text.endswith("。") for d in drafts)
    assert all(d.lang == "zh" and d.section is None for d in drafts)
    assert "".join(d.text for d in drafts) == para


def test_single_sentence_over_budget_is_cut() -> None:
    sentence = "这是一个没有句号但是有很多逗号的长句子," * 10
    doc = _doc("标题\n\n" + sentence + "\n")
    drafts = chunk_document(doc, chars, 30)
    assert_exact(doc.text, drafts)
    assert all(len(d.text) <= 30 for d in drafts)
    assert all(d.text.endswith(",") for d in drafts)  # cut after a comma
    assert "".join(d.text for d in drafts) == sentence.strip()

    words = " ".join(["word"] * 100)
    doc = _doc("Title\n\n" + words + "\n")
    drafts = chunk_document(doc, chars, 23)
    assert_exact(doc.text, drafts)
    assert all(len(d.text) <= 23 and d.text.split(" ") == ["word"] * len(d.text.split(" ")) for d in drafts)

    doc = _doc("Title\n\n" + "x" * 100 + "\n")
    drafts = chunk_document(doc, chars, 30)
    assert [len(d.text) for d in drafts] == [30, 30, 30, 10]


def test_token_counter_is_respected() -> None:
    words = lambda s: len(s.split())  # noqa: E731
    para = " ".join(f"Short sentence {i}." for i in range(10))
    doc = _doc("Title\n\n" + para + "\n")
    drafts = chunk_document(doc, words, 7)
    assert all(words(d.text) <= 7 for d in drafts)
    assert [d.text for d in drafts][:2] == ["Short sentence 0. Short sentence 1.", "Short sentence 2. Short sentence 3."]


def test_lang_per_passage_and_sections() -> None:
    text = "Bilingual\n\n概述\n这是中文段落,讲述科创走廊。\nThis paragraph is written in English only.\n\nNext\nG60科创走廊是什么?\n"
    doc = _doc(text)
    drafts = chunk_document(doc, chars, 400)
    assert [(d.paragraph, d.section, d.lang) for d in drafts] == [(1, "概述", "zh"), (2, "概述", "en"), (3, "Next", "zh")]
    assert_exact(doc.text, drafts)


def test_markdown_and_html_chunks_are_exact() -> None:
    md = parse_document("# T\n\n## S\n\nOne. Two. Three. Four.\n\n- item\n", "x.md")
    drafts = chunk_document(md, chars, 10)
    assert_exact(md.text, drafts)
    assert [(d.paragraph, d.part, d.text) for d in drafts] == [(1, 1, "One. Two."), (1, 2, "Three."), (1, 3, "Four."),
                                                                (2, 0, "item")]
    html = parse_document("<h1>T</h1><h2>S</h2><p>第一句。第二句。</p>", "x.html")
    drafts = chunk_document(html, chars, 4)
    assert_exact(html.text, drafts)
    assert [d.text for d in drafts] == ["第一句。", "第二句。"] and drafts[0].section == "S"


def test_bad_budget() -> None:
    with pytest.raises(ValueError):
        chunk_document(_doc("T\n\nText."), chars, 0)
