"""Limits over real HTTP (a USE-m ``qa serve`` with small limits): bodies bounded in size while they
stream, bodies and request heads bounded in time, idle connections closed, uploads bounded in number
and size, work of a client that went away abandoned, and SIGTERM bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid

import pytest

from conftest import QAServer, assert_error_response, running_server
from bench.benchmark import proc_memory_mib

UPLOAD_LIMIT = 2_000_000
REQUEST_LIMIT = 1_000_000
BODY_TIMEOUT_S = 3
HEAD_TIMEOUT_S = 2
KEEP_ALIVE_S = 2
MAX_PASSAGES = 3000
SHUTDOWN_TIMEOUT_S = 3


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory):
    yield from running_server(
        "limits", tmp_path_factory, QA_EMBEDDER="use-m", QA_MAX_UPLOAD_BYTES=UPLOAD_LIMIT,
        QA_MAX_REQUEST_BYTES=REQUEST_LIMIT, QA_BODY_TIMEOUT_S=BODY_TIMEOUT_S, QA_HEAD_TIMEOUT_S=HEAD_TIMEOUT_S,
        QA_KEEP_ALIVE_S=KEEP_ALIVE_S, QA_MAX_CONCURRENT_INGESTS=1, QA_MAX_DOCUMENT_PASSAGES=MAX_PASSAGES,
        QA_SHUTDOWN_TIMEOUT_S=SHUTDOWN_TIMEOUT_S, QA_LOG_FORMAT="json")


def _connect(server: QAServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=30)


def _head(path: str, extra: str = "", content_type: str = "application/json") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{extra}\r\n").encode()


def _read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, bytes]:
    """(status, raw response) once the server answers and closes, or (0, b"") when it closes silently."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            if b"\r\n\r\n" in data and b"connection: close" not in data.lower():
                break
    except (ConnectionResetError, BrokenPipeError):
        pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return status, data


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes ``sock`` (it must, within ``seconds``)."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for {seconds}s")
    return time.monotonic() - start


