"""Long uploads as jobs: queued, run one at a time in the background, their progress and result kept.

A job is the upload's bytes plus what to do with them (``kind`` and ``params``), saved under
``<data_dir>/jobs/<id>/`` (``upload`` and ``job.json``, each written atomically) before ``202
Accepted`` is answered, so nothing accepted is lost. One worker thread runs the jobs in the order
they came; a job reports progress as named stages (``pages parsed``, ``pages OCR'd``,
``passages embedded``: done and total each) and ends ``done`` with a result or ``failed`` with an
error ``{type, message}``.

A restart finds the jobs that were ``queued`` or ``running`` and queues them again (``resumed``
counts how often): ingestion is idempotent by content hash, so running a job twice stores its
document once. A job that fails by restarts three times is marked failed, never left running.
Finished jobs are kept for ``keep_finished`` (the newest ones) and their uploads deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from qa.index.files import atomic_write

log = logging.getLogger(__name__)

__all__ = ["Job", "JobQueue", "JobFailed", "Progress"]

MAX_RESUMES = 3

# A handler: (job, its upload bytes, a progress callback) -> the job's result (JSON-able).
Progress = Callable[[str, int, int], None]
Handler = Callable[["Job", bytes, Progress], dict]


class JobFailed(Exception):
    """A job's own failure, with the error type the client sees (a parse error, a missing collection)."""

    def __init__(self, type_: str, message: str):
        super().__init__(message)
        self.type, self.message = type_, message


@dataclass
class Job:
    id: str
    kind: str
    params: dict
    state: str = "queued"  # queued | running | done | failed
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    progress: dict[str, list[int]] = field(default_factory=dict)  # stage -> [done, total]
    result: dict | None = None
    error: dict | None = None
    resumed: int = 0

    def public(self) -> dict:
        out = asdict(self)
        out["progress"] = {stage: {"done": d, "total": t} for stage, (d, t) in self.progress.items()}
        return out


class JobQueue:
    """Jobs under ``root`` with one worker thread (see the module docstring)."""

    def __init__(self, root: Path, handlers: dict[str, Handler], keep_finished: int = 200):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.handlers = handlers
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
        if kind not in self.handlers:
            raise ValueError(f"unknown job kind {kind!r}")
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

    def list(self, limit: int = 50) -> list[Job]:
        with self._cond:
            return sorted(self._jobs.values(), key=lambda j: j.created_at, reverse=True)[:limit]

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until the job has finished (or ``timeout``); the job as it then is."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                job = self._jobs.get(job_id)
                if job is None or job.state in ("done", "failed"):
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
                    job.state = "failed"
                    job.error = {"type": "interrupted", "message": "the server stopped while this job ran, "
                                 f"{job.resumed} times: upload the file again"}
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
            if time.monotonic() - last_save[0] > 1.0 or done >= total:
                last_save[0] = time.monotonic()
                self._save(job)

        try:
            upload = (self.root / job.id / "upload").read_bytes()
            result = self.handlers[job.kind](job, upload, progress)
            outcome = {"state": "done", "result": result}
        except JobFailed as exc:
            outcome = {"state": "failed", "error": {"type": exc.type, "message": exc.message}}
        except Exception as exc:  # noqa: BLE001 - a job's failure is its answer, never the worker's end
            log.exception("job %s failed", job.id)
            outcome = {"state": "failed", "error": {"type": "internal_error", "message": f"{type(exc).__name__}: {exc}"}}
        with self._cond:
            job.state = outcome["state"]
            job.result = outcome.get("result")
            job.error = outcome.get("error")
            job.updated_at = time.time()
        self._save(job)
        (self.root / job.id / "upload").unlink(missing_ok=True)
        with self._cond:
            self._cond.notify_all()  # waiters see the job once it is on disk
        self._prune()

    def _prune(self) -> None:
        with self._cond:
            finished = sorted((j for j in self._jobs.values() if j.state in ("done", "failed")),
                              key=lambda j: j.updated_at, reverse=True)
            gone = finished[self.keep_finished:]
            for job in gone:
                del self._jobs[job.id]
        for job in gone:
            shutil.rmtree(self.root / job.id, ignore_errors=True)


def _write(path: Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
