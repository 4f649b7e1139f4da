"""/metrics and request ids over real HTTP (USE-m server)."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from conftest import QAServer


def _metrics(server: QAServer) -> dict[tuple[str, tuple], float]:
    resp = server.client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain"), resp.text[:300]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def _value(metrics: dict, name: str, **labels) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_by_route_and_status_and_report_sizes(fast_server: QAServer):
    before = _metrics(fast_server)
    for _ in range(3):
        assert fast_server.client.post("/v1/search", json={"query": "上海的人工智能"}).status_code == 200
    assert fast_server.client.post("/v1/search", json={"query": ""}).status_code == 422
    assert fast_server.client.get("/v1/documents/no-such-doc-here").status_code == 404
    after = _metrics(fast_server)

    search = dict(method="POST", route="/v1/search")
    assert _value(after, "qa_http_requests_total", **search, status="200") - \
        _value(before, "qa_http_requests_total", **search, status="200") == 3
    assert _value(after, "qa_http_requests_total", **search, status="422") - \
        _value(before, "qa_http_requests_total", **search, status="422") == 1
    # the route's template, not the id: unknown ids do not make new series
    assert _value(after, "qa_http_requests_total", method="GET", route="/v1/documents/{document_id}", status="404") >= 1
    assert not any("no-such-doc-here" in str(key) for key in after)
    count = _value(after, "qa_http_request_duration_seconds_count", **search) - \
        _value(before, "qa_http_request_duration_seconds_count", **search)
    assert count == 4
    health = fast_server.health().json()
    documents = {dict(labels)["collection"]: v for (name, labels), v in after.items() if name == "qa_documents"}
    passages = {dict(labels)["collection"]: v for (name, labels), v in after.items() if name == "qa_passages"}
    assert "default" in documents and sum(documents.values()) == health["documents"], (documents, health)
    assert sum(passages.values()) == health["passages"], (passages, health)
    assert _value(after, "qa_service_ready") == 1
    assert ("qa_model_queue_texts", ()) in after and _value(after, "qa_model_batches_total") >= 0
    for stage in ("embed", "dense", "fusion", "total"):  # the search's own stage times
        assert _value(after, "qa_search_stage_seconds_count", stage=stage) - \
            _value(before, "qa_search_stage_seconds_count", stage=stage) >= 3, stage


def test_request_id_is_echoed_or_made_and_logged(fast_server: QAServer):
    resp = fast_server.client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert resp.headers["x-request-id"] == "trace-abc.123"
    for bad in ("two words", "x" * 200, "a\u00e9"):
        resp = fast_server.client.get("/healthz", headers={"X-Request-ID": bad.encode("utf-8")})
        assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["x-request-id"]), resp.headers
    made = fast_server.client.post("/v1/search", json={"query": "上海"}).headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    assert any(made in line and '"POST /v1/search" 200' in line for line in fast_server.log_text().splitlines())


def test_concurrent_single_document_uploads_share_rounds_of_the_model(fast_server: QAServer):
    """Eight clients posting one document each at the same moment: their passages and sentences are encoded
    in shared rounds (/metrics: a round served several uploads), and every upload is stored whole."""
    import threading
    import uuid

    import httpx

    client, name = fast_server.client, "coalesced-uploads"
    assert client.post("/v1/collections", json={"name": name}).status_code == 201
    before = _metrics(fast_server)
    run = uuid.uuid4().hex[:8]  # text no embedding cache holds (the test server shares the user's cache)
    documents = [{"id": f"up-{r}-{c}", "title": f"Harbour log {r}-{c}",
                  "text": "\n\n".join(f"Ship {run}-{r}-{c}-{k} reached the harbour on day {k}. It carried {k * 7} "
                                      f"crates of tea. 第{k}号船在第{c}天到港，运来{k + r}箱茶叶。" for k in range(12))}
                 for r in range(3) for c in range(8)]
    statuses: list[int] = []
    try:
        for r in range(3):
            barrier = threading.Barrier(8)

            def post(doc: dict) -> None:
                with httpx.Client(base_url=fast_server.base_url, timeout=120) as own:
                    barrier.wait()
                    statuses.append(own.post(f"/v1/documents?collection={name}", json=doc).status_code)

            threads = [threading.Thread(target=post, args=(doc,)) for doc in documents[r * 8:(r + 1) * 8]]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        assert statuses == [201] * 24, statuses  # eight at once are admitted (QA_MAX_CONCURRENT_INGESTS)
        after = _metrics(fast_server)
        rounds = _value(after, "qa_model_passage_rounds_total") - _value(before, "qa_model_passage_rounds_total")
        requests = _value(after, "qa_model_passage_requests_total") - _value(before, "qa_model_passage_requests_total")
        assert requests >= 24 and rounds < requests, (rounds, requests)
        assert _value(after, "qa_model_largest_round") > 1
        for doc in documents:
            got = client.get(f"/v1/documents/{doc['id']}", params={"collection": name})
            assert got.status_code == 200 and got.json()["passages"] == 12, got.text[:300]
    finally:
        client.delete(f"/v1/collections/{name}")
