"""The distributed backend's job queue: jobs in PostgreSQL, taken by any replica's worker.

Dispatch is procrastinate's (MIT; psycopg 3; jobs in ``procrastinate_*`` tables, handed out with
``SELECT … FOR UPDATE SKIP LOCKED`` and LISTEN/NOTIFY, one job at a time per replica; workers send
heartbeats). What the API shows is ``qa_jobs``: one row per job with its kind, params, upload
(``bytea``, dropped once finished), state, progress, result or error, ``resumed`` and the worker
(host/pid) that runs or ran it, so ``GET /v1/jobs/{id}`` answers the same through every replica.

- ``submit`` inserts the row and defers the procrastinate job in one transaction: a job is queued
  with its upload or not at all.
- A worker claims the row (``running``, its name, the procrastinate attempt), runs the handler
  (parse, embed, write: ingestion is idempotent by content hash and documents are written under an
  advisory lock, so a job run twice stores its document once), saves progress at most once a
  second, and finishes the row only if it still holds that attempt.
- Leases: every replica's worker looks, every ``lease_s / 5`` seconds, for jobs whose worker has
  sent no heartbeat for ``lease_s`` (killed, frozen, cut off) and hands each back to the queue (one
  replica at a time, under an advisory lock, so a job is requeued once); the next worker that takes
  it counts it ``resumed``, and after :data:`~qa.jobs.base.MAX_RESUMES` marks it failed.
- A replica that stops (SIGTERM) abandons its job at the next progress report and puts it back in
  the queue at once, for another replica.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Collection

from qa import abandon
from qa.jobs.base import MAX_RESUMES, PROGRESS_SAVE_S, Handler, Job, JobQueue, interrupted, run_handler
from qa.store.pg_database import PostgresDatabase

log = logging.getLogger(__name__)

__all__ = ["PostgresJobQueue"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS qa_jobs (
    id text PRIMARY KEY,
    kind text NOT NULL,
    params jsonb NOT NULL,
    state text NOT NULL,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    progress jsonb NOT NULL DEFAULT '{}',
    result jsonb,
    error jsonb,
    resumed int NOT NULL DEFAULT 0,
    worker text,
    attempt int,
    upload bytea
);
CREATE INDEX IF NOT EXISTS qa_jobs_created ON qa_jobs (created_at DESC);
"""
SCHEMA_LOCK = 7_310_004  # advisory lock serialising the creation of both schemas between replicas
SWEEP_LOCK = 7_310_005  # advisory lock: one replica at a time requeues the jobs of dead workers
QUEUE = "qa_jobs"
TASK = "qa.run_job"
_COLUMNS = "id, kind, params, state, created_at, updated_at, progress, result, error, resumed, worker"


class _Interrupted(Exception):
    """This replica is stopping: its job goes back to the queue (procrastinate retries it)."""


def _job(row: tuple) -> Job:
    return Job(id=row[0], kind=row[1], params=row[2], state=row[3], created_at=row[4], updated_at=row[5],
               progress=row[6], result=row[7], error=row[8], resumed=row[9], worker=row[10])


