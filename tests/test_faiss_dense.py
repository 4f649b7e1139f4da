"""FaissDenseIndex beyond the contract (tests/contract/test_dense_contract.py): the background builds
(threshold crossing, sealing, merging, compaction of removed rows), checkpoints that write only what
changed, refusal of foreign or corrupt files, and kill -9 at random moments (many during a
checkpoint) with a real subprocess.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from qa.index.base import IndexCorruptError, IndexMismatchError
from qa.index.faiss_dense import MANIFEST, FaissDenseIndex
from qa.store.base import SearchFilter

from contract.test_dense_contract import DIM, MODEL, brute_force, make_entries, queries
from dense_crash_worker import DIM as CRASH_DIM, MODEL as CRASH_MODEL, SETTINGS as CRASH_SETTINGS
from dense_crash_worker import collection_of, state_at, vector

WORKER = Path(__file__).with_name("dense_crash_worker.py")


def open_index(folder: Path, **kwargs) -> FaissDenseIndex:
    return FaissDenseIndex(folder, DIM, MODEL, **kwargs)


def recall(index: FaissDenseIndex, entries: dict, flt: SearchFilter, k: int = 10) -> float:
    found = wanted = 0
    for q in queries(8):
        hits = index.search(q, k, flt)
        assert all(flt.accepts(entries[h.rowid]) for h in hits)
        truth = {r for r, _ in brute_force(entries, q, k, flt)}
        found += len({h.rowid for h in hits} & truth)
        wanted += len(truth)
    return found / wanted


def test_threshold_crossing_builds_hnsw_in_background(tmp_path):
    index = open_index(tmp_path / "dense", approximate_threshold=300, tail_limit=100)
    try:
        entries = {e.rowid: e for e in make_entries(300)}
        index.add(list(entries.values()))
        assert index.settle(30)
        assert not index.stats("default")["approximate"]  # at the threshold: exact
        # crossing it: searches go on (exact) until the graph built in the background is swapped in
        more = {e.rowid: e for e in make_entries(350, start=301, seed=2)}
        index.add(list(more.values()))
        entries.update(more)
        while index.stats("default")["tail_rows"]:
            assert recall(index, entries, SearchFilter(lang="en")) >= 0.95
        assert index.settle(60)
        stats = index.stats("default")
        assert stats["approximate"] and stats["tail_rows"] == 0 and stats["segments"][0]["rows"] == 650
        assert recall(index, entries, SearchFilter()) >= 0.97
        assert recall(index, entries, SearchFilter(lang="zh", sources=("wire",))) >= 0.97
        # new writes land in the tail, and a full tail is sealed into a second segment
        index.add(make_entries(120, start=5000, seed=3))
        assert index.settle(60)
        stats = index.stats("default")
        assert len(stats["segments"]) == 2 and stats["tail_rows"] == 0
        assert index.count() == 770
    finally:
        index.close()


@pytest.mark.parametrize("sq8", [False, True])
def test_hnsw_deletes_are_marked_then_compacted(tmp_path, sq8):
    index = open_index(tmp_path / "dense", approximate_threshold=50, tail_limit=1000, hnsw_sq8=sq8,
                       compact_dead_share=0.25, exact_limit=4)
    try:
        entries = {e.rowid: e for e in make_entries(600)}
        index.add(list(entries.values()))
        assert index.settle(60)
        (seg,) = index.stats("default")["segments"]
        assert seg["rows"] == 600 and seg["sq8"] == sq8
        # under the bound: marked dead, excluded by the search's selector, not rebuilt
        gone = list(range(1, 600, 6))  # 100 of 600
        index.remove("default", gone)
        for r in gone:
            entries.pop(r)
        assert index.settle(60)
        (seg,) = index.stats("default")["segments"]
        assert seg["dead"] == 100
        for flt in (SearchFilter(), SearchFilter(lang="en"), SearchFilter(sources=("blog",))):
            assert recall(index, entries, flt) >= 0.9
        assert not index.vectors("default", gone).any()
        # past the bound: the segment is rebuilt from its live rows in the background
        more = list(range(2, 600, 6))
        index.remove("default", more)
        for r in more:
            entries.pop(r)
        assert index.settle(60)
        (seg,) = index.stats("default")["segments"]
        assert seg["dead"] == 0 and seg["rows"] == 400 == index.count()
        assert recall(index, entries, SearchFilter()) >= 0.9
        # everything removed: the segment goes
        index.remove("default", list(entries))
        assert index.settle(60)
        assert index.stats("default")["segments"] == [] and index.count() == 0
        assert index.search(queries(1)[0], 5, SearchFilter()) == []
    finally:
        index.close()


def test_merges_keep_segments_few(tmp_path):
    index = open_index(tmp_path / "dense", approximate_threshold=20, tail_limit=20, merge_factor=3)
    try:
        entries = {}
        for i in range(40):
            batch = make_entries(15, start=1 + 15 * i, seed=i)
            index.add(batch)
            entries.update({e.rowid: e for e in batch})
            index.settle(60)
        stats = index.stats("default")
        # tiers of 20, 60, 180, 540 rows, fewer than 3 segments each
        assert len(stats["segments"]) <= 8, stats
        assert index.count() == 600
        assert recall(index, entries, SearchFilter()) >= 0.95
    finally:
        index.close()


def test_checkpoint_writes_only_what_changed(tmp_path):
    folder = tmp_path / "dense"
    index = open_index(folder, approximate_threshold=100, tail_limit=1000)
    try:
        index.add(make_entries(500))
        index.add(make_entries(50, start=1000, collection="other", seed=1))
        assert index.settle(60)
        index.mark_applied(1)
        index.checkpoint()
        files = {p.relative_to(folder): p.stat().st_ino for p in folder.rglob("*") if p.is_file()}
        segment_files = {p for p in files if p.name.startswith("s")}
        assert segment_files, files
        index.checkpoint()  # nothing changed: nothing written
        assert {p.relative_to(folder): p.stat().st_ino for p in folder.rglob("*") if p.is_file()} == files
        # three passages added, one removed: the segment files stay, a small chunk and the flags are written
        index.add(make_entries(3, start=700, seed=5))
        index.remove("default", [7])
        index.mark_applied(2)
        index.checkpoint()
        after = {p.relative_to(folder): p.stat().st_ino for p in folder.rglob("*") if p.is_file()}
        for p in segment_files:
            assert after[p] == files[p], f"{p} was rewritten"
        new = {p for p in after if p not in files}
        assert {p.parts[0] for p in new} <= {"default", MANIFEST}, new  # "other" did not change
        assert all(p.name.startswith(("t", "a")) or p.name == MANIFEST for p in new)
        assert sum((folder / p).stat().st_size for p in new if p.name.startswith("t")) < 20_000
    finally:
        index.close()


def test_open_refuses_foreign_and_corrupt_files(tmp_path):
    folder = tmp_path / "dense"
    index = open_index(folder, approximate_threshold=50)
    index.add(make_entries(200))
    index.settle(60)
    index.mark_applied(3)
    index.checkpoint()
    index.close()

    for model, dim in (("another-model", DIM), (MODEL, DIM * 2)):
        with pytest.raises(IndexMismatchError, match="qa reindex"):
            FaissDenseIndex(folder, dim, model)
    segment = next(folder.glob("default/s*.faiss"))
    original = segment.read_bytes()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    segment.write_bytes(bytes(damaged))
    with pytest.raises(IndexCorruptError, match="qa reindex"):
        open_index(folder)
    segment.unlink()
    with pytest.raises(IndexCorruptError, match="qa reindex"):
        open_index(folder)
    segment.write_bytes(original)
    open_index(folder).close()  # restored: opens again

    manifest = folder / MANIFEST
    good = manifest.read_text()
    manifest.write_text(good[: len(good) // 2])
    with pytest.raises(IndexCorruptError, match="qa reindex"):
        open_index(folder)
    manifest.write_text(good.replace("qa-faiss-dense/1", "something-else"))
    with pytest.raises(IndexMismatchError, match="not a qa index"):
        open_index(folder)
    manifest.write_text(good)

    # leftovers of a checkpoint that crashed before its manifest are removed; foreign files are not
    (folder / "default" / "s999.faiss").write_bytes(b"half")
    (folder / "default" / ".a1000.npz.x1.tmp").write_bytes(b"half")
    (folder / "default" / "notes.txt").write_text("mine")
    index = open_index(folder)
    assert index.durable_seq == 3 and index.count() == 200
    index.close()
    names = {p.name for p in (folder / "default").iterdir()}
    assert "s999.faiss" not in names and ".a1000.npz.x1.tmp" not in names and "notes.txt" in names


def test_kill_9_during_writes_and_checkpoints_reopens_the_last_checkpoint(tmp_path):
    """A subprocess writes and checkpoints in a loop; SIGKILL at random moments (half of them right
    after a checkpoint began). Each reopen must give exactly the state of its ``durable_seq``."""
    folder = tmp_path / "dense"
    rng = random.Random(16)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    last_durable, mid_checkpoint = 0, 0
    for round_ in range(8):
        proc = subprocess.Popen([sys.executable, str(WORKER), str(folder)], stdout=subprocess.PIPE, text=True, env=env)
        try:
            opened = proc.stdout.readline()
            assert opened.startswith("opened"), opened
            if round_ % 2:
                target = rng.randint(2, 12)
                seen = 0
                for line in proc.stdout:
                    if line.startswith("checkpoint-begin"):
                        seen += 1
                        if seen == target:
                            time.sleep(rng.uniform(0, 0.02))
                            mid_checkpoint += 1
                            break
            else:
                time.sleep(rng.uniform(0.3, 1.5))
            assert proc.poll() is None, "the worker died by itself"
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)

        index = FaissDenseIndex(folder, CRASH_DIM, CRASH_MODEL, **CRASH_SETTINGS)
        try:
            seq = index.durable_seq
            assert seq >= last_durable
            last_durable = seq
            expected = state_at(seq)
            for name in ("default", "other"):
                ids = sorted(r for r in expected if collection_of(r) == name)
                assert index.count(name) == len(ids), (name, seq)
                got = index.vectors(name, ids)
                want = np.stack([vector(r, expected[r]) for r in ids]) if ids else got
                np.testing.assert_array_equal(got, want)
                if ids:
                    r = ids[len(ids) // 2]
                    hit = index.search(vector(r, expected[r]), 1, SearchFilter(collection=name))
                    assert hit and hit[0].rowid == r
        finally:
            index.close()
    assert last_durable > 20 and mid_checkpoint >= 3
