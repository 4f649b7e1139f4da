"""The text formats: plain text, Markdown and HTML into a :class:`~qa.models.ParsedDocument` with exact offsets.

:mod:`qa.ingest.formats` picks the format of a file (by content and extension) and calls
:func:`parse_text` for these three: ``.txt`` (plain text), ``.md``/``.markdown``, ``.html``/``.htm``;
no file name (a JSON upload) or a name without an extension means plain text.

Common to every format
----------------------
* Bytes must be UTF-8 (a UTF-8 BOM is stripped) or UTF-16/UTF-32 *with* a BOM; anything else raises
  :class:`DocumentDecodeError`. Text containing NUL characters is treated as binary and rejected too.
* ``\\r\\n`` and lone ``\\r`` become ``\\n`` *before* any offset is computed. ``ParsedDocument.text``
  is the text every offset refers to: the (normalised) file for .txt/.md, the visible text for .html.
  Every block satisfies ``doc.text[b.start:b.end] == b.text``; block text never has surrounding
  whitespace (NBSP and the ideographic space U+3000 count as whitespace; a code block loses the
  indentation of its first line in the block, not in ``text``).
* Block kinds: ``title``, ``meta``, ``heading``, ``paragraph``. Only paragraphs become passages; the
  nearest heading above a paragraph is its section.
* A *meta line* is a line of at most 160 characters that starts with a known label and a colon
  (``信息来源:``, ``来源:``, ``发布时间:``, ``发布日期:``, ``作者:``, ``Source:``, ``Published:``,
  ``Date:``, ``Author:`` ...). A label needs its colon, so prose that merely mentions 发布时间 stays a
  paragraph. Its fields fill ``source``, ``published`` (dates normalised to ISO, ``2025-04-30``,
  by :func:`normalize_date`) and ``metadata`` (``author``, ``editor``). A meta line is a ``meta``
  block, never a passage.
* ``title=`` overrides the title; the line that would have been the title is then ordinary content.
  If no title line is found, the title is taken from the first line of content (cut to 60
  characters) and that content stays a passage.
* A heading with no paragraph under it before the next heading of the same or a higher level (or
  the end of the document) is kept as a paragraph, so no text is silently dropped. Plain-text
  headings all have the same level, so two headings in a row make the first a paragraph.
* A document whose only content is its title gets that line back as a paragraph (no title block),
  so it still has one passage. A document with no title, heading or paragraph raises
  :class:`EmptyDocumentError`.

Plain text
----------
* Every non-empty line is one unit (single newlines and blank lines both separate), *unless* the
  text is hard-wrapped: when at least 3 lines that are followed by another non-empty line are long
  (20+ characters) and unpunctuated at their end, and they are 60%+ of such lines, blank-line
  separated groups of lines are the units instead (a wrapped paragraph is one block).
* The first content unit is the title if it is a single line of at most 120 characters.
* A heading is a single line of at most ``heading_max_chars`` characters that does not end with
  sentence punctuation (。！？；.!?:：,，;、…, closing quotes ignored).
* Subtitle: a heading-like line directly after the title that is either followed by a meta line
  or sits on the line right under the title is the subtitle. It is stored in
  ``metadata["subtitle"]`` *and* kept as a ``heading`` block, so the first paragraphs get it as
  their section.
* Lines with no letter or digit at all (``* * *``, ``——``) are decoration and are not blocks.

Markdown
--------
* YAML-ish front matter (``---`` ... ``---`` at the top) gives ``title``, ``source``, ``date`` /
  ``published``, ``author``; it is not a block.
* ATX (``## x``) and setext (``x`` / ``===``) headings are headings; the block covers the heading
  text without the ``#`` marks. The first block is the title when it is a level-1 heading or a single
  short (≤120) line without end punctuation; a first heading of a lower level stays a heading
  (section) and only lends its text to the title.
* Paragraphs are separated by blank lines (several lines may make one block). Each list item is a
  paragraph (text after the marker, continuation lines included); a block quote is one paragraph;
  each table row is a paragraph (separator rows skipped); a fenced code block is one paragraph
  covering its content without the fences. Inline markup stays: offsets are into the raw markdown.

HTML
----
* BeautifulSoup with ``html.parser``; script/style/nav/head/noscript/template/svg/iframe/canvas/
  object and elements with ``hidden`` are dropped. h1–h6 are headings; p, li, blockquote, pre, td,
  th, dt, dd, figcaption, caption are paragraphs; loose text inside containers is a paragraph too.
  ``<br>`` keeps a line break inside a block; other whitespace is collapsed (not inside ``pre``).
* Title: ``title=``, else ``<title>``, else the first ``<h1>``. The first block becomes the ``title``
  block if it is a heading with exactly that text (or, with no title found, an h1).
* ``<meta>`` tags give ``published`` (article:published_time, date, pubdate, ...), ``source``
  (og:site_name, source) and ``author``.
* The document text is the block texts joined with ``"\\n\\n"``.
"""

