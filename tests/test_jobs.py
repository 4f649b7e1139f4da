"""The job queue on a real folder: progress, results, failures, and a worker killed mid-job (kill -9)
whose job is resumed by the next process, never left running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qa.jobs import MAX_RESUMES, FolderJobQueue, JobFailed


def _count(job, upload: bytes, progress) -> dict:
    words = upload.decode().split()
    for k in range(len(words)):
        progress("words counted", k + 1, len(words))
    return {"words": len(words), "resumed": job.resumed}


def _fail(job, upload, progress) -> dict:
    raise JobFailed("EncryptedDocumentError", "needs a password")


def _crash(job, upload, progress) -> dict:
    raise RuntimeError("boom")


@pytest.fixture
def queue(tmp_path: Path):
    q = FolderJobQueue(tmp_path / "jobs", {"count": _count, "fail": _fail, "crash": _crash})
    yield q
    q.stop()


def test_a_job_runs_reports_progress_and_keeps_its_result(queue: FolderJobQueue, tmp_path: Path) -> None:
    job = queue.submit("count", {"name": "a.txt"}, b"one two three")
    assert (tmp_path / "jobs" / job.id / "job.json").is_file()
    done = queue.wait(job.id, timeout=30)
    assert done.state == "done" and done.result == {"words": 3, "resumed": 0}
    assert done.public()["progress"] == {"words counted": {"done": 3, "total": 3}}
    assert not (tmp_path / "jobs" / job.id / "upload").exists()  # the upload goes once it is done
    saved = json.loads((tmp_path / "jobs" / job.id / "job.json").read_text())
    assert saved["state"] == "done" and saved["result"]["words"] == 3
    assert queue.list()[0].id == job.id


def test_jobs_are_listed_per_collection(queue: FolderJobQueue) -> None:
    made = {c: [queue.submit("count", {"collection": c}, b"x").id for _ in range(3)] for c in ("a", "b")}
    unnamed = queue.submit("count", {}, b"x").id  # a job naming no collection adds to the default one
    assert [j.id for j in queue.list(2, {"a"})] == made["a"][:0:-1]
    assert {j.id for j in queue.list(50, {"b", "default"})} == {*made["b"], unnamed}
    assert len(queue.list(50)) == 7 and queue.list(50, set()) == []


def test_failures_are_the_jobs_answer_and_the_worker_goes_on(queue: FolderJobQueue) -> None:
    failed = queue.submit("fail", {}, b"")
    crashed = queue.submit("crash", {}, b"")
    after = queue.submit("count", {}, b"still here")
    assert queue.wait(failed.id, 30).error == {"type": "EncryptedDocumentError", "message": "needs a password"}
    assert queue.wait(crashed.id, 30).error == {"type": "internal_error", "message": "RuntimeError: boom"}
    assert queue.wait(after.id, 30).result["words"] == 2
    with pytest.raises(ValueError):
        queue.submit("nothing", {}, b"")


WORKER = """
import sys, time
from qa.jobs import FolderJobQueue
def slow(job, upload, progress):
    progress("words counted", 1, 3)
    time.sleep(600)
q = FolderJobQueue(sys.argv[1], {"count": slow})
q.submit("count", {}, b"one two three")
time.sleep(600)
"""


def test_a_job_killed_mid_way_is_resumed_by_the_next_process(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(root)], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            states = [json.loads(p.read_text()) for p in root.glob("*/job.json")] if root.exists() else []
            if states and states[0]["state"] == "running" and states[0]["progress"]:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the job never started")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    queue = FolderJobQueue(root, {"count": _count})
    try:
        (job,) = queue.list()
        done = queue.wait(job.id, timeout=30)
        assert done.state == "done" and done.resumed == 1 and done.result == {"words": 3, "resumed": 1}
    finally:
        queue.stop()


def test_a_job_that_keeps_dying_is_reported_failed(tmp_path: Path) -> None:
    root = tmp_path / "jobs"
    (root / "abc").mkdir(parents=True)
    (root / "abc" / "upload").write_bytes(b"x")
    (root / "abc" / "job.json").write_text(json.dumps({"id": "abc", "kind": "count", "params": {}, "state": "running",
                                                       "resumed": MAX_RESUMES}))
    queue = FolderJobQueue(root, {"count": _count})
    try:
        job = queue.get("abc")
        assert job.state == "failed" and job.error["type"] == "interrupted"
    finally:
        queue.stop()
