"""PDF, Word, PowerPoint and scans: the real parsers (PDFium, python-docx, python-pptx, Tesseract,
RapidOCR) on real-world files from tests/data (see SOURCES.md) and on generated edge cases
(tests/docgen.py), compared with what was drawn on the page."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import docgen
import pytest

from qa.ingest.chunker import chunk_document
from qa.ingest.errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    EncryptedDocumentError,
    FormatMismatchError,
    UnsafeDocumentError,
    UnsupportedFormatError,
)
from qa.ingest.formats import ParseOptions, detect_parser, parse_file
from qa.ingest.formats.pdf import char_boxes_reader, render_page
from qa.ingest.layout import DocumentLayout, evidence_boxes
from qa.models import ParsedDocument

DATA = Path(__file__).parent / "data"


def words(n: str) -> int:
    return len(n.split()) + sum(1 for ch in n if "\u4e00" <= ch <= "\u9fff")


def check_offsets(doc: ParsedDocument) -> None:
    for b in doc.blocks:
        assert doc.text[b.start:b.end] == b.text and b.text == b.text.strip(), b
    if doc.page_starts is not None:
        assert doc.page_starts == sorted(doc.page_starts) and doc.page_starts[-1] <= len(doc.text)
        assert all(b.page == doc.pages_of(b.start, b.end)[0] for b in doc.blocks)
    if doc.layout is not None:
        runs = doc.layout.runs
        assert all(0 <= r.start < r.end <= len(doc.text) for r in runs)
        assert all(a.end <= b.start for a, b in zip(runs, runs[1:]))


def block(doc: ParsedDocument, start: str):
    found = [b for b in doc.blocks if b.text.startswith(start)]
    assert len(found) == 1, (start, [b.text[:40] for b in doc.blocks])
    return found[0]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[ParsedDocument, Path]:
    path = tmp_path_factory.mktemp("pdf") / "report.pdf"
    path.write_bytes(docgen.report_pdf())
    return parse_file(path.read_bytes(), path.name), path


# ---------------------------------------------------------------------------------------------
# PDF structure (generated: we know what is on each page)


def test_report_structure(report) -> None:
    doc, _ = report
    check_offsets(doc)
    assert doc.format == "pdf" and doc.title == docgen.TITLE
    assert [b.kind for b in doc.blocks if b.kind != "paragraph"] == ["title", "heading", "heading", "heading"]
    assert docgen.HEADER not in doc.text and "Page 1 of 3" not in doc.text and "of 3" not in doc.text
    # columns: the left column's paragraphs, whole, before the right column's
    paragraphs = [b.text for b in doc.blocks if b.kind == "paragraph"]
    assert paragraphs[:4] == docgen.LEFT + docgen.RIGHT
    # a paragraph that runs over a page break is one block on pages 2-3
    run_over = block(doc, "The committee reviewed")
    assert run_over.text == docgen.RUN_OVER and doc.pages_of(run_over.start, run_over.end) == (2, 3)
    # hyphenation mended, CJK joined without spaces
    assert block(doc, "The new sensors").text == "The new sensors send information about the flow every minute to " \
                                                  "the control room."
    assert block(doc, "水务局").text == docgen.ZH_PARAGRAPH
    assert block(doc, docgen.ZH_HEADING).kind == "heading"
    assert len(doc.page_starts) == 3 and doc.pages_of(*_span(doc, "Households")) == (1, None)


def _span(doc: ParsedDocument, phrase: str) -> tuple[int, int]:
    at = doc.text.index(phrase)
    return at, at + len(phrase)


def test_passages_carry_pages_and_sections(report) -> None:
    doc, _ = report
    drafts = chunk_document(doc, words, 400)
    by_text = {d.text[:20]: d for d in drafts}
    run_over = by_text[docgen.RUN_OVER[:20]]
    assert (run_over.page, run_over.page_end, run_over.section) == (2, 3, "2 Budget")
    assert by_text[docgen.LEFT[0][:20]].page == 1 and by_text[docgen.LEFT[0][:20]].page_end is None
    assert by_text[docgen.ZH_PARAGRAPH[:20]].section == docgen.ZH_HEADING
    assert all(d.ocr_confidence is None for d in drafts)
    # split passages keep their own pages
    small = chunk_document(doc, words, 25)
    parts = [d for d in small if d.text in docgen.RUN_OVER]
    assert len(parts) >= 2 and parts[0].page == 2 and parts[-1].page == 3


def test_evidence_boxes_sit_where_the_text_is_drawn(report, tmp_path) -> None:
    doc, path = report
    layout_path = tmp_path / "report.layout.json"
    doc.layout.save(layout_path)
    layout = DocumentLayout.load(layout_path)
    assert layout == doc.layout
    boxes_of = char_boxes_reader(path)
    right = evidence_boxes(layout, *_span(doc, docgen.RIGHT[0]), boxes_of)
    left = evidence_boxes(layout, *_span(doc, docgen.LEFT[0]), boxes_of)
    assert right and left and {b["page"] for b in right + left} == {1}
    assert all(0 <= b["x0"] < b["x1"] <= 1 and 0 <= b["y0"] < b["y1"] <= 1 for b in right + left)
    assert min(b["x0"] for b in right) > 0.5 > max(b["x1"] for b in left)  # right column vs left column
    assert min(b["y0"] for b in left) > 0.18  # below the title and heading, counted from the top of the page
    word = evidence_boxes(layout, *_span(doc, "Households"), boxes_of)
    assert len(word) == 1 and word[0]["x1"] - word[0]["x0"] < 0.15  # one word: one small box
    over = evidence_boxes(layout, *_span(doc, docgen.RUN_OVER), boxes_of)
    assert {b["page"] for b in over} == {2, 3}
    png = render_page(path, 1, dpi=50)
    assert png.startswith(b"\x89PNG")
    with pytest.raises(IndexError):
        render_page(path, 4)


def test_rotated_page(tmp_path) -> None:
    path = tmp_path / "rotated.pdf"
    path.write_bytes(docgen.rotated_pdf())
    doc = parse_file(path.read_bytes(), path.name)
    assert docgen.ROTATED_TEXT in doc.text
    boxes = evidence_boxes(doc.layout, *_span(doc, docgen.ROTATED_TEXT), char_boxes_reader(path))
    assert boxes and all(0 <= b["x0"] < b["x1"] <= 1 and 0 <= b["y0"] < b["y1"] <= 1 for b in boxes)
    (w, h), = doc.layout.pages
    assert w < h  # a landscape media box turned by 90 degrees: displayed upright
    box = boxes[0]  # the line, horizontal in the media box, runs down the displayed page
    assert (box["y1"] - box["y0"]) * h > (box["x1"] - box["x0"]) * w


def test_broken_cross_reference_table_is_repaired(report) -> None:
    doc, path = report
    broken = docgen.broken_xref(path.read_bytes())
    assert broken != path.read_bytes()
    again = parse_file(broken, "broken.pdf")
    assert again.text == doc.text


# ---------------------------------------------------------------------------------------------
# Real-world PDFs


def test_real_two_column_paper() -> None:
    doc = parse_file((DATA / "multi-column-2p.pdf").read_bytes(), "multi-column-2p.pdf")
    check_offsets(doc)
    assert doc.title == "Dense Passage Retrieval for Open-Domain Question Answering"
    abstract = block(doc, "Open-domain question answering relies on")
    assert abstract.text.startswith("Open-domain question answering relies on efficient passage retrieval to select "
                                    "candidate contexts, where traditional sparse vector space models")
    assert doc.pages_of(abstract.start, abstract.end) == (1, None)
    intro = block(doc, "Open-domain question answering (QA)")
    assert "using a large collection of documents" in intro.text  # "us-" / "ing" mended
    assert block(doc, "Abstract").kind == "heading" and block(doc, "1 Introduction").kind == "heading"
    assert doc.text.index("Abstract") < doc.text.index("1 Introduction") < doc.text.index("Retrieval in open-domain QA")
    assert block(doc, "2 Background").kind == "heading"
    assert doc.pages_of(*_span(doc, "2 Background")) == (2, None)
    assert len(doc.page_starts) == 2


def test_real_memo_and_chinese_pdf() -> None:
    memo = parse_file((DATA / "fake-memo.pdf").read_bytes(), "fake-memo.pdf")
    check_offsets(memo)
    assert "delivered on January 23, 2023. A total of 3 trucks" in block(memo, "There were").text
    zh = parse_file((DATA / "simplified_chinese.pdf").read_bytes(), "simplified_chinese.pdf")
    check_offsets(zh)
    assert "中华人民共和国国务院侨务办公室" in zh.text and "贾益民" in zh.text
    assert zh.layout.runs and zh.page_starts == [0]


# ---------------------------------------------------------------------------------------------
# Word and PowerPoint


def test_generated_docx_headings_tables_and_notes() -> None:
    doc = parse_file(docgen.notes_docx(), "figures.docx")
    check_offsets(doc)
    assert doc.format == "docx" and doc.title == "Quarterly figures" and doc.page_starts is None
    kinds = [(b.kind, b.text) for b in doc.blocks]
    rows = [" | ".join(row) for row in docgen.DOCX_ROWS]
    assert kinds == [
        ("title", "Quarterly figures"), ("heading", "Interruptions"),
        ("paragraph", "Interruptions fell in every district after the valves were replaced."),
        *[("paragraph", row) for row in rows],
        ("heading", "供水"), ("paragraph", "东区的用户反映停水次数明显减少。"),
        ("heading", "Notes"), ("paragraph", docgen.DOCX_FOOTNOTE),
    ]
    drafts = chunk_document(doc, words, 400)
    assert [d.section for d in drafts][-1] == "Notes" and all(d.page is None for d in drafts)


def test_real_docx_files() -> None:
    tables = parse_file((DATA / "docx-tables.docx").read_bytes(), "docx-tables.docx")
    check_offsets(tables)
    assert "Header Col 1 | Header Col 2" in [b.text for b in tables.blocks]
    zh = parse_file((DATA / "nb-psr-part1-explanation.docx").read_bytes(), "nb-psr-part1-explanation.docx")
    check_offsets(zh)
    assert block(zh, "任务来源及计划要求").kind == "heading"  # no heading styles: short lines promoted
    assert "国家能源局2021年下达的能源行业核电标准制修订计划" in block(zh, "本标准来源于").text
    drafts = chunk_document(zh, words, 400)
    assert any(d.section == "任务来源及计划要求" for d in drafts)


def test_generated_pptx_slides_are_pages_and_notes_apart() -> None:
    doc = parse_file(docgen.deck_pptx(), "deck.pptx")
    check_offsets(doc)
    assert doc.format == "pptx" and doc.title == "Quarterly results"
    assert [b.kind for b in doc.blocks] == ["heading", "paragraph", "paragraph", "heading", "paragraph"]
    assert block(doc, "Revenue").text == "Revenue grew by eight percent\nCosts stayed flat"
    drafts = chunk_document(doc, words, 400)
    assert [(d.section, d.page) for d in drafts] == [
        ("Quarterly results", 1), ("Quarterly results", 1), ("季度总结", 2)]
    assert drafts[1].text == "Mention the new plant."  # the speaker notes: a passage of their own


def test_real_pptx_files() -> None:
    en = parse_file((DATA / "fake-power-point.pptx").read_bytes(), "fake-power-point.pptx")
    check_offsets(en)
    assert block(en, "Adding a Bullet Slide").kind in ("heading", "paragraph")
    assert "Here is some text in a text box!" in en.text and en.page_starts == [0]
    zh = parse_file((DATA / "ocr_test.pptx").read_bytes(), "ocr_test.pptx")
    check_offsets(zh)
    assert "我是文字" in zh.text and "我是表格1 | 我是表格5" in zh.text


# ---------------------------------------------------------------------------------------------
# Scans (OCR)


def test_scanned_english_pdf_is_read_by_ocr(tmp_path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(docgen.scanned_pdf((DATA / "fake-memo.pdf").read_bytes()))
    doc = parse_file(path.read_bytes(), path.name)
    check_offsets(doc)
    assert "20,000 bottles of water" in doc.text and "To Whom it May Concern" in doc.text
    drafts = chunk_document(doc, words, 400)
    assert drafts and all(d.page == 1 and 0.5 < d.ocr_confidence <= 1 for d in drafts)
    boxes = evidence_boxes(doc.layout, *_span(doc, "20,000 bottles"))  # OCR lines need no PDF
    assert boxes and all(b["page"] == 1 and 0.05 < b["x0"] < b["x1"] < 0.95 for b in boxes)
    assert boxes[0]["y0"] < 0.3  # near the top of the page


def test_chinese_image_is_read_by_ocr() -> None:
    doc = parse_file((DATA / "chi_sim_image.jpeg").read_bytes(), "chi_sim_image.jpeg")
    check_offsets(doc)
    assert doc.format == "image"
    assert "甘草黄酮" in doc.text and "适用人群" in doc.text
    assert all(0 < conf <= 1 for _, _, conf in doc.ocr_spans)


# ---------------------------------------------------------------------------------------------
# Bad input


def test_encrypted_pdfs_are_refused() -> None:
    for raw, name in ((docgen.encrypted_pdf(), "secret.pdf"), ((DATA / "password.pdf").read_bytes(), "password.pdf")):
        with pytest.raises(EncryptedDocumentError, match="password"):
            parse_file(raw, name)


@pytest.mark.parametrize("raw", [b"%PDF-1.7\n1 0 obj<<>>endobj\n", docgen.javascript_pdf()[:150], b"%PDF-" + bytes(range(256)) * 8])
def test_corrupt_pdfs_are_refused(raw: bytes) -> None:
    with pytest.raises(CorruptDocumentError, match="cannot be read"):
        parse_file(raw, "broken.pdf")


def test_active_content_is_refused(report) -> None:
    _, path = report
    with pytest.raises(UnsafeDocumentError, match="JavaScript"):
        parse_file(docgen.javascript_pdf(), "script.pdf")
    attached = docgen.attachment_pdf(path.read_bytes())
    with pytest.raises(UnsafeDocumentError, match="embedded file"):
        parse_file(attached, "attached.pdf")
    allowed = ParseOptions(refuse_active_content=False)
    assert "A page with a script." in parse_file(docgen.javascript_pdf(), "script.pdf", allowed).text
    assert docgen.TITLE in parse_file(attached, "attached.pdf", allowed).text


def test_limits() -> None:
    with pytest.raises(UnsafeDocumentError, match="zip bomb"):
        parse_file(docgen.zip_bomb_docx(), "bomb.docx")
    with pytest.raises(DocumentTooLargeError, match="QA_MAX_UNPACKED_BYTES"):
        parse_file(docgen.notes_docx(), "figures.docx", ParseOptions(max_unpacked_bytes=10_000))
    with pytest.raises(DocumentTooLargeError, match="QA_MAX_IMAGE_PIXELS"):
        parse_file(docgen.png_header(20_000, 20_000), "huge.png")
    with pytest.raises(DocumentTooLargeError, match="9000 x 8000"):
        parse_file(docgen.png_header(9_000, 8_000), "big.png")
    with pytest.raises(DocumentTooLargeError, match="3 pages"):
        parse_file(docgen.report_pdf(), "report.pdf", ParseOptions(max_pages=2))
    with pytest.raises(DocumentTooLargeError, match="2 slides"):
        parse_file(docgen.deck_pptx(), "deck.pptx", ParseOptions(max_pages=1))


def test_content_decides_and_lying_extensions_are_refused() -> None:
    pdf, docx, pptx = docgen.rotated_pdf(), docgen.notes_docx(), docgen.deck_pptx()
    png = (DATA / "chi_sim_image.jpeg").read_bytes()
    assert [detect_parser(raw, None).name for raw in (pdf, docx, pptx, png, b"plain")] == \
        ["pdf", "docx", "pptx", "image", "text"]
    assert detect_parser(docx, "notes").name == "docx"  # no extension: the content decides
    for raw, name, said in ((pdf, "a.docx", "Word document"), (docx, "a.pdf", "PDF"), (png, "a.txt", "text file"),
                            (b"hello", "a.pdf", "PDF"), (pptx, "a.docx", "Word document")):
        with pytest.raises(FormatMismatchError, match=re.escape(said)):
            detect_parser(raw, name)
    with pytest.raises(UnsupportedFormatError, match="legacy Office"):
        detect_parser(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, "old.doc")
    with pytest.raises(UnsupportedFormatError, match=r"\.doc"):
        detect_parser(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, None)


def test_broken_office_files_are_refused() -> None:
    docx = bytearray(docgen.notes_docx())
    cut = bytes(docx[: len(docx) // 2])
    with pytest.raises((CorruptDocumentError, UnsupportedFormatError)):
        parse_file(cut, "cut.docx")
    with pytest.raises(CorruptDocumentError):
        parse_file(b"\x89PNG\r\n\x1a\n" + b"\0" * 50, "bad.png")


def test_ocr_off_refuses_scans() -> None:
    options = replace(ParseOptions(), ocr=False)
    with pytest.raises(ValueError, match="OCR is off"):
        parse_file((DATA / "chi_sim_image.jpeg").read_bytes(), "x.jpeg", options)


# ---------------------------------------------------------------------------------------------
# Through the real server (USE-m)


def test_uploaded_pdf_docx_and_pptx_are_searchable_with_exact_citations(fast_server, citations_fast) -> None:
    client = fast_server.client
    for name, raw in (("water-report.pdf", docgen.report_pdf()), ("figures.docx", docgen.notes_docx()),
                      ("deck.pptx", docgen.deck_pptx())):
        resp = client.post("/v1/documents", files={"file": (name, raw, "application/octet-stream")})
        assert resp.status_code == 201, resp.text
        assert resp.json()["passages"] > 0
    resp = client.post("/v1/search", json={"query": "When should the repairs of the eastern canal be finished?",
                                           "top_k": 3, "document_ids": ["water-report"]})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    citations_fast(result)
    top = result["results"][0]
    assert top["text"] == docgen.RUN_OVER and top["section"] == "2 Budget"
    assert (top["page"], top["page_end"]) == (2, 3)  # the paragraph runs from page 2 onto page 3
    assert {b["page"] for b in top["evidence"]["boxes"]} <= {2, 3}
    resp = client.post("/v1/search", json={"query": "水质合格率是多少？", "top_k": 1, "document_ids": ["water-report"]})
    citations_fast(resp.json())
    assert resp.json()["results"][0]["text"] == docgen.ZH_PARAGRAPH
    assert resp.json()["results"][0]["page"] == 3 and resp.json()["results"][0].get("page_end") is None
    slide = client.get("/v1/passages/deck:3").json()  # the second slide's bullet
    assert slide["page"] == 2 and slide["section"] == "季度总结"


def test_a_multi_page_scan_goes_through_the_ocr_pool_with_progress() -> None:
    texts = ["The first page is about rivers", "The second page is about lakes", "The third page is about rain"]
    scan = docgen.scanned_pdf(docgen.short_pages_pdf(texts), dpi=100)
    seen: list[tuple[str, int, int]] = []
    doc = parse_file(scan, "scan.pdf", ParseOptions(ocr_workers=2, ocr_dpi=150,
                                                    on_progress=lambda *a: seen.append(a)))
    check_offsets(doc)
    assert [s for s in seen if s[0] == "pages parsed"][-1] == ("pages parsed", 3, 3)
    assert [s[1] for s in seen if s[0] == "pages OCR'd"] == [1, 2, 3]
    assert [doc.pages_of(*_span(doc, word)) for word in ("rivers", "lakes", "rain")] == \
        [(1, None), (2, None), (3, None)]


def test_originals_are_kept_with_layout_boxes_and_cached_pages(report, tmp_path) -> None:
    from qa.ingest.originals import OriginalFiles

    doc, path = report
    assert doc.original == path.read_bytes() and doc.original_ext == ".pdf"
    kept = OriginalFiles(tmp_path / "originals")
    kept.save("default", "water", doc.original, doc.original_ext, doc.layout)
    assert kept.original("default", "water").read_bytes() == path.read_bytes()
    boxes = kept.boxes("default", "water", *_span(doc, docgen.RIGHT[0]))
    assert boxes == evidence_boxes(doc.layout, *_span(doc, docgen.RIGHT[0]), char_boxes_reader(path))
    assert kept.page_count("default", "water") == 3
    png = kept.page_png("default", "water", 2, dpi=40)
    assert png.startswith(b"\x89PNG") and (tmp_path / "originals/default/water/pages/2@40.png").read_bytes() == png
    assert kept.page_png("default", "water", 4) is None
    # replaced: the new file, its own layout, no stale page images
    memo = parse_file((DATA / "fake-memo.pdf").read_bytes(), "memo.pdf")
    kept.save("default", "water", memo.original, memo.original_ext, memo.layout)
    assert kept.page_count("default", "water") == 1 and not (tmp_path / "originals/default/water/pages").exists()
    assert kept.boxes("default", "water", *_span(memo, "20,000 bottles"))
    kept.delete("default", "water")
    assert kept.original("default", "water") is None and kept.boxes("default", "water", 0, 10) == []
    with pytest.raises(ValueError):
        kept.folder("default", "../etc")


def test_kept_file_page_images_boxes_and_evidence_boxes_over_http(fast_server) -> None:
    client = fast_server.client
    raw = docgen.report_pdf(title="Water Supply Report, kept")  # not a duplicate of another test's upload
    resp = client.post("/v1/documents", files={"file": ("kept-report.pdf", raw, "application/pdf")})
    assert resp.status_code == 201, resp.text
    got = client.get("/v1/documents/kept-report/file")
    assert got.status_code == 200 and got.content == raw and got.headers["content-type"] == "application/pdf"
    page = client.get("/v1/documents/kept-report/pages/2")
    assert page.status_code == 200 and page.headers["content-type"] == "image/png" and page.content[:4] == b"\x89PNG"
    assert client.get("/v1/documents/kept-report/pages/2").content == page.content  # cached
    for bad in ("/v1/documents/kept-report/pages/9", "/v1/documents/nothing/file", "/v1/documents/nothing/pages/1"):
        assert client.get(bad).status_code == 404
    text = client.get("/v1/documents/kept-report").json()["text"]
    at = text.index(docgen.RIGHT[0])
    boxes = client.get("/v1/documents/kept-report/boxes", params={"start": at, "end": at + len(docgen.RIGHT[0])}).json()
    assert boxes and all(b["page"] == 1 and b["x0"] > 0.5 for b in boxes)
    resp = client.post("/v1/search", json={"query": "How much did the pressure at the tap rise in the eastern district?",
                                           "top_k": 1, "document_ids": ["kept-report"]})
    evidence = resp.json()["results"][0]["evidence"]
    assert evidence["boxes"] and {b["page"] for b in evidence["boxes"]} == {1}
    assert all(0 <= b["x0"] < b["x1"] <= 1 and 0 <= b["y0"] < b["y1"] <= 1 for b in evidence["boxes"])
    # a document sent as JSON text has no file and no boxes
    client.post("/v1/documents", json={"title": "Plain", "text": "Just text here.", "id": "plain-one"})
    assert client.get("/v1/documents/plain-one/file").status_code == 404
    assert client.get("/v1/documents/plain-one/boxes", params={"start": 0, "end": 4}).json() == []
    # deleting the document deletes what was kept
    assert client.delete("/v1/documents/kept-report").status_code == 200
    assert client.get("/v1/documents/kept-report/file").status_code == 404


def test_a_scan_upload_is_a_job_with_progress_and_a_result(fast_server) -> None:
    import time

    client = fast_server.client
    scan = docgen.scanned_pdf(docgen.short_pages_pdf(["Otters hold hands while they sleep"]), dpi=100)
    resp = client.post("/v1/documents", files={"file": ("otters.pdf", scan, "application/pdf")})
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert resp.headers["location"] == accepted["location"] == f"/v1/jobs/{accepted['job_id']}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job = client.get(accepted["location"]).json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.5)
    assert job["state"] == "done", job
    assert job["result"]["document_id"] == "otters" and job["result"]["passages"] >= 1
    assert job["progress"]["pages parsed"] == {"done": 1, "total": 1}
    assert job["progress"]["pages OCR'd"] == {"done": 1, "total": 1}
    assert job["progress"]["passages embedded"]["done"] == job["progress"]["passages embedded"]["total"]
    assert "Otters hold hands" in client.get("/v1/documents/otters").json()["text"]
    # what the quick checks find is refused at once, not queued
    resp = client.post("/v1/documents", params={"background": "true"},
                       files={"file": ("secret.pdf", docgen.encrypted_pdf(), "application/pdf")})
    assert resp.status_code == 422 and "password" in resp.json()["error"]["message"]
    # a job that fails later says why: an image whose header is fine but whose pixels are cut off
    resp = client.post("/v1/documents", files={"file": ("cut.png", docgen.png_header(400, 300), "image/png")})
    assert resp.status_code == 202
    failed = client.get(resp.json()["location"]).json()
    while failed["state"] not in ("done", "failed"):
        time.sleep(0.3)
        failed = client.get(resp.json()["location"]).json()
    assert failed["state"] == "failed" and failed["error"]["type"] == "CorruptDocumentError"
    assert "cut.png" in failed["error"]["message"]
    assert client.get("/v1/jobs/nope").status_code == 404
    assert any(j["id"] == accepted["job_id"] for j in client.get("/v1/jobs").json())


def test_citation_label() -> None:
    from qa.models import citation_label

    assert citation_label("Report", "2 Budget", 12) == "Report › p. 12 › 2 Budget"
    assert citation_label("Report", "2 Budget", 2, 3) == "Report › p. 2–3 › 2 Budget"
    assert citation_label("Notes", None) == "Notes"
