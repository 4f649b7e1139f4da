"""What every job queue is: jobs (an upload plus what to do with it), their progress, result or error.

A job is submitted with its ``kind`` (a handler's name), ``params`` and the upload's bytes, and is
safely stored before :meth:`JobQueue.submit` returns (so nothing answered ``202 Accepted`` is lost).
A worker runs it with a progress callback of named stages (``pages parsed``, ``pages OCR'd``,
``passages embedded``: done and total each); it ends ``done`` with a result or ``failed`` with an
error ``{type, message}``. A job whose worker died is run again (``resumed`` counts how often) and,
after :data:`MAX_RESUMES`, marked failed, never left running. Ingestion is idempotent by content
hash, so a job run twice stores its document once.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, field

from qa.store.base import DEFAULT_COLLECTION

log = logging.getLogger(__name__)

MAX_RESUMES = 3
PROGRESS_SAVE_S = 1.0  # a running job's progress is saved at most this often (and at each stage's end)

# A handler: (job, its upload bytes, a progress callback) -> the job's result (JSON-able).
Progress = Callable[[str, int, int], None]
Handler = Callable[["Job", bytes, Progress], dict]


def job_collection(job: Job) -> str:
    """The collection a job adds to."""
    return job.params.get("collection") or DEFAULT_COLLECTION


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
    worker: str | None = None  # who runs or ran it (host/pid of a replica); None in the embedded queue

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")

    def public(self) -> dict:
        out = asdict(self)
        out["progress"] = {stage: {"done": d, "total": t} for stage, (d, t) in self.progress.items()}
        return out


def interrupted(resumed: int) -> dict:
    """The error of a job whose worker died more than :data:`MAX_RESUMES` times."""
    return {"type": "interrupted", "message": f"the server stopped while this job ran, {resumed} times: "
            "upload the file again"}


def run_handler(handler: Handler, job: Job, upload: Callable[[], bytes], progress: Progress) -> dict:
    """Run one job (``upload`` reads its bytes): ``{"state": "done", "result": ...}`` or ``{"state":
    "failed", "error": ...}`` (a job's failure is its answer, never the worker's end)."""
    try:
        return {"state": "done", "result": handler(job, upload(), progress), "error": None}
    except JobFailed as exc:
        return {"state": "failed", "result": None, "error": {"type": exc.type, "message": exc.message}}
    except Exception as exc:  # noqa: BLE001
        log.exception("job %s failed", job.id)
        return {"state": "failed", "result": None,
                "error": {"type": "internal_error", "message": f"{type(exc).__name__}: {exc}"}}


class JobQueue(ABC):
    """Long uploads as jobs (see the module docstring); one implementation per backend."""

    def __init__(self, handlers: dict[str, Handler]):
        self.handlers = handlers

    def _check_kind(self, kind: str) -> None:
        if kind not in self.handlers:
            raise ValueError(f"unknown job kind {kind!r}")

    @abstractmethod
    def submit(self, kind: str, params: dict, upload: bytes) -> Job:
        """Store the job and its upload, then queue it (returns once both are stored)."""

    @abstractmethod
    def get(self, job_id: str) -> Job | None: ...

    @abstractmethod
    def list(self, limit: int = 50, collections: Collection[str] | None = None) -> list[Job]:
        """The newest jobs first (only those adding to ``collections``, when given: ``params["collection"]``,
        ``default`` when a job names none)."""

    @abstractmethod
    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        """Block until the job has finished (or ``timeout``); the job as it then is."""

    @abstractmethod
    def stop(self) -> None:
        """Stop this process's worker (a job it was running is resumed later, by it or another)."""