from __future__ import annotations

import codecs
import datetime as _dt
import re
from dataclasses import dataclass

from qa.ingest.errors import DocumentDecodeError, DocumentParseError, EmptyDocumentError, UnsupportedFormatError
from qa.models import Block, ParsedDocument
from qa.text.sentences import trim_span

__all__ = [
    "DocumentParseError",
    "UnsupportedFormatError",
    "DocumentDecodeError",
    "EmptyDocumentError",
    "decode_bytes",
    "normalize_newlines",
    "normalize_date",
    "parse_document",
    "parse_text",
]


TITLE_MAX_CHARS = 120
_DERIVED_TITLE_CHARS = 60
_META_LINE_MAX_CHARS = 160

_END_PUNCT = frozenset("。！？；.!?:：,，;、…")
_CLOSERS = "”’」』）)\"'》】］]〉"


# ---------------------------------------------------------------------------------------------
# Entry point


def parse_document(
    raw: bytes | str,
    filename: str | None = None,
    *,
    title: str | None = None,
    heading_max_chars: int = 30,
) -> ParsedDocument:
    """Parse a file of any supported format (see :mod:`qa.ingest.formats`, which picks the parser by
    content and extension); kept here for callers of the text-only days."""
    from qa.ingest.formats import ParseOptions, parse_file

    return parse_file(raw, filename, ParseOptions(title=title, heading_max_chars=heading_max_chars))


def parse_text(raw: bytes | str, fmt: str, *, title: str | None = None, heading_max_chars: int = 30) -> ParsedDocument:
    """Parse ``raw`` as ``fmt`` (``"text"``, ``"markdown"`` or ``"html"``) into a :class:`ParsedDocument`.

    Raises :class:`DocumentDecodeError` or :class:`EmptyDocumentError`.
    """
    text = decode_bytes(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else str(raw)
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise DocumentDecodeError("the document contains NUL characters: it looks like a binary file")
    text = normalize_newlines(text)
    if not text.strip():
        raise EmptyDocumentError("the document has no text")
    title = " ".join(title.split()) if title and title.strip() else None

    if fmt == "markdown":
        doc = _parse_markdown(text, title)
    elif fmt == "html":
        doc = _parse_html(text, title)
    else:
        doc = _parse_text(text, title, heading_max_chars)
    parsed = doc.finish()
    parsed.format = fmt
    return parsed


def decode_bytes(raw: bytes | bytearray | memoryview) -> str:
    """UTF-8 (BOM stripped), or UTF-32/UTF-16 when the bytes start with their BOM."""
    data = bytes(raw)
    try:
        if data.startswith(codecs.BOM_UTF8):
            return data[len(codecs.BOM_UTF8):].decode("utf-8")
        if data.startswith(codecs.BOM_UTF32_LE) or data.startswith(codecs.BOM_UTF32_BE):
            return data.decode("utf-32")
        if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
            return data.decode("utf-16")
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentDecodeError(
            f"the file is not valid UTF-8 (byte {exc.start}): save it as UTF-8 (or UTF-16 with a BOM)"
        ) from None


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------------------------------------
# Dates and meta lines

_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"), ("february", "feb"), ("march", "mar"), ("april", "apr"), ("may",),
            ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
            ("october", "oct"), ("november", "nov"), ("december", "dec"),
        ]
    )
    for name in names
}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_YMD = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})(?!\d)")
_YM_ZH = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月")
_MDY_EN = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I)
_DMY_EN = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MONTH_RE})\.?,?\s+(\d{{4}})\b", re.I)


