"""Ingest throughput of the shared job queue with 1, 2, … replicas:
``python -m bench.job_throughput [--replicas 1 2] [--documents 24] [--paragraphs 40] [--embedder use-m]``.

For each replica count, on a fresh PostgreSQL database and Milvus prefix (the engines the tests start,
``tests/engines.py``): that many ``qa serve`` processes (no seeds) over the distributed backend;
``--documents`` distinct text uploads, each of ``--paragraphs`` paragraphs, are posted with
``?background=true`` to the first replica (posting is cheap: the work is parsing, embedding and
writing, done by whichever replica's worker takes the job); the clock runs from the first post to the
last job done. Reported: passages/s, jobs per replica, and the load average before and after (every
replica shares this machine's cores, so on a small machine the gain is bounded by the cores, not by
the queue).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx

from bench.benchmark import machine_info

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _text(doc: int, paragraphs: int, salt: str) -> bytes:
    """A report no earlier run wrote (``salt``): the embedding cache, kept between runs, has none of it."""
    return "\n\n".join(f"Report {doc}, paragraph {p}: the harbour office of district {salt}-{doc}-{p} counted the ferries, "
                       f"the cargo ships and the fishing boats that entered the bay during week {p}." for p in
                       range(paragraphs)).encode()


def _start(n: int, env: dict[str, str], scratch: Path) -> list[tuple[subprocess.Popen, httpx.Client]]:
    replicas = []
    for i in range(n):
        port, folder = _free_port(), scratch / f"replica-{i}"
        folder.mkdir(parents=True)
        log = open(folder / "serve.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "serve", "--port", str(port), "--data-dir",
                                 str(folder / "data")], cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        replicas.append((proc, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)))
    for proc, client in replicas:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"a replica exited with {proc.returncode}")
            try:
                body = client.get("/healthz").json()
                if body.get("ready"):
                    break
                if body.get("status") == "failed":
                    raise RuntimeError(f"a replica failed to start: {body.get('error')}")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("a replica did not get ready in 600 s")
            time.sleep(0.5)
    return replicas


def _stop(replicas) -> None:
    for proc, client in replicas:
        client.close()
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
    for proc, _ in replicas:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def run_one(replicas: int, documents: int, paragraphs: int, embedder: str, dsn: str, milvus_uri: str,
            prefix: str, scratch: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_STORE="postgres", QA_POSTGRES_DSN=dsn, QA_INDEX="milvus", QA_MILVUS_URI=milvus_uri,
               QA_MILVUS_PREFIX=prefix, QA_EMBEDDER=embedder, QA_SEEDS_DIR="", PYTHONPATH=str(ROOT))
    started_replicas = _start(replicas, env, scratch)
    try:
        front = started_replicas[0][1]
        salt = uuid.uuid4().hex[:8]
        load_before = os.getloadavg()
        started = time.perf_counter()
        jobs = []
        for d in range(documents):
            resp = front.post("/v1/documents", params={"background": "true"}, data={"id": f"r{d}"},
                              files={"file": (f"r{d}.txt", _text(d, paragraphs, salt), "text/plain")})
            resp.raise_for_status()
            jobs.append(resp.json()["job_id"])
        done: dict[str, dict] = {}
        while len(done) < len(jobs):
            for job_id in jobs:
                if job_id not in done:
                    job = front.get(f"/v1/jobs/{job_id}").json()
                    if job["state"] in ("done", "failed"):
                        done[job_id] = job
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        failed = [j for j in done.values() if j["state"] != "done"]
        if failed:
            raise RuntimeError(f"{len(failed)} jobs failed: {failed[0]['error']}")
        passages = sum(j["result"]["passages"] for j in done.values())
        return {"replicas": replicas, "documents": documents, "passages": passages, "seconds": seconds,
                "passages_per_s": passages / seconds, "jobs_per_worker": sorted(Counter(
                    j["worker"] for j in done.values()).values(), reverse=True),
                "load_before": load_before, "load_after": os.getloadavg()}
    finally:
        _stop(started_replicas)


def run(replica_counts: list[int], documents: int, paragraphs: int, embedder: str) -> dict:
    sys.path.insert(0, str(ROOT / "tests"))
    from engines import engines_for_a_run  # the engines the tests start

    scratch = Path(tempfile.mkdtemp(prefix="qa-bench-jobs-"))
    result = {"machine": machine_info(), "embedder": embedder, "paragraphs": paragraphs, "runs": []}
    try:
        with engines_for_a_run() as (postgres, milvus):
            for i, n in enumerate(replica_counts):
                print(f"{n} replica(s)…", file=sys.stderr, flush=True)
                result["runs"].append(run_one(n, documents, paragraphs, embedder, postgres.new_database(),
                                              milvus.uri, f"jobs{i}", scratch / f"run{i}"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    result["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                   cwd=ROOT).stdout.strip()
    return result


def print_result(r: dict) -> None:
    print(f"shared job queue, {r['embedder']}, {r['paragraphs']} paragraphs per upload (git {r['git']}; "
          f"{r['machine'].get('cpu', '')}, {os.cpu_count()} cores)")
    base = r["runs"][0]["passages_per_s"]
    for run_ in r["runs"]:
        print(f"  {run_['replicas']} replica(s): {run_['passages']} passages in {run_['seconds']:.1f} s = "
              f"{run_['passages_per_s']:.1f} passages/s ({run_['passages_per_s'] / base:.2f}x), jobs per worker "
              f"{run_['jobs_per_worker']}, load average {run_['load_before'][0]:.1f} → {run_['load_after'][0]:.1f}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.job_throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--documents", type=int, default=24)
    p.add_argument("--paragraphs", type=int, default=40)
    p.add_argument("--embedder", default="use-m", help="QA_EMBEDDER of the replicas (default use-m)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    result = run(args.replicas, args.documents, args.paragraphs, args.embedder)
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
