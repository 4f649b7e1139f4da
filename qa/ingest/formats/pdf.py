"""PDF through PDFium (pypdfium2, Apache-2.0/BSD): text layer with positions, OCR for pages without one.

* Each page's text comes from PDFium's text page, split into lines where PDFium breaks them; a
  line's box comes from PDFium's rectangles for its characters, its font size from a character's
  loose box and its weight from the font (bold: weight 600+ or a bold font name). Characters
  PDFium marks as non-text (U+FFFE, U+0002: a hyphen it already mended) leave the text. A line is
  cut where a gap wider than its font size parts its characters (the cells of a table row, which
  PDFium reads as one line; joined again unless they make a table), and a row PDFium reads out of
  order is put in order from its characters' boxes; spaces PDFium puts in between CJK characters go.
  :mod:`qa.ingest.formats.pages` then drops running headers/footers, orders columns, builds
  paragraphs and headings. Layout analysis runs in the page's own (unrotated) coordinates, where
  text lines are horizontal; boxes given out are in the displayed (rotated) page.
* A page with fewer than 8 characters of text but drawn content is rendered at ``ocr_dpi`` and read
  by OCR (:mod:`qa.ingest.ocr`) in the bounded OCR pool (:mod:`qa.ingest.ocr_pool`), unless OCR is
  off. Progress (pages parsed, pages OCR'd) goes to ``options.on_progress``.
* Refused: a PDF that needs a password (:class:`EncryptedDocumentError`), one PDFium cannot open
  (:class:`CorruptDocumentError`; a broken cross-reference table is repaired by PDFium and is
  fine), more pages than ``max_pages`` (:class:`DocumentTooLargeError`), and, with
  ``refuse_active_content``, JavaScript or embedded files (:class:`UnsafeDocumentError`).
* PDFium is not thread-safe: every call into it holds :data:`PDFIUM_LOCK` (a page at a time while
  parsing, so a long PDF does not hold up others for long).
"""

from __future__ import annotations

import ctypes
import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path

from qa.ingest.errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    EmptyDocumentError,
    EncryptedDocumentError,
    UnsafeDocumentError,
)
from qa.ingest.formats.base import FormatParser, ParseOptions
from qa.ingest.formats.pages import Line, PageLines, assemble, is_cjk
from qa.ingest.ocr_pool import run_ocr
from qa.models import ParsedDocument

__all__ = ["PdfParser", "PDFIUM_LOCK", "char_boxes_reader", "render_page", "page_count"]

PDFIUM_LOCK = threading.RLock()
_MIN_TEXT_CHARS = 8
_HYPHEN_MARKS = frozenset("\ufffe\x02")
_DROP = frozenset("\ufeff\x00\u00ad")
_BOLD_FONT = re.compile(r"bold|black|heavy|semibold|demi", re.I)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_RTL = re.compile("[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")  # Hebrew, Arabic: right to left, left as PDFium gives it
_CJK_PUNCTUATION = "\u2018\u2019\u201c\u201d\u2014\u2026\u00b7"  # ‘ ’ “ ” — … ·: also Chinese text's punctuation
_CJK_SIDE = f"[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef{_CJK_PUNCTUATION}]"
_CJK_GAP = re.compile(f"{_CJK_SIDE} (?={_CJK_SIDE})|  ")  # a space PDFium may have put in where none belongs
_JS = re.compile(rb"/(?:JavaScript|JS)(?![A-Za-z0-9])")
_JUNK_TITLE = re.compile(r"^(?:untitled|microsoft word - .*|.*\.(?:docx?|pdf|pptx?|indd|tex|dvi))$", re.I)


def _open(raw: bytes | Path, label: str):
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(raw)
    except pdfium.PdfiumError as exc:
        message = str(exc)
        if "password" in message.lower():
            raise EncryptedDocumentError(
                f"{label} is encrypted and needs a password: remove the password (print or save it as an "
                "unprotected PDF) and upload it again") from None
        raise CorruptDocumentError(f"{label} cannot be read as a PDF ({message}): check that the file is complete "
                                   "or export it again") from None


