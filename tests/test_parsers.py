"""Parsers: the seed report, Markdown, HTML, encodings and errors. Fast, no models."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.ingest.errors import FormatMismatchError
from qa.ingest.parsers import (
    DocumentDecodeError,
    EmptyDocumentError,
    UnsupportedFormatError,
    normalize_date,
    parse_document,
)
from qa.models import ParsedDocument

SEED = Path(__file__).resolve().parent.parent / "seeds" / "000_cf4ae71d46783a76.txt"


def assert_exact(doc: ParsedDocument) -> None:
    for b in doc.blocks:
        assert doc.text[b.start:b.end] == b.text, b
        assert b.text == b.text.strip(), b
        assert b.text
    starts = [b.start for b in doc.blocks]
    assert starts == sorted(starts)


def kinds(doc: ParsedDocument, kind: str) -> list[str]:
    return [b.text for b in doc.blocks if b.kind == kind]


def sections_of(doc: ParsedDocument) -> list[tuple[str | None, str]]:
    section, out = None, []
    for b in doc.blocks:
        if b.kind == "heading":
            section = b.text
        elif b.kind == "paragraph":
            out.append((section, b.text))
    return out


# --- the seed report -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seed() -> ParsedDocument:
    return parse_document(SEED.read_bytes(), SEED.name)


def test_seed_title_and_meta(seed: ParsedDocument) -> None:
    first_line = SEED.read_text(encoding="utf-8").split("\n")[0].strip()
    assert seed.title == first_line
    assert seed.blocks[0].kind == "title" and seed.blocks[0].text == first_line
    assert seed.source == "文汇报"
    assert seed.published == "2025-04-30"
    assert seed.metadata["subtitle"] == "抢抓机遇勇攀新高峰"
    (meta,) = kinds(seed, "meta")
    assert meta.startswith("信息来源") and "发布时间" in meta


def test_seed_no_passage_holds_metadata(seed: ParsedDocument) -> None:
    assert all("信息来源" not in p and "发布时间" not in p for p in kinds(seed, "paragraph"))


def test_seed_sections(seed: ParsedDocument) -> None:
    pairs = sections_of(seed)
    assert pairs[0][0] == "抢抓机遇勇攀新高峰"
    assert pairs[0][1].startswith("“上海承担着")
    by_start = {text[:10]: section for section, text in pairs}
    assert by_start["人工智能技术加速迭代"] == "在人工智能各方面走在前列"
    assert by_start["从科技创新策源到高端"] == "“关键变量”转化为“最大增量”"
    assert by_start["发展人工智能前景广阔"] == "加强政策支持和人才培养"
    assert kinds(seed, "heading") == [
        "抢抓机遇勇攀新高峰", "在人工智能各方面走在前列", "“关键变量”转化为“最大增量”", "加强政策支持和人才培养",
    ]


def test_seed_trailing_heading_kept_as_paragraph(seed: ParsedDocument) -> None:
    last = seed.blocks[-1]
    assert last.kind == "paragraph" and last.text == "习近平总书记重要讲话精神"


def test_seed_blocks_slice_exactly_and_count(seed: ParsedDocument) -> None:
    assert_exact(seed)
    lines = [line.strip() for line in SEED.read_text(encoding="utf-8").split("\n") if line.strip()]
    headings = set(kinds(seed, "heading"))
    # every non-empty line except the title, the meta line and the headings is one paragraph
    expected = [line for line in lines[1:] if line not in headings and not line.startswith("信息来源")]
    assert kinds(seed, "paragraph") == expected
    assert len(expected) == 29
    assert seed.text == SEED.read_text(encoding="utf-8")


def test_seed_nbsp_trimmed_from_meta(seed: ParsedDocument) -> None:
    meta = next(b for b in seed.blocks if b.kind == "meta")
    assert not meta.text[-1].isspace() and "\u00a0" in meta.text


def test_title_override_makes_first_line_content() -> None:
    doc = parse_document(SEED.read_bytes(), SEED.name, title="牢记嘱托力争走前列")
    assert doc.title == "牢记嘱托力争走前列"
    assert not kinds(doc, "title")
    paragraphs = kinds(doc, "paragraph")
    assert paragraphs[0].startswith("习近平总书记考察上海")  # the first line is now ordinary content
    assert len(paragraphs) == 30
    assert_exact(doc)


def test_json_upload_str_without_filename() -> None:
    doc = parse_document("A title\n\nFirst paragraph here. It has two sentences.\n", None, title="Given")
    assert doc.title == "Given"
    assert kinds(doc, "paragraph") == ["First paragraph here. It has two sentences."]
    assert kinds(doc, "heading") == ["A title"]  # with title= the first line is ordinary content: a heading here
    assert_exact(doc)


def test_english_plain_text_meta_and_headings() -> None:
    text = (
        "Annual Report\n"
        "Source: Example Daily | Published: April 30, 2025\n\n"
        "Introduction\n"
        "This is the first paragraph. It explains things.\n"
        "The report was published: see the appendix for details, which run long enough.\n\n"
        "Results\n"
        "Numbers went up.\n"
    )
    doc = parse_document(text, "report.txt")
    assert doc.title == "Annual Report"
    assert doc.source == "Example Daily"
    assert doc.published == "2025-04-30"
    assert [s for s, _ in sections_of(doc)] == ["Introduction", "Introduction", "Results"]
    assert_exact(doc)


def test_meta_label_needs_colon() -> None:
    doc = parse_document("标题\n\n本报告的发布时间为明年春天,信息来源可靠。\n")
    assert kinds(doc, "paragraph") == ["本报告的发布时间为明年春天,信息来源可靠。"]
    assert doc.published is None


def test_consecutive_short_lines_are_paragraphs() -> None:
    doc = parse_document("清单\n\n苹果\n香蕉\n橘子\n")
    assert kinds(doc, "paragraph") == ["苹果", "香蕉", "橘子"]
    assert kinds(doc, "heading") == []


def test_long_first_line_is_not_swallowed_as_title() -> None:
    para = "这是一个很长的段落。" * 20
    doc = parse_document(para + "\n", "x.txt")
    assert kinds(doc, "paragraph") == [para]
    assert doc.title.endswith("…") and len(doc.title) <= 61


def test_title_only_document_keeps_one_paragraph() -> None:
    doc = parse_document("Just one line", "one.txt")
    assert doc.title == "Just one line"
    assert kinds(doc, "paragraph") == ["Just one line"]


def test_hard_wrapped_text_joins_lines() -> None:
    text = (
        "Wrapped Notes\n\n"
        "This paragraph was wrapped at a fixed width by an editor so\n"
        "that every line ends in the middle of a sentence and the\n"
        "reader has to join them.\n\n"
        "A second paragraph also wraps across lines in the very same\n"
        "way as the first one did above.\n"
    )
    doc = parse_document(text, "notes.txt")
    paragraphs = kinds(doc, "paragraph")
    assert len(paragraphs) == 2
    assert paragraphs[0].startswith("This paragraph") and paragraphs[0].endswith("join them.")
    assert "\n" in paragraphs[0]
    assert_exact(doc)


# --- newlines, encodings, errors -------------------------------------------------------------


def test_crlf_normalised_before_offsets() -> None:
    raw = "标题\r\n\r\n小节\r\n第一段内容。\r\n第二段内容。\r\n".encode()
    doc = parse_document(raw, "a.txt")
    assert "\r" not in doc.text
    assert doc.text == "标题\n\n小节\n第一段内容。\n第二段内容。\n"
    assert kinds(doc, "paragraph") == ["第一段内容。", "第二段内容。"]
    assert sections_of(doc)[0][0] == "小节"
    assert_exact(doc)


def test_utf8_bom_stripped() -> None:
    doc = parse_document(b"\xef\xbb\xbf" + "标题\n\n正文。\n".encode(), "a.txt")
    assert doc.title == "标题" and not doc.text.startswith("\ufeff")
    assert doc.blocks[0].start == 0
    assert_exact(doc)


def test_utf16_with_bom() -> None:
    doc = parse_document("Title\n\nBody text here.\n".encode("utf-16"), "a.txt")
    assert doc.title == "Title" and kinds(doc, "paragraph") == ["Body text here."]


def test_invalid_utf8_raises() -> None:
    with pytest.raises(DocumentDecodeError):
        parse_document("标题\n正文".encode("gbk"), "a.txt")
    with pytest.raises(DocumentDecodeError):
        parse_document(b"\x00\x01binary\x00", "a.txt")


@pytest.mark.parametrize("raw", [b"", b"   \n\n\t  \n", "\u3000\u00a0\n", b"\xef\xbb\xbf"])
def test_empty_raises(raw) -> None:
    with pytest.raises(EmptyDocumentError):
        parse_document(raw, "a.txt")


def test_empty_html_and_meta_only_raise() -> None:
    with pytest.raises(EmptyDocumentError):
        parse_document("<html><head><title>x</title></head><body><script>1</script></body></html>", "a.html")
    with pytest.raises(EmptyDocumentError):
        parse_document("信息来源:文汇报 发布时间:2025-04-30", None)


@pytest.mark.parametrize("name", ["a.json", "archive.tar.gz", "old.doc"])
def test_unsupported_extension(name: str) -> None:
    with pytest.raises(UnsupportedFormatError):
        parse_document(b"hello", name)


@pytest.mark.parametrize("name", ["a.pdf", "a.docx", "a.pptx", "a.png"])
def test_text_named_as_a_binary_format_is_refused(name: str) -> None:
    with pytest.raises(FormatMismatchError):
        parse_document(b"hello", name)


def test_extension_is_case_insensitive() -> None:
    assert parse_document(b"# T\n\nBody.", "README.MD").title == "T"


@pytest.mark.parametrize(
    "value, iso",
    [
        ("2025-04-30", "2025-04-30"), ("2025/4/30", "2025-04-30"), ("2025年4月30日", "2025-04-30"),
        ("2025.4.3 10:00", "2025-04-03"), ("April 30, 2025", "2025-04-30"), ("30 Apr 2025", "2025-04-30"),
        ("2025年4月", "2025-04"), ("yesterday", "yesterday"),
    ],
)
def test_normalize_date(value: str, iso: str) -> None:
    assert normalize_date(value) == iso


# --- Markdown -------------------------------------------------------------------------------


MARKDOWN = """# 上海科创报告