class PostgresJobQueue(JobQueue):
    """Jobs in PostgreSQL at ``dsn``; ``work=False`` only submits and reads (no worker in this process)."""

    def __init__(self, dsn: str, handlers: dict[str, Handler], *, work: bool = True, lease_s: float = 30.0,
                 keep_finished: int = 200, timeout_s: float = 10.0, worker_name: str | None = None):
        import procrastinate
        from procrastinate.manager import JobManager
        from procrastinate.schema import SchemaManager

        super().__init__(handlers)
        self.lease_s = lease_s
        self.heartbeat_s = max(0.5, lease_s / 5)
        self.keep_finished = keep_finished
        self.worker_name = worker_name or f"{socket.gethostname()}/{os.getpid()}"
        self.db = PostgresDatabase(dsn, pool_size=3, timeout_s=timeout_s, name="qa-jobs")
        self.address = self.db.address
        try:
            self.db.ensure_schema("procrastinate_jobs", SchemaManager.get_schema(), SCHEMA_LOCK)
            self.db.ensure_schema("qa_jobs", SCHEMA, SCHEMA_LOCK)
        except BaseException:
            self.db.close()
            raise
        # Deferring runs on our own transaction's connection (no pool of its own).
        self._deferrer = JobManager(procrastinate.SyncPsycopgConnector())
        self._procrastinate = procrastinate
        self._dsn = dsn
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()
        if work:
            self._started = threading.Event()
            self._thread = threading.Thread(target=self._serve, name="qa-jobs", daemon=True)
            self._thread.start()
            self._started.wait(timeout_s)

    # --- public ----------------------------------------------------------------------------------
    def submit(self, kind: str, params: dict, upload: bytes) -> Job:
        from procrastinate.jobs import Job as Deferred

        self._check_kind(kind)
        job = Job(id=uuid.uuid4().hex[:16], kind=kind, params=params)
        with self.db.tx() as cur:
            cur.execute("INSERT INTO qa_jobs (id, kind, params, state, created_at, updated_at, upload)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        (job.id, kind, json.dumps(params, ensure_ascii=False), job.state, job.created_at,
                         job.updated_at, upload))
            self._deferrer.defer_job(Deferred(id=None, queue=QUEUE, lock=None, queueing_lock=None, task_name=TASK,
                                              task_kwargs={"job_id": job.id}), connection=cur.connection)
        return job

    def get(self, job_id: str) -> Job | None:
        row = self.db.one(f"SELECT {_COLUMNS} FROM qa_jobs WHERE id = %s", (job_id,))
        return _job(row) if row else None

    def list(self, limit: int = 50, collections: Collection[str] | None = None) -> list[Job]:
        if collections is None:
            return [_job(r) for r in self.db.all(
                f"SELECT {_COLUMNS} FROM qa_jobs ORDER BY created_at DESC LIMIT %s", (limit,))]
        return [_job(r) for r in self.db.all(
            f"SELECT {_COLUMNS} FROM qa_jobs WHERE coalesce(params->>'collection', 'default') = ANY(%s) "
            "ORDER BY created_at DESC LIMIT %s", (sorted(collections), limit))]

    def wait(self, job_id: str, timeout: float | None = None) -> Job | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.get(job_id)
            if job is None or job.finished or (deadline is not None and time.monotonic() >= deadline):
                return job
            with self._changed:  # woken at once by this process's worker, else polled
                self._changed.wait(0.25 if deadline is None else max(0.0, min(0.25, deadline - time.monotonic())))

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            if self._loop is not None and self._stop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._stop.set)
                except RuntimeError:  # between two runs of the worker: it sees _stopping
                    pass
            self._thread.join(timeout=self.lease_s)
        self.db.close()

    # --- the worker: procrastinate's, on an event loop of its own ----------------------------------
    def _serve(self) -> None:
        """Run the worker; when it stops on its own (PostgreSQL away, a failing side task), start it again."""
        while not self._stopping.is_set():
            try:
                asyncio.run(self._main())
            except Exception as exc:  # meanwhile its jobs go to the other replicas once its lease runs out
                log.warning("the job worker stopped (%s: %s); starting it again in %.0f s", type(exc).__name__, exc,
                            self.heartbeat_s)
            finally:
                self._started.set()
            if self._stopping.wait(self.heartbeat_s):
                return

    async def _main(self) -> None:
        procrastinate = self._procrastinate
        app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            conninfo=self._dsn, min_size=1, max_size=4, timeout=self.db.timeout_s))
        app.task(name=TASK, queue=QUEUE, pass_context=True,
                 # a run that ends in an exception (this replica stopping, PostgreSQL away) is run again
                 retry=procrastinate.RetryStrategy(max_attempts=10 * (MAX_RESUMES + 1), wait=1))(self._run)
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._started.set()
        async with app.open_async():
            worker = asyncio.create_task(app.run_worker_async(
                queues=[QUEUE], name=self.worker_name, concurrency=1, wait=True, install_signal_handlers=False,
                delete_jobs="always", update_heartbeat_interval=self.heartbeat_s,
                stalled_worker_timeout=self.lease_s, shutdown_graceful_timeout=self.lease_s / 2))
            while not self._stop.is_set() and not self._stopping.is_set() and not worker.done():
                try:
                    await self._requeue_stalled(app)
                except Exception as exc:  # PostgreSQL away: try again at the next beat
                    log.warning("looking for stalled jobs failed: %s", exc)
                try:
                    await asyncio.wait_for(self._stop.wait(), self.heartbeat_s)
                except asyncio.TimeoutError:
                    pass
            worker.cancel()  # graceful: the job in hand is abandoned at its next checkpoint and requeued
            try:
                await worker
            except (asyncio.CancelledError, Exception):
                pass

    async def _requeue_stalled(self, app) -> None:
        """Hand back to the queue the jobs of workers whose heartbeat is older than the lease. One replica
        at a time (a transaction-level advisory lock), so a job is requeued once, and the job's row is
        updated in that same transaction."""
        async with app.connector.pool.connection() as conn, conn.transaction():
            cur = await conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK,))
            if not (await cur.fetchone())[0]:
                return  # another replica is looking right now
            for stalled in await app.job_manager.get_stalled_jobs(queue=QUEUE, seconds_since_heartbeat=self.lease_s):
                job_id = stalled.task_kwargs.get("job_id")
                await conn.execute("UPDATE qa_jobs SET state = 'queued', resumed = resumed + (state = 'running')::int,"
                                   " updated_at = %s WHERE id = %s AND state IN ('queued', 'running')",
                                   (time.time(), job_id))
                await app.job_manager.retry_job(stalled)
                log.warning("job %s: its worker sent no heartbeat for %.0f s; queued again", job_id, self.lease_s)

    def _run(self, context, job_id: str) -> None:
        """The procrastinate task (runs in a thread of the worker): one job, start to end."""
        attempt = context.job.attempts
        job = self._claim(job_id, attempt)
        if job is None:
            return
        handler = self.handlers.get(job.kind)
        if handler is None:  # a replica of another version queued it
            self._finish(job_id, attempt, {"state": "failed", "result": None,
                                           "error": {"type": "internal_error", "message": f"unknown job kind {job.kind!r}"}})
            return
        last_save = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            job.progress[stage] = [int(done), int(total)]
            if time.monotonic() - last_save[0] > PROGRESS_SAVE_S or done >= total:
                last_save[0] = time.monotonic()
                try:
                    self.db.execute("UPDATE qa_jobs SET progress = %s, updated_at = %s WHERE id = %s AND attempt = %s",
                                    (json.dumps(job.progress), time.time(), job_id, attempt))
                except Exception as exc:  # progress is for show: the job goes on
                    log.warning("job %s: progress not saved (%s)", job_id, exc)

        outcome = run_handler(handler, job, lambda: self._upload(job_id), progress)
        if outcome["state"] == "failed" and abandon.stopping():
            self.db.execute("UPDATE qa_jobs SET state = 'queued', resumed = resumed + 1, updated_at = %s"
                            " WHERE id = %s AND attempt = %s", (time.time(), job_id, attempt))
            raise _Interrupted(f"job {job_id}: this replica is stopping; queued again for another")
        self._finish(job_id, attempt, outcome)

    def _claim(self, job_id: str, attempt: int) -> Job | None:
        """The job, now ``running`` here; None when it is finished already (or gone), or failed here for
        having been resumed too often."""
        with self.db.tx() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM qa_jobs WHERE id = %s FOR UPDATE", (job_id,))
            row = cur.fetchone()
            if row is None or row[3] in ("done", "failed"):
                return None
            job = _job(row)
            if job.resumed > MAX_RESUMES:
                cur.execute("UPDATE qa_jobs SET state = 'failed', error = %s, upload = NULL, updated_at = %s"
                            " WHERE id = %s", (json.dumps(interrupted(job.resumed)), time.time(), job_id))
                return None
            job.state, job.worker = "running", self.worker_name
            cur.execute("UPDATE qa_jobs SET state = 'running', worker = %s, attempt = %s, updated_at = %s"
                        " WHERE id = %s", (self.worker_name, attempt, time.time(), job_id))
        return job

    def _upload(self, job_id: str) -> bytes:
        row = self.db.one("SELECT upload FROM qa_jobs WHERE id = %s", (job_id,))
        if row is None or row[0] is None:
            raise RuntimeError(f"the upload of job {job_id} is gone")
        return bytes(row[0])

    def _finish(self, job_id: str, attempt: int, outcome: dict) -> None:
        with self.db.tx() as cur:
            cur.execute("UPDATE qa_jobs SET state = %s, result = %s, error = %s, upload = NULL, updated_at = %s"
                        " WHERE id = %s AND attempt = %s",
                        (outcome["state"], json.dumps(outcome["result"], ensure_ascii=False),
                         json.dumps(outcome["error"], ensure_ascii=False), time.time(), job_id, attempt))
            if cur.rowcount == 0:
                log.warning("job %s was handed to another worker meanwhile: this run's outcome is not kept", job_id)
            cur.execute("DELETE FROM qa_jobs WHERE id IN (SELECT id FROM qa_jobs WHERE state IN ('done', 'failed')"
                        " ORDER BY updated_at DESC OFFSET %s)", (self.keep_finished,))
        with self._changed:
            self._changed.notify_all()
