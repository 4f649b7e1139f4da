"""bench.benchmark without a model or a server: percentile math, the load generator, question handling."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import numpy as np
import pytest

from bench.benchmark import (CPU_FEATURES, LoadResult, QuestionStream, _truncated_cache, latency_summary, load_xquad,
                             machine_info, machine_line, percentile, ratios, run_load)


def test_percentile_matches_numpy_linear_interpolation():
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 10, 101):
        xs = rng.random(n).tolist()
        for q in (0, 1, 50, 95, 99, 100):
            assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)))
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert np.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_summary_is_in_milliseconds():
    s = latency_summary([0.001, 0.002, 0.003, 0.004])
    assert s["n"] == 4
    assert s["p50_ms"] == pytest.approx(2.5)
    assert s["mean_ms"] == pytest.approx(2.5)
    assert s["p99_ms"] == pytest.approx(3.97)
    assert s["max_ms"] == pytest.approx(4.0)


def test_load_generator_runs_concurrently_and_stops_at_the_deadline():
    in_flight, peak = [0], [0]

    async def send(client):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        await asyncio.sleep(0.01)
        in_flight[0] -= 1

    t0 = time.perf_counter()
    r = asyncio.run(run_load(send, concurrency=4, duration_s=0.3))
    took = time.perf_counter() - t0
    assert 0.3 <= took < 1.0
    assert peak[0] == 4
    assert r.errors == 0 and r.requests == len(r.latencies_s) > 20
    assert r.throughput == pytest.approx(r.requests / r.elapsed_s)
    assert min(r.latencies_s) >= 0.009


def test_load_generator_counts_errors_and_respects_the_request_cap():
    calls = [0]

    async def send(client):
        calls[0] += 1
        if calls[0] % 2:
            raise RuntimeError("boom")

    r = asyncio.run(run_load(send, concurrency=3, duration_s=30, max_requests=10))
    assert calls[0] == 10
    assert r.requests == 5 and r.errors == 5
    assert r.error_samples and "boom" in r.error_samples[0]
    with pytest.raises(ValueError):
        asyncio.run(run_load(send, concurrency=0, duration_s=1))


def test_load_results_merge_and_summarise():
    a = LoadResult(8, requests=2, errors=1, elapsed_s=1.0, latencies_s=[0.1, 0.2])
    b = LoadResult(8, requests=1, errors=0, elapsed_s=1.0, latencies_s=[0.3])
    m = a.merge(b)
    assert (m.requests, m.errors, m.elapsed_s) == (3, 1, 2.0)
    s = m.summary()
    assert s["qps"] == 1.5 and s["p50_ms"] == pytest.approx(200.0) and s["concurrency"] == 8


def test_question_stream_hands_out_each_question_once_before_repeating():
    s = QuestionStream([{"q": "a"}, {"q": "b"}])
    assert [s.next()["q"] for _ in range(3)] == ["a", "b", "a"]
    assert s.repeats == 1


def test_load_xquad_alternates_languages_and_keeps_questions_with_gold(tmp_path):
    xq = tmp_path / "xquad"
    xq.mkdir()
    passages = [{"id": f"{lang}-{i}", "lang": lang, "title": "t", "text": f"{lang} text {i}"}
                for lang in ("zh", "en") for i in range(3)]
    questions = [{"question": f"q{lang}{i}", "lang": lang, "gold_passage_ids": [f"zh-{i}", f"en-{i}"]}
                 for lang in ("zh", "en") for i in range(3)]
    (xq / "passages.jsonl").write_text("\n".join(json.dumps(p) for p in passages))
    (xq / "questions.jsonl").write_text("\n".join(json.dumps(q) for q in questions))
    docs, qs = load_xquad(tmp_path, 2)
    assert [d["id"] for d in docs] == ["zh-0", "en-1"]
    assert sorted(q["q"] for q in qs) == ["qen0", "qen1", "qzh0", "qzh1"]
    assert all(len(q["gold"]) == 1 for q in qs)
    docs, _ = load_xquad(tmp_path, 6)  # past one language's count: the other language of each paragraph
    assert sorted(d["id"] for d in docs) == sorted(p["id"] for p in passages)


def test_ratios_compare_with_the_best_peer():
    figures = {"systems": {
        "qa": {"single_client": {"p50_ms": 50.0}, "clients_8": {"qps": 30.0}},
        "plain": {"single_client": {"p50_ms": 100.0}, "clients_8": {"qps": 10.0}},
        "txtai": {"single_client": {"p50_ms": 40.0}, "clients_8": {"qps": 12.0}},
        "openvino": {"single_client": {"p50_ms": 25.0}, "clients_8": {"qps": 20.0}},
    }}
    figures["systems"]["qa"]["ingest_posts"] = {"paragraphs_per_s": 3.0}  # qa only: against the peers' ingest
    figures["systems"]["plain"]["ingest"] = {"paragraphs_per_s": 1.0}
    figures["systems"]["openvino"]["ingest"] = {"paragraphs_per_s": 2.0}
    r = ratios(figures, [8])
    assert r["1 client: p50 ms"] == 2.0  # best peer latency: the lowest, whichever peer has it
    assert r["8 clients: questions/s"] == 1.5  # best peer rate: the highest
    assert r["ingest, one POST per document from 8 clients, paragraphs/s"] == 1.5
    # qa without its second stage is measured beside the peers but is not one of them
    figures["systems"]["qa-first-stage"] = {"single_client": {"p50_ms": 10.0}, "clients_8": {"qps": 99.0}}
    assert ratios(figures, [8]) == r


def test_truncated_cache_renormalises_the_prefix(tmp_path):
    from embeddings.cache import EmbeddingCache

    src = EmbeddingCache(tmp_path / "src.sqlite")
    v = np.array([[3.0, 4.0, 12.0, 0.0]], dtype=np.float32)
    v /= np.linalg.norm(v)
    src.put_many("m@1", ["hello"], v)
    src.close()
    assert _truncated_cache(tmp_path / "src.sqlite", tmp_path / "dst.sqlite", "m@1", 2) == 1
    (model_id, dim, blob), = sqlite3.connect(tmp_path / "dst.sqlite").execute("SELECT model_id, dim, vector FROM vectors")
    assert (model_id, dim) == ("m@1/d2", 2)
    assert np.frombuffer(blob, dtype=np.float32) == pytest.approx([0.6, 0.8])


def test_qa_eval_and_bench_come_from_the_bench_package():
    from typer.testing import CliRunner

    from qa.cli import app

    runner = CliRunner()
    for command in ("eval", "bench"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, result.output
        assert "Development tool" not in result.output
    assert "--peers" in runner.invoke(app, ["bench", "--help"]).output


def test_without_the_bench_package_qa_eval_and_bench_say_what_to_do():
    import subprocess
    import sys

    # an installation without bench/ (the image): the service's commands work, the tools explain themselves
    code = ("import sys; sys.modules['bench'] = None; from qa.cli import app; "
            "app(sys.argv[1:], prog_name='qa')")
    for args in (["eval", "xquad", "--limit", "5"], ["bench", "--peers"]):
        done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"`qa {args[0]}` is a development tool in the bench/ folder" in done.stderr
        assert "pip install -e ." in done.stderr
    done = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "serve" in done.stdout


def test_machine_line_names_the_cpu_features_present_and_absent():
    line = machine_line({"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "git": "abc1234",
                         "cpu_features": ["avx2", "fma"],
                         "cpu_features_absent": [f for f in CPU_FEATURES if f not in ("avx2", "fma")]})
    assert line.startswith("machine: AMD EPYC, 2 cores, 23.5 GiB; CPU features: avx2 fma (no avx512f ")
    assert "avx512_bf16" in line and "amx_tile" in line and line.endswith("commit abc1234")
    info = machine_info()  # this machine: every known feature is either present or absent
    assert sorted(info["cpu_features"] + info["cpu_features_absent"]) == sorted(CPU_FEATURES)


def test_wait_ready_stops_at_once_when_the_server_says_its_start_up_failed(tmp_path):
    import sys

    from bench.benchmark import ServerProcess, StartupFailed

    server = ServerProcess("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], env={}, cwd=tmp_path,
                           port=0, log=tmp_path / "sleeper.log")
    server.start()
    calls = [0]

    def check() -> bool:
        calls[0] += 1
        if calls[0] < 3:
            raise ConnectionError("not listening yet")  # waited out
        raise StartupFailed("qa failed to start: TypeError: …")

    try:
        t0 = time.perf_counter()
        with pytest.raises(StartupFailed):
            server.wait_ready(check, timeout_s=30)
        assert time.perf_counter() - t0 < 10 and calls[0] == 3
    finally:
        server.stop()
    assert server.proc.poll() is not None
