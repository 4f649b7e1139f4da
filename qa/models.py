"""Domain records shared by ingestion, storage, retrieval and the API."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Block:
    """A run of the document text: its kind and where it sits. ``text == document_text[start:end]``."""

    kind: str  # "title" | "meta" | "heading" | "paragraph"
    start: int
    end: int
    text: str
    page: int | None = None  # 1-based page of a paged format (PDF, slides); None for text


@dataclass
class ParsedDocument:
    """What a parser makes of one file or upload, before it is split into passages.

    ``text`` is the document text that every offset refers to (the file itself for .txt/.md, the
    visible text for .html); it is stored and returned by ``GET /v1/documents/{id}``.
    """

    title: str
    text: str
    blocks: list[Block]
    source: str | None = None
    published: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    format: str = "text"  # text | markdown | html | pdf | docx | pptx | image
    # Paged formats (PDF pages, slides, image frames): page_starts[k] is the offset in ``text`` where
    # page k+1 begins (a page without text starts where the next one does); None for unpaged formats.
    page_starts: list[int] | None = None
    # Text read by OCR: (start, end, confidence 0-1) per recognised line.
    ocr_spans: list[tuple[int, int, float]] = field(default_factory=list)
    # Where the text sits on the pages (qa.ingest.layout.DocumentLayout), for evidence boxes; PDFs and images.
    layout: object | None = None
    # The uploaded file and its extension (kept by qa.ingest.originals); None for text sent as JSON.
    original: bytes | None = field(default=None, repr=False)
    original_ext: str | None = None

    def set_page_starts(self, page_starts: list[int]) -> None:
        """Make the document paged: ``page_starts`` as described above; each block gets its first page."""
        self.page_starts = page_starts
        self.blocks = [replace(b, page=self.pages_of(b.start, b.end)[0]) for b in self.blocks]

    def pages_of(self, start: int, end: int) -> tuple[int | None, int | None]:
        """``(page, page_end)`` of ``text[start:end]`` (1-based; page_end None when on one page)."""
        if not self.page_starts or end <= start:
            return None, None
        first = max(1, bisect_right(self.page_starts, start))
        last = max(1, bisect_right(self.page_starts, end - 1))
        return first, (last if last != first else None)

    def ocr_confidence(self, start: int, end: int) -> float | None:
        """Mean OCR confidence of the recognised text in ``text[start:end]``, weighted by length; None if none."""
        total = weight = 0.0
        for a, b, conf in self.ocr_spans:
            overlap = min(b, end) - max(a, start)
            if overlap > 0:
                total += overlap * conf
                weight += overlap
        return round(total / weight, 4) if weight else None


@dataclass(frozen=True)
class PassageDraft:
    """A passage before it has a document id: section, paragraph number, language and exact offsets."""

    section: str | None
    paragraph: int  # 1-based number of the paragraph in the document
    part: int  # 0 when the paragraph is whole, else 1.. for the pieces of a split paragraph
    lang: str
    start: int
    end: int
    text: str
    page: int | None = None  # first page (1-based) for paged formats (PDF, slides); None for text
    page_end: int | None = None  # last page when the passage crosses a page break
    ocr_confidence: float | None = None  # mean OCR confidence (0-1) of a passage read from a scan


@dataclass(frozen=True)
class Passage:
    """A stored, citable passage."""

    id: str
    document_id: str
    section: str | None
    paragraph: int
    part: int
    lang: str
    start: int
    end: int
    text: str
    title: str = ""
    source: str | None = None
    published: str | None = None
    collection: str = "default"
    page: int | None = None
    page_end: int | None = None
    ocr_confidence: float | None = None


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    lang: str
    source: str | None
    published: str | None
    content_hash: str
    passage_count: int
    created_at: str
    metadata: dict[str, str] = field(default_factory=dict)
    collection: str = "default"


def citation_label(title: str, section: str | None, page: int | None = None, page_end: int | None = None) -> str:
    """Where a passage sits, as people cite it: ``title › p. 12 › section`` (``p. 12–13`` over a page
    break; no page for unpaged formats, no section when there is none)."""
    parts = [title]
    if page is not None:
        parts.append(f"p. {page}–{page_end}" if page_end else f"p. {page}")
    if section:
        parts.append(section)
    return " › ".join(parts)


def passage_id(document_id: str, paragraph: int, part: int) -> str:
    """Stable, readable passage id: ``<document>:<paragraph>`` or ``<document>:<paragraph>.<part>``."""
    return f"{document_id}:{paragraph}" if part == 0 else f"{document_id}:{paragraph}.{part}"
