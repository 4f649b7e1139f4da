"""Generated edge-case documents for the format tests (reportlab, python-docx, PDFium, Pillow).

Each function returns the file's bytes and, where a test needs it, the text that was drawn, so
that tests compare what the parser reads against what is on the page.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")

HEADER = "ACME Water Board Quarterly Report"
TITLE = "Water Supply Report"
LEFT = [
    "The reservoir near the northern hills held more water this spring than in any year since the "
    "records began, because the winter brought heavy snow and a slow thaw across the valley.",
    "Engineers replaced the old intake pipes during the dry weeks of March and the pumping station "
    "now moves twice as much water with the same amount of electricity as before.",
]
RIGHT = [
    "Households in the eastern district reported fewer interruptions, and the average pressure at the "
    "tap rose by a fifth after the new valves were installed along the main road.",
    "The board plans to build a second treatment plant so that the town can grow without drawing "
    "more water from the river during the hottest months of summer.",
]
RUN_OVER = (
    "The committee reviewed the budget for the coming year in great detail and agreed that the repairs "
    "of the eastern canal should be finished before the autumn rains arrive, because every month of "
    "delay raises the cost of the work and the risk of flooding in the lower streets of the old town, "
    "where the drains are narrow and were built more than a century ago by the first settlers."
)
HYPHEN_LINES = ["The new sensors send infor-", "mation about the flow every minute to the control room."]
ZH_HEADING = "第二章 水质监测"
ZH_PARAGRAPH = (
    "水务局在全市设立了一百二十个水质监测点，每天两次采集水样并在实验室化验。去年全年的合格率达到百分之九十九点六，"
    "比前一年提高了零点三个百分点。监测数据每周在网站上公布，市民也可以拨打热线电话查询所在小区的水质情况。"
)


def _cjk_font() -> str:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if "WQY" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont("WQY", str(CJK_FONT), subfontIndex=0))
    return "WQY"


def _wrap(text: str, font: str, size: float, width: float) -> list[str]:
    """Lines of ``text`` no wider than ``width``: at spaces for Latin text, at any character for CJK."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    if " " in text:
        from reportlab.lib.utils import simpleSplit

        return simpleSplit(text, font, size, width)
    lines, current = [], ""
    for ch in text:
        if stringWidth(current + ch, font, size) > width:
            lines.append(current)
            current = ""
        current += ch
    return lines + ([current] if current else [])


def _paragraph(c, text: str, x: float, y: float, width: float, font: str = "Helvetica", size: float = 10,
               leading: float = 13) -> float:
    c.setFont(font, size)
    for line in _wrap(text, font, size, width):
        c.drawString(x, y, line)
        y -= leading
    return y - leading * 0.8


