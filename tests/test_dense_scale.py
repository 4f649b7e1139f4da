"""bench.dense_scale on a small corpus: its ground truth agrees with SearchFilter.accepts, and a
build + measure round trip (through the HNSW path) gives figures for every filter."""

from __future__ import annotations

import numpy as np

from bench.dense_scale import _masks, build, entries, filters, measure


def test_ground_truth_filters_agree_with_the_reference_semantics():
    n = 30_000
    rowids = np.arange(1, n + 1, dtype=np.int64)
    items = entries(rowids, np.zeros((n, 4), np.float32))
    for name, mask in _masks(rowids, filters(n)).items():
        flt = filters(n)[name]
        assert mask.tolist() == [flt.accepts(e) for e in items], name
        assert mask.any(), f"{name} matches nothing at {n:,} passages"


def test_build_and_measure_through_the_hnsw_path(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_APPROXIMATE_THRESHOLD", "1000")
    folder = tmp_path / "dense"
    built = build(folder, 3000, "hnsw_sq8", queries=8)
    assert [s["rows"] for s in built["segments"]] == [3000] and built["tail_rows"] == 0
    figures = measure(folder, 3000, "hnsw_sq8", writes=3)
    assert figures["segments"] == [3000] and figures["tail_rows"] > 0
    assert set(figures["searches"]) == set(filters(3000))
    for name, s in figures["searches"].items():
        assert s["recall_at_10"] is None or s["recall_at_10"] >= 0.9, (name, s)
