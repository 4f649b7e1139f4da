"""``qa bench``: the service's benchmark, run over HTTP against real servers on 127.0.0.1.

Five parts:

* **HTTP** (``run_bench``): starts ``qa serve`` as a subprocess on a free loopback port with a fresh
  data folder and measures start-up to ready (``/healthz``), ingest throughput on text that is in no
  embedding cache (a separate server whose ``QA_CACHE_DIR`` is an empty temp folder with a ``models``
  link to the real model folder; through the batch endpoint, and again on another such server with one
  ``POST /v1/documents`` per document from 8 concurrent clients), warm single-client search latency (p50/p95/p99) on distinct XQuAD
  questions, questions/s and p99 under 8 and 32 concurrent clients (a bounded asyncio + httpx load
  generator: fixed duration, request cap, stops by itself), errors, and the server's memory (VmRSS
  after warm-up and at the end, VmHWM = peak). With ``peers`` the same is measured, alternating in
  rounds, for three peers: txtai's API, and a hand-written FastAPI + FAISS app (``bench/peers``) on
  sentence-transformers twice, once in fp32 torch (``plain``) and once on its own OpenVINO backend
  (``openvino``, the strongest way to serve the same model; its vectors are checked against plain's fp32
  ones before it is measured). Every qa figure is also given as a ratio to the best peer. The peers with
  dependencies of their own are installed into virtualenvs under ``~/.cache/qa/peers`` first.
  The machine's CPU and its features (AVX2, AVX-512, VNNI, bf16, AMX) are printed with the table.
* **Start-up** (``run_startup``): start-up to ready on a warm cache (an empty data folder seeded from
  the embedding cache, then restarts on it) and the first question against the next hundred.
* **Ingest** (``run_ingest``): the ingest figures alone, the batch endpoint against one POST per
  document from 8 clients, alternating on fresh servers for several rounds.
* **Scale** (``run_scale``): N clustered synthetic unit vectors built into the service's own
  :class:`~bench.hnsw_index.VectorIndex` (the single-FAISS-index design the service used before its per-collection dense index) approximate path (HNSW, optionally HNSW+SQ8), without the
  model: build time, resident memory of the index, single-threaded search latency and recall@10
  against exact search on held-out queries. Stops at a time budget and extrapolates (labelled).
* **Matryoshka** (``run_truncation``): ``qa eval xquad`` with the embedding truncated to 512/256 dims,
  the passage vectors derived from the cached 768-d ones (truncate + renormalise: exactly what the
  embedder does, see ``embeddings/sentence_transformers.py``) so that nothing is re-embedded.

Only loopback addresses are ever contacted.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
import os
import platform
import random
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from qa.settings import Settings

HOST = "127.0.0.1"
PEERS_DIR = Path.home() / ".cache" / "qa" / "peers"
PEER_APPS = Path(__file__).with_name("peers")  # the hand-written search apps


# =============================================================================================
# statistics
# =============================================================================================
def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) with linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/mean/max in milliseconds and the count."""
    ms = [s * 1000.0 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": percentile(ms, 50), "p95_ms": percentile(ms, 95), "p99_ms": percentile(ms, 99),
        "mean_ms": (sum(ms) / len(ms)) if ms else float("nan"), "max_ms": max(ms) if ms else float("nan"),
    }


# =============================================================================================
# the load generator
# =============================================================================================
@dataclass
class LoadResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def merge(self, other: LoadResult) -> LoadResult:
        return LoadResult(self.concurrency, self.requests + other.requests, self.errors + other.errors,
                          self.elapsed_s + other.elapsed_s, self.latencies_s + other.latencies_s,
                          (self.error_samples + other.error_samples)[:5])

    def summary(self) -> dict:
        return {"concurrency": self.concurrency, "requests": self.requests, "errors": self.errors,
                "elapsed_s": round(self.elapsed_s, 3), "qps": round(self.throughput, 3),
                **{k: round(v, 2) if isinstance(v, float) else v for k, v in latency_summary(self.latencies_s).items()}}


async def run_load(send: Callable[[object], Awaitable[None]], *, concurrency: int, duration_s: float,
                   max_requests: int = 100_000, client=None) -> LoadResult:
    """``concurrency`` workers call ``await send(client)`` back to back until ``duration_s`` has passed
    or ``max_requests`` have been started; a request that raises counts as an error (successful ones
    only give latencies). Always stops by itself: no request starts after the deadline, and the
    client's own timeout bounds the last one. ``elapsed_s`` runs to the end of the last request.
    """
    if concurrency < 1 or duration_s <= 0 or max_requests < 1:
        raise ValueError("concurrency, duration_s and max_requests must be positive")
    result = LoadResult(concurrency)
    started = time.perf_counter()
    deadline = started + duration_s
    budget = [max_requests]

    async def worker() -> None:
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            t0 = time.perf_counter()
            try:
                await send(client)
            except Exception as exc:  # noqa: BLE001 — every failure is an error of the run
                result.errors += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{type(exc).__name__}: {exc}"[:300])
            else:
                result.latencies_s.append(time.perf_counter() - t0)
                result.requests += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - started
    return result


# =============================================================================================
# processes
# =============================================================================================
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def proc_memory_mib(pid: int) -> dict[str, float]:
    """VmRSS (now) and VmHWM (peak resident) of a process, in MiB, from /proc."""
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used so far, user + system, its exited threads included (``/proc/<pid>/stat``,
    in clock ticks: one reading is coarse, the mean of many differences is not). Differences give what
    requests cost the server, which the shared machine's load does not inflate the way it inflates wall time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class StartupFailed(RuntimeError):
    """The server answered that its start-up failed: no use waiting for it."""


class ServerProcess:
    """One server subprocess in its own process group, its output in a log file."""

    def __init__(self, name: str, cmd: list[str], *, env: dict[str, str], cwd: Path, port: int, log: Path):
        self.name, self.cmd, self.env, self.cwd, self.port, self.log_path = name, cmd, env, cwd, port, log
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> None:
        self._log = open(self.log_path, "wb")
        self.started_at = time.perf_counter()
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def wait_ready(self, check: Callable[[], bool], timeout_s: float = 300.0) -> float:
        """Seconds from spawn until ``check()`` is true; raises when the process dies or time runs out."""
        deadline = time.perf_counter() + timeout_s
        while time.perf_counter() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc and self.proc.returncode}: {self.log_tail()}")
            try:
                if check():
                    return time.perf_counter() - self.started_at
            except StartupFailed:
                raise
            except Exception:  # noqa: BLE001 — not listening yet
                pass
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} was not ready after {timeout_s:.0f} s: {self.log_tail()}")

    def memory(self) -> dict[str, float]:
        return proc_memory_mib(self.proc.pid) if self.proc else {}

    def log_tail(self, n: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: only what this process started
            self.proc.wait(timeout=20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        finally:
            self._log.close()


# The CPU features that decide how fast a transformer runs here (lscpu's flag names): wide vectors, int8
# dot products (VNNI) and native bf16 (AVX512-BF16, AMX).
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def machine_info() -> dict:
    model, flags = platform.processor(), set()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("Flags:"):
                flags = set(line.split(":", 1)[1].split())
    except (OSError, subprocess.SubprocessError):
        pass
    mem_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        here = Path(__file__).resolve().parent
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10,
                                cwd=here).stdout.strip() or None
        # what the measured servers ran may differ from the commit: name the files changed in the work tree
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10,
                               cwd=here).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, []
    return {"cpu": model, "cpu_features": [f for f in CPU_FEATURES if f in flags],
            "cpu_features_absent": [f for f in CPU_FEATURES if f not in flags],
            "cores": os.cpu_count(), "memory_gib": mem_gib, "python": platform.python_version(),
            "git": commit, "work_tree_changes": dirty, "loadavg_at_start": os.getloadavg()}


