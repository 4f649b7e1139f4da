"""Positioned lines of pages (a PDF's text layer, or OCR) → document text, blocks, pages and layout.

What the PDF and image parsers share once they have lines with boxes:

* **Running headers, footers and page numbers** are dropped: a line in the top or bottom eighth of
  its page whose text (digits ignored) recurs in that band on at least half of the pages (and on 2
  or more), or any line there that is only a page number (``12``, ``- 12 -``, ``Page 3 of 9``,
  ``第 3 页``, ``iv``).
* **Reading order**: a region splits at a vertical gutter (the widest strip, at least one body
  font size wide, that at most 15 % of its lines narrower than 60 % of the page cross, with two or
  more lines wholly on each side, side by side) into sections cut by the lines that cross the gutter (a
  full-width title, a wide figure caption); in each section the left column is read before the
  right one, and columns split again (three columns). Lines of a column go top to bottom, pieces
  of one row (PDFium breaks lines at superscripts) merged left to right.
* **Tables** are kept as row text, before columns are looked for: two or more rows whose pieces
  (apart by more than a font size) start at the same column positions become one paragraph per
  row, its cells joined by `` | `` (a cell that wraps joins up first); rows of long pieces are
  columns of running text, not a table.
* **Paragraphs**: consecutive lines of one region form a paragraph unless the gap between them is
  more than 0.9 of the font size, the font size changes (by more than 15 %; 43 % for OCR'd lines,
  whose boxes hug the glyphs) or the weight does, the next line is indented
  relative to a full previous line, or the previous line ends a sentence well short of the
  region's right edge. A paragraph's last line that does not end a sentence continues onto the
  next page's first paragraph when that one has the same font size.
* **Joining lines**: no space where a CJK character meets a line break, one space between Latin
  words, and a word hyphenated at a line end (``infor-`` / ``mation``) mended (the hyphen leaves
  the text).
* **Headings**: a block whose font is at least 1.15 times the body size (the most common size,
  weighted by characters), or a short bold block without end punctuation in a non-bold body, is a
  heading; larger sizes are higher levels. The largest heading among the first blocks of the
  first page is the title.

The document text is the blocks joined by blank lines; ``page_starts`` and the layout runs are in
the same offsets, so every passage and evidence offset still slices the text exactly.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from qa.ingest.layout import DocumentLayout, Run
from qa.ingest.parsers import Draft, DraftItem
from qa.models import ParsedDocument

__all__ = ["Line", "PageLines", "assemble", "is_cjk"]


@dataclass
class Line:
    """One line of a page: its text, its box (points, y down from the top), font size and weight.

    ``spans`` maps pieces of ``text`` to PDFium characters: ``(offset in text, first character
    index, length)``, in order (characters between spans have none, like a space put in); ``rect``
    (page fractions, display orientation) stands for the whole line when there are no characters
    (OCR); ``conf`` is the OCR confidence of the line.
    """

    text: str
    x0: float
    y0: float
    x1: float
    y1: float
    size: float
    bold: bool = False
    spans: list[tuple[int, int, int]] | None = None
    rect: tuple[float, float, float, float] | None = None
    conf: float | None = None
    page: int = 0  # 1-based, set by assemble()
    hyphen: bool = False  # ended in a hyphen that PDFium already took out: joins the next line with no space
    row: bool = False  # a table row (cells joined by " | "): a paragraph of its own
    cont: bool = False  # the PDF has it on one line with the piece before it, a wide gap between them


@dataclass
class PageLines:
    width: float  # display size in points
    height: float
    lines: list[Line] = field(default_factory=list)


@dataclass
class _Block:
    page: int
    lines: list[Line]
    kind: str = "paragraph"
    level: int = 1

    @property
    def size(self) -> float:
        return max(line.size for line in self.lines)


_END = frozenset("。！？；.!?:：;…")
_CLOSERS = "”’」』）)\"'》】］]〉"
_PAGE_NUMBER = re.compile(
    r"^[-–—\s]*(?:(?:page|p\.|pp\.)\s*)?(?:\d{1,4}|[ivxlcdm]{1,6})(?:\s*(?:/|of|／)\s*\d{1,4})?[-–—\s]*$"
    r"|^第\s*\d{1,4}\s*页(?:\s*[,，/／]?\s*共\s*\d{1,4}\s*页)?$"
    r"|^共\s*\d{1,4}\s*页\s*第\s*\d{1,4}\s*页$",
    re.I,
)
_LETTER = re.compile(r"[A-Za-z\u00c0-\u024f]")


_CJK_CHAR = re.compile("[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff]")


def is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x2e80 <= o <= 0x9fff or 0xac00 <= o <= 0xd7af or 0xf900 <= o <= 0xfaff or 0xfe30 <= o <= 0xfe4f
            or 0xff00 <= o <= 0xffef or 0x20000 <= o <= 0x3ffff)


def _ends_sentence(text: str) -> bool:
    core = text.rstrip().rstrip(_CLOSERS).rstrip()
    return bool(core) and core[-1] in _END


# ---------------------------------------------------------------------------------------------
# Running headers and footers


def _band_key(text: str) -> str:
    return re.sub(r"\d+", "#", "".join(text.split()).lower())


def _drop_running_lines(pages: list[PageLines]) -> None:
    def in_band(line: Line, page: PageLines) -> bool:
        return line.y1 <= page.height / 8 or line.y0 >= page.height * 7 / 8

    counts: Counter[str] = Counter()
    for page in pages:
        counts.update({_band_key(line.text) for line in page.lines if in_band(line, page)})
    with_text = sum(1 for page in pages if page.lines)
    threshold = max(2, (with_text + 1) // 2)
    for page in pages:
        page.lines = [
            line for line in page.lines
            if not (in_band(line, page)
                    and (_PAGE_NUMBER.match(line.text.strip()) or counts[_band_key(line.text)] >= threshold))
        ]


# ---------------------------------------------------------------------------------------------
# Reading order


def _columns(lines: list[Line], width: float, gutter: float) -> list[list[Line]]:
    """Regions of ``lines`` in reading order (see the module docstring)."""
    out: list[list[Line]] = []
    stack: list[list[Line]] = [lines]
    while stack:
        region = stack.pop()
        if region and region[0].row:  # a table's rows, in order already
            out.append(region)
            continue
        table = _table(region)
        if table is not None:  # the text above it, its rows, the text below it
            rows, taken = table
            used = {id(line) for line in taken}
            top = min(line.y0 for line in taken)
            above = [line for line in region if id(line) not in used and line.y0 < top]
            below = [line for line in region if id(line) not in used and line.y0 >= top]
            stack.extend(part for part in (below, rows, above) if part)
            continue
        split = _gutter([line for line in region if line.x1 - line.x0 <= 0.6 * width], gutter)
        if split is None:
            out.append(_rows(region))
            continue
        # sections between lines that cross the gutter; in each, the left column before the right one
        sections: list[list[Line]] = []
        current: list[Line] = []
        for line in sorted(region, key=lambda ln: (ln.y0, ln.x0)):
            if line.x0 < split < line.x1:
                if current:
                    sections.append(current)
                sections.append([line])
                current = []
            else:
                current.append(line)
        if current:
            sections.append(current)
        parts: list[list[Line]] = []
        for section in sections:
            left = [line for line in section if line.x1 <= split]
            right = [line for line in section if line.x1 > split]
            parts.extend(part for part in (left, right) if part)
        if len(parts) == 1:
            out.append(_rows(parts[0]))
            continue
        stack.extend(reversed(parts))
    return out


def _gutter(lines: list[Line], gutter: float) -> float | None:
    """The middle of the widest vertical strip at least ``gutter`` wide that at most a few lines (15 %)
    cross, with two or more lines wholly on each side, side by side (sharing some height); None if none."""
    if len(lines) < 4:
        return None
    lo = int(min(line.x0 for line in lines))
    hi = int(max(line.x1 for line in lines)) + 1
    if hi - lo < 3 * gutter:
        return None
    cover = np.zeros(hi - lo + 1, dtype=np.int32)
    for line in lines:
        cover[int(line.x0) - lo] += 1
        cover[int(line.x1) + 1 - lo] -= 1
    cover = np.cumsum(cover)[:-1]
    low = cover <= int(0.15 * len(lines))
    strips: list[tuple[int, float]] = []
    k = 0
    while k < len(low):
        if not low[k]:
            k += 1
            continue
        j = k
        while j < len(low) and low[j]:
            j += 1
        if j - k >= gutter and k > 0 and j < len(low):
            strips.append((j - k, lo + (k + j) / 2))
        k = j
    for _, at in sorted(strips, reverse=True):
        left = [line for line in lines if line.x1 <= at]
        right = [line for line in lines if line.x0 >= at]
        if len(left) < 2 or len(right) < 2:
            continue
        shared = min(max(ln.y1 for ln in left), max(ln.y1 for ln in right)) - max(min(ln.y0 for ln in left),
                                                                                    min(ln.y0 for ln in right))
        if shared > 0:
            return at
    return None


def _rows(lines: list[Line]) -> list[Line]:
    """``lines`` top to bottom; pieces of one row (overlapping heights, close together) merged left to right,
    and pieces the PDF has as one line (split at a wide gap, see ``Line.cont``) joined again."""
    out: list[Line] = []
    for row, _ in _cell_rows(lines):
        for piece in row:
            if piece.cont and out and out[-1].y0 < piece.y1 and piece.y0 < out[-1].y1:
                out[-1] = _merge(out[-1], piece, piece.x0 - out[-1].x1)
            else:
                out.append(piece)
    return out


def _cell_rows(lines: list[Line]) -> list[tuple[list[Line], list[Line]]]:
    """``lines`` as rows top to bottom, each its pieces left to right (pieces closer than a font size
    merged, the others, table cells or columns, apart) and the lines it is made of."""
    rows: list[list[Line]] = []
    for line in sorted(lines, key=lambda ln: (ln.y0 + ln.y1) / 2):
        row = rows[-1] if rows else None
        if row is not None:
            top, bottom = min(ln.y0 for ln in row), max(ln.y1 for ln in row)
            overlap = min(bottom, line.y1) - max(top, line.y0)
            heights = sorted((bottom - top, line.y1 - line.y0))
            if overlap >= 0.5 * heights[0] and heights[1] <= 2.5 * max(heights[0], 0.1):
                row.append(line)
                continue
        rows.append([line])
    cells: list[tuple[list[Line], list[Line]]] = []
    for row in rows:
        row.sort(key=lambda ln: ln.x0)
        merged = row[0]
        cells.append(([], row))
        for line in row[1:]:
            gap = line.x0 - merged.x1
            if gap <= 0.8 * max(merged.size, line.size):
                merged = _merge(merged, line, gap)
            else:
                cells[-1][0].append(merged)
                merged = line
        cells[-1][0].append(merged)
    return cells


def _table(lines: list[Line]) -> tuple[list[Line], list[Line]] | None:
    """The first table among ``lines``: one line per table row (its cells joined by `` | ``), and the
    lines it is made of; None when there is none.

    A table is two or more rows of two or more pieces that start at the same places (column starts,
    within a font size), one below the other (less than 2.5 font sizes apart), with the lines of a cell
    that wraps in between (pieces within their column, closer than a normal line gap to the row above),
    which join their cell. Columns of running text are not a table: there most lines are long.
    """
    made = _cell_rows(lines)
    rows = [cells for cells, _ in made]
    i = 0
    while i < len(rows):
        found = _table_at(rows, i)
        if found is None:
            i += 1
            continue
        table, j = found
        if _text_columns(table):
            i = j  # not part of it either
            continue
        out = []
        for cells in table:
            line = None
            for cell in cells:
                if cell is not None:
                    line = cell if line is None else _join(line, cell, " | ")
            out.append(replace(line, row=True))
        return out, [line for _, originals in made[i:j] for line in originals]
    return None


def _text_columns(table: list[list[Line | None]]) -> bool:
    """Whether the "table" is columns of running text: in every column, half the cells or more are 20
    characters long or longer (a CJK character counts two)."""
    for k in range(len(table[0])):
        lengths = sorted(len(c.text) + len(_CJK_CHAR.findall(c.text)) for c in (cells[k] for cells in table) if c)
        if not lengths or lengths[len(lengths) // 2] < 20:
            return False
    return True


def _table_at(rows: list[list[Line]], i: int) -> tuple[list[list[Line | None]], int] | None:
    """The table starting at row ``i`` (its rows as cells per column) and the index after it, or None."""
    first = rows[i]
    if len(first) < 2:
        return None
    size = float(np.median([c.size for c in first]))
    starts = [c.x0 for c in first]

    def column(piece: Line) -> int | None:
        k = min(range(len(starts)), key=lambda c: abs(starts[c] - piece.x0))
        inside = k + 1 == len(starts) or piece.x1 <= starts[k + 1] - 0.2 * size
        return k if abs(starts[k] - piece.x0) <= size and inside else None

    table: list[list[Line | None]] = []
    bottom = None
    j = i
    while j < len(rows):
        row = rows[j]
        top = min(c.y0 for c in row)
        places = [column(c) for c in row]
        if None in places or len(set(places)) < len(places):
            break
        if len(row) >= 2 and (bottom is None or top - bottom <= 2.5 * size):
            cells: list[Line | None] = [None] * len(starts)
            for k, c in zip(places, row):
                cells[k] = c
            table.append(cells)
        elif table and top - bottom <= 0.6 * size:  # a cell's next line
            for k, c in zip(places, row):
                above = table[-1][k]
                table[-1][k] = c if above is None else _join(above, c, _line_break(above, c.text)[1])
        else:
            break
        bottom = max(c.y1 for c in row)
        j += 1
    return (table, j) if len(table) >= 2 else None


def _join(a: Line, b: Line, sep: str) -> Line:
    """``a`` and ``b`` as one line, ``sep`` (put in, no character of its own) between them."""
    spans = None
    if a.spans is not None and b.spans is not None:
        shift = len(a.text) + len(sep)
        spans = a.spans + [(at + shift, char, n) for at, char, n in b.spans]
    return Line(
        text=a.text + sep + b.text, x0=min(a.x0, b.x0), y0=min(a.y0, b.y0), x1=max(a.x1, b.x1), y1=max(a.y1, b.y1),
        size=max(a.size, b.size) if len(b.text) > 2 and len(a.text) > 2 else (a.size if len(a.text) >= len(b.text) else b.size),
        bold=a.bold if len(a.text) >= len(b.text) else b.bold, spans=spans,
        rect=a.rect if b.rect is None else (b.rect if a.rect is None else (
            min(a.rect[0], b.rect[0]), min(a.rect[1], b.rect[1]), max(a.rect[2], b.rect[2]), max(a.rect[3], b.rect[3]))),
        conf=a.conf if b.conf is None else (b.conf if a.conf is None else min(a.conf, b.conf)), page=a.page,
        hyphen=b.hyphen,
    )


def _merge(a: Line, b: Line, gap: float) -> Line:
    """Two pieces of one row, ``gap`` apart: a space between them unless it is narrow or both sides are CJK."""
    space = gap > 0.2 * max(a.size, b.size) and not (is_cjk(a.text[-1]) and is_cjk(b.text[0]))
    return _join(a, b, " " if space else "")


# ---------------------------------------------------------------------------------------------
# Paragraphs


def _same_paragraph(prev: Line, line: Line, right: float) -> bool:
    size = max(prev.size, line.size)
    low, high = (0.87, 1.15) if line.spans is not None else (0.7, 1.43)  # OCR boxes hug the glyphs: looser
    if not low <= line.size / max(prev.size, 0.1) <= high or prev.bold != line.bold:
        return False
    gap = line.y0 - prev.y1
    if gap > 0.9 * size or gap < -0.5 * size:
        return False
    if line.x0 - prev.x0 > 1.2 * size and prev.x1 >= right - 2 * size:
        return False  # an indented first line after a full line
    if _ends_sentence(prev.text) and prev.x1 < right - 2 * size:
        return False  # a short last line
    return True


def _paragraphs(page_no: int, regions: list[list[Line]]) -> list[_Block]:
    blocks: list[_Block] = []
    for region in regions:
        right = max(line.x1 for line in region)
        current: _Block | None = None
        for line in region:
            if current is not None and not line.row and not current.lines[-1].row \
                    and _same_paragraph(current.lines[-1], line, right):
                current.lines.append(line)
            else:
                current = _Block(page_no, [line])
                blocks.append(current)
    return blocks


def _body_size(blocks: list[_Block]) -> tuple[float, bool]:
    sizes: Counter[float] = Counter()
    bold = 0
    total = 0
    for block in blocks:
        for line in block.lines:
            n = len(line.text)
            sizes[round(line.size * 2) / 2] += n
            total += n
            bold += n if line.bold else 0
    body = sizes.most_common(1)[0][0] if sizes else 10.0
    return body, bold > total / 2


def _mark_headings(blocks: list[_Block]) -> None:
    body, body_bold = _body_size(blocks)
    heading_sizes: set[float] = set()
    for block in blocks:
        text = " ".join(line.text for line in block.lines)
        short = len(text) <= 200 and len(block.lines) <= 3 and not _ends_sentence(text)
        if not short or not any(ch.isalnum() for ch in text) or block.lines[0].row:  # a table's header row: a row
            continue
        if block.size >= body * 1.15 or (all(line.bold for line in block.lines) and not body_bold
                                        and len(text) <= 80 and block.size >= body * 0.95):
            block.kind = "heading"
            heading_sizes.add(round(block.size * 2) / 2)
    levels = {size: k + 1 for k, size in enumerate(sorted(heading_sizes, reverse=True))}
    for block in blocks:
        if block.kind == "heading":
            block.level = min(levels[round(block.size * 2) / 2], 6)
    first_page = [b for b in blocks[:8] if b.page == blocks[0].page] if blocks else []
    candidates = [b for b in first_page if b.kind == "heading"]
    if candidates:
        top = max(candidates, key=lambda b: b.size)
        if top.size >= max((b.size for b in blocks if b.kind == "heading"), default=0) and top.size > body:
            top.kind = "title"


def _join_pages(blocks: list[_Block]) -> list[_Block]:
    """Merge a paragraph that runs over a page break with its continuation."""
    out: list[_Block] = []
    for block in blocks:
        prev = out[-1] if out else None
        if (prev is not None and prev.page != block.page and prev.kind == block.kind == "paragraph"
                and not prev.lines[-1].row and not block.lines[0].row
                and not _ends_sentence(prev.lines[-1].text) and abs(prev.lines[-1].size - block.lines[0].size) < 0.5
                and prev.lines[-1].bold == block.lines[0].bold):
            prev.lines.extend(block.lines)
            continue
        out.append(block)
    return out


# ---------------------------------------------------------------------------------------------
# Text


def _line_break(line: Line, nxt: str) -> tuple[int, str]:
    """How ``line`` joins the next one starting ``nxt``: characters to drop from the end of ``line``
    (a mended hyphen) and the separator."""
    if line.hyphen:
        return 0, ""
    prev = line.text
    a, b = prev[-1], nxt[0]
    if a in "-\u00ad" and len(prev) >= 2 and _LETTER.match(prev[-2]) and b.islower():
        return 1, ""
    if a == "-" and len(prev) >= 2 and prev[-2].isalnum() and b.isalnum():  # 2-/point, COVID-/19: a real hyphen
        return 0, ""
    if is_cjk(a) or is_cjk(b):
        return 0, ""
    return 0, " "


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.runs: list[Run] = []
        self.ocr: list[tuple[int, int, float]] = []

    def write(self, s: str) -> None:
        self.parts.append(s)
        self.pos += len(s)

    def line(self, line: Line, text: str) -> None:
        page = line.page
        start = self.pos
        if line.spans is not None:
            for at, char, n in line.spans:
                n = min(n, len(text) - at)  # a mended hyphen shortens the text
                if n > 0:
                    self.runs.append(Run(start + at, start + at + n, page, char=char))
        elif line.rect is not None and text:
            self.runs.append(Run(start, start + len(text), page, rect=line.rect))
        if line.conf is not None and text:
            self.ocr.append((start, start + len(text), line.conf))
        self.write(text)


def assemble(pages: list[PageLines], *, fmt: str, title: str | None = None,
             declared_title: str | None = None, metadata: dict[str, str] | None = None) -> ParsedDocument:
    """The document made of ``pages`` (see the module docstring); raises EmptyDocumentError (through
    ``Draft.finish``) when no page has text."""
    _drop_running_lines(pages)
    blocks: list[_Block] = []
    sizes = sorted(line.size for page in pages for line in page.lines)
    body = sizes[len(sizes) // 2] if sizes else 10.0
    for number, page in enumerate(pages, start=1):
        lines = [line for line in page.lines if line.text.strip()]
        for line in lines:
            line.page = number
        if lines:
            blocks.extend(_paragraphs(number, _columns(lines, page.width, gutter=max(body, 6.0))))
    _mark_headings(blocks)
    blocks = _join_pages(blocks)

    w = _Writer()
    items: list[DraftItem] = []
    page_starts: list[int] = []
    for block in blocks:
        if items:
            w.write("\n\n")
        start = w.pos
        for k, line in enumerate(block.lines):
            while len(page_starts) < line.page:  # a page begins here (also inside a paragraph that runs over)
                page_starts.append(w.pos)
            text, sep = line.text, ""
            if k + 1 < len(block.lines):
                drop, sep = _line_break(line, block.lines[k + 1].text)
                text = text[:len(text) - drop]
            w.line(line, text)
            w.write(sep)
        items.append(DraftItem(block.kind, start, w.pos, block.level))
    while len(page_starts) < len(pages):
        page_starts.append(w.pos)

    text = "".join(w.parts)
    draft = Draft(text, items, title=title)
    draft.metadata = dict(metadata or {})
    draft.mark_meta_lines()
    if title is None and not any(it.kind == "title" for it in items) and declared_title:
        draft.title = declared_title
    doc = draft.finish()
    doc.format = fmt
    doc.set_page_starts(page_starts)
    doc.ocr_spans = w.ocr
    doc.layout = DocumentLayout(pages=[(p.width, p.height) for p in pages], runs=w.runs)
    return doc