def _check_active_content(pdf, raw: bytes, label: str) -> None:
    import pypdfium2.raw as r

    scripts = r.FPDFDoc_GetJavaScriptActionCount(pdf.raw)
    if scripts > 0 or _JS.search(raw):
        raise UnsafeDocumentError(f"{label} contains JavaScript: qa refuses active content; print it to a new PDF "
                                  "without scripts and upload that (or set QA_REFUSE_ACTIVE_CONTENT=false)")
    attachments = r.FPDFDoc_GetAttachmentCount(pdf.raw)
    if attachments > 0:
        raise UnsafeDocumentError(f"{label} has {attachments} embedded file(s): qa refuses hidden content; upload the "
                                  "embedded files on their own (or set QA_REFUSE_ACTIVE_CONTENT=false)")


def _check(pdf, raw: bytes, label: str, options: ParseOptions) -> int:
    """The page count, after the limits and the active-content check (the caller holds the lock)."""
    n = len(pdf)
    if n > options.max_pages:
        raise DocumentTooLargeError(f"{label} has {n} pages, over the limit of {options.max_pages} "
                                    "(QA_MAX_DOCUMENT_PAGES): split it")
    if n == 0:
        raise EmptyDocumentError(f"{label} has no pages")
    if options.refuse_active_content:
        _check_active_content(pdf, raw, label)
    return n


class PdfParser(FormatParser):
    name = "pdf"
    label = "a PDF"
    extensions = (".pdf",)

    def precheck(self, raw: bytes, filename: str | None, options: ParseOptions) -> None:
        label = repr(filename) if filename else "the PDF"
        with PDFIUM_LOCK:
            pdf = _open(raw, label)
            try:
                _check(pdf, raw, label, options)
            finally:
                pdf.close()

    def parse(self, raw: bytes, filename: str | None, options: ParseOptions) -> ParsedDocument:
        label = repr(filename) if filename else "the PDF"
        with PDFIUM_LOCK:
            pdf = _open(raw, label)
        try:
            with PDFIUM_LOCK:
                n = _check(pdf, raw, label, options)
                meta = pdf.get_metadata_dict(skip_empty=True)
            pages: list[PageLines] = []
            display: list[tuple[float, float]] = []
            scanned: list[int] = []
            for index in range(n):
                with PDFIUM_LOCK:
                    page_lines, size, needs_ocr = _read_page(pdf, index)
                pages.append(page_lines)
                display.append(size)
                if needs_ocr and options.ocr:
                    scanned.append(index)
                options.report("pages parsed", index + 1, n)
            if scanned:
                read = run_ocr([partial(_ocr_page, pdf, index, options) for index in scanned], options.ocr_workers,
                               lambda done: options.report("pages OCR'd", done, len(scanned)))
                for index, page_lines in zip(scanned, read):
                    pages[index] = page_lines
        finally:
            with PDFIUM_LOCK:
                pdf.close()
        declared = meta.get("Title", "").strip()
        metadata = {"author": meta["Author"].strip()} if meta.get("Author", "").strip() else {}
        if not any(page.lines for page in pages):
            raise EmptyDocumentError(f"{label} has no text layer and no text could be read from its pages"
                                     + ("" if options.ocr else " (OCR is off: QA_OCR=false)"))
        doc = assemble(pages, fmt="pdf", title=options.title,
                       declared_title=None if not declared or _JUNK_TITLE.match(declared) else declared,
                       metadata=metadata)
        doc.layout.pages = display
        return doc