Source: 文汇报 | Published: 2025/4/30

## 人工智能

第一段第一行,
第一段第二行。

- 列表项一
- 列表项二
  续行

```python
print("hi")
```

> 引用的话。

| a | b |
|---|---|
| 1 | 2 |

Setext Heading
--------------

Last paragraph. ###
"""


def test_markdown_blocks_and_offsets() -> None:
    doc = parse_document(MARKDOWN.encode(), "report.md")
    assert_exact(doc)
    assert doc.title == "上海科创报告"
    assert doc.blocks[0] == doc.blocks[0].__class__("title", 2, 8, "上海科创报告")
    assert doc.source == "文汇报" and doc.published == "2025-04-30"
    assert kinds(doc, "heading") == ["人工智能", "Setext Heading"]
    paragraphs = kinds(doc, "paragraph")
    assert paragraphs[0] == "第一段第一行,\n第一段第二行。"
    assert paragraphs[1] == "列表项一"
    assert paragraphs[2] == "列表项二\n  续行"
    assert paragraphs[3] == 'print("hi")'
    assert paragraphs[4] == "引用的话。"
    assert paragraphs[5:7] == ["a | b", "1 | 2"]
    assert paragraphs[7] == "Last paragraph. ###"
    heading = next(b for b in doc.blocks if b.text == "人工智能")
    assert MARKDOWN[heading.start - 3:heading.start] == "## "
    assert [s for s, _ in sections_of(doc)][-1] == "Setext Heading"


def test_markdown_front_matter_and_title_override() -> None:
    md = "---\ntitle: Front Title\ndate: 2024-01-02\n---\n# Front Title\n\nBody.\n"
    doc = parse_document(md, "x.markdown")
    assert doc.title == "Front Title" and doc.published == "2024-01-02"
    assert kinds(doc, "title") == ["Front Title"]
    doc2 = parse_document("# Heading One\n\nBody.\n", "x.md", title="Override")
    assert doc2.title == "Override"
    assert sections_of(doc2) == [("Heading One", "Body.")]


def test_markdown_without_heading_uses_first_line() -> None:
    doc = parse_document("A plain first paragraph that ends with a period.\n\nSecond.\n", "x.md")
    assert kinds(doc, "paragraph")[0].startswith("A plain first")
    assert doc.title == "A plain first paragraph that ends with a period."


def test_markdown_crlf() -> None:
    doc = parse_document(b"# T\r\n\r\nLine one\r\nline two.\r\n", "x.md")
    assert kinds(doc, "paragraph") == ["Line one\nline two."]
    assert_exact(doc)


# --- HTML -----------------------------------------------------------------------------------


HTML = """<!DOCTYPE html>
<html><head><title>科创新闻</title><style>p{color:red}</style>
<meta property="article:published_time" content="2025-04-30T08:00:00+08:00"></head>
<body>
<nav><a href="/">首页</a> 导航</nav>
<h1>科创新闻</h1>
<p>信息来源:文汇报&nbsp;&nbsp; 发布时间:2025-04-30</p>
<h2>第一节</h2>
<p>第一段,   有   多余空白。<b>加粗</b>文字。</p>
<ul><li>列表一</li><li>列表二</li></ul>
<script>var x = "不要我";</script>
<table><tr><td>单元格</td><td>数据</td></tr></table>
<pre>code  line 1
  line 2</pre>