# =============================================================================================
# scale: the approximate index path without the model
# =============================================================================================
class ClusteredVectors:
    """Unit vectors near ``clusters`` centres: centre + a shared low-rank part + isotropic noise.

    ``x = normalise(c_k + 0.5·u + 0.25·g)`` with ``c_k`` a random unit centre, ``u`` a random
    direction in a fixed 64-d subspace (norm ≈ 1) and ``g`` isotropic noise (norm ≈ 1): a vector's
    cosine to its centre is ≈ 0.87. Real embeddings are clustered and of low intrinsic dimension;
    purely random vectors are not a fair test of an approximate index.
    """

    def __init__(self, dim: int = 768, clusters: int = 2000, seed: int = 0, latent: int = 64):
        import numpy as np

        rng = np.random.default_rng(seed)
        self.dim = dim
        self.centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        self.centres /= np.linalg.norm(self.centres, axis=1, keepdims=True)
        self.basis = (rng.standard_normal((dim, latent), dtype=np.float32) / math.sqrt(dim)).astype(np.float32)
        self.latent = latent

    def sample(self, n: int, rng, clusters: "np.ndarray | None" = None) -> "np.ndarray":  # noqa: F821
        """``n`` vectors, each near a random centre, or near ``clusters[i]`` (centre indices) when given."""
        import numpy as np

        k = rng.integers(0, len(self.centres), n) if clusters is None else np.asarray(clusters)
        z = rng.standard_normal((n, self.latent), dtype=np.float32) / math.sqrt(self.latent)
        g = rng.standard_normal((n, self.dim), dtype=np.float32) / math.sqrt(self.dim)
        x = self.centres[k] + 0.5 * (z @ self.basis.T) + 0.25 * g
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return np.ascontiguousarray(x, dtype=np.float32)


def _self_rss_mib() -> float:
    gc.collect()
    return proc_memory_mib(os.getpid()).get("VmRSS", float("nan"))


def scale_worker(n: int, variant: str, *, chunk: int = 50_000, budget_s: float = 600.0, queries: int = 1000,
                 checkpoints: Sequence[int] = (50_000, 100_000, 200_000, 400_000, 700_000, 1_000_000),
                 dim: int = 768, clusters: int = 2000, seed: int = 0, build_threads: int = 2,
                 log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True)) -> dict:
    """Build ``n`` vectors into a VectorIndex (HNSW, or HNSW+SQ8) chunk by chunk through the service's
    own paths (``rebuild`` for the first chunk — above ``approximate_threshold`` — then ``add``), and
    measure at each checkpoint. Stops adding once ``budget_s`` of build time is spent."""
    import faiss
    import numpy as np

    from bench.hnsw_index import VectorIndex

    gen = ClusteredVectors(dim, clusters, seed)
    q = gen.sample(queries, np.random.default_rng(seed + 1))  # held out: never added
    data_rng = np.random.default_rng(seed + 2)
    base_rss = _self_rss_mib()
    index = VectorIndex(dim, "synthetic", approximate_threshold=min(chunk, n) - 1, hnsw_m=32, ef_search=128,
                        hnsw_sq8=(variant == "hnsw_sq8"))
    gt_s = np.full((queries, 10), -np.inf, dtype=np.float32)
    gt_i = np.full((queries, 10), -1, dtype=np.int64)
    built, build_s, points = 0, 0.0, []
    checks = sorted({c for c in checkpoints if c < n} | {n})
    while built < n:
        m = min(chunk, n - built)
        x = gen.sample(m, data_rng)
        ids = np.arange(built, built + m, dtype=np.int64)
        faiss.omp_set_num_threads(build_threads)
        t0 = time.perf_counter()
        if built == 0:
            index.rebuild([(ids, x)])
        else:
            index.add(ids, x)
        chunk_s = time.perf_counter() - t0
        build_s += chunk_s
        # exact top-10 so far: merge this chunk's exact top-10 into the running one
        flat = faiss.IndexFlatIP(dim)
        flat.add(x)
        s, i = flat.search(q, 10)
        all_s, all_i = np.concatenate([gt_s, s], 1), np.concatenate([gt_i, i + built], 1)
        order = np.argsort(-all_s, axis=1)[:, :10]
        gt_s, gt_i = np.take_along_axis(all_s, order, 1), np.take_along_axis(all_i, order, 1)
        del x, flat, s, i
        built += m
        log(f"  {variant}: {built:,} vectors, build {build_s:.0f} s (last chunk {m / chunk_s:,.0f} vectors/s)")
        out_of_time = build_s >= budget_s
        if built in checks or out_of_time or built == n:
            assert index.approximate
            faiss.omp_set_num_threads(1)
            lat, hits = [], 0
            for row in range(queries):
                t0 = time.perf_counter()
                _, found = index.search(q[row], 10)
                lat.append(time.perf_counter() - t0)
                hits += len(set(found[0].tolist()) & set(gt_i[row].tolist()))
            rss = _self_rss_mib() - base_rss
            point = {"vectors": built, "build_s": round(build_s, 1), "last_chunk_vectors_per_s": round(m / chunk_s, 1),
                     "index_rss_mib": round(rss, 1), "bytes_per_vector": round(rss * 2**20 / built, 1),
                     "recall_at_10": round(hits / (10 * queries), 4),
                     "load_average_1m": round(os.getloadavg()[0], 2),
                     **{k: round(v, 3) if isinstance(v, float) else v for k, v in latency_summary(lat).items()}}
            points.append(point)
            log(f"  {variant}: at {built:,}: p50 {point['p50_ms']:.2f} ms, p95 {point['p95_ms']:.2f} ms, "
                f"recall@10 {point['recall_at_10']:.4f}, index RSS {rss:,.0f} MiB")
        if out_of_time:
            break
    last = points[-1]
    result = {"variant": variant, "target_vectors": n, "built_vectors": built, "reached_target": built >= n,
              "budget_s": budget_s, "dim": dim, "clusters": clusters, "queries": queries, "hnsw_m": 32,
              "ef_construction": 80, "ef_search": 128, "build_threads": build_threads, "search_threads": 1,
              "points": points}
    if built < n:
        rate = last["last_chunk_vectors_per_s"]
        result["extrapolated"] = {
            "note": "EXTRAPOLATED, not measured: the remaining vectors at the last chunk's insertion rate (HNSW "
                    "insertion cost grows about with log n, so a quiet machine would need somewhat more; a shared "
                    "machine's load moves the rate by more than that); memory at the last measured bytes/vector",
            "build_s_at_target": round(build_s + (n - built) / rate, 0),
            "index_mib_at_target": round(last["bytes_per_vector"] * n / 2**20, 0),
        }
    return result


SCALE_VARIANTS = ("hnsw", "hnsw_sq8")  # plain HNSW, and HNSW over 8-bit scalar-quantised vectors