def _read_page(pdf, index: int) -> tuple[PageLines, tuple[float, float], bool]:
    """The lines of page ``index`` in its own coordinates (points, y down), its displayed size, and
    whether it needs OCR (almost no text but something drawn)."""
    import pypdfium2.raw as r

    page = pdf[index]
    try:
        display = page.get_size()
        left, bottom, right, top = page.get_cropbox()
        textpage = page.get_textpage()
        try:
            raw_tp = textpage.raw
            count = r.FPDFText_CountChars(raw_tp)
            text = textpage.get_text_range() if count > 0 else ""
            if len(text) != count:  # characters outside the BMP: read them one by one
                text = "".join(chr(r.FPDFText_GetUnicode(raw_tp, k)) for k in range(count))
            lines: list[Line] = []
            vals = [ctypes.c_double() for _ in range(4)]
            box = r.FS_RECTF()
            font = ctypes.create_string_buffer(128)
            pos = 0
            for m in _LINE_BREAK.finditer(text + "\n"):
                a, b = pos, m.start()
                pos = m.end()
                # PDFium joins a line ending in a hyphen with the next one and marks the joint U+FFFE
                # (or U+0002): split there again, so that each piece keeps its own row.
                piece = a
                for k in range(a, b + 1):
                    if k == b or text[k] in _HYPHEN_MARKS:
                        for first, end in _cells(raw_tp, text, piece, k, vals):
                            line = _line(raw_tp, text, first, end, top, left, vals, box, font)
                            if line is not None:
                                line.cont = first > piece
                                line.hyphen = k < b and end == k
                                lines.append(line)
                        piece = k + 1
            needs_ocr = sum(len(line.text) for line in lines) < _MIN_TEXT_CHARS and _has_drawing(page)
            return PageLines(right - left, top - bottom, lines), display, needs_ocr
        finally:
            textpage.close()
    finally:
        page.close()


def _cells(raw_tp, text: str, a: int, b: int, vals) -> list[tuple[int, int]]:
    """``a..b`` cut where a gap wider than the font size parts its characters (PDFium reads the cells of a
    table row as one line): the pieces left to right, for :func:`qa.ingest.formats.pages._tables` to tell
    a table from a line with a wide space."""
    import pypdfium2.raw as r

    refs = [ctypes.byref(v) for v in vals]
    rects = []
    for k in range(r.FPDFText_CountRects(raw_tp, a, b - a)):
        r.FPDFText_GetRect(raw_tp, k, *refs)
        rects.append((vals[0].value, vals[1].value, vals[2].value, vals[3].value))  # left, top, right, bottom
    if len(rects) < 2:
        return [(a, b)]
    height = max(t - bt for _, t, _, bt in rects)
    ordered = all(nl >= pr - 1.0 for (_, _, pr, _), (nl, _, _, _) in zip(rects, rects[1:]))
    if not ordered or not any(nl - pr > height for (_, _, pr, _), (nl, _, _, _) in zip(rects, rects[1:])):
        return [(a, b)]
    edges = [ctypes.c_double() for _ in range(4)]
    boxes = [ctypes.byref(v) for v in edges]
    cuts, right = [a], None
    for k in range(a, b):
        if text[k].isspace():
            continue
        r.FPDFText_GetCharBox(raw_tp, k, *boxes)
        cl, cr = edges[0].value, edges[1].value
        if right is not None and cl - right > height:
            cuts.append(k)
        right = cr if right is None else max(right, cr)
    cuts.append(b)
    return list(zip(cuts, cuts[1:]))


def _line(raw_tp, text: str, a: int, b: int, top: float, left: float, vals, box, font) -> Line | None:
    """The line of characters ``a..b`` of a text page (None if only spaces)."""
    import pypdfium2.raw as r

    piece = text[a:b]
    stripped = piece.lstrip()
    a += len(piece) - len(stripped)
    stripped = stripped.rstrip()
    b = a + len(stripped)
    if not stripped:
        return None
    x0 = y0 = float("inf")
    x1 = y1 = float("-inf")
    refs = [ctypes.byref(v) for v in vals]
    rects = []
    for k in range(r.FPDFText_CountRects(raw_tp, a, b - a)):
        r.FPDFText_GetRect(raw_tp, k, *refs)
        rl, rt, rr, rb = (v.value for v in vals)
        rects.append((rl, rr))
        x0, x1 = min(x0, rl), max(x1, rr)
        y0, y1 = min(y0, top - rt), max(y1, top - rb)
    if x0 == float("inf"):
        return None
    order = None  # PDFium's order of the characters, unless they must be put in reading order
    if any(rl < prev_r - 1.0 for (_, prev_r), (rl, _) in zip(rects, rects[1:])) and not _RTL.search(stripped):
        order = _left_to_right(raw_tp, a, b)
    drop = _dropped(raw_tp, text, a, b, order) if order is not None or not _DROP.isdisjoint(stripped) \
        or _CJK_GAP.search(stripped) else ()
    if not drop and order is None:
        spans, line_text = [(0, a, b - a)], stripped
    else:  # leave out the non-text characters, keeping each remaining run's PDFium indices
        spans, parts = [], []
        pos = 0
        for k in order if order is not None else range(a, b):
            if k in drop:
                continue
            if spans and spans[-1][1] + spans[-1][2] == k:
                at, first, n = spans[-1]
                spans[-1] = (at, first, n + 1)
            else:
                spans.append((pos, k, 1))
            parts.append(text[k])
            pos += 1
        line_text = "".join(parts)
        if not line_text.strip():
            return None
    sample = a  # the first character: not a space (stripped)
    size = y1 - y0
    if r.FPDFText_GetLooseCharBox(raw_tp, sample, ctypes.byref(box)):
        size = abs(box.top - box.bottom) or size
    bold = r.FPDFText_GetFontWeight(raw_tp, sample) >= 600
    if not bold:
        n = r.FPDFText_GetFontInfo(raw_tp, sample, font, len(font), None)
        bold = bool(_BOLD_FONT.search(font.raw[:max(n - 1, 0)].decode("latin-1", "replace")))
    return Line(text=line_text, x0=x0 - left, y0=y0, x1=x1 - left, y1=y1, size=size, bold=bold, spans=spans)


