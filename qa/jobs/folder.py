"""The embedded backend's job queue: jobs in the data folder, run one at a time by one worker thread.

A job is saved under ``<data_dir>/jobs/<id>/`` (``upload`` and ``job.json``, each written
atomically) before ``202 Accepted`` is answered. One worker thread runs the jobs in the order they
came. A restart finds the jobs that were ``queued`` or ``running`` and queues them again
(``resumed`` counts how often); a job that fails by restarts more than ``MAX_RESUMES`` times is
marked failed. Finished jobs are kept for ``keep_finished`` (the newest ones) and their uploads
deleted. (What jobs are: :mod:`qa.jobs.base`.)
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from dataclasses import asdict
from collections.abc import Collection
from pathlib import Path

from qa.index.files import atomic_write
from qa.jobs.base import (
    MAX_RESUMES,
    PROGRESS_SAVE_S,
    Handler,
    Job,
    JobQueue,
    interrupted,
    job_collection,
    run_handler,
)

log = logging.getLogger(__name__)

__all__ = ["FolderJobQueue"]


class FolderJobQueue(JobQueue):
    """Jobs under ``root`` with one worker thread (see the module docstring)."""

    def __init__(self, root: Path, handlers: dict[str, Handler], keep_finished: int = 200):
        super().__init__(handlers)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep_finished = keep_finished
        self._jobs: dict[str, Job] = {}
        self._queue: list[str] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._load()
        self._thread = threading.Thread(target=self._work, name="qa-jobs", daemon=True)
        self._thread.start()

    # --- public ----------------------------------------------------------------------------------
    def submit(self, kind: str, params: dict, upload: bytes) -> Job:
        """Save the job and its upload, then queue it (returns once both are on disk)."""
        self._check_kind(kind)
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, params=params)
        folder = self.root / job.id
        folder.mkdir()
        _write(folder / "upload", upload)
        self._save(job)
        with self._cond:
            self._jobs[job.id] = job
            self._queue.append(job.id)
            self._cond.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._cond:
            return self._jobs.get(job_id)

    def list(self, limit: int = 50, collections: Collection[str] | None = None) -> list[Job]:
        with self._cond:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)
        return [j for j in jobs if collections is None or job_collection(j) in collections][:limit]

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until the job has finished (or ``timeout``); the job as it then is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                if job is None or job.finished:
                    return job
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return job
                self._cond.wait(left)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        self._thread.join(timeout=5)

    # --- inside --------------------------------------------------------------------------------
    def _load(self) -> None:
        for folder in sorted(self.root.iterdir()):
            path = folder / "job.json"
            if not path.is_file():
                if folder.is_dir() and not folder.name.startswith("."):
                    shutil.rmtree(folder, ignore_errors=True)  # a job that was never accepted
                continue
            try:
                job = Job(**json.loads(path.read_text(encoding="utf-8")))
            except (ValueError, TypeError) as exc:
                log.warning("unreadable job %s (%s): removed", folder.name, exc)
                shutil.rmtree(folder, ignore_errors=True)
                continue
            if job.state in ("queued", "running"):
                job.resumed += 1 if job.state == "running" else 0
                if job.resumed > MAX_RESUMES or not (folder / "upload").is_file():
                    job.state, job.error = "failed", interrupted(job.resumed)
                else:
                    job.state = "queued"
                    self._queue.append(job.id)
                job.updated_at = time.time()
                self._save(job)
            self._jobs[job.id] = job
        self._queue.sort(key=lambda jid: self._jobs[jid].created_at)

    def _save(self, job: Job) -> None:
        _write(self.root / job.id / "job.json", json.dumps(asdict(job), ensure_ascii=False).encode())

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                job = self._jobs[self._queue.pop(0)]
                job.state, job.updated_at = "running", time.time()
            self._save(job)
            self._run(job)

    def _run(self, job: Job) -> None:
        last_save = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            with self._cond:
                job.progress[stage] = [int(done), int(total)]
                job.updated_at = time.time()
            if time.monotonic() - last_save[0] > PROGRESS_SAVE_S or done >= total:
                last_save[0] = time.monotonic()
                self._save(job)

        outcome = run_handler(self.handlers[job.kind], job, (self.root / job.id / "upload").read_bytes, progress)
        with self._cond:
            job.state = outcome["state"]
            job.result, job.error = outcome["result"], outcome["error"]
            job.updated_at = time.time()
        self._save(job)
        (self.root / job.id / "upload").unlink(missing_ok=True)
        with self._cond:
            self._cond.notify_all()  # waiters see the job once it is on disk
        self._prune()

    def _prune(self) -> None:
        with self._cond:
            finished = sorted((j for j in self._jobs.values() if j.finished),
                              key=lambda j: j.updated_at, reverse=True)
            gone = finished[self.keep_finished:]
            for job in gone:
                del self._jobs[job.id]
        for job in gone:
            shutil.rmtree(self.root / job.id, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