def check_scale_variants(variants: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``variants`` names at least one known index variant and no other."""
    if not variants or set(variants) - set(SCALE_VARIANTS):
        raise ValueError(f"use {' and/or '.join(SCALE_VARIANTS)}, not {', '.join(variants) or 'nothing'}")


def run_scale(n: int, *, variants: Sequence[str] = SCALE_VARIANTS, budget_s: float = 600.0, queries: int = 1000,
              chunk: int = 50_000, console: Console | None = None) -> list[dict]:
    """Each variant in a fresh subprocess (so its resident memory is its own)."""
    check_scale_variants(variants)
    console = console or Console()
    results = []
    for variant in variants:
        console.print(f"[bold]scale[/bold]: {variant}, target {n:,} × 768-d vectors, build budget {budget_s:.0f} s")
        args = json.dumps({"n": n, "variant": variant, "budget_s": budget_s, "queries": queries, "chunk": chunk})
        code = ("import json, sys; from bench.benchmark import scale_worker; "
                "print('RESULT ' + json.dumps(scale_worker(**json.loads(sys.argv[1]))))")
        proc = subprocess.run([sys.executable, "-c", code, args], stdout=subprocess.PIPE, text=True,
                              timeout=budget_s * 4 + 900)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            console.print(f"[red]{variant} failed[/red] (exit {proc.returncode})")
            results.append({"variant": variant, "error": f"exit {proc.returncode}"})
            continue
        results.append(json.loads(line[len("RESULT "):]))
    print_scale(results, console)
    return results


def print_scale(results: list[dict], console: Console) -> None:
    table = Table(title="approximate index, synthetic clustered 768-d vectors (no model; search single-threaded)")
    for col in ("variant", "vectors", "build s", "index MiB", "B/vector", "p50 ms", "p95 ms", "recall@10"):
        table.add_column(col, justify="right" if col != "variant" else "left")
    for r in results:
        for p in r.get("points", []):
            table.add_row(r["variant"], f"{p['vectors']:,}", f"{p['build_s']:.0f}", f"{p['index_rss_mib']:,.0f}",
                          f"{p['bytes_per_vector']:,.0f}", f"{p['p50_ms']:.2f}", f"{p['p95_ms']:.2f}",
                          f"{p['recall_at_10']:.4f}")
        if "extrapolated" in r:
            e = r["extrapolated"]
            table.add_row(f"{r['variant']} (extrapolated)", f"{r['target_vectors']:,}",
                          f"~{e['build_s_at_target']:.0f}", f"~{e['index_mib_at_target']:,.0f}", "", "", "", "")
    console.print(table)


def write_json(path: Path | None, figures: dict) -> None:
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=1, ensure_ascii=False, default=str), encoding="utf-8")


# =============================================================================================
# the HTTP benchmark: data
# =============================================================================================
def load_xquad(eval_dir: Path, n: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """``n`` XQuAD paragraphs, zh and en alternating (paragraph i in one language only while n ≤ 240,
    then the other language of each), and every question whose gold paragraph is among them, shuffled."""
    xq = Path(eval_dir) / "xquad"
    with open(xq / "passages.jsonl", encoding="utf-8") as fh:
        by_id = {p["id"]: p for p in map(json.loads, filter(str.strip, fh))}
    per_lang = len(by_id) // 2
    chosen = []
    for i in range(min(n, len(by_id))):
        j = i % per_lang
        lang = ("zh", "en")[(j + i // per_lang) % 2]
        pid = f"{lang}-{j}"
        if pid in by_id:
            p = by_id[pid]
            chosen.append({"id": p["id"], "lang": p["lang"], "title": p.get("title") or p["id"], "text": p["text"].strip()})
    ids = {p["id"] for p in chosen}
    questions = []
    with open(xq / "questions.jsonl", encoding="utf-8") as fh:
        for q in map(json.loads, filter(str.strip, fh)):
            gold = set(q["gold_passage_ids"]) & ids
            if gold:
                questions.append({"q": q["question"], "lang": q["lang"], "gold": sorted(gold)})
    random.Random(seed).shuffle(questions)
    return chosen, questions


class QuestionStream:
    """Hands out the questions in order, each once, then again from the start (counted as repeats)."""

    def __init__(self, questions: Sequence[dict]):
        self.questions = list(questions)
        self.served = 0

    def next(self) -> dict:
        q = self.questions[self.served % len(self.questions)]
        self.served += 1
        return q

    @property
    def repeats(self) -> int:
        return max(0, self.served - len(self.questions))


# =============================================================================================
# the HTTP benchmark: systems under test
# =============================================================================================
class System:
    """A server under test: how to start it, tell that it is ready, add documents and search."""

    name = "?"
    peer = True
    ingest_batch = 16

    def __init__(self, server: ServerProcess):
        self.server = server
        self.stream: QuestionStream | None = None
        self.top1 = [0, 0]  # [first result in the gold set, answered]

    @property
    def url(self) -> str:
        return self.server.base_url

    def ready(self, http) -> bool:
        return http.get(self.url + "/healthz", timeout=5).status_code == 200

    def ingest(self, http, docs: Sequence[dict]) -> None:
        raise NotImplementedError

    async def search(self, client, question: str, k: int = 5) -> list[str]:
        raise NotImplementedError


class QaSystem(System):
    name = "qa"
    peer = False
    ingest_batch = 16  # documents per POST /v1/documents/batch, as the peers get them

    def ready(self, http) -> bool:
        r = http.get(self.url + "/healthz", timeout=5)
        if r.status_code != 200 and r.json().get("status") == "failed":
            raise StartupFailed(f"qa failed to start: {r.json().get('error')}")
        return r.status_code == 200 and r.json().get("ready") is True

    def ingest(self, http, docs: Sequence[dict]) -> None:
        for start in range(0, len(docs), self.ingest_batch):
            batch = [{"id": d["id"], "title": d["title"], "text": d["text"]} for d in docs[start:start + self.ingest_batch]]
            r = http.post(self.url + "/v1/documents/batch", json={"documents": batch}, timeout=600)
            r.raise_for_status()

    def ingest_each(self, docs: Sequence[dict], clients: int) -> dict:
        """``docs`` added by ``clients`` concurrent clients, each posting one document at a time to
        ``POST /v1/documents`` (a 503 is retried after a short pause and counted)."""
        import threading

        import httpx

        todo, lock, busy = list(reversed(docs)), threading.Lock(), [0]

        def client() -> None:
            with httpx.Client(trust_env=False, timeout=600) as http:
                while True:
                    with lock:
                        if not todo:
                            return
                        d = todo.pop()
                    body = {"id": d["id"], "title": d["title"], "text": d["text"]}
                    while (r := http.post(self.url + "/v1/documents", json=body)).status_code == 503:
                        with lock:
                            busy[0] += 1
                        time.sleep(0.05)
                    r.raise_for_status()

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(clients) as pool:
            for done in [pool.submit(client) for _ in range(clients)]:
                done.result()
        return {"clients": clients, "busy_503": busy[0]}

    async def search(self, client, question: str, k: int = 5) -> list[str]:
        r = await client.post(self.url + "/v1/search", json={"query": question, "top_k": k})
        r.raise_for_status()
        return [hit["document_id"] for hit in r.json()["results"]]


class PlainSystem(System):
    name = "plain"

    def ingest(self, http, docs: Sequence[dict]) -> None:
        for i in range(0, len(docs), self.ingest_batch):
            batch = [{"id": d["id"], "text": d["text"]} for d in docs[i:i + self.ingest_batch]]
            http.post(self.url + "/add", json=batch, timeout=600).raise_for_status()

    async def search(self, client, question: str, k: int = 5) -> list[str]:
        r = await client.post(self.url + "/search", json={"query": question, "top_k": k})
        r.raise_for_status()
        return [hit["id"] for hit in r.json()]


class TxtaiSystem(System):
    name = "txtai"
    indexed = False

    def ready(self, http) -> bool:
        return http.get(self.url + "/count", timeout=5).status_code == 200

    def ingest(self, http, docs: Sequence[dict]) -> None:
        # /add only buffers; /index (first time) or /upsert embeds what was buffered.
        for i in range(0, len(docs), self.ingest_batch):
            batch = [{"id": d["id"], "text": d["text"]} for d in docs[i:i + self.ingest_batch]]
            http.post(self.url + "/add", json=batch, timeout=600).raise_for_status()
        http.get(self.url + ("/upsert" if self.indexed else "/index"), timeout=1800).raise_for_status()
        self.indexed = True

    async def search(self, client, question: str, k: int = 5) -> list[str]:
        r = await client.get(self.url + "/search", params={"query": question, "limit": k})
        r.raise_for_status()
        return [str(hit["id"]) for hit in r.json()]


def model_folder(settings: Settings) -> Path:
    from embeddings.fetch import installed_embeddinggemma

    return Path(settings.model_path).expanduser() if settings.model_path else installed_embeddinggemma(settings.models_dir)


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


FIRST_STAGE = "qa-first-stage"  # bench label of qa with the second stage turned off


def empty_cache_dir(tmp: Path, settings: Settings, label: str) -> Path:
    """A new cache folder in ``tmp`` with no embedding cache, its ``models`` linked to the real model folder."""
    folder = tmp / label
    folder.mkdir()
    (folder / "models").symlink_to(settings.models_dir.resolve(), target_is_directory=True)
    return folder


INGEST_CLIENTS = 8  # clients that post one document at a time in the ingest figures


def timed_cold_ingest(tmp: Path, settings: Settings, label: str, docs: Sequence[dict], http,
                      clients: int | None = None) -> dict:
    """Start a qa server on an empty embedding cache and data folder, time the ingest of ``docs`` (through
    ``POST /v1/documents/batch`` in requests of 16, or with ``clients`` one ``POST /v1/documents`` per
    document each), stop it; returns start-up, seconds, paragraphs/s and memory."""
    qa = make_qa(tmp, label, empty_cache_dir(tmp, settings, f"{label}-cache"))
    try:
        qa.server.start()
        out = {"startup_s": round(qa.server.wait_ready(lambda: qa.ready(http)), 2)}
        t0, cpu0 = time.perf_counter(), cpu_seconds(qa.server.proc.pid)
        if clients:
            out.update(qa.ingest_each(docs, clients))
        else:
            qa.ingest(http, docs)
            out["request_batch"] = qa.ingest_batch
        seconds = time.perf_counter() - t0
        out.update({"paragraphs": len(docs), "seconds": round(seconds, 2),
                    "paragraphs_per_s": round(len(docs) / seconds, 3),
                    "server_cpu_s": round(cpu_seconds(qa.server.proc.pid) - cpu0, 2), "memory_mib": qa.server.memory()})
        return out
    finally:
        qa.server.stop()


def run_ingest(settings: Settings, *, paragraphs: int = 16, clients: int = INGEST_CLIENTS, rounds: int = 2,
               eval_dir: Path = Path("../shared/eval"), console: Console | None = None) -> dict:
    """Ingest of never-embedded XQuAD paragraphs over HTTP, through the batch endpoint and through one POST
    per document from ``clients`` concurrent clients, alternating on fresh servers (empty embedding cache,
    empty data folder) for ``rounds`` rounds; the same paragraphs every time."""
    import httpx

    console = console or Console()
    docs, _ = load_xquad(eval_dir, paragraphs)
    figures: dict = {"machine": machine_info(), "params": {"paragraphs": len(docs), "clients": clients,
                                                           "rounds": rounds}, "rounds": []}
    with tempfile.TemporaryDirectory(prefix="qa-bench-ingest-") as tmp_name, httpx.Client(trust_env=False) as http:
        tmp = Path(tmp_name)
        for r in range(rounds):
            row = {}
            for kind in (("batch", "posts") if r % 2 == 0 else ("posts", "batch")):
                load = os.getloadavg()[0]
                row[kind] = timed_cold_ingest(tmp, settings, f"r{r}-{kind}", docs, http,
                                              clients if kind == "posts" else None)
                row[kind]["load_average_1m"] = round(load, 2)
                console.print(f"  round {r + 1} {kind}: {len(docs)} paragraphs in {row[kind]['seconds']:.1f} s "
                              f"({row[kind]['paragraphs_per_s']:.2f}/s, server CPU {row[kind]['server_cpu_s']:.1f} s; "
                              f"start-up {row[kind]['startup_s']:.1f} s; load average {load:.1f})")
            row["posts_over_batch"] = round(row["posts"]["paragraphs_per_s"] / row["batch"]["paragraphs_per_s"], 3)
            figures["rounds"].append(row)
    total = {kind: sum(row[kind]["seconds"] for row in figures["rounds"]) for kind in ("batch", "posts")}
    figures["paragraphs_per_s"] = {kind: round(len(docs) * rounds / seconds, 3) for kind, seconds in total.items()}
    figures["posts_over_batch"] = round(total["batch"] / total["posts"], 3)
    cpu = {kind: sum(row[kind]["server_cpu_s"] for row in figures["rounds"]) for kind in ("batch", "posts")}
    figures["server_cpu_s_per_paragraph"] = {kind: round(v / (len(docs) * rounds), 3) for kind, v in cpu.items()}
    console.print(f"ingest of {len(docs)} never-embedded XQuAD paragraphs, {rounds} rounds: batch endpoint "
                  f"{figures['paragraphs_per_s']['batch']:.2f}/s, one POST per document from {clients} clients "
                  f"{figures['paragraphs_per_s']['posts']:.2f}/s = {figures['posts_over_batch']:.2f}× the batch endpoint; "
                  f"server CPU per paragraph {figures['server_cpu_s_per_paragraph']['batch']:.2f} s / "
                  f"{figures['server_cpu_s_per_paragraph']['posts']:.2f} s")
    console.print(machine_line(figures["machine"]))
    return figures


def run_startup(settings: Settings, *, rounds: int = 3, queries: int = 100, eval_dir: Path = Path("../shared/eval"),
                console: Console | None = None) -> dict:
    """Start-up on a warm cache, and whether the first question is as fast as the hundredth.

    ``qa serve`` (the configured model and embedding cache, the configured seeds folder) first on an empty
    data folder (the seeds are ingested, from the embedding cache where it holds them), then ``rounds``
    times again on that folder (the seeds are checked and found). Each time: seconds from spawn to ready
    (``/healthz``), then the first question the moment it is ready, then ``queries`` distinct questions one
    at a time (none of them asked before in that server, so no question cache helps)."""
    import httpx

    console = console or Console()
    _, questions = load_xquad(eval_dir, 240)
    seeds = Path(settings.seeds_dir).resolve() if settings.seeds_dir else None
    figures: dict = {"machine": machine_info(), "params": {"rounds": rounds, "queries": queries,
                                                           "seeds": str(seeds)}, "starts": []}
    with tempfile.TemporaryDirectory(prefix="qa-bench-startup-") as tmp_name, httpx.Client(trust_env=False) as http:
        tmp = Path(tmp_name)
        data = tmp / "data"
        for r in range(rounds + 1):
            qa = make_qa(tmp, f"start-{r}", settings.cache_dir, data, QA_SEEDS_DIR=str(seeds or ""))
            load = os.getloadavg()[0]
            try:
                qa.server.start()
                ready_s = qa.server.wait_ready(lambda: qa.ready(http))
                asked = questions[r * (queries + 1):(r + 1) * (queries + 1)]
                seconds = []
                for q in asked:
                    t0 = time.perf_counter()
                    http.post(qa.url + "/v1/search", json={"query": q["q"], "top_k": 5}, timeout=60).raise_for_status()
                    seconds.append(time.perf_counter() - t0)
                health = http.get(qa.url + "/healthz", timeout=5).json()
            finally:
                qa.server.stop()
            rest = latency_summary(seconds[1:])
            row = {"data_folder": "empty" if r == 0 else "seeded", "startup_s": round(ready_s, 2),
                   "first_question_ms": round(seconds[0] * 1000, 1), "next_p50_ms": round(rest["p50_ms"], 1),
                   "next_p95_ms": round(rest["p95_ms"], 1), "seeds": health.get("seeds"),
                   "load_average_1m": round(load, 2)}
            row["first_over_p50"] = round(row["first_question_ms"] / row["next_p50_ms"], 2)
            figures["starts"].append(row)
            console.print(f"  start {r + 1} ({row['data_folder']} data folder): ready after {row['startup_s']:.1f} s; "
                          f"first question {row['first_question_ms']:.0f} ms, the next {len(seconds) - 1}: p50 "
                          f"{row['next_p50_ms']:.0f} ms (first ÷ p50 {row['first_over_p50']:.2f}); load average {load:.1f}")
    again = figures["starts"][1:]
    if again:
        figures["restart_s_median"] = round(statistics.median(s["startup_s"] for s in again), 2)
        figures["first_over_p50_median"] = round(statistics.median(s["first_over_p50"] for s in figures["starts"]), 2)
        console.print(f"start-up on a warm cache: {figures['starts'][0]['startup_s']:.1f} s on an empty data folder, "
                      f"median {figures['restart_s_median']:.1f} s on the seeded one; first question ÷ p50 of the next "
                      f"{queries}: median {figures['first_over_p50_median']:.2f}")
    console.print(machine_line(figures["machine"]))
    return figures


def make_qa(tmp: Path, label: str, cache_dir: Path, data_dir: Path | None = None, **settings: str) -> QaSystem:
    """A qa server on its own data folder (``data_dir``, default a new one in ``tmp``), no seeds;
    ``settings`` are extra ``QA_*`` environment variables."""
    port = free_port()
    (tmp / "no-seeds").mkdir(exist_ok=True)
    env = _child_env(**{"QA_DATA_DIR": str(data_dir or tmp / f"{label}-data"), "QA_SEEDS_DIR": str(tmp / "no-seeds"),
                        "QA_CACHE_DIR": str(cache_dir), "QA_HOST": HOST, "QA_PORT": str(port), **settings})
    cmd = [sys.executable, "-m", "qa.cli", "serve", "--host", HOST, "--port", str(port), "--log-level", "warning"]
    system = QaSystem(ServerProcess(label, cmd, env=env, cwd=tmp, port=port, log=tmp / f"{label}.log"))
    system.name = label
    return system


def _search_app(tmp: Path, name: str, python: Path | str, module: str, **env: str) -> PlainSystem:
    """One of the hand-written search apps of ``bench/peers`` (``module``: ``plain_app`` or ``openvino_app``)."""
    port = free_port()
    cmd = [str(python), "-m", "uvicorn", f"{module}:app", "--app-dir", str(PEER_APPS), "--host", HOST,
           "--port", str(port), "--log-level", "warning"]
    system = PlainSystem(ServerProcess(name, cmd, env=_child_env(**env), cwd=tmp, port=port, log=tmp / f"{name}.log"))
    system.name = name
    return system


def make_plain(tmp: Path, folder: Path) -> PlainSystem:
    """The search app on fp32 torch, run with the project's own interpreter (same torch, same sentence-transformers)."""
    return _search_app(tmp, "plain", sys.executable, "plain_app", PLAIN_MODEL_PATH=str(folder))


def make_openvino(tmp: Path, exported: Path) -> PlainSystem:
    """The search app on sentence-transformers' OpenVINO backend, in its own venv (see :data:`PEER_VENVS`)."""
    return _search_app(tmp, "openvino", peer_python("openvino"), "openvino_app", OPENVINO_MODEL_PATH=str(exported))


# Each peer with its own dependencies runs in its own virtualenv under PEERS_DIR: what it installs (after
# torch==2.13.0: any other spec pulls a multi-GB CUDA build), what it must import, what it must not have.
PEER_VENVS: dict[str, dict] = {
    # txtai[api] does not pull in sentence-transformers
    "txtai": {"packages": ["txtai[api]", "sentence-transformers"],
              "imports": "import txtai.api, sentence_transformers, faiss", "remove": []},
    # optimum-intel 2.2 exports EmbeddingGemma only under transformers <= 5.0 (its Gemma export config),
    # and requires torchvision, whose PyPI build needs the CUDA torch: with the CPU torch its operators do
    # not register and `import transformers` fails, so it goes (nothing here uses it).
    "openvino": {"packages": ["sentence-transformers[openvino]==6.3.0", "optimum-intel==2.2.0", "transformers==5.0.0",
                              "faiss-cpu", "fastapi", "uvicorn"],
                 "imports": "import optimum.intel.openvino, sentence_transformers, transformers, faiss, fastapi, uvicorn",
                 "remove": ["torchvision"]},
}


def peer_python(name: str) -> Path:
    return PEERS_DIR / name / "venv" / "bin" / "python"


def install_peer(name: str, console: Console) -> str | None:
    """Create ``~/.cache/qa/peers/<name>/venv`` (:data:`PEER_VENVS`); None when ready, else why not."""
    spec, py = PEER_VENVS[name], peer_python(name)
    check = [str(py), "-c", spec["imports"]]
    if py.exists() and subprocess.run(check, capture_output=True, timeout=300).returncode == 0:
        return None
    folder = PEERS_DIR / name
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "install.log"
    console.print(f"installing the {name} peer into {folder / 'venv'} (minutes, once; log: {log}) …")
    steps = [[shutil.which("python3") or sys.executable, "-m", "venv", str(folder / "venv")],
             [str(py), "-m", "pip", "install", "-q", "torch==2.13.0"],
             [str(py), "-m", "pip", "install", "-q", *spec["packages"]]]
    if spec["remove"]:
        steps.append([str(py), "-m", "pip", "uninstall", "-q", "-y", *spec["remove"]])
    with open(log, "ab") as fh:
        for step in steps:
            rc = subprocess.run(step, stdout=fh, stderr=subprocess.STDOUT, timeout=3600).returncode
            if rc != 0:
                return f"`{' '.join(step)}` exited {rc} (see {log})"
    if subprocess.run(check, capture_output=True, timeout=300).returncode != 0:
        return f"the {name} peer installed but does not import (see {log})"
    return None


def openvino_export(folder: Path, console: Console) -> Path:
    """EmbeddingGemma exported once by sentence-transformers' OpenVINO backend, in the openvino peer's venv:
    ``~/.cache/qa/peers/openvino/<model>-<sha8>`` (made on first use, minutes; renamed into place when done)."""
    from embeddings.fetch import folder_digests

    weights = "model.safetensors"
    # no "@" in the name: optimum reads "<path>@<x>" as a hub repository at revision x
    target = PEERS_DIR / "openvino" / f"{folder.name}-{folder_digests(folder, [weights])[weights][:8]}"
    if (target / "openvino" / "openvino_model.xml").is_file():
        return target
    log = PEERS_DIR / "openvino" / "export.log"
    console.print(f"exporting {folder.name} to OpenVINO for the openvino peer (minutes, once; log: {log}) …")
    with open(log, "ab") as fh:
        rc = subprocess.run([str(peer_python("openvino")), str(PEER_APPS / "openvino_app.py"), "export", str(folder),
                             str(target)], stdout=fh, stderr=subprocess.STDOUT, env=_child_env(), timeout=7200).returncode
    if rc != 0:
        raise RuntimeError(f"the OpenVINO export exited {rc} (see {log})")
    return target


def embed_via(system: System, http, texts: Sequence[str], prompt_name: str) -> "np.ndarray":  # noqa: F821
    """A search app's vectors for ``texts`` (its ``/embed``)."""
    import numpy as np

    r = http.post(system.url + "/embed", json={"texts": list(texts), "prompt_name": prompt_name}, timeout=600)
    r.raise_for_status()
    return np.asarray(r.json()["vectors"], dtype=np.float32)


MIN_PEER_COSINE = 0.999  # a peer whose vectors are further from fp32 than this is not measured


def cosine_to_reference(system: System, reference: System, http, passages: Sequence[str],
                        questions: Sequence[str]) -> dict[str, float]:
    """Row-wise cosine of ``system``'s vectors to ``reference``'s (fp32) on the same passages and questions."""
    import numpy as np

    cos = np.concatenate([(embed_via(system, http, texts, prompt) * embed_via(reference, http, texts, prompt)).sum(axis=1)
                          for texts, prompt in ((passages, "document"), (questions, "query"))])
    return {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5), "n": int(cos.size)}


