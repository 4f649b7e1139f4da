"""What a queued upload does: parse (pages parsed, pages OCR'd) and ingest (passages embedded)."""

from __future__ import annotations

from qa.ingest.errors import DocumentParseError
from qa.ingest.service import IngestService, InvalidDocumentIdError, document_id_for
from qa.jobs import Handler, Job, JobFailed, Progress
from qa.store.base import DEFAULT_COLLECTION

__all__ = ["upload_handler", "needs_a_job"]


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
