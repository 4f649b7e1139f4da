"""What the Word and PowerPoint parsers share: blocks of text → a document with exact offsets."""

from __future__ import annotations

import re
import zipfile

from lxml import etree

from qa.ingest.errors import CorruptDocumentError, DocumentParseError
from qa.ingest.formats.base import ParseOptions, open_zip
from qa.ingest.parsers import Draft, DraftItem, is_heading_line
from qa.models import ParsedDocument

__all__ = ["Blocks", "load_office", "clean"]

_SPACES = re.compile(r"[ \t\u00a0\u2002\u2003\u2009\u200a\u3000]+")


def clean(text: str) -> str:
    """Runs of spaces and tabs as one space (NBSP and CJK spaces too), line breaks kept, each line trimmed."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r", "\n").replace("\v", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


class Blocks:
    """Collects blocks (``title``/``heading``/``paragraph``) in order, with pages for slides."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.items: list[DraftItem] = []
        self.pos = 0
        self.page_starts: list[int] = []

    def page(self, number: int) -> None:
        """The next block is on page ``number`` (1-based)."""
        while len(self.page_starts) < number:
            self.page_starts.append(self.pos + (2 if self.parts else 0))

    def add(self, kind: str, text: str, level: int = 1) -> None:
        text = clean(text)
        if not text:
            return
        if self.parts:
            self.parts.append("\n\n")
            self.pos += 2
        self.items.append(DraftItem(kind, self.pos, self.pos + len(text), level))
        self.parts.append(text)
        self.pos += len(text)

    def promote_short_lines(self, max_chars: int) -> None:
        """Paragraphs that look like headings in plain text become headings (level 1)."""
        text = "".join(self.parts)
        for item in self.items:
            if item.kind == "paragraph" and is_heading_line(text[item.start:item.end], max_chars):
                item.kind = "heading"

    def finish(self, fmt: str, title: str | None, declared_title: str | None, pages: int | None,
               metadata: dict[str, str]) -> ParsedDocument:
        text = "".join(self.parts)
        draft = Draft(text, self.items, title=title)
        draft.metadata = metadata
        draft.mark_meta_lines()
        if title is None and declared_title and not any(it.kind == "title" for it in self.items):
            draft.title = declared_title
        doc = draft.finish()
        doc.format = fmt
        if pages is not None:
            starts = [min(s, len(text)) for s in self.page_starts]
            while len(starts) < pages:
                starts.append(len(text))
            doc.set_page_starts(starts[:pages])
        return doc


def load_office(raw: bytes, label: str, options: ParseOptions, loader):
    """``loader(file)`` (python-docx / python-pptx) on ``raw`` after the zip-bomb checks; what they
    raise on a broken file becomes :class:`CorruptDocumentError`."""
    import io

    try:
        open_zip(raw, label, options)
        return loader(io.BytesIO(raw))
    except DocumentParseError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, etree.XMLSyntaxError, TypeError, AttributeError,
            NotImplementedError, EOFError) as exc:
        raise CorruptDocumentError(f"{label} cannot be read ({type(exc).__name__}: {exc}): open it and save it "
                                   "again") from None


def core_title(props) -> str | None:
    title = " ".join((getattr(props, "title", None) or "").split())
    return title or None


def core_metadata(props) -> dict[str, str]:
    author = " ".join((getattr(props, "author", None) or "").split())
    return {"author": author} if author else {}
