"""Running the application under uvicorn with bounded connections and a bounded shutdown.

uvicorn closes an idle kept-alive connection after ``timeout_keep_alive`` seconds, but waits forever
for a new connection's first request and for headers sent a byte at a time (slowloris). The
protocol here gives each request head ``head_timeout_s`` from its first byte (or from the connection's
opening) and ``max_head_bytes`` of size; the body's own time limit is :mod:`qa.api.limits`'.

On SIGTERM or Ctrl-C the server stops accepting connections, marks every request abandoned (a write
not yet committed is given up at its next checkpoint, see :mod:`qa.abandon`), waits up to
``shutdown_timeout_s`` for the requests in flight, cancels those left, and exits.
"""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from qa import abandon
from qa.settings import Settings

log = logging.getLogger(__name__)


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a time and size limit on each request head."""

    head_timeout_s = 10.0
    max_head_bytes = 65_536

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        super().connection_made(transport)
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection that sent no complete request head in %gs", self.head_timeout_s)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._head_timer is not None:  # within a request head: count it up to its blank line
            end = data.find(b"\r\n\r\n")
            self._head_bytes += len(data) if end < 0 else end + 4
            if self._head_bytes > self.max_head_bytes:
                self._cancel_head_timer()
                body = b'{"error":{"type":"head_too_large","message":"the request line and headers are too long"}}'
                self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
                                     b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                self.transport.close()
                return
        super().data_received(data)

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)  # a pipelined request's head has been read already
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():  # the next request's head is bounded too
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)


class BoundedServer(uvicorn.Server):
    """A uvicorn server whose shutdown abandons uncommitted work at once instead of waiting for it."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not abandon.stopping():
            log.info("stopping: in-flight work not yet committed is abandoned; waiting at most %ss",
                     self.config.timeout_graceful_shutdown)
        abandon.stop_all()
        super().handle_exit(sig, frame)


def protocol_for(settings: Settings) -> type[BoundedHttpProtocol]:
    return type("QAHttpProtocol", (BoundedHttpProtocol,), {
        "head_timeout_s": settings.head_timeout_s, "max_head_bytes": settings.max_head_bytes})


def serve(app, settings: Settings, log_level: str = "info") -> None:
    config = uvicorn.Config(  # logging: qa.api.logs (one access line per request, with its id)
        app, host=settings.host, port=settings.port, log_level=log_level, log_config=None, access_log=False,
        http=protocol_for(settings), timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=settings.shutdown_timeout_s)
    BoundedServer(config).run()