def make_txtai(tmp: Path, folder: Path) -> TxtaiSystem:
    port = free_port()
    config = tmp / "txtai.yml"
    # JSON is YAML: no YAML writer needed. method: sentence-transformers keeps EmbeddingGemma's Dense
    # layers and its query/document prompts (txtai calls encode_query / encode_document).
    config.write_text(json.dumps({"embeddings": {"path": str(folder), "method": "sentence-transformers",
                                                 "content": True}, "writable": True}), encoding="utf-8")
    cmd = [str(peer_python("txtai")), "-m", "uvicorn", "txtai.api:app", "--host", HOST, "--port", str(port),
           "--log-level", "warning"]
    return TxtaiSystem(ServerProcess("txtai", cmd, env=_child_env(CONFIG=str(config)), cwd=tmp, port=port,
                                     log=tmp / "txtai.log"))


# =============================================================================================
# the HTTP benchmark: phases
# =============================================================================================
def _search_sender(system: System, k: int = 5) -> Callable[[object], Awaitable[None]]:
    async def send(client) -> None:
        q = system.stream.next()
        ids = await system.search(client, q["q"], k)
        system.top1[1] += 1
        system.top1[0] += bool(ids) and ids[0] in q["gold"]
    return send


def _load(system: System, *, concurrency: int, duration_s: float, max_requests: int = 100_000) -> LoadResult:
    import httpx

    async def go() -> LoadResult:
        limits = httpx.Limits(max_connections=concurrency + 2, max_keepalive_connections=concurrency + 2)
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0), limits=limits, trust_env=False) as client:
            return await run_load(_search_sender(system), concurrency=concurrency, duration_s=duration_s,
                                  max_requests=max_requests, client=client)
    return asyncio.run(go())


