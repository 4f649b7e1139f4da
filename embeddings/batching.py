"""Dynamic micro-batching of question encoding, on one model thread.

Under concurrent load every request thread asks for one question vector. Encoding them one by one
means one forward pass each, queued behind the model's lock; a CPU runs a batch of 16 short
questions in a fraction of 16 single passes (the matmuls get wider, the per-call overhead is paid
once). :class:`MicroBatchingEmbedder` collects the questions that arrive while the model is busy
and encodes them together.

Every forward pass (questions and passages) runs on **one worker thread**, never on the request threads. torch's OpenMP
runtime keeps a team of compute threads per thread that starts parallel work; with the request
threads of an HTTP pool taking turns, each forward pass woke a team that had gone to sleep, and on
two cores the idle teams got in each other's way: with the request threads encoding, 8 concurrent
clients got far fewer questions/s and a lone client's latency rose after every burst of load
(docs/performance.md has the `qa bench` figures before and after).

How a call to ``encode_queries`` goes:

- **Alone.** Nothing in flight and nothing queued: the worker encodes the request at once (no
  waiting for company). A single client pays two thread hand-offs, nothing else.
- **Queued.** Otherwise the request joins the queue and the caller waits. The worker takes the
  queue as one batch (at most ``max_batch`` texts; identical texts encoded once) as soon as the
  batch in flight is done and either ``max_wait_ms`` has passed since the oldest queued request
  arrived or ``max_batch`` texts are waiting. Each caller gets exactly its rows.
- **Errors.** An exception raised by the inner embedder reaches every caller of that batch (and
  only them); the worker carries on with the next batch.
- **Passages and big calls** (``max_batch`` questions or more) are batches already: the worker runs
  each as it is, in turn with the question batches (oldest first).

Only one batch is encoded at a time: the model uses every core for one forward pass anyway, and
the waiting requests form the next batch meanwhile. After a batch of more than one text the worker
hands the freed heap back to the operating system (:mod:`embeddings.memory`).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .base import Embedder, Titles, WrappingEmbedder
from .memory import release_free_memory


@dataclass
class _Request:
    texts: list[str]
    arrived: float
    alone: bool = False  # arrived with nothing in flight or queued: encoded at once
    job: Callable[[], Any] | None = None  # passages or a big call: run as it is, on the worker
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass
class BatchingStats:
    """Counters (read without locking: approximate while requests are running)."""

    calls: int = 0  # encode_queries calls with at least one text
    direct: int = 0  # run on their own by the worker: a lone request, a big call, or passages
    batches: int = 0  # batches encoded by the worker
    batched_requests: int = 0  # requests those batches served
    batched_texts: int = 0  # distinct texts those batches encoded
    largest_batch: int = 0


class MicroBatchingEmbedder(WrappingEmbedder):
    """Wraps ``inner`` so that concurrent ``encode_queries`` calls share forward passes (see the module
    docstring). ``max_wait_ms``: how long a queued request waits for company; ``max_batch``: most texts
    in one batch."""

    def __init__(self, inner: Embedder, max_wait_ms: float = 5.0, max_batch: int = 32):
        self.inner = inner
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000.0
        self.max_batch = max(1, int(max_batch))
        self.stats = BatchingStats()
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Request] = deque()  # questions, batched together
        self._jobs: deque[_Request] = deque()  # passages and big calls, run one by one
        self._queued_texts = 0
        self._busy = False  # the worker is encoding a batch
        self._closed = False
        self._worker: threading.Thread | None = None
        self._pid = os.getpid()

    # -- the Embedder interface ------------------------------------------------------------------

    def encode_passages(self, texts: Sequence[str], titles: Titles = None) -> np.ndarray:
        texts = list(texts)
        return self._submit(_Request(texts, time.monotonic(), job=lambda: self.inner.encode_passages(texts, titles)))

    def encode_passages_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                                   titles: Titles = None) -> tuple[np.ndarray, list[np.ndarray]]:
        if not self.contextual_spans:  # spans are plain passages: encode_passages above sees them
            return super().encode_passages_with_spans(texts, spans, titles)
        texts = list(texts)
        return self._submit(_Request(texts, time.monotonic(),
                                     job=lambda: self.inner.encode_passages_with_spans(texts, spans, titles)))

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        self.stats.calls += 1
        if len(texts) >= self.max_batch:
            return self._submit(_Request(texts, time.monotonic(), job=lambda: self._encode(texts)))
        return self._submit(_Request(texts, time.monotonic()))

    def _submit(self, request: _Request) -> Any:
        """Queue ``request`` for the worker and wait for its result."""
        with self._cond:
            self._check_fork()
            if self._closed:
                raise RuntimeError("MicroBatchingEmbedder is closed")
            if request.job is not None:
                self._jobs.append(request)
            else:
                request.alone = not self._busy and not self._queue and not self._jobs
                self._queue.append(request)
                self._queued_texts += len(request.texts)
            self._ensure_worker()
            self._cond.notify_all()
        while not request.done.wait(1.0):
            with self._cond:  # never wait on a worker that is gone (it cannot die, but be sure)
                if not request.done.is_set() and not self._closed:
                    self._ensure_worker()
                if self._closed and not request.done.is_set():
                    self._fail([request], RuntimeError("MicroBatchingEmbedder was closed"))
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the worker; queued requests fail, later calls raise."""
        with self._cond:
            self._closed = True
            pending = list(self._queue) + list(self._jobs)
            self._queue.clear()
            self._jobs.clear()
            self._queued_texts = 0
            self._cond.notify_all()
        self._fail(pending, RuntimeError("MicroBatchingEmbedder was closed"))
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=5)

    # -- internals -------------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.inner.encode_queries(texts), dtype=np.float32)
        if vectors.shape != (len(texts), self.dimension):
            raise ValueError(f"{self.model_id} returned shape {vectors.shape}, expected {(len(texts), self.dimension)}")
        return vectors

    def _check_fork(self) -> None:
        """In a forked child the worker thread does not exist and the queue belongs to the parent."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue.clear()
            self._jobs.clear()
            self._queued_texts = 0
            self._busy = False
            self._worker = None

    def _ensure_worker(self) -> None:
        """Start the worker if it is not running (caller holds the lock)."""
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="qa-micro-batcher", daemon=True)
            self._worker.start()

    def _take_batch(self) -> list[_Request] | None:
        """Wait for the next batch and take it from the queue (``None``: closed)."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if (not self._queue and not self._jobs) or self._busy:
                    self._cond.wait()
                    continue
                if self._jobs and (not self._queue or self._jobs[0].arrived <= self._queue[0].arrived):
                    self._busy = True
                    return [self._jobs.popleft()]
                if self._queued_texts < self.max_batch and not self._queue[0].alone:
                    remaining = self._queue[0].arrived + self.max_wait_s - time.monotonic()
                    if remaining > 0:
                        self._cond.wait(remaining)
                        continue
                batch, size = [], 0
                while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
                    request = self._queue.popleft()
                    batch.append(request)
                    size += len(request.texts)
                self._queued_texts -= size
                self._busy = True
                return batch

    def _run(self) -> None:
        while True:
            try:
                batch = self._take_batch()
            except BaseException:  # noqa: BLE001 - the worker must outlive anything
                time.sleep(0.01)
                continue
            if batch is None:
                return
            try:
                self._serve(batch)
                if sum(len(request.texts) for request in batch) > 1:
                    release_free_memory()  # the callers already have their rows
            except BaseException as exc:  # noqa: BLE001 - delivered to the callers of this batch
                self._fail(batch, exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _serve(self, batch: list[_Request]) -> None:
        if batch[0].job is not None:
            batch[0].result = batch[0].job()
            self.stats.direct += 1
            batch[0].done.set()
            return
        unique = list(dict.fromkeys(text for request in batch for text in request.texts))
        alone = len(batch) == 1 and batch[0].alone
        vectors = self._encode(unique)
        row = {text: i for i, text in enumerate(unique)}
        for request in batch:
            request.result = vectors[[row[text] for text in request.texts]]
        stats = self.stats
        if alone:
            stats.direct += 1
        else:
            stats.batches += 1
            stats.batched_requests += len(batch)
            stats.batched_texts += len(unique)
            stats.largest_batch = max(stats.largest_batch, len(unique))
        for request in batch:
            request.done.set()

    @staticmethod
    def _fail(batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            if not request.done.is_set():
                request.error = exc
                request.done.set()