def report_pdf(title: str = TITLE) -> bytes:
    """Three pages with a running header and footer: a title and heading, two columns, a paragraph
    running from page 2 onto page 3, a hyphenated line break, and a Chinese section."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setTitle("ACME report")
    width, height = A4

    def furniture(n: int) -> None:
        c.setFont("Helvetica", 8)
        c.drawString(72, height - 40, HEADER)
        c.drawString(width / 2 - 20, 30, f"Page {n} of 3")

    # page 1: title, heading, two columns
    furniture(1)
    c.setFont("Helvetica-Bold", 20)
    c.drawString(72, height - 100, title)
    c.setFont("Helvetica-Bold", 14)
    c.drawString(72, height - 140, "1 Introduction")
    col = (width - 144 - 24) / 2
    y = height - 170
    for text in LEFT:
        y = _paragraph(c, text, 72, y, col)
    y = height - 170
    for text in RIGHT:
        y = _paragraph(c, text, 72 + col + 24, y, col)
    c.showPage()

    # page 2: a heading, then a paragraph that runs over onto page 3
    furniture(2)
    c.setFont("Helvetica-Bold", 14)
    c.drawString(72, height - 100, "2 Budget")
    lines = _wrap(RUN_OVER, "Helvetica", 10, width - 144)
    c.setFont("Helvetica", 10)
    y = height - 130
    split = len(lines) // 2
    for line in lines[:split]:
        c.drawString(72, y, line)
        y -= 13
    c.showPage()
    furniture(3)
    c.setFont("Helvetica", 10)
    y = height - 100
    for line in lines[split:]:
        c.drawString(72, y, line)
        y -= 13
    y -= 20
    for line in HYPHEN_LINES:
        c.drawString(72, y, line)
        y -= 13
    y -= 20
    font = _cjk_font()
    c.setFont(font, 14)
    c.drawString(72, y, ZH_HEADING)
    _paragraph(c, ZH_PARAGRAPH, 72, y - 30, width - 144, font=font, size=10, leading=14)
    c.showPage()
    c.save()
    return buf.getvalue()


def short_pages_pdf(texts: list[str]) -> bytes:
    """One line of large type per page (quick to OCR)."""
    from reportlab.lib.pagesizes import A5
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A5)
    for text in texts:
        c.setFont("Helvetica", 20)
        c.drawString(40, 500, text)
        c.showPage()
    c.save()
    return buf.getvalue()


ROTATED_TEXT = "This page is printed in landscape and turned by the viewer."


def rotated_pdf() -> bytes:
    """One page with /Rotate 90."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setPageRotation(90)  # reportlab also lays the media box in landscape (842 x 595)
    c.setFont("Helvetica", 12)
    c.drawString(72, 300, ROTATED_TEXT)
    c.showPage()
    c.save()
    return buf.getvalue()


def encrypted_pdf() -> bytes:
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, encrypt=pdfencrypt.StandardEncryption("secret", ownerPassword="owner"))
    c.drawString(72, 720, "Nobody may read this without the password.")
    c.showPage()
    c.save()
    return buf.getvalue()


def broken_xref(pdf: bytes) -> bytes:
    """``pdf`` with every offset of its cross-reference table zeroed (PDFium has to rebuild it)."""
    start = pdf.rindex(b"\nxref") + 1
    end = pdf.index(b"trailer", start)
    table = pdf[start:end].split(b"\n")
    garbled = [b"0000000000" + line[10:] if line.rstrip().endswith(b" n") else line for line in table]
    return pdf[:start] + b"\n".join(garbled) + pdf[end:]


