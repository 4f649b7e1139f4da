"""What parsing a file can raise about the file itself.

Every error is a :class:`DocumentParseError` with an HTTP ``status`` (the routers answer it with
``{"error": {"type": <class name>, "message": ...}}``) and a message that says what was wrong and
what to do about it.
"""

from __future__ import annotations

__all__ = [
    "DocumentParseError",
    "UnsupportedFormatError",
    "FormatMismatchError",
    "DocumentDecodeError",
    "EmptyDocumentError",
    "EncryptedDocumentError",
    "CorruptDocumentError",
    "UnsafeDocumentError",
    "DocumentTooLargeError",
]


class DocumentParseError(ValueError):
    """A file that cannot be turned into a document (base of the errors below)."""

    status = 422


class UnsupportedFormatError(DocumentParseError):
    """Neither the file name's extension nor the content is a supported format."""


class FormatMismatchError(DocumentParseError):
    """The extension names one format and the content is another (a renamed file)."""


class DocumentDecodeError(DocumentParseError):
    """The bytes are not UTF-8 (or UTF-16/32 with a BOM)."""


class EmptyDocumentError(DocumentParseError):
    """The document has no text."""


class EncryptedDocumentError(DocumentParseError):
    """A PDF that needs a password to open."""


class CorruptDocumentError(DocumentParseError):
    """A PDF, DOCX, PPTX or image whose structure is broken beyond repair."""


class UnsafeDocumentError(DocumentParseError):
    """Active or hidden content that is refused: JavaScript, embedded files, a zip bomb."""


class DocumentTooLargeError(DocumentParseError):
    """Over a configured limit (pages, pixels, unpacked size)."""

    status = 413