def normalize_date(value: str) -> str | None:
    """An ISO date (``2025-04-30``) for 2025-04-30 / 2025/4/30 / 2025.4.30 / 2025年4月30日 /
    April 30, 2025 / 30 April 2025; ``2025-04`` for 2025年4月; else the stripped value (None if empty)."""
    value = " ".join(value.split())
    if not value:
        return None
    for pattern, order in ((_YMD, "ymd"), (_MDY_EN, "mdy"), (_DMY_EN, "dmy")):
        m = pattern.search(value)
        if not m:
            continue
        a, b, c = m.groups()
        if order == "ymd":
            y, mo, d = int(a), int(b), int(c)
        elif order == "mdy":
            y, mo, d = int(c), _MONTHS[a.lower()], int(b)
        else:
            y, mo, d = int(c), _MONTHS[b.lower()], int(a)
        try:
            return _dt.date(y, mo, d).isoformat()
        except ValueError:
            continue
    m = _YM_ZH.search(value)
    if m and 1 <= int(m.group(2)) <= 12:
        return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}"
    return value


_META_FIELDS = {
    "source": ("信息来源", "稿件来源", "文章来源", "新闻来源", "来源", "source"),
    "published": ("发布时间", "发布日期", "发表时间", "发表日期", "日期", "published", "publication date", "date"),
    "author": ("作者", "author"),
    "editor": ("责任编辑", "编辑", "editor"),
}
_LABEL_TO_FIELD = {label: name for name, labels in _META_FIELDS.items() for label in labels}
_LABELS_RE = "|".join(re.escape(label) for label in sorted(_LABEL_TO_FIELD, key=len, reverse=True))
_META_START = re.compile(rf"^\s*(?:{_LABELS_RE})\s*[:：]", re.I)
_META_LABEL = re.compile(rf"(?<![A-Za-z])({_LABELS_RE})\s*[:：]", re.I)
_VALUE_STRIP = " \t\u00a0\u3000|丨/,，;；"


def _is_meta_line(line: str) -> bool:
    return "\n" not in line and len(line) <= _META_LINE_MAX_CHARS and bool(_META_START.match(line))


def _meta_fields(line: str) -> dict[str, str]:
    matches = list(_META_LABEL.finditer(line))
    fields: dict[str, str] = {}
    for k, m in enumerate(matches):
        end = matches[k + 1].start() if k + 1 < len(matches) else len(line)
        value = " ".join(line[m.end():end].strip(_VALUE_STRIP).split())
        name = _LABEL_TO_FIELD[m.group(1).lower()]
        if value and name not in fields:
            fields[name] = value
    return fields


# ---------------------------------------------------------------------------------------------
# The shared second half: items with offsets → blocks


@dataclass
class _Item:
    kind: str  # "title" | "meta" | "heading" | "paragraph"
    start: int
    end: int
    level: int = 1


