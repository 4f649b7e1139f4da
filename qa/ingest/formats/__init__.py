"""File formats: one parser per format, chosen by the file's content and checked against its name.

:func:`parse_file` is the one entry point. The content decides: ``%PDF-`` is a PDF, a zip holding
``word/document.xml`` a Word document, one holding ``ppt/presentation.xml`` a PowerPoint deck, a
PNG/JPEG/TIFF signature an image (read by OCR); anything else is text, parsed as the extension
says (``.txt``, ``.md``, ``.html``; no name or no extension: plain text). A name whose extension
says another format than the content is is refused (:class:`FormatMismatchError`), so is an
unknown extension (:class:`UnsupportedFormatError`) and a legacy binary Office file (.doc/.ppt).

| format | extensions | module |
|---|---|---|
| text, markdown, html | .txt .md .markdown .html .htm | :mod:`.text` (:mod:`qa.ingest.parsers`) |
| pdf | .pdf | :mod:`.pdf` (PDFium; OCR for pages without text) |
| docx | .docx | :mod:`.docx` (python-docx) |
| pptx | .pptx | :mod:`.pptx` (python-pptx) |
| image | .png .jpg .jpeg .tif .tiff | :mod:`.image` (OCR) |
"""

from __future__ import annotations

from pathlib import PurePath

from qa.ingest.errors import FormatMismatchError, UnsupportedFormatError
from qa.ingest.formats.base import FormatParser, ParseOptions, sniff
from qa.ingest.formats.docx import DocxParser
from qa.ingest.formats.image import ImageParser
from qa.ingest.formats.pdf import PdfParser
from qa.ingest.formats.pptx import PptxParser
from qa.ingest.formats.text import HtmlParser, MarkdownParser, PlainTextParser
from qa.models import ParsedDocument

__all__ = ["ParseOptions", "FormatParser", "PARSERS", "SUPPORTED_EXTENSIONS", "detect_parser", "parse_file"]

PARSERS: dict[str, FormatParser] = {
    p.name: p for p in (PlainTextParser(), MarkdownParser(), HtmlParser(), PdfParser(), DocxParser(), PptxParser(),
                        ImageParser())
}
SUPPORTED_EXTENSIONS: dict[str, str] = {ext: p.name for p in PARSERS.values() for ext in p.extensions}
_TEXT_FORMATS = frozenset({"text", "markdown", "html"})
_CONTENT_LABELS = {"pdf": "a PDF", "docx": "a Word document", "pptx": "a PowerPoint deck", "image": "an image",
                   "ole2": "a legacy Office file (.doc/.ppt/.xls)", "zip": "a zip archive", None: "text"}


def detect_parser(raw: bytes | str, filename: str | None = None) -> FormatParser:
    """The parser for ``raw`` (see the module docstring)."""
    content = sniff(raw) if isinstance(raw, (bytes, bytearray, memoryview)) else None
    suffix = PurePath(filename).suffix.lower() if filename else ""
    named = SUPPORTED_EXTENSIONS.get(suffix) if suffix else None
    what = _CONTENT_LABELS[content]
    if suffix and named is None:
        supported = ", ".join(SUPPORTED_EXTENSIONS)
        hint = f" (its content is {what})" if content else ""
        raise UnsupportedFormatError(f"{filename!r}: unsupported file type {suffix!r}{hint}; supported: {supported}")
    if content in ("ole2", "zip"):
        raise UnsupportedFormatError(
            f"{filename or 'the file'!r} is {what}, which qa does not read: save it as .docx, .pptx or .pdf")
    if named is None:  # no name or no extension: the content decides
        return PARSERS[content or "text"]
    if content is None and named in _TEXT_FORMATS:
        return PARSERS[named]
    if content != named:
        expected = PARSERS[named].label
        raise FormatMismatchError(
            f"{filename!r} is named like {expected} but its content is {what}: rename it to match its content "
            "or upload the right file")
    return PARSERS[named]


def parse_file(raw: bytes | str, filename: str | None = None, options: ParseOptions | None = None) -> ParsedDocument:
    """Parse a file of any supported format; raises a :class:`qa.ingest.errors.DocumentParseError`.
    The document keeps the bytes it was parsed from (``original``, ``original_ext``)."""
    options = options or ParseOptions()
    parser = detect_parser(raw, filename)
    data = bytes(raw) if isinstance(raw, (bytearray, memoryview)) else raw
    doc = parser.parse(data, filename, options)
    if isinstance(data, bytes):
        suffix = PurePath(filename).suffix.lower() if filename else ""
        doc.original, doc.original_ext = data, suffix if suffix in SUPPORTED_EXTENSIONS else parser.extensions[0]
    return doc
