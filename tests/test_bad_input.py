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


def _raw(path: str, content: bytes):
    return lambda c: c.post(path, content=content, headers={"content-type": "application/json"})


def _deep(key: str, depth: int = 1000) -> bytes:
    return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


# (id, request, expected status(es), words the message must contain)
BAD_REQUESTS = [
    # valid JSON that the service cannot use: lone UTF-16 surrogates, deep nesting, huge numbers
    ("lone surrogate in query", _raw("/v1/search", b'{"query": "\\ud800 AI"}'), 422, "surrogate"),
    ("lone surrogate in document_ids", _raw("/v1/search", b'{"query": "AI", "document_ids": ["a\\udfff"]}'),
     422, "surrogate"),
    ("lone surrogate in document text", _raw("/v1/documents", b'{"title": "t", "text": "x \\ud800 y"}'),
     422, "surrogate"),
    ("lone surrogate in a JSON key", _raw("/v1/documents", b'{"\\udc00": 1, "title": "t", "text": "x"}'),
     422, "surrogate"),
    ("lone surrogate in chat", _raw("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "\\ud800?"}]}'),
     400, "surrogate"),
    ("lone surrogate in embeddings input", _raw("/v1/embeddings", b'{"input": ["ok", "\\ud800"]}'), 400, "surrogate"),
    ("JSON 1,000 deep to documents", _raw("/v1/documents", _deep("title")), 400, "nested"),
    ("JSON 1,000 deep to search", _raw("/v1/search", _deep("query")), 400, "nested"),
    ("JSON 100 deep to chat", _raw("/v1/chat/completions", _deep("messages", 100)), 400, "nested"),
    ("offset beyond 64 bits", lambda c: c.get("/v1/documents", params={"offset": 9223372036854775808}), 422, "offset"),
    ("top_k beyond 64 bits", _search({"query": "AI", "top_k": 9223372036854775808}), 422, "top_k"),
    ("integer of 5,000 digits", _raw("/v1/search", b'{"query": "AI", "top_k": ' + b"9" * 5000 + b"}"), 400, ""),
    ("explain is 0, not a boolean", _search({"query": "AI", "explain": 0}), 422, "explain"),
    # ids: one rule for JSON and uploads; never two ids merged into one
    ("NUL in a JSON id", lambda c: c.post("/v1/documents", json={"title": "t", "text": "x", "id": "a\x00b"}),
     422, "U+0000"),
    ("slash in a JSON id", lambda c: c.post("/v1/documents", json={"title": "t", "text": "x", "id": "a/b"}), 422, "a/b"),
    ("NUL in an upload id", lambda c: c.post("/v1/documents", data={"id": "a\x00b"}, files={"file": ("a.txt", b"x")}),
     422, "U+0000"),
    ("slash in an upload id", lambda c: c.post("/v1/documents", data={"id": "a/b"}, files={"file": ("a.txt", b"x")}),
     422, "a/b"),
    ("10 KB JSON id", lambda c: c.post("/v1/documents", json={"title": "t", "text": "x", "id": "k" * 10_000}), 422, "128"),
    ("10 KB upload id", lambda c: c.post("/v1/documents", data={"id": "k" * 10_000}, files={"file": ("a.txt", b"x")}),
     422, "128"),
    ("NUL in a title", lambda c: c.post("/v1/documents", json={"title": "a\x00b", "text": "x"}), 422, "U+0000"),
    ("newline in a source", lambda c: c.post("/v1/documents", json={"title": "t", "text": "x", "source": "a\nb"}),
     422, "U+000A"),
    ("control character in an upload title",
     lambda c: c.post("/v1/documents", data={"title": "a\x07"}, files={"file": ("a.txt", b"x")}), 422, "U+0007"),
    ("empty upload title", lambda c: c.post("/v1/documents", data={"title": ""}, files={"file": ("a.txt", b"x")}),
     422, "title"),
    ("unknown upload field", lambda c: c.post("/v1/documents", data={"author": "a"}, files={"file": ("a.txt", b"x")}),
     422, "author"),
    ("TRACE", lambda c: c.request("TRACE", "/v1/search"), 405, ""),

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


def test_method_not_allowed_names_every_method_of_the_path(fast_server: QAServer):
    for method, path, allow in [("TRACE", "/v1/search", "POST"), ("PUT", "/v1/documents", "GET, POST"),
                                ("TRACE", "/v1/documents/x", "DELETE, GET"), ("POST", "/healthz", "GET")]:
        resp = fast_server.client.request(method, path)
        assert_error_response(resp, 405)
        assert set(resp.headers["allow"].split(", ")) - {"HEAD"} == set(allow.split(", ")), (path, resp.headers)


def test_ids_are_kept_exactly_or_refused_never_merged(fast_server: QAServer):
    """Distinct ids stay distinct: a valid id is stored as given; an unusable one is refused, not rewritten."""
    tag = uuid.uuid4().hex[:6]
    for doc_id in (f"a-{tag}", f"a.{tag}", f"a_{tag}", f"A-{tag}"):
        resp = fast_server.client.post("/v1/documents", json={"id": doc_id, "title": doc_id, "text": f"Text of {doc_id}."})
        assert resp.status_code == 201 and resp.json()["document_id"] == doc_id, resp.text
        assert resp.json()["status"] == "added", resp.text
    for doc_id in (f"a/{tag}", f"a\x00{tag}", f"a {tag}", f"-a{tag}", f"a{tag}-"):
        assert_error_response(fast_server.client.post(
            "/v1/documents", json={"id": doc_id, "title": "t", "text": "Something else."}), 422)
        assert_error_response(fast_server.client.post(
            "/v1/documents", data={"id": doc_id}, files={"file": ("x.txt", b"Something else.")}), 422)
    for doc_id in (f"a-{tag}", f"a.{tag}", f"a_{tag}", f"A-{tag}"):
        assert fast_server.client.get(f"/v1/documents/{doc_id}").json()["title"] == doc_id
        assert fast_server.client.delete(f"/v1/documents/{doc_id}").status_code == 200


def test_null_fields_are_present_as_the_schema_says(fast_server: QAServer):
    """The OpenAPI schema requires source, published and section; a null one is sent as null, not left out."""
    listing = fast_server.client.get("/v1/documents").json()
    assert listing["documents"]
    for doc in listing["documents"]:
        assert {"source", "published", "text"} <= doc.keys(), doc
    result = fast_server.client.post("/v1/search", json={"query": "上海的人工智能", "top_k": 5}).json()
    assert result["results"]
    for r in result["results"]:
        assert {"section", "source", "published", "explain"} <= r.keys(), r


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

