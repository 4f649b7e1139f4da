"""The outbox worker: applies the store's recorded index work to shared indexes (Milvus), in order.

Every store write records the passages it removed and added in the store's change sequence, in the
same transaction as the data (the outbox). This worker, one per ``qa`` process, applies those
changes to the indexes idempotently (an add replaces, a remove of an absent id does nothing) and then
records how far it got in the index itself (``mark_applied``), so a crash or an index outage loses
nothing: whatever was not acknowledged is applied again on the next round, by this replica or
another. Replicas take turns through a PostgreSQL advisory lock, so only one applies at a time.

A write wakes its own replica's worker at once; other replicas' writes are picked up within
``poll_s``. Changes every index has applied are pruned; an index that has fallen behind the pruned
part of the sequence (its data lost) is rebuilt from the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

from qa.index.base import DerivedIndex, IndexUnavailableError
from qa.store.base import Change, StoreError

log = logging.getLogger(__name__)

OUTBOX_LOCK = 7_310_002  # advisory lock: one replica applies changes at a time


def apply_changes(store, indexes: Sequence[DerivedIndex], changes: Sequence[Change]) -> None:
    """Apply changes to every index in order: removes and adds of each run between ``drop`` changes
    (a drop, then the collection's re-creation, must not delete the new passages)."""
    run: list[Change] = []
    for change in [*changes, None]:
        if change is not None and change.op != "drop":
            run.append(change)
            continue
        if run:
            removed = [(c.collection, c.rowid) for c in run if c.op == "remove"]
            added = sorted({c.rowid for c in run if c.op == "add"})
            entries = store.entries(added) if added else []
            for index in indexes:
                by_collection: dict[str, list[int]] = {}
                for collection, rowid in removed:
                    by_collection.setdefault(collection, []).append(rowid)
                for collection, rowids in by_collection.items():
                    index.remove(collection, rowids)
                if entries:
                    index.add(entries)
            run = []
        if change is not None:
            for index in indexes:
                index.drop_collection(change.collection)


def rebuild(store, indexes: Sequence[DerivedIndex], batch: int = 2048, progress=None) -> int:
    """Rebuild indexes from the store without re-embedding; the sequence they are now at."""
    seq = store.seq  # read first: changes after it are replayed (idempotently) by the worker
    for index in indexes:
        index.reset()
    done = 0
    for entries in store.iter_entries(batch=batch):
        for index in indexes:
            index.add(entries)
        done += len(entries)
        if progress:
            progress(done)
    for index in indexes:
        index.mark_applied(seq)
        index.checkpoint()
    return seq


class OutboxWorker:
    """Applies the store's change sequence to shared indexes from a background thread."""

    def __init__(self, store, indexes: Sequence[DerivedIndex], poll_s: float = 0.25, batch: int = 2000,
                 prune: bool = True):
        self.store = store
        self.indexes = list(indexes)
        self.poll_s = poll_s
        self.batch = batch
        self.prune = prune
        self.last_error: str | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._applied_cache = 0

    # --- one round ---------------------------------------------------------------------------------
    def step(self) -> int:
        """Apply the next batch of changes if this replica holds the outbox lock; the count applied."""
        with self.store.exclusive(OUTBOX_LOCK) as leader:
            if not leader:
                return 0
            applied = min(index.durable_seq for index in self.indexes)
            pruned = self.store.pruned_upto
            if applied < pruned:
                log.warning("index is at change %d but changes up to %d were pruned: rebuilding it from the store",
                            applied, pruned)
                rebuild(self.store, self.indexes)
                return 1
            changes = self.store.changes_since(applied, limit=self.batch)
            if changes:
                apply_changes(self.store, self.indexes, changes)
                for index in self.indexes:
                    index.mark_applied(changes[-1].seq)
                    index.checkpoint()
                applied = changes[-1].seq
            if self.prune and applied > pruned:
                self.store.prune_changes(applied)
            self._note_applied(applied)
            return len(changes)

    def _note_applied(self, seq: int) -> None:
        with self._progress:
            self._applied_cache = seq
            self._progress.notify_all()

    # --- background thread ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qa-outbox", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        """A write has just committed: apply it now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        backoff = self.poll_s
        while not self._stop.is_set():
            try:
                while self.step() >= self.batch and not self._stop.is_set():
                    pass
                if self.last_error:
                    log.warning("index worker recovered: the index is catching up")
                self.last_error = None
                backoff = self.poll_s
            except (IndexUnavailableError, StoreError) as exc:
                if self.last_error != str(exc):
                    log.warning("index worker: %s (retrying; writes are kept in the outbox)", exc)
                self.last_error = str(exc)
                backoff = min(backoff * 2, 5.0)
            except Exception as exc:  # keep going: a bug must not stop the index following the store
                log.exception("index worker failed; retrying")
                self.last_error = f"{type(exc).__name__}: {exc}"
                backoff = min(backoff * 2, 5.0)
            self._wake.wait(backoff)
            self._wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    # --- what callers wait for and report ----------------------------------------------------------
    def wait_applied(self, seq: int, timeout_s: float) -> bool:
        """Block until the indexes have applied change ``seq`` (True), or ``timeout_s`` passed (False)."""
        deadline = time.monotonic() + timeout_s
        self.wake()
        while True:
            if self._applied_cache >= seq:
                return True
            try:
                if min(index.durable_seq for index in self.indexes) >= seq:
                    self._note_applied(seq)
                    return True
            except (IndexUnavailableError, StoreError):
                pass
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._progress:
                self._progress.wait(min(remaining, self.poll_s))

    def lag(self) -> dict:
        """``{"store_seq", "applied_seq", "lag", "error"}`` (seqs None where unreachable)."""
        report: dict = {"store_seq": None, "applied_seq": None, "lag": None, "error": self.last_error}
        try:
            report["store_seq"] = self.store.seq
            report["applied_seq"] = min(index.durable_seq for index in self.indexes)
        except IndexUnavailableError as exc:  # the index is down: what it last acknowledged to this replica
            report["applied_seq"], report["error"] = self._applied_cache, str(exc)
        except StoreError as exc:
            report["error"] = str(exc)
            return report
        report["lag"] = max(0, report["store_seq"] - report["applied_seq"])
        return report