def _cjk_side(ch: str) -> bool:
    return is_cjk(ch) or ch in _CJK_PUNCTUATION


def _left_to_right(raw_tp, a: int, b: int) -> list[int] | None:
    """Characters ``a..b`` of one row in the order they stand on it, left to right, when PDFium's order
    differs (a producer that writes a row in several pieces: LibreOffice draws the Western-font quotes
    and digits of a Chinese line after its CJK characters); None for text that is not one horizontal row."""
    import pypdfium2.raw as r

    edges = [ctypes.c_double() for _ in range(4)]
    refs = [ctypes.byref(v) for v in edges]
    keys, middles, tallest = [], [], 0.0
    for k in range(a, b):
        r.FPDFText_GetCharBox(raw_tp, k, *refs)
        cl, cr, cb, ct = (v.value for v in edges)
        keys.append((cl + cr) / 2)
        if ct > cb:
            middles.append((cb + ct) / 2)
            tallest = max(tallest, ct - cb)
    if not middles or max(middles) - min(middles) > tallest:  # not one row: vertical or scattered text
        return None
    return [a + i for i in sorted(range(b - a), key=keys.__getitem__)]


def _dropped(raw_tp, text: str, a: int, b: int, order: list[int] | None) -> set[int]:
    """Characters of ``a..b`` to leave out: non-text marks, and spaces PDFium put in (not in the PDF)
    between two CJK characters (or the quotes and dashes of Chinese text), next to another space or at a line end, where a
    producer spaced the glyphs. Chinese has no spaces between words; between CJK and Latin text or digits
    a space PDFium puts in stays, since it may stand for one the producer did not write out."""
    import pypdfium2.raw as r

    sequence = order if order is not None else range(a, b)
    drop = {k for k in sequence if text[k] in _DROP}
    kept = [k for k in sequence if k not in drop]
    before = ""  # the last character kept so far
    for i, k in enumerate(kept):
        after = text[kept[i + 1]] if i + 1 < len(kept) else ""
        if text[k] == " " and (not before or not after or before == " " or after == " "
                               or (_cjk_side(before) and _cjk_side(after))) and r.FPDFText_IsGenerated(raw_tp, k):
            drop.add(k)
        else:
            before = text[k]
    return drop


def _has_drawing(page) -> bool:
    import pypdfium2.raw as r

    return r.FPDFPage_CountObjects(page.raw) > 0


def _ocr_page(pdf, index: int, options: ParseOptions) -> PageLines:
    """Page ``index`` rendered at ``ocr_dpi`` (within ``max_image_pixels``) and read by OCR."""
    from qa.ingest.ocr import get_ocr_engine, ocr_lines

    with PDFIUM_LOCK:
        page = pdf[index]
        try:
            width, height = page.get_size()
            scale = options.ocr_dpi / 72
            if width * height * scale * scale > options.max_image_pixels:
                scale = (options.max_image_pixels / (width * height)) ** 0.5
            image = page.render(scale=scale).to_pil()
        finally:
            page.close()
    lines = ocr_lines(get_ocr_engine(), image, points_per_pixel=1 / scale)
    return PageLines(width, height, lines)


