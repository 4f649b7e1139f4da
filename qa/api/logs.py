"""Request ids and the service's log lines (JSON with ``QA_LOG_FORMAT=json``, one object per line).

Every request gets an id: the client's ``X-Request-ID`` when it is a plain token (letters, digits,
``._-``, at most 128), else a new one; it is sent back in ``X-Request-ID`` and put on every log record
made while the request runs (``request_id``), worker threads included. Each request ends with one
access line: method, route template, status, duration, client address and the API key's id (when the
request had a valid key). What is logged never holds a request body, a query string, an
``Authorization`` header (a key) or a document's text.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.api.metrics import route_label
from qa.api.principal import KEY_ID

_request_id: ContextVar[str | None] = ContextVar("qa_request_id", default=None)
_GOOD_ID = re.compile(r"[A-Za-z0-9._\-]{1,128}")
access_log = logging.getLogger("qa.access")
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "request_id"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _request_id.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        if getattr(record, "request_id", "-") != "-":
            entry["request_id"] = record.request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


JsonFormatter.converter = time.gmtime


def configure_logging(level: str, fmt: str) -> None:
    """Root logging for ``qa serve``: text lines or JSON objects, each with the request id when there is one."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines go through the same handler
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("x-request-id", "")
        request_id = given if _GOOD_ID.fullmatch(given) else uuid.uuid4().hex
        token = _request_id.set(request_id)
        start, status = time.perf_counter(), 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            access_log.info('"%s %s" %s %.1f ms', scope["method"], scope["path"], status,
                            (time.perf_counter() - start) * 1000, extra={
                "method": scope["method"], "route": route_label(scope), "status": status,
                "duration_ms": round((time.perf_counter() - start) * 1000, 1),
                "client": f"{client[0]}:{client[1]}" if client else None, "key_id": scope.get(KEY_ID)})
            _request_id.reset(token)
