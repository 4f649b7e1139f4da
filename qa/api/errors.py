"""Every error is a JSON body ``{"error": {"type", "message"}, ...}`` with a 4xx/5xx status.

The OpenAI-compatible paths (/v1/chat/*, /v1/embeddings, /v1/models) answer in OpenAI's shape
instead, ``{"error": {"message", "type", "param", "code"}}`` with status 400 for a malformed
request, so that OpenAI clients and chat frontends show the message.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.documents.service import DocumentNotFoundError
from qa.index.base import IndexUnavailableError
from qa.store.base import (
    CollectionExistsError,
    CollectionNotFoundError,
    InvalidCollectionNameError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, param: str | None = None):
        super().__init__(message)
        self.status, self.type, self.message, self.param = status, type_, message, param


OPENAI_PATHS = ("/v1/chat/", "/v1/embeddings", "/v1/models")


def is_openai_path(request: Request) -> bool:
    return request.url.path.startswith(OPENAI_PATHS)


def openai_error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
                      code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _openai_error(status: int, code: str, message: str, param: str | None = None) -> JSONResponse:
    type_ = "invalid_request_error" if status < 500 else "server_error"
    return JSONResponse(openai_error_body(message, type_, param, code), status_code=status)


def error_body(type_: str, message: str, **extra) -> dict:
    return {"error": {"type": type_, "message": message, **extra}}


def _describe(errors: list[dict]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",)) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if is_openai_path(request):
            return _openai_error(exc.status, exc.type, exc.message, exc.param)
        return JSONResponse(error_body(exc.type, exc.message), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        if is_openai_path(request):
            first = errors[0] if errors else {}
            if first.get("type") == "json_invalid":
                return _openai_error(400, "json_invalid", "the request body is not valid JSON")
            param = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or None
            return _openai_error(400, first.get("type", "invalid_request"), _describe(errors), param)
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:  # the same answer POST /v1/documents gives
            at = [x for x in bad_json.get("loc", ()) if isinstance(x, int)]
            message = "body is not valid JSON" + (f" (error at character {at[0]})" if at else "")
            return JSONResponse(error_body("invalid_json", message), status_code=400)
        return JSONResponse(
            {**error_body("invalid_request", _describe(errors)), "detail": errors}, status_code=422
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if is_openai_path(request):
            return _openai_error(exc.status_code, "http_error", str(exc.detail))
        return JSONResponse(error_body("http_error", str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(CollectionNotFoundError)
    async def _no_collection(request: Request, exc: CollectionNotFoundError) -> JSONResponse:
        if is_openai_path(request):
            return _openai_error(404, "collection_not_found", str(exc))
        return JSONResponse(error_body("collection_not_found", str(exc), collections=exc.known), status_code=404)

    @app.exception_handler(InvalidCollectionNameError)
    async def _bad_collection(request: Request, exc: InvalidCollectionNameError) -> JSONResponse:
        if is_openai_path(request):
            return _openai_error(422, "invalid_collection_name", str(exc), "collection")
        return JSONResponse(error_body("invalid_collection_name", str(exc)), status_code=422)

    @app.exception_handler(CollectionExistsError)
    async def _collection_exists(_: Request, exc: CollectionExistsError) -> JSONResponse:
        return JSONResponse(error_body("collection_exists", str(exc)), status_code=409)

    @app.exception_handler(DocumentNotFoundError)
    async def _no_document(_: Request, exc: DocumentNotFoundError) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc)), status_code=404)

    @app.exception_handler(StoreUnavailableError)
    @app.exception_handler(IndexUnavailableError)
    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        """A shared engine (PostgreSQL, Milvus) is down: 503 at once, the client may retry; the message names
        the engine and its address, never a credential."""
        if is_openai_path(request):
            response = _openai_error(503, "service_unavailable", str(exc))
        else:
            response = JSONResponse(error_body("unavailable", str(exc)), status_code=503)
        response.headers["Retry-After"] = "5"
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return JSONResponse(error_body("internal_error", f"{type(exc).__name__}: {exc}"), status_code=500)