# ---------------------------------------------------------------------------------------------
# Reading a kept PDF back: evidence boxes and page images


_OPEN_CACHE: OrderedDict[str, object] = OrderedDict()
_CACHE_SIZE = 8


def _cached(path: Path):
    key = str(path)
    pdf = _OPEN_CACHE.pop(key, None)
    if pdf is None:
        pdf = _open(path, repr(path.name))
        if len(_OPEN_CACHE) >= _CACHE_SIZE:
            _OPEN_CACHE.popitem(last=False)[1].close()
    _OPEN_CACHE[key] = pdf
    return pdf


def forget(path: Path) -> None:
    """Close a cached copy of ``path`` (call before replacing or deleting the file)."""
    with PDFIUM_LOCK:
        pdf = _OPEN_CACHE.pop(str(path), None)
        if pdf is not None:
            pdf.close()


def char_boxes_reader(path: Path) -> Callable[[int, int, int], list[tuple[float, float, float, float]]]:
    """A function ``(page, first char, count) -> boxes`` over the PDF at ``path``: PDFium's rectangles
    for those characters (one per line piece) as fractions of the displayed page from its top-left."""
    import pypdfium2.raw as r

    def boxes(page_no: int, char: int, count: int) -> list[tuple[float, float, float, float]]:
        out = []
        with PDFIUM_LOCK:
            pdf = _cached(path)
            if not 1 <= page_no <= len(pdf):
                return []
            page = pdf[page_no - 1]
            try:
                width, height = page.get_size()  # as displayed; PageToDevice applies the page's /Rotate itself
                scale = 1000.0
                dw, dh = int(width * scale), int(height * scale)
                textpage = page.get_textpage()
                try:
                    vals = [ctypes.c_double() for _ in range(4)]
                    dx, dy = ctypes.c_int(), ctypes.c_int()
                    for k in range(r.FPDFText_CountRects(textpage.raw, char, count)):
                        r.FPDFText_GetRect(textpage.raw, k, *(ctypes.byref(v) for v in vals))
                        left, top, right, bottom = (v.value for v in vals)
                        xs, ys = [], []
                        for x, y in ((left, top), (right, bottom)):
                            r.FPDF_PageToDevice(page.raw, 0, 0, dw, dh, 0, x, y, ctypes.byref(dx), ctypes.byref(dy))
                            xs.append(dx.value / dw)
                            ys.append(dy.value / dh)
                        out.append((min(xs), min(ys), max(xs), max(ys)))
                finally:
                    textpage.close()
            finally:
                page.close()
        return out

    return boxes


def page_count(path: Path) -> int:
    with PDFIUM_LOCK:
        return len(_cached(path))


def render_page(path: Path, page_no: int, dpi: int = 110, max_pixels: int = 16_000_000) -> bytes:
    """PNG of page ``page_no`` (1-based) of the PDF at ``path``, rotation applied; IndexError when
    there is no such page."""
    with PDFIUM_LOCK:
        pdf = _cached(path)
        if not 1 <= page_no <= len(pdf):
            raise IndexError(page_no)
        page = pdf[page_no - 1]
        try:
            width, height = page.get_size()
            scale = dpi / 72
            if width * height * scale * scale > max_pixels:
                scale = (max_pixels / (width * height)) ** 0.5
            image = page.render(scale=scale).to_pil()
        finally:
            page.close()
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def quick_look(raw: bytes) -> tuple[int, bool] | None:
    """``(pages, whether the first page has text)`` of a PDF, or None when PDFium cannot open it
    (the parse will say why)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as r

    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(raw)
        except pdfium.PdfiumError:
            return None
        try:
            if len(pdf) == 0:
                return 0, False
            page = pdf[0]
            textpage = page.get_textpage()
            try:
                has_text = r.FPDFText_CountChars(textpage.raw) >= _MIN_TEXT_CHARS
            finally:
                textpage.close()
                page.close()
            return len(pdf), has_text
        finally:
            pdf.close()
