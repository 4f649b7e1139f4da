"""Work nobody waits for any more is abandoned before it commits.

A request's work runs in a worker thread (embedding a document can take minutes). The HTTP layer
marks the request's context when its client disconnects (:func:`watching`), and the server marks
every request when it is told to stop (:func:`stop_all`); long work calls :func:`checkpoint` between
steps and before it writes, which raises :class:`Abandoned` in either case. Nothing is written after
that point, so a write either commits in full before the mark or not at all. The context travels
into worker threads with the request (``run_in_threadpool`` copies it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_client_gone: ContextVar[threading.Event | None] = ContextVar("qa_client_gone", default=None)
_stopping = threading.Event()


class Abandoned(Exception):
    """The work was given up: its client went away, or the server is stopping."""


@contextmanager
def watching(client_gone: threading.Event) -> Iterator[None]:
    """Within this block (and worker threads started from it), ``client_gone`` being set abandons work."""
    token = _client_gone.set(client_gone)
    try:
        yield
    finally:
        _client_gone.reset(token)


def stop_all() -> None:
    """The server is stopping: every checkpoint from now on abandons its work."""
    _stopping.set()


def stopping() -> bool:
    return _stopping.is_set()


def checkpoint() -> None:
    """Raise :class:`Abandoned` when this request's client has gone or the server is stopping."""
    if _stopping.is_set():
        raise Abandoned("the server is shutting down; nothing was written: retry once it is back")
    gone = _client_gone.get()
    if gone is not None and gone.is_set():
        raise Abandoned("the client went away before the work was committed; nothing was written")
