"""The seam every file format plugs into: a parser class, the options it gets, and content sniffing."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from qa.ingest.errors import DocumentTooLargeError, UnsafeDocumentError
from qa.models import ParsedDocument

__all__ = ["ParseOptions", "FormatParser", "sniff", "open_zip"]


@dataclass(frozen=True)
class ParseOptions:
    """What a parser needs besides the bytes: the caller's title and the limits (``qa.settings``)."""

    title: str | None = None
    heading_max_chars: int = 30
    max_pages: int = 2000
    max_image_pixels: int = 60_000_000
    max_unpacked_bytes: int = 200_000_000
    refuse_active_content: bool = True
    ocr: bool = True
    ocr_dpi: int = 200
    ocr_workers: int = 2
    # what a long parse reports: (stage, done, total), e.g. ("pages parsed", 12, 500)
    on_progress: Callable[[str, int, int], None] | None = None

    def report(self, stage: str, done: int, total: int) -> None:
        if self.on_progress is not None:
            self.on_progress(stage, done, total)

    @classmethod
    def from_settings(cls, settings, title: str | None = None) -> ParseOptions:
        return cls(
            title=title, heading_max_chars=settings.heading_max_chars, max_pages=settings.max_document_pages,
            max_image_pixels=settings.max_image_pixels, max_unpacked_bytes=settings.max_unpacked_bytes,
            refuse_active_content=settings.refuse_active_content, ocr=settings.ocr, ocr_dpi=settings.ocr_dpi,
            ocr_workers=settings.ocr_workers,
        )


class FormatParser:
    """One file format: its name, the extensions that claim it, and how to parse it."""

    name: ClassVar[str]
    label: ClassVar[str]  # how messages name it: "a PDF", "a Word document"
    extensions: ClassVar[tuple[str, ...]]

    def parse(self, raw: bytes, filename: str | None, options: ParseOptions) -> ParsedDocument:
        raise NotImplementedError

    def precheck(self, raw: bytes, filename: str | None, options: ParseOptions) -> None:
        """The quick checks of :meth:`parse` (limits, encryption, a broken header), raising the same
        errors, so that an upload queued as a job is refused at once when it would fail anyway."""


_OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def sniff(raw: bytes) -> str | None:
    """The binary format the bytes are (``pdf``, ``docx``, ``pptx``, ``image``, ``ole2``, ``zip``), or None
    for anything else (text, or a binary format nobody claims)."""
    head = bytes(raw[:1024])
    if b"%PDF-" in head:
        return "pdf"
    if head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*")):
        return "image"
    if head.startswith(_OLE2):
        return "ole2"
    if head.startswith(b"PK\x03\x04"):
        try:
            names = set(zipfile.ZipFile(io.BytesIO(raw)).namelist())
        except (zipfile.BadZipFile, OSError, ValueError):
            return "zip"
        if "word/document.xml" in names:
            return "docx"
        if "ppt/presentation.xml" in names:
            return "pptx"
        return "zip"
    return None


def open_zip(raw: bytes, label: str, options: ParseOptions) -> zipfile.ZipFile:
    """The archive of an Office file after checking it is no zip bomb: at most 10,000 members,
    ``max_unpacked_bytes`` unpacked in all, no member packed more than 200 to 1. (zipfile stops a
    member at its declared size, so the declared sizes bound what reading can cost.)"""
    zf = zipfile.ZipFile(io.BytesIO(raw))
    infos = zf.infolist()
    if len(infos) > 10_000:
        raise UnsafeDocumentError(f"{label} has {len(infos)} parts inside its zip archive: refused as a zip bomb")
    total = sum(i.file_size for i in infos)
    if total > options.max_unpacked_bytes:
        raise DocumentTooLargeError(
            f"{label} unpacks to {total:,} bytes, over the limit of {options.max_unpacked_bytes:,} "
            "(QA_MAX_UNPACKED_BYTES): refused as a zip bomb or split it into smaller files")
    for i in infos:
        if i.file_size > 1_000_000 and i.file_size > 200 * max(i.compress_size, 1):
            raise UnsafeDocumentError(
                f"{label}: the part {i.filename!r} is packed {i.file_size // max(i.compress_size, 1)} to 1 "
                "inside the archive: refused as a zip bomb")
    return zf
