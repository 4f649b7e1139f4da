"""Dynamic micro-batching of question and passage encoding, on one model thread.

Under concurrent load every request thread asks for its own vectors: one question for a search, a
document's passages and sentences for an upload. Encoding them one caller at a time means small
forward passes queued behind the model's lock; a CPU runs a batch of 16 short questions in a
fraction of 16 single passes (the matmuls get wider, the per-call overhead is paid once), and the
sentences of eight documents sorted by length pad far less than each document's alone.
:class:`MicroBatchingEmbedder` collects what arrives while the model is busy and encodes it together.

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
- **Big calls** (``max_batch`` questions or more) are batches already: the worker runs each as it is.

How a call to ``encode_passages`` goes (the uploads of concurrent ``POST /v1/documents``):

- **Rounds.** When the worker is free for passages it takes *every* passage request queued (a lone
  one at once), makes one round of their texts (identical text and title encoded once), and plans its
  forward passes from the texts' token lengths (:func:`~embeddings.passes.plan_passes`: the texts of
  all requests sorted together, little padding, few passes). Requests that arrive meanwhile form the
  next round. A caller gets its rows as soon as the passes holding them are done.
- **Questions between passes.** The worker runs a round one forward pass at a time; when questions
  are waiting as well, question batches and passes alternate, so a search waits for at most one pass
  of an upload, and an upload is never starved by searches.
- **Passages pooled from their passage's pass** (``encode_passages_with_spans`` of a model with
  contextual spans) run as one job each, in turn with the rounds (oldest first).

**Errors.** An exception raised by the inner embedder reaches every caller of that batch or round
(and only them); the worker carries on with the next one.

Only one forward pass runs at a time: the model uses every core for one pass anyway, and the waiting
requests form the next batch meanwhile. After a pass of more than one text the worker hands the
freed heap back to the operating system (:mod:`embeddings.memory`).
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
from .passes import pass_token_budget, plan_passes


@dataclass
class _Request:
    texts: list[str]
    arrived: float
    alone: bool = False  # a question request that arrived with nothing in flight or queued: encoded at once
    job: Callable[[], Any] | None = None  # a big call or pooled spans: run as it is, on the worker
    titles: list[str | None] | None = None  # passages: the title of each text
    lengths: list[int] | None = None  # passages: token counts (text and title), for planning passes
    pending: int = 0  # passages: rows of its round not encoded yet
    rows: list[int] = field(default_factory=list)  # passages: its round's row of each text
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


@dataclass
class _Round:
    """The passage requests taken together, their distinct texts and the forward passes left to run."""

    requests: list[_Request]
    texts: list[str]
    titles: list[str | None]
    passes: deque[list[int]]
    vectors: np.ndarray
    owners: list[list[_Request]]  # per row: the requests waiting for it


@dataclass
class BatchingStats:
    """Counters (read without locking: approximate while requests are running)."""

    calls: int = 0  # encode_queries calls with at least one text
    direct: int = 0  # run on their own by the worker: a lone request, a big call, or pooled spans
    batches: int = 0  # batches encoded by the worker
    batched_requests: int = 0  # requests those batches served
    batched_texts: int = 0  # distinct texts those batches encoded
    largest_batch: int = 0
    passage_rounds: int = 0  # rounds of passage requests
    passage_requests: int = 0  # encode_passages calls those rounds served
    passage_texts: int = 0  # distinct texts those rounds encoded
    passage_passes: int = 0  # forward passes those rounds took
    largest_round: int = 0  # most requests in one round


class MicroBatchingEmbedder(WrappingEmbedder):
    """Wraps ``inner`` so that concurrent ``encode_queries`` calls share forward passes, and so do
    concurrent ``encode_passages`` calls (see the module docstring). ``max_wait_ms``: how long a queued
    question waits for company; ``max_batch``: most questions in one batch; ``pass_tokens``: most padded
    tokens in one forward pass of passages (see :func:`~embeddings.passes.pass_token_budget`)."""

    def __init__(self, inner: Embedder, max_wait_ms: float = 5.0, max_batch: int = 32,
                 pass_tokens: int = pass_token_budget(8)):
        self.inner = inner
        self.max_wait_s = max(0.0, float(max_wait_ms)) / 1000.0
        self.max_batch = max(1, int(max_batch))
        self.pass_tokens = max(1, int(pass_tokens))
        self.stats = BatchingStats()
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Request] = deque()  # questions, batched together
        self._passages: deque[_Request] = deque()  # passages, taken in rounds
        self._jobs: deque[_Request] = deque()  # big calls and pooled spans, run one by one
        self._round: _Round | None = None  # the round whose passes are running
        self._queued_texts = 0
        self._busy = False  # the worker is encoding
        self._questions_last = False  # the last thing encoded was a question batch (for alternating)
        self._closed = False
        self._worker: threading.Thread | None = None
        self._pid = os.getpid()

    # -- the Embedder interface ------------------------------------------------------------------

    def encode_passages(self, texts: Sequence[str], titles: Titles = None) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        titles = list(titles) if titles is not None else [None] * len(texts)
        heads: dict[str | None, int] = {}  # tokens of each title, counted once
        for title in titles:
            if title not in heads:
                heads[title] = self.inner.count_tokens(title) if title else 0
        lengths = [self.inner.count_tokens(text) + heads[title] for text, title in zip(texts, titles)]
        return self._submit(_Request(texts, time.monotonic(), titles=titles, lengths=lengths))

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

    def warm_up(self) -> None:
        """The model's warm-up, on the worker thread (where every forward pass runs: torch keeps its thread
        team per thread)."""
        self._submit(_Request([], time.monotonic(), job=lambda: self.inner.warm_up() or True))

    def _submit(self, request: _Request) -> Any:
        """Queue ``request`` for the worker and wait for its result."""
        with self._cond:
            self._check_fork()
            if self._closed:
                raise RuntimeError("MicroBatchingEmbedder is closed")
            if request.job is not None:
                self._jobs.append(request)
            elif request.titles is not None:
                self._passages.append(request)
            else:
                request.alone = not self._busy and not self._queue and not self._background_waiting()
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
            pending = list(self._queue) + list(self._jobs) + list(self._passages)
            if self._round is not None:
                pending += self._round.requests
            self._queue.clear()
            self._jobs.clear()
            self._passages.clear()
            self._queued_texts = 0
            self._cond.notify_all()
        self._fail(pending, RuntimeError("MicroBatchingEmbedder was closed"))
        worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout=5)

    # -- internals -------------------------------------------------------------------------------

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._checked(self.inner.encode_queries(texts), len(texts))

    def _checked(self, vectors: np.ndarray, n: int) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (n, self.dimension):
            raise ValueError(f"{self.model_id} returned shape {vectors.shape}, expected {(n, self.dimension)}")
        return vectors

    def _check_fork(self) -> None:
        """In a forked child the worker thread does not exist and the queues belong to the parent."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue.clear()
            self._jobs.clear()
            self._passages.clear()
            self._round = None
            self._queued_texts = 0
            self._busy = False
            self._worker = None

    def _ensure_worker(self) -> None:
        """Start the worker if it is not running (caller holds the lock)."""
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._run, name="qa-micro-batcher", daemon=True)
            self._worker.start()

    def _background_waiting(self) -> bool:
        """Passages or jobs wait for the worker (caller holds the lock)."""
        return bool(self._jobs or self._passages or self._round is not None)

    def _questions_ready(self) -> float:
        """0 when a question batch should be taken now, else the seconds until it should (caller holds
        the lock; the queue is not empty)."""
        if self._queued_texts >= self.max_batch or self._queue[0].alone:
            return 0.0
        return max(0.0, self._queue[0].arrived + self.max_wait_s - time.monotonic())

    def _take(self) -> Callable[[], None] | None:
        """Wait for the next piece of work and take it (``None``: closed). Question batches and passes of
        passages alternate while both wait; between a round and a job, the older goes first."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                if self._busy or (not self._queue and not self._background_waiting()):
                    self._cond.wait()
                    continue
                wait = self._questions_ready() if self._queue else None
                background = self._background_waiting()
                if wait == 0.0 and not (background and self._questions_last):
                    self._busy, self._questions_last = True, True
                    batch = self._take_questions()
                    return lambda: self._serve_questions(batch)
                if background:
                    self._busy, self._questions_last = True, False
                    return self._take_background()
                self._cond.wait(wait)

    def _take_questions(self) -> list[_Request]:
        batch, size = [], 0
        while self._queue and (not batch or size + len(self._queue[0].texts) <= self.max_batch):
            request = self._queue.popleft()
            batch.append(request)
            size += len(request.texts)
        self._queued_texts -= size
        return batch

    def _take_background(self) -> Callable[[], None]:
        """The next pass of the round under way, else the older of the next job and a new round."""
        if self._round is None and self._jobs and (not self._passages
                                                   or self._jobs[0].arrived <= self._passages[0].arrived):
            request = self._jobs.popleft()
            return lambda: self._serve_job(request)
        if self._round is None:
            self._round = self._new_round(list(self._passages))
            self._passages.clear()
        current = self._round
        rows = current.passes.popleft()
        if not current.passes:
            self._round = None  # its last pass: the next round may be planned while it runs
        return lambda: self._serve_pass(current, rows)

    def _new_round(self, requests: list[_Request]) -> _Round:
        """One round of ``requests``' passages: distinct (text, title) pairs, passes planned by length."""
        row_of: dict[tuple[str | None, str], int] = {}
        texts: list[str] = []
        titles: list[str | None] = []
        lengths: list[int] = []
        owners: list[list[_Request]] = []
        for request in requests:
            request.rows = []
            for text, title, length in zip(request.texts, request.titles, request.lengths):
                row = row_of.get((title, text))
                if row is None:
                    row = row_of[(title, text)] = len(texts)
                    texts.append(text)
                    titles.append(title)
                    lengths.append(length)
                    owners.append([])
                request.rows.append(row)
            for row in set(request.rows):
                owners[row].append(request)
            request.pending = len(set(request.rows))
        passes = deque(plan_passes(lengths, max_tokens=self.pass_tokens))
        stats = self.stats
        stats.passage_rounds += 1
        stats.passage_requests += len(requests)
        stats.passage_texts += len(texts)
        stats.largest_round = max(stats.largest_round, len(requests))
        return _Round(requests, texts, titles, passes, np.zeros((len(texts), self.dimension), np.float32), owners)

    def _run(self) -> None:
        while True:
            try:
                work = self._take()
            except BaseException:  # noqa: BLE001 - the worker must outlive anything
                time.sleep(0.01)
                continue
            if work is None:
                return
            try:
                work()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _serve_job(self, request: _Request) -> None:
        try:
            request.result = request.job()
            self.stats.direct += 1
        except BaseException as exc:  # noqa: BLE001 - delivered to its caller
            request.error = exc
        request.done.set()
        if len(request.texts) > 1:
            release_free_memory()

    def _serve_questions(self, batch: list[_Request]) -> None:
        unique = list(dict.fromkeys(text for request in batch for text in request.texts))
        try:
            vectors = self._encode(unique)
        except BaseException as exc:  # noqa: BLE001 - delivered to the callers of this batch
            self._fail(batch, exc)
            return
        row = {text: i for i, text in enumerate(unique)}
        for request in batch:
            request.result = vectors[[row[text] for text in request.texts]]
        stats = self.stats
        if len(batch) == 1 and batch[0].alone:
            stats.direct += 1
        else:
            stats.batches += 1
            stats.batched_requests += len(batch)
            stats.batched_texts += len(unique)
            stats.largest_batch = max(stats.largest_batch, len(unique))
        for request in batch:
            request.done.set()
        if len(unique) > 1:
            release_free_memory()  # the callers already have their rows

    def _serve_pass(self, current: _Round, rows: list[int]) -> None:
        """One forward pass of a round; the requests whose rows are all done get them."""
        try:
            vectors = self._checked(self.inner.encode_passages([current.texts[i] for i in rows],
                                                               [current.titles[i] for i in rows]), len(rows))
        except BaseException as exc:  # noqa: BLE001 - delivered to the callers of this round
            with self._cond:
                if self._round is current:
                    self._round = None
            self._fail(current.requests, exc)
            return
        self.stats.passage_passes += 1
        current.vectors[rows] = vectors
        for row in rows:
            for request in current.owners[row]:
                request.pending -= 1
                if request.pending == 0 and not request.done.is_set():
                    request.result = current.vectors[request.rows]
                    request.done.set()
        if len(rows) > 1:
            release_free_memory()

    @staticmethod
    def _fail(batch: list[_Request], exc: BaseException) -> None:
        for request in batch:
            if not request.done.is_set():
                request.error = exc
                request.done.set()