def _reset_peak_rss(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as f:  # "5": reset the peak resident set size (VmHWM)
        f.write("5")


@pytest.mark.parametrize("path,limit", [("/v1/documents", UPLOAD_LIMIT), ("/v1/search", REQUEST_LIMIT),
                                        ("/v1/chat/completions", REQUEST_LIMIT), ("/mcp", REQUEST_LIMIT)])
def test_600mb_chunked_body_costs_at_most_the_limit_plus_1mib(limited: QAServer, path: str, limit: int):
    pid = limited.proc.pid
    _reset_peak_rss(pid)
    before = proc_memory_mib(pid)["VmRSS"]
    chunk = b"[" + b"0," * (1 << 19) + b"0]"  # ~1 MiB of JSON-looking bytes
    sent = 0
    with _connect(limited) as sock:
        sock.sendall(_head(path, "Transfer-Encoding: chunked\r\n"))
        try:
            while sent < 600 * 2**20:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, raw = _read_response(sock)
    peak = proc_memory_mib(pid)["VmHWM"]
    assert status == 413, raw[:300]
    assert sent < 600 * 2**20, "the server read the whole 600 MB body"
    grown = peak - before
    print(f"{path}: {sent / 2**20:.0f} MiB sent before the 413; peak RSS grew {grown:.1f} MiB (limit {limit / 2**20:.1f} MiB)")
    assert grown <= limit / 2**20 + 1, f"peak resident memory grew {grown:.1f} MiB for a {limit}-byte limit"


def test_declared_oversize_body_is_refused_before_it_is_sent(limited: QAServer):
    with _connect(limited) as sock:
        sock.sendall(_head("/v1/documents", f"Content-Length: {600 * 2**20}\r\n"))
        status, raw = _read_response(sock, timeout=10)
    assert status == 413 and b"too_large" in raw, raw[:300]


def test_body_sent_a_byte_a_second_gets_408(limited: QAServer):
    body = b'{"query": "' + b"a" * 30 + b'"}'
    with _connect(limited) as sock:
        sock.sendall(_head("/v1/search", f"Content-Length: {len(body)}\r\n"))
        start = time.monotonic()
        sock.settimeout(1)
        status, raw = 0, b""
        for byte in body:
            try:
                sock.sendall(bytes([byte]))
                raw += sock.recv(65536)
                break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        if not raw:
            status, raw = _read_response(sock, timeout=10)
        elapsed = time.monotonic() - start
    assert raw.startswith(b"HTTP/1.1 408"), raw[:300]
    assert elapsed < BODY_TIMEOUT_S + 3, elapsed


def test_slow_request_head_and_idle_connections_are_closed(limited: QAServer):
    with _connect(limited) as idle:  # opened, nothing sent
        assert _closed_within(idle, HEAD_TIMEOUT_S + 3) >= HEAD_TIMEOUT_S - 0.5
    with _connect(limited) as slow:  # slowloris: a header byte every half second
        start = time.monotonic()
        try:
            for byte in b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                slow.sendall(bytes([byte]))
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        _closed_within(slow, HEAD_TIMEOUT_S + 3)
        assert time.monotonic() - start < HEAD_TIMEOUT_S + 4
    with _connect(limited) as kept:  # one request, then idle on a kept-alive connection
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        _closed_within(kept, KEEP_ALIVE_S + 3)
    with _connect(limited) as big:  # 100 KB of headers
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n")
        status, _ = _read_response(big)
        assert status in (431, 0)  # refused, or closed before the answer could be read
    assert limited.health().json()["ready"] is True


def test_one_upload_too_many_gets_503_with_retry_after(limited: QAServer):
    body = b'{"title": "slow", "text": "' + b"a b c " * 1000 + b'"}'
    with _connect(limited) as slow:  # holds the only ingest slot while it sends its body
        slow.sendall(_head("/v1/documents", f"Content-Length: {len(body)}\r\n") + body[:100])
        time.sleep(0.5)
        resp = limited.client.post("/v1/documents", json={"title": "t", "text": "another document"})
        assert resp.status_code == 503 and resp.json()["error"]["type"] == "busy", resp.text
        assert int(resp.headers["retry-after"]) > 0, resp.headers
    search = limited.client.post("/v1/search", json={"query": "上海"})  # other routes are not held up
    assert search.status_code == 200, search.text


def _many_paragraphs(n: int) -> str:
    tag = uuid.uuid4().hex
    return "\n\n".join(f"Paragraph {i} of {tag}: the harbour log records ship number {i * 7919 % 100003}."
                       for i in range(n))


def test_a_document_with_too_many_passages_is_refused(limited: QAServer):
    before = limited.health().json()
    resp = limited.client.post("/v1/documents", json={"title": "huge", "text": _many_paragraphs(MAX_PASSAGES + 1)})
    error = assert_error_response(resp, 422)
    assert str(MAX_PASSAGES) in error["message"], error
    after = limited.health().json()
    assert (after["documents"], after["passages"]) == (before["documents"], before["passages"])


def test_a_write_whose_client_went_away_is_abandoned(limited: QAServer):
    doc_id = f"gone-{uuid.uuid4().hex[:8]}"
    text = _many_paragraphs(MAX_PASSAGES)
    body = ('{"id": "%s", "title": "gone", "text": "%s"}' % (doc_id, text.replace("\n", "\\n"))).encode()
    with _connect(limited) as sock:
        sock.sendall(_head("/v1/documents", f"Content-Length: {len(body)}\r\n") + body)
        time.sleep(1.0)  # parsed and embedding
    deadline = time.monotonic() + 120
    while "abandoned POST /v1/documents" not in limited.log_text():
        assert time.monotonic() < deadline, limited.log_tail()
        time.sleep(0.5)
    assert_error_response(limited.client.get(f"/v1/documents/{doc_id}"), 404)
    assert limited.health().json()["ready"] is True


def test_json_logs_carry_request_ids_and_no_document_text(limited: QAServer):
    """QA_LOG_FORMAT=json: every log record is one JSON object; the access lines carry the request id; the
    documents sent to this server by the tests above (and their text) appear nowhere in the log."""
    resp = limited.client.get("/healthz", headers={"X-Request-ID": "json-log-check"})
    assert resp.headers["x-request-id"] == "json-log-check"
    time.sleep(0.5)
    records = []
    for line in limited.log_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    access = [r for r in records if r["logger"] == "qa.access"]
    assert access and all(r.get("request_id") and r["status"] and "duration_ms" in r for r in access), access[:3]
    assert any(r["request_id"] == "json-log-check" and r["route"] == "/healthz" for r in access)
    assert any(r["status"] == 413 for r in access) and any(r["status"] == 408 for r in access)
    assert "harbour log records" not in limited.log_text() and "a b c a b c" not in limited.log_text()


def test_sigterm_stops_within_the_bound_with_an_upload_in_flight(limited: QAServer):
    """Last in this module: it stops the server."""
    text = _many_paragraphs(MAX_PASSAGES)
    body = ('{"title": "late", "text": "%s"}' % text.replace("\n", "\\n")).encode()
    with _connect(limited) as sock:
        sock.sendall(_head("/v1/documents", f"Content-Length: {len(body)}\r\n") + body)
        time.sleep(1.0)
        start = time.monotonic()
        os.killpg(limited.proc.pid, signal.SIGTERM)
        limited.proc.wait(timeout=SHUTDOWN_TIMEOUT_S + 15)
        elapsed = time.monotonic() - start
        status, raw = _read_response(sock, timeout=5)
    print(f"stopped {elapsed:.1f}s after SIGTERM; the upload got {status or 'no answer'}")
    assert elapsed < SHUTDOWN_TIMEOUT_S + 5, limited.log_tail()
    assert status in (0, 503), raw[:300]