@dataclass
class _Draft:
    text: str
    items: list[_Item]
    title: str | None = None  # explicit title= or a declared one (<title>, front matter)
    source: str | None = None
    published: str | None = None
    metadata: dict[str, str] | None = None

    def add_meta(self, fields: dict[str, str]) -> None:
        meta = self.metadata if self.metadata is not None else {}
        self.metadata = meta
        if fields.get("source") and self.source is None:
            self.source = fields["source"]
        if fields.get("published") and self.published is None:
            self.published = normalize_date(fields["published"])
        for key in ("author", "editor"):
            if fields.get(key):
                meta.setdefault(key, fields[key])

    def mark_meta_lines(self) -> _Item | None:
        """Turn single-line paragraphs that are metadata ("来源：…", "By …") into meta items, taking
        their fields; returns the first item that is not metadata (the title candidate)."""
        for it in self.items:
            if it.kind == "paragraph" and _is_meta_line(self.text[it.start:it.end]):
                it.kind = "meta"
                self.add_meta(_meta_fields(self.text[it.start:it.end]))
        return next((it for it in self.items if it.kind != "meta"), None)

    def finish(self) -> ParsedDocument:
        items = sorted(self.items, key=lambda it: it.start)
        _demote_empty_headings(items)
        if not any(it.kind == "paragraph" for it in items):
            for it in items:
                if it.kind == "title":
                    it.kind = "paragraph"
        if not any(it.kind in ("paragraph", "heading") for it in items):
            raise EmptyDocumentError("the document has no text (only metadata)")
        blocks = [Block(it.kind, it.start, it.end, self.text[it.start:it.end]) for it in items]
        title = self.title
        if title is None:
            title_block = next((b for b in blocks if b.kind == "title"), None)
            if title_block is not None:
                title = " ".join(title_block.text.split())
            else:
                first = next(b for b in blocks if b.kind in ("heading", "paragraph"))
                title = _derive_title(first.text)
        return ParsedDocument(
            title=title, text=self.text, blocks=blocks, source=self.source, published=self.published,
            metadata=dict(self.metadata or {}),
        )


def _demote_empty_headings(items: list[_Item]) -> None:
    """A heading with no paragraph before the next heading of the same/higher level becomes a paragraph."""
    for k, it in enumerate(items):
        if it.kind != "heading":
            continue
        keep = False
        for nxt in items[k + 1:]:
            if nxt.kind == "paragraph":
                keep = True
                break
            if nxt.kind == "heading" and nxt.level <= it.level:
                break
        if not keep:
            it.kind = "paragraph"


def _derive_title(text: str) -> str:
    first_line = " ".join(text.strip().split("\n", 1)[0].split())
    if len(first_line) <= _DERIVED_TITLE_CHARS:
        return first_line
    return first_line[:_DERIVED_TITLE_CHARS].rstrip() + "…"


def _has_word(s: str) -> bool:
    return any(ch.isalnum() for ch in s)


def _ends_with_punct(s: str) -> bool:
    core = s.rstrip().rstrip(_CLOSERS).rstrip()
    return bool(core) and core[-1] in _END_PUNCT


def _is_heading_line(s: str, heading_max_chars: int) -> bool:
    return "\n" not in s and len(s) <= heading_max_chars and _has_word(s) and not _ends_with_punct(s)


def _line_spans(text: str) -> list[tuple[int, int]]:
    spans = []
    pos = 0
    for line in text.split("\n"):
        spans.append((pos, pos + len(line)))
        pos += len(line) + 1
    return spans


# ---------------------------------------------------------------------------------------------
# Plain text


def _parse_text(text: str, title: str | None, heading_max_chars: int) -> _Draft:
    draft = _Draft(text, [], title=title)

    # Non-empty lines, trimmed, with the index of their blank-line separated group.
    lines: list[tuple[int, int, int]] = []  # (start, end, group)
    group = 0
    previous_blank = True
    for a, b in _line_spans(text):
        a, b = trim_span(text, a, b)
        if a == b:
            if not previous_blank:
                group += 1
            previous_blank = True
            continue
        lines.append((a, b, group))
        previous_blank = False

    units: list[tuple[int, int, int, int]]  # (start, end, number of lines, first line index)
    if _is_hard_wrapped(text, lines):
        units = []
        for k, (a, b, g) in enumerate(lines):
            if units and lines[k - 1][2] == g:
                s, _, count, first = units[-1]
                units[-1] = (s, b, count + 1, first)
            else:
                units.append((a, b, 1, k))
    else:
        units = [(a, b, 1, k) for k, (a, b, _g) in enumerate(lines)]

    title_item: _Item | None = None
    title_line_index = -1
    seen_content = False
    for a, b, count, first in units:
        s = text[a:b]
        if count == 1 and _is_meta_line(s):
            draft.items.append(_Item("meta", a, b))
            draft.add_meta(_meta_fields(s))
            continue
        if not _has_word(s):
            continue  # decoration such as "* * *"
        if not seen_content and title is None and count == 1 and len(s) <= TITLE_MAX_CHARS:
            title_item = _Item("title", a, b)
            title_line_index = first
            draft.items.append(title_item)
            seen_content = True
            continue
        seen_content = True
        kind = "heading" if count == 1 and _is_heading_line(s, heading_max_chars) else "paragraph"
        draft.items.append(_Item(kind, a, b))
        # Subtitle: a heading right after the title, followed by a meta line or on the next line.
        if title_item is not None and kind == "heading" and len(draft.items) >= 2 and draft.items[-2] is title_item:
            next_unit = _next_unit(units, first)
            next_is_meta = next_unit is not None and next_unit[2] == 1 and _is_meta_line(text[next_unit[0]:next_unit[1]])
            same_group = first == title_line_index + 1 and lines[first][2] == lines[title_line_index][2]
            if next_is_meta or same_group:
                draft.metadata = {**(draft.metadata or {}), "subtitle": s}
    return draft


