"""The original files of uploaded documents, their layouts and rendered pages, kept beside the store.

``<data_dir>/originals/<collection>/<document id>/`` holds

* ``original<ext>``: the file as it was uploaded (``GET /v1/documents/{id}/file``);
* ``layout.json``: where the text sits on the pages (:class:`qa.ingest.layout.DocumentLayout`), for
  PDFs and scans: evidence boxes are computed from it (and from the PDF's own glyph boxes);
* ``pages/<n>@<dpi>.png``: pages rendered on request, cached.

Files are written before the document is committed to the store (a temporary folder renamed into
place), so a stored document never lacks its original; a crash in between leaves at worst an
original without a document, replaced by the next upload of that id. They are not part of the
store: losing them loses downloads, page images and boxes, never search.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from qa.ingest.layout import DocumentLayout, evidence_boxes

__all__ = ["OriginalFiles", "MEDIA_TYPES"]

MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".tif": "image/tiff", ".tiff": "image/tiff",
    ".txt": "text/plain; charset=utf-8", ".md": "text/markdown; charset=utf-8",
    ".markdown": "text/markdown; charset=utf-8", ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
}
_SAFE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class OriginalFiles:
    """Kept originals under ``root`` (see the module docstring)."""

    def __init__(self, root: Path, cache_layouts: int = 32):
        self.root = Path(root)
        self._layouts: OrderedDict[Path, DocumentLayout | None] = OrderedDict()
        self._cache_size = cache_layouts
        self._lock = threading.Lock()

    def folder(self, collection: str, document_id: str) -> Path:
        if not (_SAFE.match(collection) and _SAFE.match(document_id)) or ".." in (collection, document_id):
            raise ValueError(f"unusable collection or document id: {collection!r}, {document_id!r}")
        return self.root / collection / document_id

    def save(self, collection: str, document_id: str, raw: bytes, extension: str,
             layout: DocumentLayout | None) -> None:
        """Keep ``raw`` (and its layout), replacing what was kept for this id, atomically."""
        folder = self.folder(collection, document_id)
        folder.parent.mkdir(parents=True, exist_ok=True)
        extension = extension.lower() if extension.lower() in MEDIA_TYPES else ".bin"
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{document_id}.tmp-"))
        try:
            with open(tmp / f"original{extension}", "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            if layout is not None:
                layout.save(tmp / "layout.json")
            self._forget(folder)
            old = None
            if folder.exists():
                old = folder.with_name(f".{document_id}.old-{os.getpid()}-{threading.get_ident()}")
                os.replace(folder, old)
            os.replace(tmp, folder)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def delete(self, collection: str, document_id: str) -> None:
        folder = self.folder(collection, document_id)
        self._forget(folder)
        shutil.rmtree(folder, ignore_errors=True)

    def delete_collection(self, collection: str) -> None:
        if _SAFE.match(collection):
            with self._lock:
                self._layouts.clear()
            shutil.rmtree(self.root / collection, ignore_errors=True)

    def original(self, collection: str, document_id: str) -> Path | None:
        folder = self.folder(collection, document_id)
        found = sorted(folder.glob("original.*")) if folder.is_dir() else []
        return found[0] if found else None

    def layout(self, collection: str, document_id: str) -> DocumentLayout | None:
        folder = self.folder(collection, document_id)
        with self._lock:
            if folder in self._layouts:
                self._layouts.move_to_end(folder)
                return self._layouts[folder]
        path = folder / "layout.json"
        try:
            layout = DocumentLayout.load(path) if path.is_file() else None
        except (ValueError, KeyError, OSError):
            layout = None  # unreadable: no boxes rather than an error
        with self._lock:
            self._layouts[folder] = layout
            while len(self._layouts) > self._cache_size:
                self._layouts.popitem(last=False)
        return layout

    def boxes(self, collection: str, document_id: str, start: int, end: int) -> list[dict]:
        """Evidence boxes of ``text[start:end]`` (empty when the document has no layout)."""
        layout = self.layout(collection, document_id)
        if layout is None:
            return []
        original = self.original(collection, document_id)
        reader = None
        if original is not None and original.suffix == ".pdf":
            from qa.ingest.formats.pdf import char_boxes_reader

            reader = char_boxes_reader(original)
        try:
            return evidence_boxes(layout, start, end, reader)
        except Exception:  # noqa: BLE001 - a damaged kept file costs the boxes, not the answer
            return []

    def page_count(self, collection: str, document_id: str) -> int | None:
        layout = self.layout(collection, document_id)
        return len(layout.pages) if layout is not None else None

    def page_png(self, collection: str, document_id: str, page: int, dpi: int = 110) -> bytes | None:
        """PNG of page ``page`` (1-based) of a kept PDF or image, rendered once and cached; None when the
        document has no such page or no pages."""
        original = self.original(collection, document_id)
        count = self.page_count(collection, document_id)
        if original is None or count is None or not 1 <= page <= count:
            return None
        cached = original.parent / "pages" / f"{page}@{dpi}.png"
        if cached.is_file():
            return cached.read_bytes()
        if original.suffix == ".pdf":
            from qa.ingest.formats.pdf import render_page

            png = render_page(original, page, dpi=dpi)
        else:
            png = _image_page(original, page, dpi)
        cached.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            fh.write(png)
        os.replace(tmp, cached)
        return png

    def _forget(self, folder: Path) -> None:
        with self._lock:
            self._layouts.pop(folder, None)
        original = sorted(folder.glob("original.pdf")) if folder.is_dir() else []
        if original:
            from qa.ingest.formats.pdf import forget

            forget(original[0])


def _image_page(path: Path, page: int, dpi: int) -> bytes:
    """Frame ``page`` of a kept image as PNG, scaled to at most about A4 at ``dpi``."""
    import io

    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.seek(page - 1)
        frame = ImageOps.exif_transpose(image.convert("RGB"))
        longest = int(11.7 * dpi)
        if max(frame.size) > longest:
            frame.thumbnail((longest, longest))
        out = io.BytesIO()
        frame.save(out, format="PNG")
        return out.getvalue()
