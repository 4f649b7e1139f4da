"""kill -9 under load, three times (real ``qa serve``, USE-m): writers add documents and searchers ask
questions concurrently over HTTP; the server is killed with SIGKILL mid-stream and started again on
the same data folder. Every document whose upload was acknowledged (201) is present, complete and
found by search after each restart, and the counts agree (/healthz, the listing, the passages).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import QAServer, ServerFailed, artifacts_dir, qa_env

WRITERS, SEARCHERS, KILLS = 4, 4, 3
LOAD_S = 6.0


def _document(writer: int, n: int, round_: int) -> dict:
    code = f"R{round_}W{writer}N{n}"
    return {"id": f"crash-{code}", "title": f"Harbour note {code}",
            "text": f"Harbour note {code}.\n\nThe lighthouse keeper of station {code} logged {n * 37 + writer} "
                    f"ships and a storm on day {n % 28 + 1}.\n\n灯塔站 {code} 记录了 {n + writer} 次大风。"}


def _load(server: QAServer, round_: int, acknowledged: dict[str, dict], stop: threading.Event) -> None:
    lock = threading.Lock()

    def writer(w: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            n = 0
            while not stop.is_set():
                doc = _document(w, n, round_)
                try:
                    resp = client.post("/v1/documents", json=doc)
                except httpx.TransportError:
                    return  # the server is gone: this upload was not acknowledged
                if resp.status_code == 201:
                    with lock:
                        acknowledged[doc["id"]] = doc
                else:
                    assert resp.status_code == 503, resp.text  # busy: QA_MAX_CONCURRENT_INGESTS
                n += 1

    def searcher(s: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            while not stop.is_set():
                try:
                    resp = client.post("/v1/search", json={"query": f"lighthouse keeper storm {s}", "top_k": 3})
                except httpx.TransportError:
                    return
                assert resp.status_code == 200, resp.text

    errors: list[BaseException] = []

    def guarded(work, i: int) -> None:
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(writer, w)) for w in range(WRITERS)] + \
              [threading.Thread(target=guarded, args=(searcher, s)) for s in range(SEARCHERS)]
    for t in threads:
        t.start()
    time.sleep(LOAD_S * random.uniform(0.6, 1.4))
    os.killpg(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors


def _check(server: QAServer, acknowledged: dict[str, dict]) -> None:
    client = server.client
    health = server.health().json()
    listing = client.get("/v1/documents", params={"limit": 1000}).json()
    assert health["documents"] == listing["total"] == len(listing["documents"]), (health, listing["total"])
    assert health["passages"] == sum(d["passages"] for d in listing["documents"]), health
    for doc_id, doc in acknowledged.items():
        stored = client.get(f"/v1/documents/{doc_id}")
        assert stored.status_code == 200, f"acknowledged document {doc_id} is missing"
        assert stored.json()["text"] == doc["text"] and stored.json()["title"] == doc["title"]
    for doc_id in random.sample(sorted(acknowledged), min(12, len(acknowledged))):
        question = acknowledged[doc_id]["text"].split("\n\n")[1]
        result = client.post("/v1/search", json={"query": question, "top_k": 1, "document_ids": [doc_id]}).json()
        assert result["results"] and result["results"][0]["document_id"] == doc_id, (doc_id, result)
        result = client.post("/v1/search", json={"query": question, "top_k": 5}).json()
        assert doc_id in [r["document_id"] for r in result["results"]], (doc_id, result)


def test_kill_9_under_concurrent_ingest_and_search_loses_nothing_acknowledged(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    log_dir = artifacts_dir(tmp_path_factory)
    data = tmp_path / "data"
    acknowledged: dict[str, dict] = {}
    for round_ in range(KILLS + 1):
        server = QAServer(name=f"crash-{round_}", data_dir=data, log_path=log_dir / f"server-crash-{round_}.log",
                          env=qa_env(QA_EMBEDDER="use-m", QA_SEEDS_DIR=""), cwd=tmp_path)
        server.start()
        try:
            try:
                health = server.wait_ready()
            except ServerFailed as exc:
                pytest.fail(str(exc), pytrace=False)
            assert health["ready"], health
            _check(server, acknowledged)
            if round_ < KILLS:
                before = len(acknowledged)
                _load(server, round_, acknowledged, threading.Event())
                assert len(acknowledged) > before, "no upload was acknowledged before the kill"
        finally:
            server.stop()
    print(f"{len(acknowledged)} acknowledged documents, all present and searchable after {KILLS} kills")
