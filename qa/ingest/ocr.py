"""Optical character recognition for scanned pages and images, in the language the page shows.

Two engines, both offline with models from Debian or inside a PyPI wheel, both Apache-2.0:

* **Tesseract** (Debian ``tesseract-ocr`` with ``chi_sim``, ``chi_tra`` and ``eng`` data, through
  pytesseract, ``OMP_THREAD_LIMIT=1``): reads every page first with ``eng+chi_sim``; faster, and
  right about English, word spaces included.
* **RapidOCR** (PP-OCRv4 through ONNX Runtime, models in the ``rapidocr-onnxruntime`` wheel):
  re-reads a page whose Tesseract text is 30 % or more CJK characters. On a real Chinese page
  (``tests/data/simplified_chinese.pdf`` rendered at 150 dpi) its character error rate against the
  page's own text layer was 0.04, Tesseract's 0.66 (short names and spaced-out characters; ``qa
  bench --formats`` measures both engines' speed and error rate); one model reads simplified and
  traditional Chinese. It drops the spaces between English words and is several times slower,
  hence Tesseract for Latin-script pages.

Without the ``tesseract`` program RapidOCR reads every page. :func:`ocr_lines` turns recognised
lines into layout lines (boxes in points, the line rectangle as page fractions, the confidence kept).
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass

from qa.ingest.formats.pages import Line, is_cjk

__all__ = ["OcrLine", "OcrEngine", "RapidOcrEngine", "TesseractEngine", "LanguageRoutingEngine", "get_ocr_engine",
           "ocr_lines"]


@dataclass(frozen=True)
class OcrLine:
    text: str
    x0: float  # pixels of the image, from its top-left
    y0: float
    x1: float
    y1: float
    confidence: float  # 0-1


class OcrEngine:
    """Reads the lines of text in an image."""

    name = "none"

    def read(self, image) -> list[OcrLine]:
        raise NotImplementedError


class RapidOcrEngine(OcrEngine):
    name = "rapidocr"

    def __init__(self, threads: int = 1):
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
        self._lock = threading.Lock()  # one inference at a time per engine

    def read(self, image) -> list[OcrLine]:
        import numpy as np

        array = np.asarray(image.convert("RGB"))
        with self._lock:
            result, _ = self._engine(array)
        lines = []
        for points, text, score in result or []:
            text = " ".join(str(text).split())
            if not text:
                continue
            xs = [float(p[0]) for p in points]
            ys = [float(p[1]) for p in points]
            lines.append(OcrLine(text, min(xs), min(ys), max(xs), max(ys), float(score)))
        return lines


class TesseractEngine(OcrEngine):
    name = "tesseract"

    def __init__(self, lang: str = "eng+chi_sim"):
        os.environ.setdefault("OMP_THREAD_LIMIT", "1")
        self.lang = lang

    @staticmethod
    def available() -> bool:
        return shutil.which("tesseract") is not None

    def read(self, image) -> list[OcrLine]:
        import pytesseract

        data = pytesseract.image_to_data(image, lang=self.lang, output_type=pytesseract.Output.DICT)
        lines: dict[tuple[int, int, int], list[int]] = {}
        for k, word in enumerate(data["text"]):
            if str(word).strip() and float(data["conf"][k]) >= 0:
                lines.setdefault((data["block_num"][k], data["par_num"][k], data["line_num"][k]), []).append(k)
        out = []
        for words in lines.values():
            parts = [str(data["text"][k]).strip() for k in words]
            text = parts[0]
            for prev, part in zip(parts, parts[1:]):
                text += ("" if is_cjk(prev[-1]) and is_cjk(part[0]) else " ") + part
            x0 = min(data["left"][k] for k in words)
            y0 = min(data["top"][k] for k in words)
            x1 = max(data["left"][k] + data["width"][k] for k in words)
            y1 = max(data["top"][k] + data["height"][k] for k in words)
            conf = sum(float(data["conf"][k]) for k in words) / len(words) / 100
            out.append(OcrLine(text, float(x0), float(y0), float(x1), float(y1), round(conf, 4)))
        return out


class LanguageRoutingEngine(OcrEngine):
    """Tesseract first; RapidOCR again when the page turns out to be Chinese (see the module docstring)."""

    name = "tesseract+rapidocr"

    def __init__(self, cjk_share: float = 0.3):
        self.tesseract = TesseractEngine()
        self.rapid: RapidOcrEngine | None = None
        self.cjk_share = cjk_share

    def read(self, image) -> list[OcrLine]:
        lines = self.tesseract.read(image)
        text = "".join(line.text for line in lines if line.confidence > 0.3)
        letters = [ch for ch in text if ch.isalnum()]
        if letters and sum(is_cjk(ch) for ch in letters) < self.cjk_share * len(letters):
            return lines
        if self.rapid is None:
            self.rapid = RapidOcrEngine()
        return self.rapid.read(image)


_ENGINE: OcrEngine | None = None
_ENGINE_LOCK = threading.Lock()


def get_ocr_engine() -> OcrEngine:
    """The process's OCR engine (loaded on first use: about a second)."""
    global _ENGINE
    with _ENGINE_LOCK:
        if _ENGINE is None:
            _ENGINE = LanguageRoutingEngine() if TesseractEngine.available() else RapidOcrEngine()
        return _ENGINE


def ocr_lines(engine: OcrEngine, image, points_per_pixel: float = 1.0) -> list[Line]:
    """The lines ``engine`` reads in ``image`` as layout lines: boxes in points (``points_per_pixel``
    converts), the line rectangle as fractions of the image, the confidence kept."""
    width, height = image.size
    out = []
    for ln in engine.read(image):
        out.append(Line(
            text=ln.text, x0=ln.x0 * points_per_pixel, y0=ln.y0 * points_per_pixel, x1=ln.x1 * points_per_pixel,
            y1=ln.y1 * points_per_pixel, size=(ln.y1 - ln.y0) * points_per_pixel,
            rect=(ln.x0 / width, ln.y0 / height, ln.x1 / width, ln.y1 / height), conf=round(ln.confidence, 4),
        ))
    return out
