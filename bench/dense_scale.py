"""Micro-benchmark of the dense index (:class:`qa.index.faiss_dense.FaissDenseIndex`) at scale, without
the model: ``python -m bench.dense_scale --n 100000 [--variant hnsw_sq8|hnsw] [--json out.json]``.

N clustered synthetic unit vectors (:class:`bench.benchmark.ClusteredVectors`, as the scale study
makes them: random vectors make HNSW look worse than real embeddings) with passage attributes shaped
like a real corpus (two languages half and half, three passages per document, a thousand sources of
0.1 % each, publication dates spread over ten years). Two subprocesses, so that memory is the index's:

1. **build**: adds the passages in chunks (one HNSW segment built at the end, as a bulk load would:
   ``approximate_threshold`` just under N, so nothing is built twice), then ``checkpoint()``; also the
   exact top-10 of every query under every filter, for recall.
2. **measure**: opens the folder with the service's settings (time to open = start-up), then:
   resident memory of the open index; then adds half a tail of recent passages (the average state
   between two seals) and measures single-threaded search p50/p95 (wall clock, and the CPU time of the
   searching thread, which a busy machine inflates less) and recall@10 with no filter and
   with each filter; add of 3 passages (one new document) and removal of 3 (p50/p95 over repeated
   writes); ``checkpoint()`` after such a write.

Collections below the approximate threshold (QA_APPROXIMATE_THRESHOLD; 200,000 when these figures were taken, 20,000 now) are searched exactly, so N = 10k
and 100k measure the exact path, 1M the HNSW one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.benchmark import ClusteredVectors, latency_summary, machine_info, proc_memory_mib
from qa.settings import Settings
from qa.store.base import IndexEntry, SearchFilter

DIM = 768
MODEL = "synthetic-clustered"
SOURCES = 1000
DAYS = 3650
EPOCH = dt.date(2016, 1, 1)
CHUNK = 50_000


def attributes(rowids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Language, document, source and publication day of each rowid (deterministic)."""
    rowids = np.asarray(rowids, dtype=np.int64)
    lang = rowids % 2  # 0 = en, 1 = zh
    doc = rowids // 3
    source = (doc * 2654435761) % SOURCES
    day = (doc * 7919) % DAYS
    return lang, doc, source, day


def entries(rowids: np.ndarray, vectors: np.ndarray, collection: str = "default") -> list[IndexEntry]:
    lang, doc, source, day = attributes(rowids)
    return [IndexEntry(rowid=int(r), collection=collection, document_id=f"doc{d}", lang=("en", "zh")[int(la)],
                       source=f"src-{s}", published=(EPOCH + dt.timedelta(days=int(dd))).isoformat(), tokens=(),
                       vector=vectors[i])
            for i, (r, la, d, s, dd) in enumerate(zip(rowids.tolist(), lang.tolist(), doc.tolist(), source.tolist(),
                                                      day.tolist()))]


