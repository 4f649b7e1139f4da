"""The corpus: the passage store and the indexes derived from it, kept in step.

A write commits to the store first (one transaction per document, its passage changes logged in
the same transaction), then the indexes apply exactly that change in memory: the cost follows the
document, not the corpus. A background checkpointer makes the indexes' state durable now and then
and lets the store forget the changes every index has persisted. On open, each index replays the
store's changes after its last checkpoint (or is rebuilt from the store when those were forgotten),
so a crash at any moment loses nothing the store acknowledged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from qa.index.base import DenseIndex, DerivedIndex, IndexMismatchError, LexicalIndex
from qa.models import Document
from qa.store.base import (
    DEFAULT_COLLECTION,
    Change,
    Collection,
    CollectionNotFoundError,
    IndexEntry,
    PassageStore,
    StoredPassage,
    WriteResult,
)

log = logging.getLogger(__name__)


class Corpus:
    """Store + dense index + lexical index for one embedding model."""

    def __init__(self, store: PassageStore, dense: DenseIndex, lexical: LexicalIndex, model_id: str, dimension: int,
                 *, checkpoint_interval_s: float = 30.0, checkpoint_changes: int = 20_000, where: str = "the data folder"):
        self.store = store
        self.dense = dense
        self.lexical = lexical
        self.where = where
        self.checkpoint_interval_s = checkpoint_interval_s
        self.checkpoint_changes = checkpoint_changes
        self._write_lock = threading.RLock()
        self._batch_depth = 0
        self._pending: list[tuple[WriteResult, str, list[IndexEntry]]] = []
        self._checkpoint_lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._check_model(model_id, dimension)
        self.store.ensure_collection(DEFAULT_COLLECTION, "The default knowledge base.")
        self.catch_up()
        self._checkpointer: threading.Thread | None = None

    @property
    def indexes(self) -> tuple[DerivedIndex, DerivedIndex]:
        return self.dense, self.lexical

    def _check_model(self, model_id: str, dimension: int) -> None:
        stored = self.store.get_meta("model_id")
        if stored is None:
            self.store.set_meta("model_id", model_id)
            self.store.set_meta("dimension", str(dimension))
        elif stored != model_id:
            raise IndexMismatchError(
                f"The passages in {self.where} were embedded with {stored!r}, but the service is configured "
                f"with {model_id!r}. Run `qa reindex --reembed` to re-embed them with the "
                "configured model, or configure the model they were embedded with."
            )

    # --- following the store ---------------------------------------------------------------------
    def catch_up(self) -> int:
        """Bring every index up to the store's sequence; returns the changes replayed."""
        replayed = 0
        with self._write_lock:
            for index in self.indexes:
                if index.applied_seq < self.store.pruned_upto or index.applied_seq > self.store.seq:
                    log.warning("%s is at change %s but the store keeps changes after %s only (at %s): rebuilding it "
                                "from the store", type(index).__name__, index.applied_seq, self.store.pruned_upto,
                                self.store.seq)
                    self._rebuild(index)
                    continue
                while changes := self.store.changes_since(index.applied_seq):
                    self._apply(index, changes)
                    replayed += len(changes)
                    index.mark_applied(changes[-1].seq)
        if replayed:
            log.info("caught the indexes up with %s changes from the store", replayed)
        return replayed

    def _apply(self, index: DerivedIndex, changes: Sequence[Change]) -> None:
        """Apply changes in order, batching runs of the same kind."""
        run: list[Change] = []
        for change in [*changes, None]:
            if run and (change is None or change.op != run[0].op or change.collection != run[0].collection):
                first = run[0]
                if first.op == "drop":
                    index.drop_collection(first.collection)
                elif first.op == "remove":
                    index.remove(first.collection, [c.rowid for c in run])
                else:
                    index.add(self.store.entries([c.rowid for c in run]))
                run = []
            if change is not None:
                run.append(change)

    def _rebuild(self, index: DerivedIndex) -> None:
        seq = self.store.seq
        index.reset()
        for entries in self.store.iter_entries():
            index.add(entries)
        index.mark_applied(seq)
        index.checkpoint()

    def reindex(self) -> None:
        """Rebuild both indexes from the store (no re-embedding)."""
        with self._write_lock:
            for index in self.indexes:
                self._rebuild(index)

    # --- writes ---------------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the write lock across several writes (decide-then-write without another writer in between);
        the indexes apply the batch's changes together when it ends (one lexical commit for many
        documents), before any of them is acknowledged."""
        with self._write_lock:
            self._batch_depth += 1
            try:
                yield
            finally:
                self._batch_depth -= 1
                if self._batch_depth == 0:
                    self._apply_pending()

    def _follow(self, result: WriteResult, collection: str, entries: Sequence[IndexEntry] = ()) -> None:
        self._pending.append((result, collection, list(entries)))
        if self._batch_depth == 0:
            self._apply_pending()

    def _apply_pending(self) -> None:
        """Apply the pending writes to both indexes: every removal, then the additions no later write of the
        batch removed again (rowids are never reused, so this equals applying them in order)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        removed: dict[str, list[int]] = {}
        for result, collection, _ in pending:
            removed.setdefault(collection, []).extend(result.removed)
        gone = {rowid for rowids in removed.values() for rowid in rowids}
        entries = [e for _, _, added in pending for e in added if e.rowid not in gone]
        seq = max(result.seq for result, _, _ in pending)
        removed = {collection: rowids for collection, rowids in removed.items() if rowids}
        for index in self.indexes:
            index.apply(removed, entries)
            index.mark_applied(seq)
        if seq - min(index.durable_seq for index in self.indexes) >= self.checkpoint_changes:
            self._wake.set()

    def write_document(self, collection: str, document: Document, text: str,
                       passages: Sequence[StoredPassage]) -> WriteResult:
        with self._write_lock:
            result = self.store.replace_document(collection, document, text, passages)
            entries = [
                IndexEntry(rowid=rowid, collection=collection, document_id=document.id, lang=sp.passage.lang,
                           source=document.source, published=document.published, tokens=tuple(sp.tokens),
                           vector=sp.vector)
                for rowid, sp in zip(result.added, passages)
            ]
            self._follow(result, collection, entries)
            return result

    def delete_document(self, collection: str, document_id: str) -> bool:
        with self._write_lock:
            result = self.store.delete_document(collection, document_id)
            if result is None:
                return False
            self._follow(result, collection)
            return True

    def create_collection(self, name: str, description: str = "") -> Collection:
        return self.store.create_collection(name, description)

    def delete_collection(self, name: str) -> bool:
        with self._write_lock:
            self._apply_pending()
            result = self.store.delete_collection(name)
            if result is None:
                return False
            for index in self.indexes:
                index.drop_collection(name)
                index.mark_applied(result.seq)
            return True

    def collection(self, name: str) -> Collection:
        """The collection, or :class:`CollectionNotFoundError` naming the ones there are."""
        found = self.store.get_collection(name)
        if found is None:
            raise CollectionNotFoundError(name, [c.name for c in self.store.list_collections()])
        return found

    # --- durability -----------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Persist both indexes and let the store forget the changes they both hold durably."""
        with self._checkpoint_lock:
            for index in self.indexes:
                if index.durable_seq < index.applied_seq:
                    index.checkpoint()
            self.store.prune_changes(min(index.durable_seq for index in self.indexes))

    def start_checkpointer(self) -> None:
        """Checkpoint in the background every ``checkpoint_interval_s`` (sooner after many changes)."""
        if self._checkpointer is not None:
            return

        def loop() -> None:
            while not self._stop.is_set():
                self._wake.wait(self.checkpoint_interval_s)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self.checkpoint()
                except Exception:  # the next round tries again; the store still holds every change
                    log.exception("index checkpoint failed")

        self._checkpointer = threading.Thread(target=loop, name="qa-checkpoint", daemon=True)
        self._checkpointer.start()

    @property
    def lag(self) -> int:
        """Store changes not yet applied to the slowest index."""
        return self.store.seq - min(index.applied_seq for index in self.indexes)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=60)
        try:
            self.checkpoint()
        finally:
            for index in self.indexes:
                index.close()
            self.store.close()
