"""The kept originals and the jobs of long uploads: download, page images, evidence boxes, job status."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse, Response

from qa.api.deps import ScopedCollection, get_services
from qa.api.errors import ApiError
from qa.api.principal import principal_of
from qa.api.schemas import BoxOut, JobOut
from qa.ingest.originals import MEDIA_TYPES
from qa.jobs.base import job_collection
from qa.wiring import Services

router = APIRouter(tags=["documents"])


def _kept(services: Services, document_id: str, collection: str):
    services.documents.get(document_id, collection)  # 404 for an unknown collection or document
    if services.originals is None:
        raise ApiError(404, "no_original", "this service keeps no original files")
    try:
        return services.originals.original(collection, document_id)
    except ValueError:
        raise ApiError(404, "not_found", f"no document with id {document_id!r}") from None


@router.get("/v1/documents/{document_id}/file", response_class=FileResponse,
            responses={200: {"content": {media: {} for media in sorted(  # every type an original can have
                {m.split(";")[0] for m in MEDIA_TYPES.values()} | {"application/octet-stream"})}}})
def document_file(document_id: str, collection: str = ScopedCollection, services: Services = Depends(get_services)):
    """The file as it was uploaded (404 for a document sent as JSON text: it has no file)."""
    path = _kept(services, document_id, collection)
    if path is None:
        raise ApiError(404, "no_original", f"document {document_id!r} was not uploaded as a file: "
                       "GET /v1/documents/{id} gives its text")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix, "application/octet-stream"),
                        filename=f"{document_id}{path.suffix}")


@router.get("/v1/documents/{document_id}/pages/{page}", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def document_page(document_id: str, page: int, dpi: int | None = Query(None, ge=36, le=300),
                  collection: str = ScopedCollection, services: Services = Depends(get_services)) -> Response:
    """Page ``page`` (1-based) of a PDF or scanned image as PNG, rendered once per resolution and cached."""
    path = _kept(services, document_id, collection)
    count = services.originals.page_count(collection, document_id) if path is not None else None
    if count is None:
        raise ApiError(404, "no_pages", f"document {document_id!r} has no page images (only PDFs and scans do)")
    if not 1 <= page <= count:
        raise ApiError(404, "no_such_page", f"document {document_id!r} has pages 1 to {count}, not {page}")
    png = services.originals.page_png(collection, document_id, page, dpi or services.settings.page_image_dpi)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/v1/documents/{document_id}/boxes", response_model=list[BoxOut])
def document_boxes(document_id: str, start: int = Query(..., ge=0), end: int = Query(..., ge=0),
                   collection: str = ScopedCollection, services: Services = Depends(get_services)) -> list[BoxOut]:
    """Where ``text[start:end]`` of the document sits on its pages: ``[{page, x0, y0, x1, y1}]``, fractions
    of the displayed page from its top-left corner (empty for documents without pages, and for an empty
    range: ``end <= start``, as ``text[start:end]`` is then empty)."""
    _kept(services, document_id, collection)
    if end <= start:
        return []
    return [BoxOut(**b) for b in services.originals.boxes(collection, document_id, start, end)]


def _seen(request: Request, job) -> bool:
    """Whether the request's key sees the collection the job adds to (a job elsewhere is not there for it)."""
    return principal_of(request.scope).sees(job_collection(job))


@router.get("/v1/jobs/{job_id}", response_model=JobOut)
def job_status(job_id: str, request: Request, services: Services = Depends(get_services)) -> JobOut:
    """A long upload's state (queued, running, done, failed), progress per stage, and result or error."""
    job = services.jobs.get(job_id) if services.jobs is not None else None
    if job is None or not _seen(request, job):
        raise ApiError(404, "not_found", f"no job with id {job_id!r}; GET /v1/jobs lists the recent ones")
    return JobOut.from_job(job)


@router.get("/v1/jobs", response_model=list[JobOut])
def jobs(request: Request, limit: int = Query(50, ge=1, le=500),
         services: Services = Depends(get_services)) -> list[JobOut]:
    """The recent jobs (of the collections the key sees), newest first."""
    found = services.jobs.list(limit, principal_of(request.scope).collections) if services.jobs is not None else []
    return [JobOut.from_job(j) for j in found]