def filters(n: int) -> dict[str, SearchFilter]:
    """Named filters: broad (a language, a year), selective (3 documents, one source, one week), combined."""
    year = EPOCH.year + 5
    week = EPOCH + dt.timedelta(days=1200)
    docs = tuple(f"doc{d}" for d in (7, n // 6, n // 3 - 2))
    return {
        "none": SearchFilter(),
        "lang (50%)": SearchFilter(lang="zh"),
        "3 documents": SearchFilter(document_ids=docs),
        "1 source (0.1%)": SearchFilter(sources=("src-7",)),
        "1 week (0.2%)": SearchFilter(published_from=week.isoformat(),
                                      published_to=(week + dt.timedelta(days=6)).isoformat()),
        "1 year (10%)": SearchFilter(published_from=str(year), published_to=str(year)),
        "lang + year (5%)": SearchFilter(lang="en", published_from=str(year), published_to=str(year)),
        "lang + 50 sources + year": SearchFilter(lang="en", sources=tuple(f"src-{s}" for s in range(50)),
                                                 published_from=str(year), published_to=str(year)),
    }


def _masks(rowids: np.ndarray, flts: dict[str, SearchFilter]) -> dict[str, np.ndarray]:
    """The filters evaluated with numpy on the synthetic attributes (the ground truth's own path)."""
    lang, doc, source, day = attributes(rowids)
    out = {}
    for name, f in flts.items():
        m = np.ones(len(rowids), dtype=bool)
        if f.lang is not None:
            m &= lang == ("en", "zh").index(f.lang)
        if f.document_ids is not None:
            m &= np.isin(doc, [int(d[3:]) for d in f.document_ids])
        if f.sources is not None:
            m &= np.isin(source, [int(s[4:]) for s in f.sources])
        if f.published_from is not None or f.published_to is not None:
            lo = dt.date.fromisoformat(f.published_from) if len(f.published_from) == 10 else dt.date(int(f.published_from), 1, 1)
            hi = dt.date.fromisoformat(f.published_to) if len(f.published_to) == 10 else dt.date(int(f.published_to), 12, 31)
            m &= (day >= (lo - EPOCH).days) & (day <= (hi - EPOCH).days)
        out[name] = m
    return out


def _merge_truth(best: dict, q: np.ndarray, x: np.ndarray, rowids: np.ndarray, flts: dict[str, SearchFilter]) -> None:
    """Fold the exact top-10 of each query among rows ``x`` (per filter) into ``best``."""
    scores = q @ x.T
    for name, mask in _masks(rowids, flts).items():
        s = np.where(mask[None, :], scores, -np.inf)
        top = np.argpartition(-s, min(9, s.shape[1] - 1), axis=1)[:, :10]
        bs, bi = best[name]
        all_s = np.concatenate([bs, np.take_along_axis(s, top, 1)], 1)
        all_i = np.concatenate([bi, rowids[top]], 1)
        order = np.argsort(-all_s, axis=1)[:, :10]
        best[name] = (np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1))


def _index(folder: Path, variant: str, **overrides):
    from qa.index.faiss_dense import FaissDenseIndex

    s = Settings(_env_file=None)
    kwargs = dict(approximate_threshold=s.approximate_threshold, hnsw_m=s.hnsw_m, ef_search=s.hnsw_ef_search,
                  hnsw_sq8=variant == "hnsw_sq8")
    kwargs.update(overrides)
    return FaissDenseIndex(folder, DIM, MODEL, **kwargs)


def _rss() -> float:
    gc.collect()
    return proc_memory_mib(os.getpid()).get("VmRSS", float("nan"))


def build(folder: Path, n: int, variant: str, queries: int, seed: int = 0) -> dict:
    """Phase 1 (own process): the index of ``n`` passages, checkpointed, and the exact top-10s."""
    import faiss

    faiss.omp_set_num_threads(2)
    gen = ClusteredVectors(DIM, 2000, seed)
    q = gen.sample(queries, np.random.default_rng(seed + 1))
    flts = filters(n)
    best = {name: (np.full((queries, 10), -np.inf, np.float32), np.full((queries, 10), -1, np.int64)) for name in flts}
    # bulk load: nothing is sealed until the last chunk, then one HNSW segment of everything
    threshold = Settings(_env_file=None).approximate_threshold
    index = _index(folder, variant, approximate_threshold=n - 1 if n > threshold else threshold, tail_limit=n + 1)
    rng = np.random.default_rng(seed + 2)
    t0 = time.perf_counter()
    add_s = 0.0
    for lo in range(0, n, CHUNK):
        rowids = np.arange(lo + 1, min(n, lo + CHUNK) + 1, dtype=np.int64)
        x = gen.sample(len(rowids), rng)
        t1 = time.perf_counter()
        index.add(entries(rowids, x))
        add_s += time.perf_counter() - t1
        _merge_truth(best, q, x, rowids, flts)
        print(f"  build: {min(n, lo + CHUNK):,} of {n:,} passages added", file=sys.stderr, flush=True)
    print("  build: waiting for the background index build", file=sys.stderr, flush=True)
    index.settle()
    build_s = time.perf_counter() - t0
    index.mark_applied(1)
    t1 = time.perf_counter()
    index.checkpoint()
    checkpoint_s = time.perf_counter() - t1
    stats = index.stats("default")
    index.close()
    np.save(folder.parent / "queries.npy", q)
    np.savez(folder.parent / "truth.npz", **{f"{name}/{part}": arr for name, pair in best.items()
                                            for part, arr in zip(("scores", "ids"), pair)})
    return {"build_s": round(build_s, 1), "add_calls_s": round(add_s, 1), "full_checkpoint_s": round(checkpoint_s, 2),
            "segments": stats["segments"], "tail_rows": stats["tail_rows"],
            "disk_mib": round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1)}


