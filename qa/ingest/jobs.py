"""What a queued upload does: parse (pages parsed, pages OCR'd) and ingest (passages embedded); and bulk
ingest through the queue (``qa ingest --queue``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

from qa.documents.service import FolderProgress, FolderReport, Skipped, expand_paths
from qa.ingest.errors import DocumentParseError
from qa.ingest.service import IngestService, InvalidDocumentIdError, document_id_for
from qa.jobs import Handler, Job, JobFailed, JobQueue, Progress
from qa.store.base import DEFAULT_COLLECTION

__all__ = ["ingest_through_queue", "upload_handler", "needs_a_job"]


def upload_handler(ingest: IngestService) -> Handler:
    """The ``ingest`` job: ``params`` holds ``filename``, ``id``, ``title`` and ``collection``; the result is the
    ingest result (``document_id``, ``status``, ``passages``, ``duplicate_of``)."""

    def run(job: Job, upload: bytes, progress: Progress) -> dict:
        params = job.params
        try:
            doc = ingest.parse(upload, params.get("filename"), title=params.get("title"), on_progress=progress)
            doc_id = document_id_for(params["id"]) if params.get("id") else None
        except (DocumentParseError, InvalidDocumentIdError) as exc:
            raise JobFailed(type(exc).__name__, str(exc)) from None
        total = [0]

        def embedded(done: int, all_: int) -> None:
            total[0] = all_
            progress("passages embedded", done, all_)

        try:
            result = ingest.ingest(doc, doc_id, on_progress=embedded,
                                   collection=params.get("collection") or DEFAULT_COLLECTION)
        except LookupError as exc:  # the collection was deleted meanwhile
            raise JobFailed("not_found", str(exc)) from None
        progress("passages embedded", total[0] or result.passages, total[0] or result.passages)
        return dict(result.__dict__)

    return run


def needs_a_job(raw: bytes, filename: str | None, sync_max_pages: int) -> bool:
    """Whether an upload will take more than a few seconds to parse: an image (OCR), a PDF of more than
    ``sync_max_pages`` pages, or one whose first page has no text (a scan, OCR). A file whose name and
    content disagree (or of no supported format) raises its parse error here, before any job."""
    from qa.ingest.formats import detect_parser

    kind = detect_parser(raw, filename).name
    if kind == "image":
        return True
    if kind != "pdf":
        return False
    from qa.ingest.formats.pdf import quick_look

    look = quick_look(raw)
    return look is not None and (look[0] > sync_max_pages or not look[1])


def ingest_through_queue(queue: JobQueue, paths: Sequence[Path], collection: str, max_bytes: int,
                         progress: Callable[[FolderProgress], None] | None = None, poll_s: float = 0.5,
                         wait: bool = True) -> FolderReport:
    """Bulk ingest shared by every replica: each file (folders recursively, supported types) becomes an
    ``ingest`` job in ``queue`` (on the distributed backend, any replica's worker parses, embeds and writes
    it), then, with ``wait``, the jobs are followed until all have finished. A job that failed is
    reported as skipped with its error; ``results`` name the replica that ran each in ``workers``."""
    from qa.ingest.service import IngestResult

    report = FolderReport()
    started = time.monotonic()
    files = list(expand_paths(paths, report.skipped))
    state = FolderProgress(files_total=len(files))
    jobs: dict[str, str] = {}  # job id -> file
    for path in files:
        size = path.stat().st_size
        if size > max_bytes:
            report.skipped.append(Skipped(str(path), f"larger than {max_bytes} bytes (QA_MAX_UPLOAD_BYTES)"))
            continue
        job = queue.submit("ingest", {"filename": path.name, "id": document_id_for(path.stem), "title": None,
                                      "collection": collection}, path.read_bytes())
        jobs[job.id] = str(path)
    state.files_total = len(jobs)
    state.current = f"{len(jobs)} jobs queued"
    if progress:
        progress(state)
    pending = dict(jobs)
    while wait and pending:
        time.sleep(poll_s)
        running = []
        for job_id in list(pending):
            job = queue.get(job_id)
            if job is None or job.finished:
                name = pending.pop(job_id)
                state.files_done += 1
                if job is not None and job.state == "done":
                    result = IngestResult(**job.result)
                    report.results.append((name, result))
                    report.workers[job.worker or "?"] = report.workers.get(job.worker or "?", 0) + 1
                    if result.status in ("added", "replaced"):
                        state.passages_embedded += result.passages
                else:
                    report.skipped.append(Skipped(name, (job.error or {}).get("message", "failed") if job else
                                                  "the job is gone"))
            elif job.state == "running":
                running.append(job.worker or "?")
        state.current = f"{len(running)} running on {len(set(running))} replica(s)" if running else \
            f"{len(pending)} queued" if pending else ""
        if progress:
            progress(state)
    report.passages_embedded = state.passages_embedded
    report.seconds = time.monotonic() - started
    return report