<div>散落的文字<br>第二行</div>
<!-- comment -->
</body></html>
"""


def test_html_blocks_and_offsets() -> None:
    doc = parse_document(HTML.encode(), "news.html")
    assert_exact(doc)
    assert doc.title == "科创新闻"
    assert doc.blocks[0].kind == "title"
    assert doc.source == "文汇报" and doc.published == "2025-04-30"
    assert kinds(doc, "heading") == ["第一节"]
    assert kinds(doc, "paragraph") == [
        "第一段, 有 多余空白。加粗文字。", "列表一", "列表二", "单元格", "数据", "code  line 1\n  line 2", "散落的文字\n第二行",
    ]
    assert "不要我" not in doc.text and "导航" not in doc.text and "color" not in doc.text
    assert doc.text == "\n\n".join(b.text for b in doc.blocks)
    assert all(s == "第一节" for s, _ in sections_of(doc))


def test_html_title_from_h1_when_no_title_tag() -> None:
    doc = parse_document("<h1>Only H1</h1><p>Text.</p><h2>Sub</h2><p>More.</p>", "x.htm")
    assert doc.title == "Only H1"
    assert sections_of(doc) == [(None, "Text."), ("Sub", "More.")]


def test_html_nested_blocks_not_duplicated() -> None:
    doc = parse_document("<h1>T</h1><blockquote><p>One.</p><p>Two.</p></blockquote><li>Item <ul><li>Sub</li></ul></li>",
                         "x.html")
    assert kinds(doc, "paragraph") == ["One.", "Two.", "Item", "Sub"]