def measure(folder: Path, n: int, variant: str, writes: int = 40, seed: int = 0) -> dict:
    """Phase 2 (own process): open, memory, searches, writes, an incremental checkpoint."""
    import faiss

    import qa.index.faiss_dense  # noqa: F401  (imported before the clock starts)

    faiss.omp_set_num_threads(1)
    base = _rss()
    t0, c0 = time.perf_counter(), time.process_time()
    index = _index(folder, variant)
    open_s, open_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    rss = _rss() - base
    # steady state: the exact tail of recent writes half full, as it is on average between two seals
    gen = ClusteredVectors(DIM, 2000, seed)
    rng = np.random.default_rng(seed + 3)
    q = np.load(folder.parent / "queries.npy")
    flts = filters(n)
    with np.load(folder.parent / "truth.npz") as data:
        best = {name: (data[f"{name}/scores"], data[f"{name}/ids"]) for name in flts}
    recent = index.tail_limit // 2
    for lo in range(0, recent, CHUNK):
        rowids = np.arange(2 * n + lo + 1, 2 * n + min(recent, lo + CHUNK) + 1, dtype=np.int64)
        x = gen.sample(len(rowids), rng)
        index.add(entries(rowids, x))
        _merge_truth(best, q, x, rowids, flts)
    truth = {name: np.where(np.isfinite(bs), bi, -1) for name, (bs, bi) in best.items()}
    state = index.stats("default")
    searches = {}
    for name, flt in flts.items():
        lat, cpu, found, wanted = [], [], 0, 0
        for row in range(len(q)):
            t1, c1 = time.perf_counter(), time.thread_time()
            hits = index.search(q[row], 10, flt)
            lat.append(time.perf_counter() - t1)
            cpu.append(time.thread_time() - c1)
            want = {int(r) for r in truth[name][row] if r >= 0}
            found += len({h.rowid for h in hits} & want)
            wanted += len(want)
        summary = latency_summary(lat)
        searches[name] = {"p50_ms": round(summary["p50_ms"], 2), "p95_ms": round(summary["p95_ms"], 2),
                          "cpu_p50_ms": round(latency_summary(cpu)["p50_ms"], 2),
                          "recall_at_10": round(found / wanted, 4) if wanted else None}
    # writes the size of one small document: 3 passages added (a new document), 3 removed
    add_lat, remove_lat = [], []
    for i in range(writes):
        rowids = np.arange(n + 1 + 3 * i, n + 4 + 3 * i, dtype=np.int64)
        batch = entries(rowids, gen.sample(3, rng))
        t1 = time.perf_counter()
        index.add(batch)
        add_lat.append(time.perf_counter() - t1)
        victims = (rng.choice(n // 3, 1)[0] * 3 + 1 + np.arange(3)).tolist()
        t1 = time.perf_counter()
        index.remove("default", victims)
        remove_lat.append(time.perf_counter() - t1)
    index.mark_applied(2)
    t1 = time.perf_counter()
    index.checkpoint()
    ckpt_s = time.perf_counter() - t1
    index.close()
    adds, removes = latency_summary(add_lat), latency_summary(remove_lat)
    return {"segments": [s["rows"] for s in state["segments"]], "tail_rows": state["tail_rows"],
            "open_s": round(open_s, 2), "open_cpu_s": round(open_cpu_s, 2), "index_rss_mib": round(rss, 1), "bytes_per_passage": round(rss * 2**20 / n, 1),
            "add_3_p50_ms": round(adds["p50_ms"], 3), "add_3_p95_ms": round(adds["p95_ms"], 3),
            "remove_3_p50_ms": round(removes["p50_ms"], 3), "remove_3_p95_ms": round(removes["p95_ms"], 3),
            "checkpoint_after_writes_s": round(ckpt_s, 3), "searches": searches}


def _phase(phase: str, folder: Path, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "bench.dense_scale", "--phase", phase, "--folder", str(folder), "--n", str(args.n),
           "--variant", args.variant, "--queries", str(args.queries)]
    # searches are measured single-threaded (FAISS and BLAS), as a server thread runs one; the build's
    # OpenMP threads sleep rather than spin when they wait (a shared machine's other jobs need the cores)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1") if phase == "measure" else dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"the {phase} phase failed (exit {proc.returncode})")
    return json.loads(line[len("RESULT "):])


def print_result(r: dict) -> None:
    b, m = r["build"], r["measure"]
    print(f"\ndense index, {r['n']:,} clustered {DIM}-d vectors, {r['variant']} "
          f"(searched exactly below {r['approximate_threshold']:,} passages); load average "
          f"{r['load_average_at_start']:.1f} at start, {os.getloadavg()[0]:.1f} at the end")
    print(f"  build {b['build_s']} s (bulk), first checkpoint {b['full_checkpoint_s']} s, on disk {b['disk_mib']} MiB")
    print(f"  searched: segments of {m['segments']} rows and an exact tail of {m['tail_rows']:,} recent rows")
    print(f"  open {m['open_s']} s (CPU {m.get('open_cpu_s', float('nan'))} s); index resident memory {m['index_rss_mib']:,} MiB ({m['bytes_per_passage']} B/passage)")
    print(f"  add 3 passages p50 {m['add_3_p50_ms']} ms (p95 {m['add_3_p95_ms']}); remove 3 p50 "
          f"{m['remove_3_p50_ms']} ms (p95 {m['remove_3_p95_ms']}); checkpoint after them {m['checkpoint_after_writes_s']} s")
    print(f"  {'filter':<26}{'p50 ms':>9}{'p95 ms':>9}{'CPU p50 ms':>12}{'recall@10':>11}")
    for name, s in m["searches"].items():
        rec = "" if s["recall_at_10"] is None else f"{s['recall_at_10']:.4f}"
        print(f"  {name:<26}{s['p50_ms']:>9.2f}{s['p95_ms']:>9.2f}{s['cpu_p50_ms']:>12.2f}{rec:>11}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.dense_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="passages (default 100000)")
    p.add_argument("--variant", choices=("hnsw", "hnsw_sq8"), default="hnsw_sq8",
                   help="index above the approximate threshold (default hnsw_sq8: the one that fits 4 GB at 1M)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--phase", choices=("build", "measure"), help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase == "build":
        print("RESULT " + json.dumps(build(args.folder, args.n, args.variant, args.queries)))
        return
    if args.phase == "measure":
        print("RESULT " + json.dumps(measure(args.folder, args.n, args.variant)))
        return
    tmp = Path(tempfile.mkdtemp(prefix="qa-dense-scale-"))
    try:
        folder = tmp / "dense"
        print(f"dense_scale: {args.n:,} passages, {args.variant}, data in {tmp}", file=sys.stderr, flush=True)
        result = {"n": args.n, "variant": args.variant, "dim": DIM, "queries": args.queries,
                  "load_average_at_start": os.getloadavg()[0],
                  "approximate_threshold": Settings(_env_file=None).approximate_threshold,
                  "machine": machine_info(), "build": _phase("build", folder, args)}
        result["measure"] = _phase("measure", folder, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