def _rotated(items: list, r: int) -> list:
    r %= max(len(items), 1)
    return items[r:] + items[:r]


def _fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:,.{digits}f}" if isinstance(v, float) else f"{v:,}"


def run_bench(settings: Settings, *, queries: int = 100, passages: int = 240, ingest_passages: int = 16,
              duration_s: float = 20.0, concurrency: Sequence[int] = (8, 32), peers: bool = False,
              first_stage: bool = False,
              eval_dir: Path = Path("../shared/eval"), warmup: int = 10, rounds: int = 4, load_rounds: int = 2,
              console: Console | None = None) -> dict:
    """The HTTP benchmark (see the module docstring); returns the figures (also printed)."""
    import httpx

    console = console or Console()
    docs, questions = load_xquad(eval_dir, passages)
    if not docs:
        raise FileNotFoundError(f"no XQuAD passages under {eval_dir}/xquad")
    ingest_passages = max(1, min(ingest_passages, len(docs)))
    folder = model_folder(settings)
    figures: dict = {"machine": machine_info(), "params": {
        "passages": len(docs), "ingest_passages": ingest_passages, "questions_available": len(questions),
        "latency_questions": queries, "warmup": warmup, "duration_s_per_level": duration_s,
        "concurrency": list(concurrency), "rounds": rounds, "load_rounds": load_rounds, "top_k": 5,
        "peers": peers, "first_stage": first_stage, "model": str(folder)}, "systems": {}, "notes": []}
    load_log: list[tuple[str, tuple]] = []
    systems: list[System] = []
    http = httpx.Client(trust_env=False)

    def phase(name: str) -> None:
        load_log.append((name, os.getloadavg()))
        console.print(f"[bold]{name}[/bold]  (load average {os.getloadavg()[0]:.1f})")

    def fig(system: System) -> dict:
        return figures["systems"].setdefault(system.name, {})

    def start(system: System) -> None:
        system.server.start()
        fig(system)["startup_s"] = round(system.server.wait_ready(lambda: system.ready(http)), 2)
        console.print(f"  {system.name}: ready after {fig(system)['startup_s']:.1f} s (port {system.server.port})")

    def not_measured(name: str, why: str) -> None:
        figures["notes"].append(f"{name} not measured: {why}")
        console.print(f"[yellow]{name} not measured:[/yellow] {why}")

    def check_peer_vectors() -> None:
        """Each peer on another runtime than plain's fp32 torch must give plain's vectors (else it is dropped)."""
        reference = next((s for s in systems if s.name == "plain"), None)
        for peer in [s for s in systems if isinstance(s, PlainSystem) and s is not reference]:
            if reference is None:
                figures["notes"].append(f"{peer.name}: vectors not checked against fp32 (plain did not start)")
                continue
            cos = cosine_to_reference(peer, reference, http, [d["text"] for d in docs[:8]], [q["q"] for q in questions[:8]])
            fig(peer)["cosine_to_fp32"] = cos
            console.print(f"  {peer.name}: vectors at cosine {cos['min']:.5f} (min) / {cos['mean']:.5f} (mean) of fp32's")
            if cos["min"] < MIN_PEER_COSINE:
                not_measured(peer.name, f"its vectors are at cosine {cos['min']:.4f} of fp32's (at least "
                                        f"{MIN_PEER_COSINE} required)")
                peer.server.stop()
                systems.remove(peer)
                figures["systems"].pop(peer.name, None)

    def timed_ingest(system: System, subset: Sequence[dict]) -> None:
        t0 = time.perf_counter()
        system.ingest(http, subset)
        seconds = time.perf_counter() - t0
        fig(system)["ingest"] = {"paragraphs": len(subset), "seconds": round(seconds, 2),
                                 "paragraphs_per_s": round(len(subset) / seconds, 3),
                                 "request_batch": system.ingest_batch}
        console.print(f"  {system.name}: {len(subset)} paragraphs in {seconds:.1f} s "
                      f"({len(subset) / seconds:.2f}/s, {system.ingest_batch} per request)")

    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp_name:
        tmp = Path(tmp_name)
        try:
            # --- 0. the peers' own virtualenvs and model files, made once, before anything is timed ------
            peer_makers: list[Callable[[], System]] = []
            if peers:
                phase("peers: installing and exporting what they need (once; nothing timed)")
                peer_makers.append(lambda: make_plain(tmp, folder))
                why = install_peer("txtai", console)
                if why is None:
                    peer_makers.append(lambda: make_txtai(tmp, folder))
                else:
                    not_measured("txtai", why)
                why = install_peer("openvino", console)
                try:
                    if why is None:
                        exported = openvino_export(folder, console)
                        peer_makers.append(lambda: make_openvino(tmp, exported))
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    why = str(exc)
                if why is not None:
                    not_measured("openvino", why)

            # --- 1. qa on an empty embedding cache: start-up and ingest of text no cache holds --------
            phase(f"qa, empty embedding cache: start-up, then ingest {ingest_passages} paragraphs")
            cold = timed_cold_ingest(tmp, settings, "qa-cold", docs[:ingest_passages], http)
            fig_qa = figures["systems"].setdefault("qa", {})
            fig_qa["startup_s_empty_cache"] = cold.pop("startup_s")
            fig_qa["memory_after_ingest_mib"] = cold.pop("memory_mib")
            fig_qa["ingest"] = cold
            console.print(f"  qa: ready after {fig_qa['startup_s_empty_cache']:.1f} s; {cold['paragraphs']} paragraphs "
                          f"in {cold['seconds']:.1f} s ({cold['paragraphs_per_s']:.2f}/s, {cold['request_batch']} per request)")
            phase(f"qa, empty embedding cache: ingest of the same paragraphs, one POST per document from "
                  f"{INGEST_CLIENTS} clients")
            posts = timed_cold_ingest(tmp, settings, "qa-cold-posts", docs[:ingest_passages], http, INGEST_CLIENTS)
            posts.pop("memory_mib")
            posts.pop("startup_s")
            fig_qa["ingest_posts"] = posts
            console.print(f"  qa: {posts['paragraphs']} paragraphs in {posts['seconds']:.1f} s "
                          f"({posts['paragraphs_per_s']:.2f}/s, one POST each from {INGEST_CLIENTS} clients)")

            # --- 2. the systems searched: qa with its usual embedding cache, and the peers -------------
            phase("start-up of the systems searched")
            qa = make_qa(tmp, "qa-search", settings.cache_dir)
            qa.name = "qa"
            start(qa)
            systems.append(qa)
            if first_stage:  # the same service without its second stage, for the stage's latency cost
                systems.append(make_qa(tmp, FIRST_STAGE, settings.cache_dir, QA_RERANK_DEPTH="0"))
                start(systems[-1])
            if peers:
                for make in peer_makers:
                    peer = make()
                    try:
                        start(peer)
                        systems.append(peer)
                    except Exception as exc:  # noqa: BLE001 — report and go on without it
                        not_measured(peer.name, f"it did not start: {exc}")
                        peer.server.stop()
                check_peer_vectors()
                peer_list = [s for s in systems if s.peer]
                phase(f"peers: ingest of the same {ingest_passages} paragraphs (no cache exists for them)")
                for peer in peer_list:
                    timed_ingest(peer, docs[:ingest_passages])
            phase(f"loading the rest of the corpus ({len(docs)} paragraphs in all; not timed)")
            # qa gets all of them (the first ones went to another server); the systems load side by side
            from concurrent.futures import ThreadPoolExecutor

            def load_rest(system: System) -> None:
                with httpx.Client(trust_env=False) as own:
                    system.ingest(own, docs if not system.peer else docs[ingest_passages:])

            t0 = time.perf_counter()
            with ThreadPoolExecutor(len(systems)) as pool:
                list(pool.map(load_rest, systems))
            console.print(f"  loaded in {time.perf_counter() - t0:.0f} s")
            for s in systems:
                s.stream = QuestionStream(questions[warmup:])

            # --- 3. warm-up, then single-client latency in rounds ------------------------------------
            phase(f"warm-up: {warmup} questions each")
            warm = QuestionStream(questions[:warmup])
            for s in systems:
                s.stream, real = warm, s.stream
                warm.served = 0
                _load(s, concurrency=1, duration_s=600, max_requests=warmup)
                s.stream = real
                s.top1 = [0, 0]
                fig(s)["memory_after_warmup_mib"] = s.server.memory()
            phase(f"single-client latency: {queries} distinct questions each, {rounds} rounds")
            single = {s.name: LoadResult(1) for s in systems}
            per_round = [queries // rounds + (1 if r < queries % rounds else 0) for r in range(rounds)]
            for r, count in enumerate(per_round):
                for s in _rotated(systems, r):
                    if count:
                        single[s.name] = single[s.name].merge(_load(s, concurrency=1, duration_s=600,
                                                                    max_requests=count))
            for s in systems:
                fig(s)["single_client"] = single[s.name].summary()

            # --- 4. concurrent clients, alternating --------------------------------------------------
            for c in concurrency:
                phase(f"{c} concurrent clients: {duration_s:.0f} s each, in {load_rounds} rounds")
                results = {s.name: LoadResult(c) for s in systems}
                rss = {s.name: [] for s in systems}  # after each round: is memory flat under load?
                for r in range(load_rounds):
                    for s in _rotated(systems, r):
                        results[s.name] = results[s.name].merge(
                            _load(s, concurrency=c, duration_s=duration_s / load_rounds))
                        rss[s.name].append(round(s.server.memory().get("VmRSS", float("nan")), 1))
                for s in systems:
                    fig(s)[f"clients_{c}"] = results[s.name].summary()
                    fig(s)[f"clients_{c}"]["rss_after_each_round_mib"] = rss[s.name]
                    if results[s.name].error_samples:
                        fig(s)[f"clients_{c}"]["error_samples"] = results[s.name].error_samples
            for s in systems:
                fig(s)["memory_end_mib"] = s.server.memory()
                fig(s)["top1_in_gold"] = round(s.top1[0] / s.top1[1], 4) if s.top1[1] else None
                fig(s)["questions_served"] = s.stream.served
                fig(s)["questions_repeated"] = s.stream.repeats
                fig(s)["errors"] = sum(fig(s)[k]["errors"] for k in fig(s) if k.startswith(("clients_", "single")))
        finally:
            for s in systems:
                s.server.stop()
            http.close()
    figures["load_average"] = [{"phase": n, "1m": round(a[0], 2), "5m": round(a[1], 2)} for n, a in load_log]
    figures["ratios"] = ratios(figures, concurrency)
    if first_stage:
        full, first = (_get(figures["systems"].get(n, {}), ("single_client", "p50_ms")) for n in ("qa", FIRST_STAGE))
        if full and first:
            figures["second_stage_p50_factor"] = round(full / first, 3)
    print_bench(figures, concurrency, console)
    return figures


# (metric path, label, higher is better)
def _metrics(concurrency: Sequence[int]) -> list[tuple[tuple[str, ...], str, bool, int]]:
    rows = [
        (("startup_s",), "start-up to ready, s", False, 1),
        (("startup_s_empty_cache",), "start-up to ready, empty embedding cache, s", False, 1),
        (("ingest", "paragraphs_per_s"), "ingest, never-embedded text, paragraphs/s", True, 2),
        (("ingest_posts", "paragraphs_per_s"), f"ingest, one POST per document from {INGEST_CLIENTS} clients, "
                                               "paragraphs/s", True, 2),
        (("single_client", "p50_ms"), "1 client: p50 ms", False, 1),
        (("single_client", "p95_ms"), "1 client: p95 ms", False, 1),
        (("single_client", "p99_ms"), "1 client: p99 ms", False, 1),
    ]
    for c in concurrency:
        rows += [((f"clients_{c}", "qps"), f"{c} clients: questions/s", True, 2),
                 ((f"clients_{c}", "p50_ms"), f"{c} clients: p50 ms", False, 0),
                 ((f"clients_{c}", "p99_ms"), f"{c} clients: p99 ms", False, 0),
                 ((f"clients_{c}", "max_ms"), f"{c} clients: slowest request, ms", False, 0)]
    rows += [
        (("errors",), "errors", False, 0),
        (("memory_after_warmup_mib", "VmRSS"), "RSS after warm-up, MiB", False, 0),
        (("memory_end_mib", "VmRSS"), "RSS at the end, MiB", False, 0),
        (("memory_end_mib", "VmHWM"), "peak RSS (VmHWM), MiB", False, 0),
        (("top1_in_gold",), "sanity: first result is the gold paragraph", True, 3),
    ]
    return rows


def _get(d: dict, path: tuple[str, ...]):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def ratios(figures: dict, concurrency: Sequence[int]) -> dict:
    """qa's figure divided by the best peer's (best: lowest time/memory, highest rate), per metric."""
    systems = figures["systems"]
    peers = [n for n in systems if n not in ("qa", FIRST_STAGE)]
    out = {}
    for path, label, higher, _ in _metrics(concurrency):
        mine = _get(systems.get("qa", {}), path)
        theirs = [v for v in (_get(systems[p], path) for p in peers) if isinstance(v, (int, float))]
        against = {("startup_s_empty_cache",): ("startup_s",), ("ingest_posts", "paragraphs_per_s"):
                   ("ingest", "paragraphs_per_s")}.get(path)  # qa-only figures, against the peers' nearest one
        if against:
            theirs = [v for v in (_get(systems[p], against) for p in peers) if isinstance(v, (int, float))]
        if not isinstance(mine, (int, float)) or not theirs:
            continue
        best = max(theirs) if higher else min(theirs)
        if best:
            out[label] = round(mine / best, 3)
    return out


def machine_line(machine: dict) -> str:
    """``machine_info`` in one line: the CPU, its features, the commit."""
    absent = machine.get("cpu_features_absent") or []
    return (f"machine: {machine.get('cpu')}, {machine.get('cores')} cores, {machine.get('memory_gib')} GiB; CPU features: "
            f"{' '.join(machine.get('cpu_features') or []) or 'none of ' + ', '.join(CPU_FEATURES)}"
            + (f" (no {' '.join(absent)})" if absent else "") + f"; commit {machine.get('git')}")


def print_bench(figures: dict, concurrency: Sequence[int], console: Console) -> None:
    systems = figures["systems"]
    names = list(systems)
    table = Table(title=f"qa bench over HTTP: {figures['params']['passages']} XQuAD paragraphs, "
                        f"top-5, {figures['machine']['cores']} cores ({figures['machine']['cpu']})")
    table.add_column("metric")
    for n in names:
        table.add_column(n, justify="right")
    if len(names) > 1:
        table.add_column("qa ÷ best peer", justify="right")
    for path, label, _, digits in _metrics(concurrency):
        cells = []
        for n in names:
            v = _get(systems[n], path)
            cells.append(_fmt(float(v) if isinstance(v, (int, float)) and digits else v, digits))
        if all(c == "—" for c in cells):
            continue
        if len(names) > 1:
            r = figures.get("ratios", {}).get(label)
            cells.append(f"{r:.2f}×" if r is not None else "—")
        table.add_row(label, *cells)
    console.print(table)
    console.print(machine_line(figures["machine"]))
    if "second_stage_p50_factor" in figures:
        console.print(f"second stage: 1-client p50 is {figures['second_stage_p50_factor']:.2f}× that of "
                      f"{FIRST_STAGE} (QA_RERANK_DEPTH=0)")
    for note in figures.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")


# =============================================================================================
# Matryoshka truncation: qa eval xquad at fewer dimensions, without re-embedding the passages
# =============================================================================================
def _truncated_cache(src: Path, dst: Path, model_id: str, dim: int | None) -> int:
    """Copy ``model_id``'s vectors from cache ``src`` into a new cache ``dst``, truncated to ``dim`` and
    re-normalised, under the id the truncating embedder uses (``<model_id>/d<dim>``). Truncating the
    normalised 768-d vector and re-normalising equals what ``SentenceTransformerEmbedder`` does with
    ``dim`` (normalising first only scales the vector). Returns the number of vectors copied."""
    import numpy as np

    from embeddings.cache import _SCHEMA

    target_id = f"{model_id}/d{dim}" if dim else model_id
    source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=60)
    out = sqlite3.connect(dst)
    out.execute(_SCHEMA)
    rows = []
    for key, d, blob in source.execute("SELECT text_sha256, dim, vector FROM vectors WHERE model_id = ?", (model_id,)):
        v = np.frombuffer(blob, dtype=np.float32)
        if v.shape != (d,):
            continue
        if dim:
            v = v[:dim] / max(float(np.linalg.norm(v[:dim])), 1e-12)
        rows.append((target_id, key, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()))
    with out:
        out.executemany("INSERT OR REPLACE INTO vectors (model_id, text_sha256, dim, vector) VALUES (?, ?, ?, ?)", rows)
    source.close()
    out.close()
    return len(rows)


