"""Clients that go away mid-request cost nothing afterwards (real server, real EmbeddingGemma)."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import QAServer
from bench.benchmark import proc_memory_mib

pytestmark = pytest.mark.slow

QUESTIONS = [f"第{i}个问题：上海的人工智能产业有什么新进展？" for i in range(48)] + \
            [f"Question {i}: what is new in Shanghai's AI industry?" for i in range(48)]


def _search(server: QAServer, question: str) -> dict:
    assert server.client is not None
    resp = server.client.post("/v1/search", json={"query": question, "top_k": 3})
    assert resp.status_code == 200, resp.text
    return resp.json()


def _send_and_hang_up(server: QAServer, question: str) -> None:
    """A complete search request, then the connection closed before any of the answer is read."""
    body = json.dumps({"query": question, "top_k": 3}).encode()
    head = (f"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # RST on close


def test_clients_that_hang_up_mid_request_cost_nothing_afterwards(gemma_server: QAServer):
    assert gemma_server.proc is not None
    with ThreadPoolExecutor(16) as pool:  # warm-up at the same concurrency: batches, buffers
        list(pool.map(lambda q: _search(gemma_server, "warm-up " + q), QUESTIONS[:32]))
    before = proc_memory_mib(gemma_server.proc.pid)["VmRSS"]

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda q: _send_and_hang_up(gemma_server, q), QUESTIONS))

    # The server is whole: a lone question and a burst of concurrent ones are answered, in full.
    lone = _search(gemma_server, "上海的人工智能产业有什么新进展？")
    assert lone["results"] and lone["results"][0]["evidence"]["text"]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda q: _search(gemma_server, "again " + q), QUESTIONS[:32]))
    assert all(a["results"] for a in answers)
    assert gemma_server.health().json()["ready"] is True
    grown = proc_memory_mib(gemma_server.proc.pid)["VmRSS"] - before
    assert grown < 150, f"resident memory grew by {grown:.0f} MiB after 96 abandoned requests"
