"""Documents and passages: add (JSON, file upload, or a batch of JSON documents), list, read, delete."""

from __future__ import annotations

import json
from typing import TypeVar

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from qa.api.deps import ScopedCollection, get_services
from qa.api.errors import ApiError, describe_errors
from qa.api.schemas import (
    DocumentBatchBody,
    DocumentBody,
    DocumentListOut,
    DocumentOut,
    IngestBatchOut,
    IngestOut,
    JobAcceptedOut,
    PassageOut,
    UploadFields,
)
from qa.ingest.errors import DocumentParseError
from qa.ingest.formats import detect_parser
from qa.ingest.jobs import needs_a_job
from qa.ingest.service import InvalidDocumentIdError, document_id_for
from qa.models import Document
from qa.wiring import Services

router = APIRouter(tags=["documents"])
# What parsing a document can raise about the document itself: a 4xx naming the problem.
_DOCUMENT_ERRORS = (DocumentParseError, InvalidDocumentIdError)
BodyT = TypeVar("BodyT", bound=BaseModel)

_UPLOAD_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": DocumentBody.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary",
                                 "description": ".pdf, .docx, .pptx, .png/.jpg/.tif (OCR), or .txt/.md/.html (UTF-8)"},
                        **{k: v["anyOf"][0] | {x: v[x] for x in ("pattern", "description") if x in v}
                           for k, v in UploadFields.model_json_schema()["properties"].items()},
                    },
                    "required": ["file"],
                    "additionalProperties": False,
                }
            },
        },
        "required": True,
    }
}


def _document_out(doc: Document, text: str | None = None) -> DocumentOut:
    return DocumentOut(id=doc.id, collection=doc.collection, title=doc.title, lang=doc.lang, source=doc.source,
                       published=doc.published, passages=doc.passage_count, created_at=doc.created_at,
                       metadata=doc.metadata, text=text)


async def _read_upload(request: Request, services: Services) -> tuple[bytes, str | None, str, str | None]:
    """The upload's bytes, file name, document id (from the form or the file name) and title."""
    form = await request.form(max_files=1, max_fields=10)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "invalid_request", "multipart upload needs a 'file' field holding a document "
                       "(.pdf, .docx, .pptx, an image, .txt, .md or .html)")
    try:  # the same rules as a JSON document's id and title; no other field
        fields = UploadFields.model_validate({k: v for k, v in form.multi_items() if k != "file"})
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", describe_errors(exc.errors())) from exc
    raw = await upload.read(services.settings.max_upload_bytes + 1)
    if len(raw) > services.settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"file is larger than {services.settings.max_upload_bytes} bytes")
    filename = upload.filename or None  # without a name the content decides the format
    doc_id = fields.id if fields.id is not None else \
        document_id_for(filename.rsplit("/", 1)[-1].rsplit(".", 1)[0] if filename else "upload")
    return raw, filename, doc_id, fields.title


