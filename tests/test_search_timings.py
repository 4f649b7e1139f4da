"""`explain` says where a search spent its time, stage by stage (real server, light model)."""

from __future__ import annotations

import time

from conftest import QAServer

STAGES = {"tokenise", "embed", "dense", "lexical", "cross_language", "dictionary", "fusion", "second_stage", "confidence",
          "evidence", "total"}


def test_explain_gives_milliseconds_per_stage(fast_server: QAServer):
    started = time.perf_counter()
    resp = fast_server.client.post("/v1/search", json={"query": "上海在人工智能方面有什么目标？", "explain": True})
    round_trip_ms = (time.perf_counter() - started) * 1000
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["results"]
    timings = body["timings_ms"]
    assert set(timings) == STAGES
    assert all(ms >= 0 for ms in timings.values())
    stages = sum(ms for name, ms in timings.items() if name != "total")
    assert stages <= timings["total"] + 0.01  # the stages are parts of the whole, none counted twice
    assert timings["total"] <= round_trip_ms
    assert timings["embed"] > 0 and timings["dense"] > 0


def test_timings_only_with_explain(fast_server: QAServer):
    body = fast_server.client.post("/v1/search", json={"query": "上海在人工智能方面有什么目标？"}).json()
    assert body["timings_ms"] is None  # present, as the schema says, and null
