"""Where the text of a paged document sits on its pages, kept beside the document (not in the store).

A :class:`DocumentLayout` maps runs of the stored document text to their place on the pages:

* a *character run* (PDF text layer): ``text[start:end]`` is characters ``char .. char+(end-start)``
  of PDFium's text page ``page``; their boxes are read from the kept original PDF when asked for
  (exact glyph boxes, nothing stored per character);
* a *rectangle run* (text read by OCR): ``text[start:end]`` is one recognised line, drawn in
  ``rect`` (fractions of the page); part of a line gets the matching share of the rectangle.

:func:`evidence_boxes` turns an offset range ``[start, end)`` into boxes
``[{"page", "x0", "y0", "x1", "y1"}]``: 1-based page, coordinates as fractions (0-1) of the page
as it is displayed (rotation applied) from its top-left corner, one box per line piece, so a client
scales them to any rendering of the page. The layout is saved as JSON next to the original file.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from qa.index.files import atomic_write

__all__ = ["Run", "DocumentLayout", "evidence_boxes"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Run:
    """``text[start:end]`` on page ``page`` (1-based): PDF characters from ``char`` on, or a line ``rect``."""

    start: int
    end: int
    page: int
    char: int = -1
    rect: tuple[float, float, float, float] | None = None


@dataclass
class DocumentLayout:
    """Page sizes (display points) and the runs of text, in text order."""

    pages: list[tuple[float, float]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def __setattr__(self, name, value) -> None:
        if name == "pages":  # kept to 0.01 point, as saved
            value = [(round(float(w), 2), round(float(h), 2)) for w, h in value]
        super().__setattr__(name, value)

    def to_json(self) -> str:
        return json.dumps({
            "version": FORMAT_VERSION,
            "pages": [list(p) for p in self.pages],
            "runs": [[r.start, r.end, r.page, r.char] + ([round(v, 5) for v in r.rect] if r.rect else [])
                     for r in self.runs],
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: str | bytes) -> DocumentLayout:
        obj = json.loads(data)
        if obj.get("version") != FORMAT_VERSION:
            raise ValueError(f"layout format {obj.get('version')!r} is not {FORMAT_VERSION}")
        runs = [Run(r[0], r[1], r[2], r[3], tuple(r[4:8]) if len(r) >= 8 else None) for r in obj["runs"]]
        return cls([tuple(p) for p in obj["pages"]], runs)

    def save(self, path: Path) -> None:
        """Write atomically (a temporary file renamed over ``path``)."""
        data = self.to_json()
        atomic_write(path, lambda tmp: tmp.write_text(data, encoding="utf-8"))

    @classmethod
    def load(cls, path: Path) -> DocumentLayout:
        return cls.from_json(path.read_bytes())

    def runs_in(self, start: int, end: int) -> list[tuple[Run, int, int]]:
        """The runs overlapping ``[start, end)``, each with the overlapping offsets."""
        starts = [r.start for r in self.runs]
        k = max(0, bisect_right(starts, start) - 1)
        out = []
        while k < len(self.runs) and self.runs[k].start < end:
            r = self.runs[k]
            a, b = max(r.start, start), min(r.end, end)
            if a < b:
                out.append((r, a, b))
            k += 1
        return out


# A function giving the boxes of PDF characters: (page, first char, count) -> [(x0, y0, x1, y1)] as page fractions.
CharBoxes = Callable[[int, int, int], list[tuple[float, float, float, float]]]


def evidence_boxes(layout: DocumentLayout, start: int, end: int, char_boxes: CharBoxes | None = None,
                   max_boxes: int = 64) -> list[dict]:
    """Boxes of ``text[start:end]`` (see the module docstring); character runs need ``char_boxes``
    (:func:`qa.ingest.formats.pdf.char_boxes_reader` over the kept PDF) and are skipped without it."""
    boxes: list[dict] = []
    for run, a, b in layout.runs_in(start, end):
        if run.rect is not None:
            x0, y0, x1, y1 = run.rect
            n = max(1, run.end - run.start)
            width = x1 - x0
            pieces = [(x0 + width * (a - run.start) / n, y0, x0 + width * (b - run.start) / n, y1)]
        elif char_boxes is not None and run.char >= 0:
            pieces = char_boxes(run.page, run.char + (a - run.start), b - a)
        else:
            continue
        for x0, y0, x1, y1 in pieces:
            boxes.append({"page": run.page, "x0": round(x0, 5), "y0": round(y0, 5),
                          "x1": round(x1, 5), "y1": round(y1, 5)})
            if len(boxes) >= max_boxes:
                return boxes
    return boxes
