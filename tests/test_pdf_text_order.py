"""PDF text in reading order within a row, and the spaces PDFium puts in.

``tests/data/libreoffice-cjk-quotes.pdf`` is what LibreOffice 7.4 (Debian) writes for a Chinese
paragraph with quotes, dashes, digits and Latin words: the quotes of a row in one text object drawn
before its CJK characters, which start further left, and CJK-Latin spacing as gaps between glyphs.
PDFium reads such a row out of order and puts spaces into the gaps; qa puts the row back in order
from the characters' boxes and drops the spaces between CJK characters (and Chinese quotes and dashes).
"""

from __future__ import annotations

from pathlib import Path

from qa.ingest.formats import parse_file
from qa.ingest.formats.pdf import char_boxes_reader
from qa.ingest.layout import evidence_boxes

from docgen import lines_pdf

DATA = Path(__file__).resolve().parent / "data"


def test_a_libreoffice_row_of_chinese_is_read_in_order_without_put_in_spaces():
    doc = parse_file((DATA / "libreoffice-cjk-quotes.pdf").read_bytes(), "cjk-quotes.pdf")
    paragraphs = [b.text for b in doc.blocks if b.kind == "paragraph"]
    assert paragraphs[0] == ("华沙大剧院（1825–33 年）是“波兰纪念剧院”的最佳典范。从 20 世纪 30 年代起，它每年上演 120 场"
                             "演出——其中包括《战国无双 3》改编的音乐剧，由光荣和 Koei 共同制作。")
    assert paragraphs[1] == "它的舞台在 1944 年被毁，1965 年按原样重建，如今可容纳 1841 名观众；“新舞台”则在 2002 年启用。"
    # every passage still slices the text, and evidence boxes come from the characters' own boxes
    assert all(doc.text[b.start:b.end] == b.text for b in doc.blocks)
    # the evidence boxes of "“波兰纪念剧院”" are where it stands: one piece of the first row, between
    # "是" and "的", although PDFium holds its quotes apart from its characters
    boxes = evidence_boxes(doc.layout, *_span(doc.text, "“波兰纪念剧院”"), char_boxes_reader(DATA / "libreoffice-cjk-quotes.pdf"))
    before = evidence_boxes(doc.layout, *_span(doc.text, "是"), char_boxes_reader(DATA / "libreoffice-cjk-quotes.pdf"))
    after = evidence_boxes(doc.layout, *_span(doc.text, "的最佳"), char_boxes_reader(DATA / "libreoffice-cjk-quotes.pdf"))
    assert boxes and all(b["page"] == 1 for b in boxes)
    assert min(b["x0"] for b in boxes) >= before[0]["x1"] - 0.005 and max(b["x1"] for b in boxes) <= after[0]["x0"] + 0.005
    assert max(b["y1"] for b in boxes) - min(b["y0"] for b in boxes) < 0.03  # one row


def _span(text: str, part: str) -> tuple[int, int]:
    start = text.index(part)
    return start, start + len(part)


def test_a_real_hyphen_at_a_line_end_is_kept_and_joined():
    doc = parse_file(lines_pdf(["The Patriots stopped a 2-", "point conversion with 17 seconds left; the infor-",
                                "mation was mended."]), "h.pdf")
    assert "a 2-point conversion" in doc.text and "the information was" in doc.text


def test_pdf_tables_are_kept_as_row_text():
    """``tests/data/libreoffice-tables.pdf``: a Word table with borders laid out by LibreOffice (PDFium reads
    each row as one line with wide gaps), a wrapped cell, and a Chinese table; the paragraphs around them."""
    doc = parse_file((DATA / "libreoffice-tables.pdf").read_bytes(), "tables.pdf")
    paragraphs = [b.text for b in doc.blocks if b.kind == "paragraph"]
    assert paragraphs == [
        "The ferries below run every day of the week except on public holidays, when the winter timetable applies.",
        "Route | First sailing | Last sailing | Crossing time",
        "Stromness – Hoy | 07:00 | 19:30 | 30 minutes",
        "Houton – Flotta | 06:45 | 21:15 | 35 minutes, longer in rough weather",
        "Kirkwall – Shapinsay | 07:15 | 18:10 | 25 minutes",
        "Tickets are sold on board; cars must be booked a day ahead.",
        "城市 | 人口（万） | 面积",
        "上海 | 2487 | 6340 平方公里",
        "杭州 | 1237 | 16850 平方公里",
    ]
    assert not [b for b in doc.blocks if b.kind == "heading"]  # a header row is a row, not a section
    # a row's evidence is its cells on the page: one box per cell, side by side on one row
    reader = char_boxes_reader(DATA / "libreoffice-tables.pdf")
    boxes = evidence_boxes(doc.layout, *_span(doc.text, "Stromness – Hoy | 07:00 | 19:30 | 30 minutes"), reader)
    assert len(boxes) == 4 and all(a["x1"] < b["x0"] for a, b in zip(boxes, boxes[1:]))
    assert max(b["y1"] for b in boxes) - min(b["y0"] for b in boxes) < 0.03


def test_two_columns_of_running_text_are_not_a_table():
    from docgen import LEFT, RIGHT, report_pdf

    doc = parse_file(report_pdf(), "report.pdf")
    assert " | " not in doc.text
    assert [b.text for b in doc.blocks if b.kind == "paragraph"][:4] == LEFT + RIGHT
