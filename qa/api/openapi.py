"""The published OpenAPI document: every status code a route can answer, with the error body it carries.

FastAPI documents the success response and 422; the service also answers 400 (malformed JSON, too deep),
401 (no valid API key; with ``WWW-Authenticate``), 403 (the key's role does not allow it, or a write from a
page on another origin), 429 (the key's rate limit; with ``Retry-After``), 404 (an unknown id or model), 408 (a body sent too slowly),
413 (too large), 415 (a media type the route does not read), 421 (a Host it does not answer for),
503 (busy, or still starting) and the OpenAI routes answer their errors in OpenAI's shape. Those are added here, from what each operation takes (a body, path parameters), so that a client
generated from the schema, and schemathesis, see every answer the route can give.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from pydantic import BaseModel

from qa.api.auth import need_for
from qa.api.errors import OPENAI_PATHS
from qa.api.schemas import DocumentBatchBody

ERROR_SCHEMA = {
    "title": "Error", "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["type", "message"], "properties": {
        "type": {"type": "string", "description": "What went wrong, as a short code."},
        "message": {"type": "string", "description": "What went wrong and what to do next."}}}},
}
OPENAI_ERROR_SCHEMA = {
    "title": "OpenAIError", "type": "object", "required": ["error"],
    "properties": {"error": {"type": "object", "required": ["message", "type"], "properties": {
        "message": {"type": "string"}, "type": {"type": "string"},
        "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}},
}
_WHY = {
    400: "Malformed request: the body is not JSON, is nested too deeply, or (OpenAI routes) is invalid.",
    401: "No API key, or one that is not valid, has expired or was revoked (keys are required once one exists; "
         "send Authorization: Bearer <key>).",
    403: "The API key's role does not allow this operation, or a browser page on another origin may not change "
         "data (see QA_CORS_ORIGINS).",
    429: "The API key made too many requests: retry after the number of seconds in Retry-After.",
    404: "No such document, passage, model or collection.",
    409: "The same content is already stored under another id (``duplicate_of``; nothing was added), the "
         "collection exists already, or a key would revoke itself.",
    408: "The request body was not received in time.",
    413: "The request body is larger than the limit.",
    415: "The body's media type is not one this route reads.",
    422: "The request is well-formed but invalid; the message says which field and why.",
    421: "The Host header is not one this service answers for (see QA_ALLOWED_HOSTS).",
    503: "The service is starting, or busy: retry after the number of seconds in Retry-After.",
}
BEARER_SCHEME = {
    "type": "http", "scheme": "bearer", "bearerFormat": "qa_<id>_<secret>",
    "description": "An API key (`qa keys create`, or POST /v1/keys with an admin key). Required on every "
                   "route but /healthz and the page once a key exists; while none does the service is open.",
}
# Codes a route answers beyond what its shape implies (see ``_codes``).
_EXTRA = {
    ("post", "/v1/documents"): {409, 415},
    ("post", "/v1/collections"): {409},
    ("delete", "/v1/keys/{key_id}"): {409},  # the key the request is made with
    ("post", "/v1/search"): {404},  # an unknown collection in the body
    ("post", "/v1/chat/completions"): {404},
    ("post", "/v1/embeddings"): {404},
}
_NO_SERVICES = {"/v1/models", "/v1/models/{model_id}"}  # answered while the service loads
# Responses whose body is not an error: /healthz says why it is not ready in its usual body.
_OWN_BODY = {("get", "/healthz", 503): "HealthOut"}
_STREAMED = {("post", "/v1/chat/completions")}  # "stream": true answers server-sent events
# Bodies a route reads itself (to bound and check them while reading), so FastAPI cannot see them.
_BODIES: dict[tuple[str, str], type[BaseModel]] = {("post", "/v1/documents/batch"): DocumentBatchBody}


def _add_body(schema: dict, operation: dict, model: type[BaseModel]) -> None:
    body = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema["components"]["schemas"].update(body.pop("$defs", {}))
    schema["components"]["schemas"][model.__name__] = body
    operation["requestBody"] = {"required": True, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}


def _protected(path: str, method: str) -> bool:
    return need_for(method.upper(), path).role is not None


def _codes(path: str, method: str, operation: dict) -> set[int]:
    codes: set[int] = {421} | ({403} if method in ("post", "put", "patch", "delete") else set())
    if _protected(path, method):
        codes |= {401, 403, 429}
    params = {p.get("name") for p in operation.get("parameters", [])}
    if "{" in path or "collection" in params:  # an unknown id, model or collection
        codes |= {404, 422}
    if params:
        codes.add(422)
    if "requestBody" in operation:
        codes |= {400, 408, 413, 422}
    if path.startswith(OPENAI_PATHS) and 422 in codes:
        codes.add(400)  # OpenAI clients get 400 for an invalid request (422 only for a bad collection name)
    if path not in _NO_SERVICES:
        codes.add(503)
    return codes | _EXTRA.get((method, path), set())


def document_errors(schema: dict) -> dict:
    """Add the error responses to every operation of ``schema`` (in place); returns it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Error"], components["OpenAIError"] = ERROR_SCHEMA, OPENAI_ERROR_SCHEMA
    for path, item in schema.get("paths", {}).items():
        ref = {"$ref": "#/components/schemas/" + ("OpenAIError" if path.startswith(OPENAI_PATHS) else "Error")}
        for method, operation in item.items():
            if (method, path) in _BODIES:
                _add_body(schema, operation, _BODIES[(method, path)])
            responses = operation.setdefault("responses", {})
            if (method, path) in _STREAMED:
                responses["200"].setdefault("content", {})["text/event-stream"] = {"schema": {"type": "string"}}
            for code in sorted(_codes(path, method, operation)):
                entry = responses.setdefault(str(code), {"description": _WHY[code]})
                own = _OWN_BODY.get((method, path, code))
                entry["content"] = {"application/json": {
                    "schema": {"$ref": "#/components/schemas/" + own} if own else ref}}
                if code in (429, 503):
                    entry["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                        "description": "Seconds to wait before retrying."}}
                if code == 401:
                    entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                             "description": 'Bearer realm="qa"'}}
            operation["security"] = [{"bearer": []}] if _protected(path, method) else [{}, {"bearer": []}]
    schema["components"]["securitySchemes"] = {"bearer": BEARER_SCHEME}
    return schema


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` publish the documented error responses too."""

    def openapi() -> dict:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi
