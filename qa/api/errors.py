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
from starlette.routing import Match

from qa.abandon import Abandoned
from qa.api.principal import hide_unseen, principal_of
from qa.ingest.service import DocumentTooLargeError

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
    def __init__(self, status: int, type_: str, message: str, param: str | None = None, **extra):
        super().__init__(message)
        self.status, self.type, self.message, self.param = status, type_, message, param
        self.extra = extra  # more fields of the error object, e.g. duplicate_of


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


def error_response(path: str, status: int, type_: str, message: str, headers: dict | None = None) -> JSONResponse:
    """The error answer for ``path`` (the OpenAI shape on the OpenAI paths): for middleware, which has no handler."""
    if path.startswith(OPENAI_PATHS):  # OpenAI clients expect 400 for any invalid request
        response = _openai_error(400 if status == 422 else status, type_, message)
    else:
        response = JSONResponse(error_body(type_, message), status_code=status)
    response.headers.update(headers or {})
    return response


def describe_errors(errors: list[dict]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",)) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


def flat_routes(routes):
    """The routes, with each included router's own (FastAPI wraps them; qa's routers have no prefix)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from (flat_routes(inner.routes) if inner is not None else (route,))


def allowed_methods(request: Request) -> list[str]:
    """The methods of the routes on this request's path, the most specific ones only (as documented:
    ``/v1/documents/batch`` is the batch route, not a document called "batch")."""
    by_params: dict[int, set[str]] = {}
    for route in flat_routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            params = len(getattr(route, "param_convertors", None) or ())
            by_params.setdefault(params, set()).update(getattr(route, "methods", None) or ())
    return sorted(by_params[min(by_params)]) if by_params else []


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        if is_openai_path(request):
            return _openai_error(exc.status, exc.type, exc.message, exc.param)
        return JSONResponse(error_body(exc.type, exc.message, **exc.extra), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        if is_openai_path(request):
            first = errors[0] if errors else {}
            if first.get("type") == "json_invalid":
                return _openai_error(400, "json_invalid", "the request body is not valid JSON")
            param = ".".join(str(x) for x in first.get("loc", ()) if x != "body") or None
            return _openai_error(400, first.get("type", "invalid_request"), describe_errors(errors), param)
        bad_json = next((e for e in errors if e.get("type") == "json_invalid"), None)
        if bad_json is not None:  # the same answer POST /v1/documents gives
            at = [x for x in bad_json.get("loc", ()) if isinstance(x, int)]
            message = "body is not valid JSON" + (f" (error at character {at[0]})" if at else "")
            return JSONResponse(error_body("invalid_json", message), status_code=400)
        return JSONResponse(
            {**error_body("invalid_request", describe_errors(errors)), "detail": errors}, status_code=422
        )

    @app.exception_handler(Abandoned)
    async def _abandoned(request: Request, exc: Abandoned) -> JSONResponse:
        log.info("abandoned %s %s: %s", request.method, request.url.path, exc)
        return error_response(request.url.path, 503, "abandoned", str(exc), {"Retry-After": "5"})

    @app.exception_handler(DocumentTooLargeError)
    async def _too_many_passages(request: Request, exc: DocumentTooLargeError) -> JSONResponse:
        return error_response(request.url.path, 422, "too_many_passages", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:  # 404, 405, ...
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names the methods of the first route on the path only
            headers["Allow"] = ", ".join(allowed_methods(request))
        return error_response(request.url.path, exc.status_code, getattr(exc, "type", "http_error"), str(exc.detail),
                              headers)

    @app.exception_handler(CollectionNotFoundError)
    async def _no_collection(request: Request, exc: CollectionNotFoundError) -> JSONResponse:
        exc = hide_unseen(principal_of(request.scope), exc)  # name only what the request's key sees
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
