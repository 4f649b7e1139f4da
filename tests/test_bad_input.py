"""Bad and odd input over real HTTP (USE-m server): a clear 4xx with ``{"error": {"type", "message"}}``
for what is wrong, a valid result for what is merely odd, never a 500, and the server keeps answering.
"""

from __future__ import annotations

import uuid

import pytest

import docgen
from conftest import CitationChecker, QAServer, assert_error_response

HUNDRED_KB = "上海人工智能" * 17_000  # 102,000 characters


def _post_search_raw(content: bytes, content_type: str = "application/json"):
    return lambda c: c.post("/v1/search", content=content, headers={"content-type": content_type})


def _search(body):
    return lambda c: c.post("/v1/search", json=body)


def _upload(filename: str, data: bytes, content_type: str = "application/octet-stream"):
    return lambda c: c.post("/v1/documents", files={"file": (filename, data, content_type)})


# (id, request, expected status(es), words the message must contain)
BAD_REQUESTS = [
    ("empty query", _search({"query": ""}), 422, "empty"),
    ("whitespace query", _search({"query": " \t\n\u3000 "}), 422, "empty"),
    ("100 KB query", _search({"query": HUNDRED_KB}), 422, "2000"),
    ("2001 characters", _search({"query": "a" * 2001}), 422, "limit"),
    ("query is a number", _search({"query": 42}), 422, "query"),
    ("query is a list", _search({"query": ["上海", "AI"]}), 422, "query"),
    ("query is null", _search({"query": None}), 422, "query"),
    ("query missing", _search({"top_k": 3}), 422, "query"),
    ("top_k 0", _search({"query": "上海", "top_k": 0}), 422, "top_k"),
    ("top_k 1000", _search({"query": "上海", "top_k": 1000}), 422, "top_k"),
    ("top_k '5x'", _search({"query": "上海", "top_k": "5x"}), 422, "top_k"),
    ("top_k 2.5", _search({"query": "上海", "top_k": 2.5}), 422, "top_k"),
    ("unknown field", _search({"query": "上海", "topk": 3}), 422, "topk"),
    ("unknown language", _search({"query": "上海", "lang": "fr"}), 422, "lang"),
    ("body is a list", _search(["上海"]), 422, "body"),
    ("invalid JSON", _post_search_raw(b'{"query": "\xe4\xb8\x8a\xe6\xb5\xb7",'), 400, "JSON"),
    ("not UTF-8 JSON", _post_search_raw(b'{"query": "\xff\xfe"}'), 400, ""),
    ("empty body", _post_search_raw(b""), (400, 422), ""),
    ("form-encoded search", _post_search_raw(b"query=x", "application/x-www-form-urlencoded"), 422, ""),
    ("GET on search", lambda c: c.get("/v1/search"), 405, ""),
    ("unknown route", lambda c: c.get("/v1/nothing-here"), 404, ""),
    ("unknown document GET", lambda c: c.get("/v1/documents/no-such-doc"), 404, "no-such-doc"),
    ("unknown document DELETE", lambda c: c.delete("/v1/documents/no-such-doc"), 404, "no-such-doc"),
    ("unknown passage", lambda c: c.get("/v1/passages/no-such-doc:1"), 404, "no-such-doc:1"),
    ("malformed passage id", lambda c: c.get("/v1/passages/%20"), 404, ""),
    ("document list limit 0", lambda c: c.get("/v1/documents", params={"limit": 0}), 422, "limit"),
    ("document list limit text", lambda c: c.get("/v1/documents", params={"limit": "ten"}), 422, "limit"),
    # uploads
    ("not UTF-8 upload", _upload("latin1.txt", "Café à Paris, Zürich".encode("latin-1")), 422, "UTF-8"),
    ("BOM then invalid UTF-16", _upload("u16.txt", b"\xff\xfe\xfa\xfb\xfc"), 422, "UTF"),
    ("BOM then lone surrogate", _upload("u16s.txt", b"\xff\xfe\x00\xd8A\x00"), 422, "UTF"),
    ("binary upload", _upload("blob.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), 422, ""),
    ("empty file", _upload("empty.txt", b""), 422, "no text"),
    ("whitespace file", _upload("blank.md", b" \n\n\t \r\n"), 422, "no text"),
    ("corrupt pdf", _upload("paper.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\n", "application/pdf"), 422, ".pdf"),
    ("encrypted pdf", _upload("secret.pdf", docgen.encrypted_pdf(), "application/pdf"), 422, "password"),
    ("pdf with javascript", _upload("script.pdf", docgen.javascript_pdf(), "application/pdf"), 422, "javascript"),
    ("docx zip bomb", _upload("bomb.docx", docgen.zip_bomb_docx()), 422, "zip bomb"),
    ("extension lies", _upload("report.pdf", docgen.notes_docx()), 422, "named like a pdf"),
    ("20000 x 20000 image", _upload("huge.png", docgen.png_header(20_000, 20_000), "image/png"), 413, "pixels"),
    ("legacy word file", _upload("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)), 422, ".docx"),
    ("upload without file field", lambda c: c.post("/v1/documents", data={"id": "x"}, files={"other": ("a.txt", b"hi")}),
     422, "file"),
    ("multipart without boundary", lambda c: c.post("/v1/documents", content=b"--x\r\n",
                                                   headers={"content-type": "multipart/form-data"}), 400, ""),
    ("unsupported content type", lambda c: c.post("/v1/documents", content=b"<doc>hi</doc>",
                                                  headers={"content-type": "application/xml"}), 415, "json"),
    ("document invalid JSON", lambda c: c.post("/v1/documents", content=b'{"title": "t", "text": ',
                                               headers={"content-type": "application/json"}), 400, "JSON"),
    ("document without text", lambda c: c.post("/v1/documents", json={"title": "t"}), 422, "text"),
    ("document with blank text", lambda c: c.post("/v1/documents", json={"title": "t", "text": " \n "}), 422, "empty"),
    ("document with empty title", lambda c: c.post("/v1/documents", json={"title": "", "text": "x y z"}), 422, "title"),
    ("document unknown field", lambda c: c.post("/v1/documents", json={"title": "t", "text": "x", "author": "a"}),
     422, "author"),
    ("document id unusable", lambda c: c.post("/v1/documents", json={"title": "t", "text": "hello", "id": "///"}),
     422, "id"),
    ("document body is a list", lambda c: c.post("/v1/documents", json=[{"title": "t", "text": "x"}]), 422, ""),
]


@pytest.mark.parametrize(("request_", "status", "words"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_gets_a_clear_client_error(fast_server: QAServer, request_, status, words):
    resp = request_(fast_server.client)
    error = assert_error_response(resp, status)
    assert words.lower() in error["message"].lower(), error


ODD_QUERIES = [
    ("only punctuation", "？？？"),
    ("emoji", "🙂🙂"),
    ("one character", "上"),
    ("mixed languages", "上海 AI policy 是什么"),
    ("2,000 characters", ("上海的人工智能政策是什么？" * 200)[:2000]),
    ("full-width", "ＡＩ　政策"),
    ("control characters", "上海\x00\x07 AI"),
    ("html", "<script>alert(1)</script> 模速空间"),
    ("sql", "'; DROP TABLE passages; --"),
    ("right-to-left", "ما هي سياسة الذكاء الاصطناعي في شنغهاي؟"),
]


@pytest.mark.parametrize("query", [q for _, q in ODD_QUERIES], ids=[n for n, _ in ODD_QUERIES])
def test_odd_but_valid_query_gets_a_valid_result(fast_server: QAServer, citations_fast: CitationChecker, query):
    resp = fast_server.client.post("/v1/search", json={"query": query, "top_k": 3})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["query"] == query.strip()
    assert result["query_lang"] in ("zh", "en")
    assert len(result["results"]) <= 3
    citations_fast(result)


def test_non_utf8_upload_stores_nothing(fast_server: QAServer):
    before = fast_server.health().json()
    for name, data in [("bad-a.txt", b"\xff\xfe\xfa\xfb\xfc"), ("bad-b.txt", b"\xfa\xfb\xfc\xfd\x80\x81")]:
        assert_error_response(fast_server.client.post("/v1/documents", files={"file": (name, data)}), 422)
        assert_error_response(fast_server.client.get(f"/v1/documents/{name[:-4]}"), 404)
    after = fast_server.health().json()
    assert (after["documents"], after["passages"]) == (before["documents"], before["passages"])


def test_document_filter_with_unknown_or_no_ids(fast_server: QAServer):
    for ids in ([], ["no-such-doc"]):
        resp = fast_server.client.post("/v1/search", json={"query": "上海", "document_ids": ids})
        assert resp.status_code == 200, resp.text
        assert resp.json()["results"] == [] and resp.json()["answerable"] is False


def test_oversized_upload_is_refused(fast_server: QAServer):
    """A body over max_upload_bytes (10 MB by default) gets 413, not a crash or an ingest."""
    big = ("Ocean " * 2_000_000).encode()  # 12 MB
    doc_id = f"big-{uuid.uuid4().hex[:6]}"
    resp = fast_server.client.post("/v1/documents", files={"file": (f"{doc_id}.txt", big)})
    assert_error_response(resp, 413)
    assert_error_response(fast_server.client.get(f"/v1/documents/{doc_id}"), 404)


def test_server_still_answers_after_the_bad_input(fast_server: QAServer, citations_fast: CitationChecker):
    """Runs after the tests above: the same process, ready, searching, and no unexpected error logged."""
    assert fast_server.proc is not None and fast_server.proc.poll() is None, fast_server.log_tail()
    health = fast_server.health().json()
    assert health["ready"] is True
    resp = fast_server.client.post("/v1/search", json={"query": "上海创智学院有多少研究生和导师？", "top_k": 3})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    citations_fast(result)
    assert any("190余名研究生" in r["text"] for r in result["results"]), result
    log = fast_server.log_text()
    assert "unexpected error" not in log and "Traceback" not in log, fast_server.log_tail(200)
    assert " 500 " not in log, [line for line in log.splitlines() if " 500 " in line]

