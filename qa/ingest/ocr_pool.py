"""The bounded OCR worker pool: at most ``ocr_workers`` pages are read at once in the whole process.

OCR is the slow part of ingesting a scan (seconds a page). Every parser hands its pages to
:func:`run_ocr`, which runs them on one process-wide thread pool, so two scans uploaded together
share the same few workers instead of starting a thread each, and a 500-page scan keeps at most
``ocr_workers`` rendered pages in memory. The pool is created with the size of its first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TypeVar

__all__ = ["run_ocr"]

T = TypeVar("T")
_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _POOL
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="qa-ocr")
        return _POOL


def run_ocr(jobs: Sequence[Callable[[], T]], workers: int, on_done: Callable[[int], None] | None = None) -> list[T]:
    """Results of ``jobs`` (in their order), run on the OCR pool; ``on_done(n)`` after each finishes.
    The first error is raised once the jobs already started have ended; the others are cancelled."""
    futures = [_pool(workers).submit(job) for job in jobs]
    index = {future: k for k, future in enumerate(futures)}
    results: list[T | None] = [None] * len(futures)
    done = 0
    try:
        for future in as_completed(futures):
            results[index[future]] = future.result()
            done += 1
            if on_done is not None:
                on_done(done)
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    return results  # type: ignore[return-value]
