"""The process ``tests/test_faiss_dense.py`` kills with SIGKILL: it reopens a FaissDenseIndex, then
applies a deterministic sequence of changes (3-passage adds, replacements, removals, in two
collections), marking each applied and checkpointing every few changes, until it is killed.

``state_at(seq)`` recomputes what the index must hold after change ``seq`` (the test compares a
reopened index with it). Run: ``python tests/dense_crash_worker.py FOLDER``.
"""

from __future__ import annotations

import sys

import numpy as np

from qa.index.faiss_dense import FaissDenseIndex
from qa.store.base import IndexEntry

DIM = 24
MODEL = "crash-model"
SETTINGS = dict(approximate_threshold=60, tail_limit=40, merge_factor=3, exact_limit=8)
CHECKPOINT_EVERY = 4


def collection_of(rowid: int) -> str:
    return "default" if rowid % 3 else "other"


def vector(rowid: int, version: int) -> np.ndarray:
    v = np.random.default_rng(rowid * 100_003 + version).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def entry(rowid: int, version: int) -> IndexEntry:
    return IndexEntry(rowid=rowid, collection=collection_of(rowid), document_id=f"d{rowid}", lang="en",
                      source=None, published=None, tokens=(), vector=vector(rowid, version))


def change(seq: int, state: dict[int, int]) -> tuple[list[int], list[int]]:
    """Change ``seq`` given the state before it: (rowids removed, rowids added at version ``seq``)."""
    rng = np.random.default_rng(seq)
    live = sorted(state)
    if len(live) > 12 and rng.random() < 0.35:
        return rng.choice(live, 3, replace=False).tolist(), []
    added = [seq * 3 + j for j in range(3)]
    if live and rng.random() < 0.3:
        added[0] = int(rng.choice(live))  # a replacement
    return [], added


def step(seq: int, state: dict[int, int]) -> tuple[list[int], list[int]]:
    removed, added = change(seq, state)
    for r in removed:
        state.pop(r)
    for r in added:
        state[r] = seq
    return removed, added


def state_at(seq: int) -> dict[int, int]:
    """rowid → the change that last added it, for the passages live after change ``seq``."""
    state: dict[int, int] = {}
    for s in range(1, seq + 1):
        step(s, state)
    return state


def main(folder: str) -> None:
    index = FaissDenseIndex(folder, DIM, MODEL, **SETTINGS)
    seq = index.durable_seq
    state = state_at(seq)
    print(f"opened {seq}", flush=True)
    while True:
        seq += 1
        removed, added = step(seq, state)
        for r in removed:
            index.remove(collection_of(r), [r])
        index.add([entry(r, seq) for r in added])
        index.mark_applied(seq)
        if seq % CHECKPOINT_EVERY == 0:
            print(f"checkpoint-begin {seq}", flush=True)
            index.checkpoint()
            print(f"checkpoint-end {seq}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