def javascript_pdf() -> bytes:
    """A small hand-written PDF whose opening action runs JavaScript."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R /OpenAction << /S /JavaScript /JS (app.alert\\('hi'\\);) >> >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 << /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> >>",
    ]
    stream = b"BT /F1 12 Tf 72 720 Td (A page with a script.) Tj ET"
    objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for k, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % k + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def attachment_pdf(pdf: bytes) -> bytes:
    """``pdf`` with a file embedded in it (added through PDFium)."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as r

    import ctypes

    doc = pdfium.PdfDocument(pdf)
    name = "payload.txt\0".encode("utf-16-le")
    handle = r.FPDFDoc_AddAttachment(doc.raw, (ctypes.c_ushort * (len(name) // 2)).from_buffer_copy(name))
    data = b"hidden"
    r.FPDFAttachment_SetFile(handle, doc.raw, data, len(data))
    out = io.BytesIO()
    doc.save(out)
    doc.close()
    return out.getvalue()


def scanned_pdf(pdf: bytes, dpi: int = 200) -> bytes:
    """Every page of ``pdf`` as a picture only (no text layer), as a scanner makes it."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(pdf)
    images = [doc[k].render(scale=dpi / 72).to_pil().convert("L") for k in range(len(doc))]
    doc.close()
    out = io.BytesIO()
    images[0].save(out, format="PDF", resolution=dpi, save_all=True, append_images=images[1:])
    return out.getvalue()


DOCX_FOOTNOTE = "Figures are from the annual survey of 2024."
DOCX_ROWS = [["District", "Households", "Interruptions"], ["North", "1200", "3"], ["East", "950", "1"]]


def notes_docx() -> bytes:
    """A Word file with a title, headings, a paragraph, a table and a footnote."""
    import docx

    d = docx.Document()
    d.core_properties.title = "Quarterly figures"
    d.add_heading("Quarterly figures", level=0)
    d.add_heading("Interruptions", level=1)
    p = d.add_paragraph("Interruptions fell in every district after the valves were replaced.")
    table = d.add_table(rows=len(DOCX_ROWS), cols=3)
    for i, row in enumerate(DOCX_ROWS):
        for j, cell in enumerate(row):
            table.cell(i, j).text = cell
    d.add_heading("供水", level=1)
    d.add_paragraph("东区的用户反映停水次数明显减少。")
    buf = io.BytesIO()
    d.save(buf)
    # python-docx cannot write footnotes: add the part, its relation and a reference by hand
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    edits = {
        "[Content_Types].xml": (b"</Types>", b'<Override PartName="/word/footnotes.xml" ContentType="application/'
                                b'vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml"/></Types>'),
        "word/_rels/document.xml.rels": (b"</Relationships>", b'<Relationship Id="rIdFn" Type="http://schemas.openxml'
                                         b'formats.org/officeDocument/2006/relationships/footnotes" '
                                         b'Target="footnotes.xml"/></Relationships>'),
        "word/document.xml": (b"replaced.</w:t></w:r>",
                              b'replaced.</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r>'),
    }
    footnotes = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:footnotes xmlns:w="{w}">'
        '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
        f'<w:footnote w:id="1"><w:p><w:r><w:t>{DOCX_FOOTNOTE}</w:t></w:r></w:p></w:footnote></w:footnotes>'
    ).encode()
    assert p is not None
    return _rewrite_zip(buf.getvalue(), edits, {"word/footnotes.xml": footnotes})


def _rewrite_zip(raw: bytes, edits: dict[str, tuple[bytes, bytes]], added: dict[str, bytes] | None = None) -> bytes:
    """The zip ``raw`` with ``old -> new`` replaced once in the named members and ``added`` members added."""
    src = zipfile.ZipFile(io.BytesIO(raw))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename in edits:
                old, new = edits[item.filename]
                data = data.replace(old, new, 1)
            z.writestr(item.filename, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
        for name, data in (added or {}).items():
            z.writestr(name, data)
    return out.getvalue()


def zip_bomb_docx(size: int = 5_000_000) -> bytes:
    """A .docx whose document part unpacks to ``size`` bytes of spaces from a few kilobytes."""
    import docx

    buf = io.BytesIO()
    docx.Document().save(buf)
    return _rewrite_zip(buf.getvalue(), {"word/document.xml": (b"<w:body>", b"<w:body>" + b" " * size)})


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels (1-bit grey) with a tiny image stream."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


SLIDES = [("Quarterly results", ["Revenue grew by eight percent", "Costs stayed flat"], "Mention the new plant."),
          ("季度总结", ["收入增长百分之八"], None)]


def deck_pptx() -> bytes:
    """Two slides with titles, bullets and speaker notes."""
    from pptx import Presentation

    deck = Presentation()
    for title, bullets, notes in SLIDES:
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        body = slide.placeholders[1].text_frame
        body.text = bullets[0]
        for bullet in bullets[1:]:
            body.add_paragraph().text = bullet
        if notes:
            slide.notes_slide.notes_text_frame.text = notes
    buf = io.BytesIO()
    deck.save(buf)
    return buf.getvalue()



def lines_pdf(lines: list[str], size: float = 11) -> bytes:
    """One page with ``lines`` as the lines of one left-aligned paragraph (Helvetica)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setFont("Helvetica", size)
    for k, line in enumerate(lines):
        c.drawString(72, A4[1] - 100 - k * size * 1.2, line)
    c.showPage()
    c.save()
    return buf.getvalue()