def run_truncation(settings: Settings, eval_dir: Path, dims: Sequence[int], *, limit: int | None = None,
                   console: Console | None = None, timeout_s: float = 5400) -> dict:
    """``qa eval xquad`` at the full size, then at each of ``dims``, without re-embedding passages twice.

    The full-size run works in a temp cache folder seeded with a copy of the real embedding cache (so it
    embeds only what the real cache lacks, and never touches the real eval pools); each truncated run
    gets a temp cache derived from that one's vectors (truncated + re-normalised). Questions are encoded
    by the model in every run (``limit``: only the first N questions per direction).
    """
    from embeddings.fetch import folder_digests

    console = console or Console()
    folder = model_folder(settings)
    weights = "model.safetensors"
    model_id = f"{folder.name}@{folder_digests(folder, [weights])[weights][:8]}"
    eval_dir = Path(eval_dir).resolve()
    result: dict = {"model_id": model_id, "limit_per_direction": limit, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="qa-mrl-") as root_name:
        root = Path(root_name)
        full_cache = None
        for dim in [None, *[d for d in dims if d]]:
            label = str(dim or "full")
            tmp = root / label
            tmp.mkdir()
            (tmp / "models").symlink_to(settings.models_dir.resolve(), target_is_directory=True)
            source = full_cache or settings.embedding_cache_path
            copied = _truncated_cache(source, tmp / "embeddings.sqlite", model_id, dim)
            console.print(f"[bold]matryoshka[/bold] dims {label}: {copied} cached passage vectors "
                          f"{'derived' if dim else 'copied'}; running qa eval xquad")
            env = _child_env(QA_CACHE_DIR=str(tmp))
            env.pop("QA_EMBEDDING_DIM", None)
            if dim:
                env["QA_EMBEDDING_DIM"] = str(dim)
            cmd = [sys.executable, "-m", "qa.cli", "eval", "xquad", "--eval-dir", str(eval_dir),
                   "--output", str(tmp / "eval.json")] + (["--limit", str(limit)] if limit else [])
            t0 = time.perf_counter()
            with open(root / f"{label}.log", "wb") as log:
                rc = subprocess.run(cmd, env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT,
                                    timeout=timeout_s).returncode
            if rc != 0:
                tail = (root / f"{label}.log").read_text(errors="replace")[-800:]
                result["runs"][label] = {"error": f"exit {rc}: {tail}"}
                continue
            if dim is None:
                full_cache = tmp / "embeddings.sqlite"
            runs = json.loads((tmp / "eval.json").read_text(encoding="utf-8"))
            result["runs"][label] = {"seconds": round(time.perf_counter() - t0, 1), "cached_vectors_at_start": copied,
                                     "directions": {r["name"]: {"n": r["n"], **r["legs"]} for r in runs}}
    print_truncation(result, console)
    return result


def print_truncation(result: dict, console: Console) -> None:
    table = Table(title="Matryoshka truncation, qa eval xquad: R@1 of the pipeline (dense leg alone)")
    runs = result["runs"]
    names = next((list(r["directions"]) for r in runs.values() if "directions" in r), [])
    table.add_column("dims")
    for n in names:
        table.add_column(n.replace("xquad ", ""), justify="right")
    for label, r in runs.items():
        if "directions" not in r:
            table.add_row(label, r.get("error", "?"))
            continue
        table.add_row(label, *[f"{r['directions'][n]['final']['R@1']:.3f} ({r['directions'][n]['dense']['R@1']:.3f})"
                               for n in names])
    console.print(table)
