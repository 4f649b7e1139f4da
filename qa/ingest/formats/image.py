"""Scanned pages as images (PNG, JPEG, TIFF; every frame of a multi-page TIFF is a page), read by OCR.

The image header is checked before any pixel is decoded: more than ``max_image_pixels`` pixels
(per frame) or more frames than ``max_pages`` is :class:`DocumentTooLargeError`; a file Pillow
cannot decode is :class:`CorruptDocumentError`. EXIF rotation is applied before reading. Boxes
are fractions of the image, pages are frames; OCR runs in the bounded pool (:mod:`qa.ingest.ocr_pool`).
"""

from __future__ import annotations

import io
from functools import partial

from qa.ingest.errors import CorruptDocumentError, DocumentTooLargeError, EmptyDocumentError
from qa.ingest.formats.base import FormatParser, ParseOptions
from qa.ingest.formats.pages import PageLines, assemble
from qa.ingest.ocr_pool import run_ocr
from qa.models import ParsedDocument

__all__ = ["ImageParser"]

_FORMATS = frozenset({"PNG", "JPEG", "MPO", "TIFF"})
_OCR_MAX_SIDE = 4000  # larger scans are scaled down before OCR (the text stays legible)


class ImageParser(FormatParser):
    name = "image"
    label = "an image"
    extensions = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

    def parse(self, raw: bytes, filename: str | None, options: ParseOptions) -> ParsedDocument:
        from PIL import Image, ImageOps

        from qa.ingest.ocr import get_ocr_engine, ocr_lines

        label = repr(filename) if filename else "the image"
        image = self._open(raw, label, options)
        frames = getattr(image, "n_frames", 1)
        pages: list[PageLines] = []
        for k in range(frames):
            try:
                image.seek(k)
                _check_size(image, label, options)
                frame = ImageOps.exif_transpose(image.convert("RGB") if image.mode not in ("RGB", "L") else image)
                frame.load()
            except DocumentTooLargeError:
                raise
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
                raise CorruptDocumentError(f"{label}: frame {k + 1} cannot be decoded ({exc})") from None
            scale = min(1.0, _OCR_MAX_SIDE / max(frame.size))
            small = frame.resize((max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))) \
                if scale < 1 else frame
            lines, = run_ocr([partial(ocr_lines, get_ocr_engine(), small, points_per_pixel=1 / scale)],
                             options.ocr_workers)
            pages.append(PageLines(float(frame.width), float(frame.height), lines))
            options.report("pages OCR'd", k + 1, frames)
        if not any(page.lines for page in pages):
            raise EmptyDocumentError(f"{label}: OCR found no text in it")
        doc = assemble(pages, fmt="image", title=options.title)
        return doc

    def precheck(self, raw: bytes, filename: str | None, options: ParseOptions) -> None:
        self._open(raw, repr(filename) if filename else "the image", options)

    @staticmethod
    def _open(raw: bytes, label: str, options: ParseOptions):
        """The image with its header read (no pixel decoded yet), after the checks on OCR, format, frames
        and the first frame's size."""
        from PIL import Image, UnidentifiedImageError

        if not options.ocr:
            raise EmptyDocumentError(f"{label} is an image and OCR is off (QA_OCR=false): no text to read")
        try:
            image = Image.open(io.BytesIO(raw))  # reads the header only
        except Image.DecompressionBombError as exc:
            raise DocumentTooLargeError(f"{label} has too many pixels for Pillow to open safely ({exc}), far over "
                                        f"the limit of {options.max_image_pixels:,} pixels (QA_MAX_IMAGE_PIXELS): "
                                        "scale it down (300 dpi is plenty for OCR)") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise CorruptDocumentError(f"{label} cannot be read as an image ({exc})") from None
        if image.format not in _FORMATS:
            raise CorruptDocumentError(f"{label} is a {image.format} image; upload PNG, JPEG or TIFF")
        frames = getattr(image, "n_frames", 1)
        if frames > options.max_pages:
            raise DocumentTooLargeError(f"{label} has {frames} frames, over the limit of {options.max_pages} "
                                        "(QA_MAX_DOCUMENT_PAGES)")
        _check_size(image, label, options)
        return image


def _check_size(image, label: str, options: ParseOptions) -> None:
    width, height = image.size
    if width * height > options.max_image_pixels:
        raise DocumentTooLargeError(
            f"{label} is {width} x {height} pixels, over the limit of {options.max_image_pixels:,} "
            "(QA_MAX_IMAGE_PIXELS): scale it down (300 dpi is plenty for OCR)")
