"""Word documents (.docx) through python-docx (MIT).

* Body paragraphs and tables in document order. A paragraph styled ``Title`` is the title; one
  styled ``Heading N`` / ``标题 N`` (or a style based on one, or with an outline level) is a heading
  of level N; the rest are paragraphs (empty ones skipped). Line breaks inside a paragraph stay.
* A table becomes one paragraph per row, its cells joined with `` | `` (a merged cell once).
* A document without any heading style gets its headings as plain text does: a one-line paragraph
  of at most ``heading_max_chars`` characters without end punctuation (``二、编制过程``).
* Footnotes and endnotes are kept apart: after the body, under a ``Notes`` heading, one paragraph
  each. Page headers and footers are left out (they repeat on every page).
* Word files have no fixed pages, so passages have no page number. The title is the ``Title``
  paragraph, else the document properties' title, else the first line.
"""

from __future__ import annotations

import re

from qa.ingest.formats.base import FormatParser, ParseOptions
from qa.ingest.formats.office import Blocks, clean, core_metadata, core_title, load_office
from qa.models import ParsedDocument

__all__ = ["DocxParser"]

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_HEADING = re.compile(r"^(?:heading|标题)\s*(\d)$", re.I)
_TITLE = re.compile(r"^(?:title|标题)$", re.I)


def _style_level(style) -> int | str | None:
    """1-9 for a heading style (following ``based on``), ``"title"``, or None."""
    for _ in range(5):
        if style is None:
            return None
        name = (style.name or "").strip()
        if _TITLE.match(name):
            return "title"
        m = _HEADING.match(name)
        if m:
            return int(m.group(1))
        ppr = style.element.find(f"{_W}pPr")
        if ppr is not None:
            lvl = ppr.find(f"{_W}outlineLvl")
            if lvl is not None and lvl.get(f"{_W}val", "9").isdigit() and int(lvl.get(f"{_W}val")) < 9:
                return int(lvl.get(f"{_W}val")) + 1
        style = style.base_style
    return None


def _paragraph_level(paragraph) -> int | str | None:
    ppr = paragraph._p.pPr
    if ppr is not None:
        lvl = ppr.find(f"{_W}outlineLvl")
        if lvl is not None and lvl.get(f"{_W}val", "9").isdigit() and int(lvl.get(f"{_W}val")) < 9:
            return int(lvl.get(f"{_W}val")) + 1
    try:
        return _style_level(paragraph.style)
    except (KeyError, ValueError):
        return None


def table_rows(table) -> list[str]:
    """Row texts of a python-docx/python-pptx table: cells joined with `` | ``, a merged cell once."""
    rows = []
    for row in table.rows:
        cells: list[str] = []
        seen: set[int] = set()
        for cell in row.cells:
            key = id(getattr(cell, "_tc", cell))
            if key in seen:
                continue
            seen.add(key)
            text = " ".join(clean(cell.text).split("\n"))
            cells.append(text)
        if any(cells):
            rows.append(" | ".join(cells))
    return rows


def _notes(document) -> list[str]:
    """Footnote and endnote texts, in order."""
    out = []
    for part in document.part.package.iter_parts():
        if str(part.partname) not in ("/word/footnotes.xml", "/word/endnotes.xml"):
            continue
        from lxml import etree

        root = etree.fromstring(part.blob)
        for note in root:
            if note.tag not in (f"{_W}footnote", f"{_W}endnote") or note.get(f"{_W}type") in (
                    "separator", "continuationSeparator", "continuationNotice"):
                continue
            paragraphs = ["".join(t.text or "" for t in p.iter(f"{_W}t")) for p in note.iter(f"{_W}p")]
            text = clean("\n".join(paragraphs))
            if text:
                out.append(text)
    return out


class DocxParser(FormatParser):
    name = "docx"
    label = "a Word document"
    extensions = (".docx",)

    def parse(self, raw: bytes, filename: str | None, options: ParseOptions) -> ParsedDocument:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        label = repr(filename) if filename else "the Word document"
        document = load_office(raw, label, options, docx.Document)
        blocks = Blocks()
        body = document.element.body
        titled = False
        for child in body.iterchildren():
            if child.tag == f"{_W}p":
                paragraph = Paragraph(child, document)
                level = _paragraph_level(paragraph)
                if level == "title" and not titled and paragraph.text.strip():
                    blocks.add("title", paragraph.text)
                    titled = True
                elif level == "title":
                    blocks.add("heading", paragraph.text, 1)
                elif level is not None:
                    blocks.add("heading", paragraph.text, min(int(level), 6))
                else:
                    blocks.add("paragraph", paragraph.text)
            elif child.tag == f"{_W}tbl":
                for row in table_rows(Table(child, document)):
                    blocks.add("paragraph", row)
        if not any(item.kind in ("heading", "title") for item in blocks.items):
            blocks.promote_short_lines(options.heading_max_chars)
        notes = _notes(document)
        if notes:
            blocks.add("heading", "Notes", 1)
            for note in notes:
                blocks.add("paragraph", note)
        props = document.core_properties
        return blocks.finish("docx", options.title, core_title(props), None, core_metadata(props))
