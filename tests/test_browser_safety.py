"""Browser safety over real HTTP: a page on another origin, in a real Chromium, cannot add or delete
documents (form posts, "simple" fetches that need no preflight, a body without a content type); the
service's own page can; CORS is off by default; a foreign Host header is refused (DNS rebinding).
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from functools import partial
from pathlib import Path

import pytest

from conftest import QAServer, assert_error_response
from test_web import browser_page  # noqa: F401  (the Chromium fixture)

EVIL_PAGE = """<!doctype html><html><body>
<form id="f" method="POST" enctype="multipart/form-data" action="{target}/v1/documents" target="sink">
  <input type="hidden" name="id" value="{form_id}">
  <input type="hidden" name="title" value="planted by a form">
</form>
<iframe name="sink"></iframe>
<script>
const target = "{target}";
async function attack() {{
  const results = {{}};
  const text = "Planted text about the harbour.";
  const tries = {{
    text_plain: () => fetch(target + "/v1/documents", {{method: "POST", mode: "no-cors",
        body: JSON.stringify({{id: "{plain_id}", title: "planted", text: text}})}}),
    no_content_type: () => fetch(target + "/v1/documents", {{method: "POST", mode: "no-cors",
        body: new Blob([JSON.stringify({{id: "{blob_id}", title: "planted", text: text}})])}}),
    multipart: () => {{
      const form = new FormData();
      form.append("id", "{multipart_id}");
      form.append("file", new Blob([text], {{type: "text/plain"}}), "planted.txt");
      return fetch(target + "/v1/documents", {{method: "POST", mode: "no-cors", body: form}});
    }},
    cors_json: () => fetch(target + "/v1/documents", {{method: "POST", headers: {{"Content-Type": "application/json"}},
        body: JSON.stringify({{id: "{json_id}", title: "planted", text: text}})}}),
    cors_delete: () => fetch(target + "/v1/documents/{victim_id}", {{method: "DELETE"}}),
    read_list: () => fetch(target + "/v1/documents"),
  }};
  for (const [name, go] of Object.entries(tries)) {{
    try {{ const r = await go(); results[name] = "status " + r.status + " " + r.type; }}
    catch (e) {{ results[name] = "blocked: " + e.message; }}
  }}
  document.getElementById("f").submit();
  return results;
}}
</script></body></html>"""


@pytest.fixture
def evil_origin(tmp_path: Path):
    """A second web server: a page on another origin (another port) than the service's."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.browser
def test_a_page_on_another_origin_cannot_add_or_delete_documents(fast_server: QAServer, browser_page, evil_origin):
    page = browser_page
    folder, origin = evil_origin
    tag = uuid.uuid4().hex[:8]
    ids = {name: f"planted-{name}-{tag}" for name in ("form", "plain", "blob", "multipart", "json")}
    victim = f"victim-{tag}"
    resp = fast_server.client.post("/v1/documents", json={"id": victim, "title": "victim", "text": "Keep me, please."})
    assert resp.status_code == 201, resp.text
    (folder / "evil.html").write_text(EVIL_PAGE.format(
        target=fast_server.base_url, victim_id=victim, form_id=ids["form"], plain_id=ids["plain"],
        blob_id=ids["blob"], multipart_id=ids["multipart"], json_id=ids["json"]), encoding="utf-8")

    page.goto(f"{origin}/evil.html")
    results = page.evaluate("attack()")
    page.wait_for_timeout(2000)  # the form post
    print(results)
    assert results["read_list"].startswith("blocked"), results  # CORS is off: the page cannot read answers
    assert results["cors_json"].startswith("blocked") and results["cors_delete"].startswith("blocked"), results
    for doc_id in ids.values():
        assert_error_response(fast_server.client.get(f"/v1/documents/{doc_id}"), 404)
    assert fast_server.client.get(f"/v1/documents/{victim}").status_code == 200
    log = fast_server.log_text()
    assert log.count('"POST /v1/documents" 403') >= 4, fast_server.log_tail(40)  # the simple ones reached it

    # The service's own page (same origin) can upload, multipart included.
    page.goto(f"{fast_server.base_url}/")
    own_id = f"own-{tag}"
    status = page.evaluate("""async (id) => {
        const form = new FormData();
        form.append("id", id);
        form.append("file", new Blob(["A document added from the service's own page."], {type: "text/plain"}), "own.txt");
        const r = await fetch("/v1/documents", {method: "POST", body: form});
        return r.status;
    }""", own_id)
    assert status == 201
    assert fast_server.client.get(f"/v1/documents/{own_id}").status_code == 200
    for doc_id in (own_id, victim):
        assert fast_server.client.delete(f"/v1/documents/{doc_id}").status_code == 200


def test_cross_origin_writes_are_refused_whatever_the_content_type(fast_server: QAServer):
    evil = {"Origin": "http://evil.example"}
    for kwargs in ({"json": {"title": "t", "text": "x"}},
                   {"content": b'{"title": "t", "text": "x"}', "headers": {"content-type": "text/plain"}},
                   {"files": {"file": ("a.txt", b"x")}}):
        headers = {**evil, **kwargs.pop("headers", {})}
        assert_error_response(fast_server.client.post("/v1/documents", headers=headers, **kwargs), 403)
    assert_error_response(fast_server.client.delete("/v1/documents/anything", headers=evil), 403)
    assert_error_response(fast_server.client.post("/v1/search", json={"query": "x"}, headers={"Origin": "null"}), 403)
    assert_error_response(fast_server.client.post("/v1/search", json={"query": "x"},
                                                  headers={"Sec-Fetch-Site": "cross-site"}), 403)
    # reading is not a write; same-origin writes and clients without Origin (curl, SDKs) are unaffected
    listing = fast_server.client.get("/v1/documents", headers=evil)
    assert listing.status_code == 200 and "access-control-allow-origin" not in listing.headers
    own = {"Origin": fast_server.base_url}
    assert fast_server.client.post("/v1/search", json={"query": "上海"}, headers=own).status_code == 200
    assert fast_server.client.post("/v1/search", json={"query": "上海"}).status_code == 200


def test_a_foreign_host_header_is_refused(fast_server: QAServer):
    for host in ("evil.example", "evil.example:80", "127.0.0.1.nip.io"):
        resp = fast_server.client.get("/healthz", headers={"Host": host})
        assert_error_response(resp, 421)
    for host in (f"127.0.0.1:{fast_server.port}", f"localhost:{fast_server.port}"):
        assert fast_server.client.get("/healthz", headers={"Host": host}).status_code == 200