def _next_unit(units: list[tuple[int, int, int, int]], first: int) -> tuple[int, int, int, int] | None:
    for k, unit in enumerate(units):
        if unit[3] == first:
            return units[k + 1] if k + 1 < len(units) else None
    return None


def _is_hard_wrapped(text: str, lines: list[tuple[int, int, int]]) -> bool:
    inner = [text[a:b] for k, (a, b, g) in enumerate(lines[:-1]) if lines[k + 1][2] == g]
    wrapped = [s for s in inner if len(s) >= 20 and not _ends_with_punct(s)]
    return len(wrapped) >= 3 and len(wrapped) >= 0.6 * len(inner)


# ---------------------------------------------------------------------------------------------
# Markdown

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+|$)")
_ATX_CLOSE = re.compile(r"[ \t]+#+[ \t]*$|^#+[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_THEMATIC = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?")
_TABLE_SEP = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_HTML_COMMENT = re.compile(r"^[ \t]*<!--.*-->[ \t]*$")
_FRONT_KEY = re.compile(r"^([A-Za-z_][\w-]*)\s*:\s*(.*?)\s*$")


def _parse_markdown(text: str, title: str | None) -> _Draft:
    draft = _Draft(text, [], title=title)
    spans = _line_spans(text)
    n = len(spans)

    def line(k: int) -> str:
        return text[spans[k][0]:spans[k][1]]

    def add(kind: str, a: int, b: int, level: int = 1) -> None:
        """An item for ``text[a:b]`` without its surrounding whitespace (none if nothing is left)."""
        a, b = trim_span(text, a, b)
        if a < b:
            items.append(_Item(kind, a, b, level))

    def blank(k: int) -> bool:
        return not line(k).strip()

    def starts_block(k: int) -> bool:
        s = line(k)
        return bool(_ATX.match(s) or _FENCE.match(s) or _QUOTE.match(s) or _THEMATIC.match(s) or _LIST_ITEM.match(s))

    items = draft.items
    declared_title: str | None = None
    i = 0
    # Front matter
    if n and line(0).strip() == "---":
        for j in range(1, min(n, 200)):
            if line(j).strip() in ("---", "..."):
                fields: dict[str, str] = {}
                for k in range(1, j):
                    m = _FRONT_KEY.match(line(k))
                    if m:
                        fields[m.group(1).lower()] = m.group(2).strip("\"'")
                declared_title = fields.get("title") or None
                draft.add_meta({
                    "source": fields.get("source", ""),
                    "published": fields.get("published") or fields.get("date", ""),
                    "author": fields.get("author", ""),
                })
                i = j + 1
                break

    while i < n:
        s = line(i)
        a0, b0 = spans[i]
        if blank(i) or _HTML_COMMENT.match(s):
            i += 1
            continue
        m = _FENCE.match(s)
        if m:
            fence = m.group(1)
            j = i + 1
            while j < n and not re.match(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", line(j)):
                j += 1
            if i + 1 < n and i + 1 <= j - 1:
                add("paragraph", spans[i + 1][0], spans[min(j, n) - 1][1])
            i = j + 1
            continue
        m = _ATX.match(s)
        if m:
            level = len(m.group(1))
            content = s[m.end():]
            close = _ATX_CLOSE.search(content)
            if close:
                content = content[:close.start()]
            add("heading", a0 + m.end(), a0 + m.end() + len(content), level)
            i += 1
            continue
        if _THEMATIC.match(s):
            i += 1
            continue
        m = _QUOTE.match(s)
        if m:
            j = i
            while j + 1 < n and not blank(j + 1) and (_QUOTE.match(line(j + 1)) or not starts_block(j + 1)):
                j += 1
            add("paragraph", a0 + m.end(), spans[j][1])
            i = j + 1
            continue
        m = _LIST_ITEM.match(s)
        if m:
            j = i
            while j + 1 < n and not blank(j + 1) and not starts_block(j + 1):
                j += 1
            add("paragraph", a0 + m.end(), spans[j][1])
            i = j + 1
            continue
        if s.lstrip().startswith("|"):
            if not _TABLE_SEP.match(s):
                a, b = trim_span(text, a0, b0)
                if text[a] == "|":
                    a += 1
                if b > a and text[b - 1] == "|":
                    b -= 1
                add("paragraph", a, b)
            i += 1
            continue
        # Setext heading: one line underlined by === or ---
        if i + 1 < n and _SETEXT.match(line(i + 1)) and not blank(i):
            a, b = trim_span(text, a0, b0)
            items.append(_Item("heading", a, b, 1 if line(i + 1).strip().startswith("=") else 2))
            i += 2
            continue
        # Paragraph: up to a blank line or the start of another block
        j = i
        while j + 1 < n and not blank(j + 1) and not starts_block(j + 1) and not line(j + 1).lstrip().startswith("|"):
            if j + 2 < n and _SETEXT.match(line(j + 2)) and not _THEMATIC.match(line(j + 1)):
                break  # the next line is a setext heading
            if _SETEXT.match(line(j + 1)) and line(j + 1).strip().startswith("="):
                break
            j += 1
        add("paragraph", a0, spans[j][1])
        i = j + 1
        if i < n and _SETEXT.match(line(i)) and line(i).strip().startswith("="):
            i += 1  # a multi-line paragraph underlined with ===: treat the underline as decoration

    first = draft.mark_meta_lines()
    if title is None:
        draft.title = declared_title
        if first is not None:
            first_text = text[first.start:first.end]
            if declared_title is not None:
                if first.kind == "heading" and " ".join(first_text.split()) == declared_title:
                    first.kind = "title"
            elif first.kind == "heading":
                if first.level == 1:
                    first.kind = "title"
                else:
                    draft.title = " ".join(first_text.split())
            elif (first.kind == "paragraph" and "\n" not in first_text and len(first_text) <= TITLE_MAX_CHARS
                  and not _ends_with_punct(first_text) and _has_word(first_text)):
                first.kind = "title"
    return draft


# ---------------------------------------------------------------------------------------------
# HTML

_HTML_DROP = frozenset({"script", "style", "nav", "head", "noscript", "template", "svg", "iframe", "canvas", "object"})
_HTML_HEADINGS = {f"h{k}": k for k in range(1, 7)}
_HTML_PARAGRAPHS = frozenset({"p", "li", "blockquote", "pre", "td", "th", "dt", "dd", "figcaption", "caption", "summary"})
_HTML_CONTAINERS = frozenset({
    "html", "body", "div", "section", "article", "main", "header", "footer", "aside", "ul", "ol", "dl", "table",
    "thead", "tbody", "tfoot", "tr", "figure", "form", "fieldset", "details", "hr", "center", "menu", "address",
    "hgroup", "legend", "option", "select",
})
_BR = "\x00"  # a <br> while collecting (NUL never survives decoding)
_PUBLISHED_META = ("article:published_time", "og:published_time", "published_time", "pubdate", "publishdate",
                   "publish-date", "date", "dc.date", "dc.date.issued", "dcterms.date", "dcterms.created")
_SOURCE_META = ("og:site_name", "source", "dc.source", "dc.publisher", "publisher")


def _parse_html(html: str, title: str | None) -> _Draft:
    from bs4 import BeautifulSoup
    from bs4.element import CData, NavigableString, PreformattedString, Tag

    soup = BeautifulSoup(html, "html.parser")

    declared = None
    if soup.title is not None:
        declared = " ".join(soup.title.get_text().split()) or None
    meta_fields: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        key = (tag.get("property") or tag.get("name") or tag.get("itemprop") or "").strip().lower()
        content = (tag.get("content") or "").strip()
        if not key or not content:
            continue
        if key in _PUBLISHED_META:
            meta_fields.setdefault("published", content)
        elif key in _SOURCE_META:
            meta_fields.setdefault("source", content)
        elif key == "author":
            meta_fields.setdefault("author", content)

    collected: list[tuple[str, int, str]] = []  # (kind, level, text)
    buf: list[str] = []
    ctx = ("paragraph", 0, False)  # (kind, heading level, inside <pre>)

    def flush() -> None:
        raw = "".join(buf)
        buf.clear()
        kind, level, pre = ctx
        if pre:
            body = raw.replace(_BR, "\n").strip()
        elif kind == "heading":
            body = " ".join(raw.replace(_BR, " ").split())
        else:
            lines = (" ".join(part.split()) for part in raw.split(_BR))
            body = "\n".join(part for part in lines if part)
        if body:
            collected.append((kind, level, body))

    root = soup.body if soup.body is not None else soup
    stack = [iter(root.children)]
    restore: list[tuple[str, int, bool] | None] = [None]
    while stack:
        try:
            node = next(stack[-1])
        except StopIteration:
            stack.pop()
            saved = restore.pop()
            if saved is not None:
                flush()
                ctx = saved
            continue
        if isinstance(node, NavigableString):
            if isinstance(node, PreformattedString) and not isinstance(node, CData):
                continue  # comments, doctype, declarations, processing instructions
            buf.append(str(node).replace(_BR, ""))
            continue
        if not isinstance(node, Tag):
            continue
        name = (node.name or "").lower()
        if name in _HTML_DROP or node.has_attr("hidden") or node.get("aria-hidden") == "true":
            continue
        if name == "br":
            buf.append(_BR)
            continue
        if name in _HTML_HEADINGS or name in _HTML_PARAGRAPHS or name in _HTML_CONTAINERS:
            flush()
            saved = ctx
            if name in _HTML_HEADINGS:
                ctx = ("heading", _HTML_HEADINGS[name], False)
            elif name == "pre":
                ctx = ("paragraph", 0, True)
            elif name in _HTML_PARAGRAPHS:
                ctx = ("paragraph", 0, ctx[2])
            stack.append(iter(node.children))
            restore.append(saved)
        else:
            stack.append(iter(node.children))
            restore.append(None)
    flush()

    parts: list[str] = []
    items: list[_Item] = []
    pos = 0
    for kind, level, body in collected:
        if parts:
            pos += 2
        items.append(_Item(kind, pos, pos + len(body), max(level, 1)))
        parts.append(body)
        pos += len(body)
    text = "\n\n".join(parts)
    draft = _Draft(text, items, title=title)
    draft.add_meta(meta_fields)

    first = draft.mark_meta_lines()
    if title is None:
        draft.title = declared
        if first is not None and first.kind == "heading":
            first_text = text[first.start:first.end]
            if declared is not None and first_text == declared:
                first.kind = "title"
            elif declared is None and first.level == 1:
                first.kind = "title"
        if draft.title is None:
            h1 = next((it for it in items if it.kind in ("heading", "title") and it.level == 1), None)
            if h1 is not None:
                draft.title = text[h1.start:h1.end]
    return draft


def __getattr__(name: str):
    """``SUPPORTED_EXTENSIONS`` moved to :mod:`qa.ingest.formats` (every format, not only text)."""
    if name == "SUPPORTED_EXTENSIONS":
        from qa.ingest.formats import SUPPORTED_EXTENSIONS

        return SUPPORTED_EXTENSIONS
    raise AttributeError(name)


# The shared second half, for the paged parsers (qa.ingest.formats.pages): items with offsets → a document.
Draft = _Draft
DraftItem = _Item
is_heading_line = _is_heading_line
