"""``qa bench --formats``: document parsing speed (embedding excluded) and OCR quality, on this machine.

* PDF text layer: pages per second of the whole parse (PDFium text and boxes, reading order,
  headers and footers, paragraphs, headings) over ``tests/data/multi-column-2p.pdf`` (a real two-
  column paper) and a generated 100-page two-column report, one thread.
* OCR: seconds per page of each engine on a real Chinese page (``tests/data/simplified_chinese.pdf``
  rendered at 150 dpi) and on an English scan (``tests/data/fake-memo.pdf`` rendered at 200 dpi),
  with the character error rate against the text layer of the same page (whitespace ignored).
"""

from __future__ import annotations

import difflib
import io
import time
from pathlib import Path

from qa.ingest.formats import parse_file

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def _cer(got: str, want: str) -> float:
    a, b = "".join(got.split()), "".join(want.split())
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return 1 - 2 * sum(block.size for block in matcher.get_matching_blocks()) / max(len(a) + len(b), 1)


def _generated_report(pages: int) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfgen import canvas

    text = ("The reservoir near the northern hills held more water this spring than in any year since the records "
            "began, because the winter brought heavy snow and a slow thaw across the valley. ") * 3
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    width, height = A4
    col = (width - 144 - 24) / 2
    for n in range(1, pages + 1):
        c.setFont("Helvetica", 8)
        c.drawString(72, height - 40, "Quarterly report")
        c.drawString(width / 2, 30, f"Page {n}")
        c.setFont("Helvetica-Bold", 14)
        c.drawString(72, height - 90, f"Section {n}")
        for x in (72, 72 + col + 24):
            y = height - 120
            c.setFont("Helvetica", 10)
            while y > 80:
                for line in simpleSplit(text, "Helvetica", 10, col):
                    if y <= 80:
                        break
                    c.drawString(x, y, line)
                    y -= 13
                y -= 10
        c.showPage()
    c.save()
    return buf.getvalue()


def _pages_per_second(raw: bytes, name: str, pages: int, min_seconds: float = 3.0) -> float:
    runs, start = 0, time.perf_counter()
    while True:
        parse_file(raw, name)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return runs * pages / elapsed


def run(ocr: bool = True, console=None) -> list[dict]:
    import pypdfium2 as pdfium

    rows = []
    paper = (DATA / "multi-column-2p.pdf").read_bytes()
    rows.append({"what": "PDF text layer, multi-column-2p.pdf (2 pages)", "pages/s": _pages_per_second(paper, "p.pdf", 2)})
    report = _generated_report(100)
    rows.append({"what": "PDF text layer, generated 2-column report (100 pages)",
                 "pages/s": _pages_per_second(report, "r.pdf", 100)})
    if not ocr:
        _print(rows, console)
        return rows
    from qa.ingest.ocr import RapidOcrEngine, TesseractEngine

    engines = [("RapidOCR", RapidOcrEngine())]
    if TesseractEngine.available():
        engines.insert(0, ("Tesseract eng+chi_sim", TesseractEngine()))
    for name, dpi in (("simplified_chinese.pdf", 150), ("fake-memo.pdf", 200)):
        doc = pdfium.PdfDocument(DATA / name)
        page = doc[0]
        truth = page.get_textpage().get_text_range()
        image = page.render(scale=dpi / 72).to_pil()
        doc.close()
        for label, engine in engines:
            engine.read(image)  # warm up (model load)
            start = time.perf_counter()
            lines = engine.read(image)
            seconds = time.perf_counter() - start
            rows.append({"what": f"OCR {label}, {name} at {dpi} dpi", "s/page": seconds,
                         "CER": _cer("".join(line.text for line in lines), truth)})
    _print(rows, console)
    return rows


def _print(rows: list[dict], console) -> None:
    import os

    out = console.print if console is not None else print
    out(f"(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    for row in rows:
        figures = "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if k != "what")
        out(f"{row['what']:<62} {figures}")
