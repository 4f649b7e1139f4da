"""Request bodies are bounded in size and in time while they are read, and uploads in number at once.

:class:`BodyLimitMiddleware` wraps every HTTP request (REST, the OpenAI routes, /mcp): a declared
``Content-Length`` above the route's limit is refused with 413 before any of the body is read; a
chunked body is counted as it streams and refused the moment it passes the limit, so memory never
holds more than the limit plus one chunk. The whole body must arrive within ``body_timeout_s``
(408 otherwise), so a client sending a byte a second cannot hold a worker.

:class:`IngestGateMiddleware` lets ``max_concurrent_ingests`` document uploads run at once; one more
gets 503 with ``Retry-After`` at once instead of queueing memory and CPU behind the others.
"""

from __future__ import annotations

import asyncio
import math
import time

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.api.errors import error_response
from qa.settings import Settings

UPLOAD_PREFIX = "/v1/documents"  # routes that take documents: max_upload_bytes; every other: max_request_bytes


class BodyRefused(HTTPException):
    """413 or 408, raised while the body is read: an HTTPException, so handlers that read bodies pass it
    on (FastAPI re-raises HTTPExceptions met while parsing) and the error handler answers it."""

    def __init__(self, status: int, type_: str, message: str):
        super().__init__(status, message, headers={"Connection": "close"})
        self.status, self.type = status, type_


def body_limit(settings: Settings, path: str) -> int:
    return settings.max_upload_bytes if path.startswith(UPLOAD_PREFIX) else settings.max_request_bytes


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(self.settings, scope["path"])
        too_large = BodyRefused(413, "too_large", f"the request body is larger than the limit of {limit} bytes "
                                f"for {scope['path']}; send less (see QA_MAX_UPLOAD_BYTES / QA_MAX_REQUEST_BYTES)")
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, receive, send, too_large)
            return

        timeout = self.settings.body_timeout_s
        deadline = time.monotonic() + timeout
        received, body_done, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # after the body only http.disconnect comes: no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise BodyRefused(408, "body_timeout", f"the request body did not arrive within {timeout:g} s; "
                                  "send it faster (see QA_BODY_TIMEOUT_S)") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise too_large
                body_done = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except BodyRefused as exc:
            if started:
                raise
            await self._refuse(scope, receive, send, exc)
        except Exception as exc:  # a handler that wrapped the refusal in its own error (a parser's, the MCP SDK's)
            refused = exc.__cause__ or exc.__context__
            if started or not isinstance(refused, BodyRefused):
                raise
            await self._refuse(scope, receive, send, refused)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: BodyRefused) -> None:
        # Connection: close; the rest of the body is never read (uvicorn drops the connection after the answer).
        response = error_response(scope["path"], exc.status, exc.type, exc.detail, exc.headers)
        await response(scope, receive, send)


class IngestGateMiddleware:
    """At most ``max_concurrent_ingests`` POSTs to the document routes at once; others get 503 + Retry-After."""

    def __init__(self, app: ASGIApp, settings: Settings, retry_after_s: int = 5):
        self.app, self.settings, self.retry_after_s = app, settings, retry_after_s
        self.running = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].startswith(UPLOAD_PREFIX):
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_concurrent_ingests
        if self.running >= limit:  # one event loop: no lock needed between the test and the increment
            response = error_response(scope["path"], 503, "busy", f"{limit} documents are being added already; "
                                      f"retry in {self.retry_after_s} s (see QA_MAX_CONCURRENT_INGESTS)",
                                      {"Retry-After": str(math.ceil(self.retry_after_s))})
            await response(scope, receive, send)
            return
        self.running += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.running -= 1
