"""Long uploads as jobs: a small base (:mod:`qa.jobs.base`) and one queue per backend.

- :class:`~qa.jobs.folder.FolderJobQueue` (embedded, the default): jobs in ``<data_dir>/jobs``, run
  one at a time by this process.
- :class:`~qa.jobs.postgres.PostgresJobQueue` (``QA_STORE=postgres``): jobs in PostgreSQL, taken by
  any replica's worker (procrastinate), with leases so a replica that dies hands its job on.
"""

from __future__ import annotations

from pathlib import Path

from qa.jobs.base import MAX_RESUMES, Handler, Job, JobFailed, JobQueue, Progress
from qa.jobs.folder import FolderJobQueue

__all__ = ["MAX_RESUMES", "FolderJobQueue", "Handler", "Job", "JobFailed", "JobQueue", "Progress", "create_job_queue"]


def create_job_queue(settings, handlers: dict[str, Handler], work: bool = True) -> JobQueue:
    """The configured backend's queue; ``work=False`` (the distributed backend only) submits and reads
    without running a worker in this process."""
    if settings.distributed:
        from qa.jobs.postgres import PostgresJobQueue

        return PostgresJobQueue(settings.postgres_dsn.get_secret_value(), handlers, work=work,
                                lease_s=settings.job_lease_s, timeout_s=settings.backend_timeout_s)
    return FolderJobQueue(Path(settings.data_dir) / "jobs", handlers)