async def _json_body(request: Request, services: Services, model: type[BodyT]) -> BodyT:
    raw = await request.body()
    if len(raw) > services.settings.max_upload_bytes:
        raise ApiError(413, "too_large", f"body is larger than {services.settings.max_upload_bytes} bytes")
    try:
        return model.model_validate(json.loads(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValidationError):
            msg = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise ApiError(422, "invalid_request", msg) from exc
        raise ApiError(400, "invalid_json", f"body is not valid JSON: {exc}") from exc


def _parse_body(services: Services, body: DocumentBody):
    parsed = services.documents.parse(body.text, None, title=body.title)
    parsed.source = body.source or parsed.source
    parsed.published = body.published or parsed.published
    return parsed, document_id_for(body.id) if body.id is not None else None


async def _read_json(request: Request, services: Services):
    body = await _json_body(request, services, DocumentBody)
    return await run_in_threadpool(_parse_body, services, body)


@router.post("/v1/documents", response_model=IngestOut, status_code=201, openapi_extra=_UPLOAD_DOC,
             responses={202: {"model": JobAcceptedOut, "description": "A long upload, queued as a job."}})
async def add_document(request: Request, collection: str = ScopedCollection,
                       services: Services = Depends(get_services)):
    """Add or replace a document: JSON ``{"title","text","source"?,"published"?,"id"?}`` or a file upload.

    A long upload (a PDF over ``QA_SYNC_MAX_PAGES`` pages, a scan, an image; or ``?background=true``)
    answers ``202`` with a job id: ``GET /v1/jobs/{id}`` gives its progress and result.
    ``?wait=true`` waits for it instead."""
    services.documents.collection(collection)  # 404 before the body is read
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            raw, filename, doc_id, title = await _read_upload(request, services)
            if await run_in_threadpool(_as_job, request, services, raw, filename):
                job = services.jobs.submit("ingest", {"filename": filename, "id": doc_id, "title": title,
                                                      "collection": collection}, raw)
                location = f"/v1/jobs/{job.id}"
                return JSONResponse(JobAcceptedOut(job_id=job.id, state=job.state, location=location).model_dump(),
                                    status_code=202, headers={"Location": location})
            parsed = await run_in_threadpool(services.ingest.parse, raw, filename, title)  # parsing is CPU work
        elif content_type.startswith("application/json") or not content_type:
            parsed, doc_id = await _read_json(request, services)
        else:
            raise ApiError(415, "unsupported_media_type",
                           "send application/json {title, text} or multipart/form-data with a 'file'")
    except _DOCUMENT_ERRORS as exc:
        raise ApiError(getattr(exc, "status", 422), type(exc).__name__, str(exc)) from exc
    result = await run_in_threadpool(services.documents.add, parsed, doc_id, collection)
    if result.status == "duplicate":  # nothing was created: say where the content is
        raise ApiError(409, "duplicate", f"this content is already stored as document {result.duplicate_of!r}; "
                       "nothing was added", duplicate_of=result.duplicate_of)
    return IngestOut(**result.__dict__)


def _as_job(request: Request, services: Services, raw: bytes, filename: str | None) -> bool:
    """``?background=true``, or a long upload (see ``QA_SYNC_MAX_PAGES``) unless ``?wait=true``; a file
    of the wrong or no supported format is refused here, not queued."""
    if services.jobs is None:
        return False
    detect_parser(raw, filename).precheck(raw, filename, services.ingest.parse_options)
    flag = lambda name: request.query_params.get(name, "").lower() in ("1", "true", "yes")  # noqa: E731
    if flag("background"):
        return True
    return not flag("wait") and needs_a_job(raw, filename, services.settings.sync_max_pages)


@router.post("/v1/documents/batch", response_model=IngestBatchOut, status_code=201)
async def add_documents(request: Request, collection: str = ScopedCollection,
                        services: Services = Depends(get_services)) -> IngestBatchOut:
    """Add or replace up to 256 documents in one request: ``{"documents": [{"title","text",…}, …]}``.

    Every document is checked first (nothing is written when one is invalid); their passages are
    then embedded together and each document is written in its own transaction, in order.
    """
    services.documents.collection(collection)
    body = await _json_body(request, services, DocumentBatchBody)
    try:
        docs = await run_in_threadpool(lambda: [_parse_body(services, d) for d in body.documents])
    except _DOCUMENT_ERRORS as exc:
        raise ApiError(422, type(exc).__name__, str(exc)) from exc
    results = await run_in_threadpool(services.documents.add_many, docs, collection)
    return IngestBatchOut(results=[IngestOut(**r.__dict__) for r in results])


@router.get("/v1/documents", response_model=DocumentListOut)
def list_documents(limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0, le=2**62),
                   collection: str = ScopedCollection, services: Services = Depends(get_services)) -> DocumentListOut:
    docs, total = services.documents.list(collection, limit, offset)
    return DocumentListOut(documents=[_document_out(d) for d in docs], total=total)


@router.get("/v1/documents/{document_id}", response_model=DocumentOut)
def get_document(document_id: str, collection: str = ScopedCollection,
                 services: Services = Depends(get_services)) -> DocumentOut:
    return _document_out(*services.documents.get(document_id, collection))


@router.delete("/v1/documents/{document_id}")
def delete_document(document_id: str, collection: str = ScopedCollection,
                    services: Services = Depends(get_services)) -> dict:
    services.documents.delete(document_id, collection)
    return {"deleted": document_id, "collection": collection}


@router.get("/v1/passages/{passage_id}", response_model=PassageOut)
def get_passage(passage_id: str, collection: str = ScopedCollection,
                services: Services = Depends(get_services)) -> PassageOut:
    p = services.documents.passage(passage_id, collection)
    if p is None:
        raise ApiError(404, "not_found", f"no passage with id {passage_id!r} in collection {collection!r}")
    return PassageOut.from_passage(p)
