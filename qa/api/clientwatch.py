"""Notice a client that disconnects while its request is being worked on (see :mod:`qa.abandon`).

Once the application has read the whole request body, this middleware keeps one task listening for
``http.disconnect``; when it comes, the request's ``client_gone`` event is set and the work running
for it (in a worker thread too) is abandoned at its next checkpoint. Later ``receive()`` calls of the
application (a streamed reply watching for the disconnect) get the same message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.abandon import watching

log = logging.getLogger(__name__)


class ClientWatchMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gone = threading.Event()
        listener: asyncio.Task | None = None
        answered = False  # uvicorn says http.disconnect after a complete response too: that is no abandonment

        async def listen() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not answered:
                gone.set()
            return message

        async def watched_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        async def watched_receive() -> Message:
            nonlocal listener
            if listener is not None:  # the body has been read: share the listener's answer
                return await asyncio.shield(listener)
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                listener = asyncio.ensure_future(listen())
            return message

        try:
            with watching(gone):
                await self.app(scope, watched_receive, watched_send)
        finally:
            if listener is not None and not listener.done():
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await listener
            if gone.is_set():
                log.info("client went away during %s %s", scope["method"], scope["path"])
