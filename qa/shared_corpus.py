"""The corpus over shared engines: PostgreSQL as the store, Milvus as the indexes, any number of replicas.

Unlike the embedded corpus, a replica does not apply its own writes to the indexes: the store records
every write's index work in the same transaction (its change sequence, the outbox), and each
replica's :class:`~qa.index.outbox.OutboxWorker` applies the sequence in order, one replica at a
time, so the indexes see every replica's writes exactly as the store committed them. A write wakes
the local worker and waits (at most ``QA_INDEX_VISIBILITY_TIMEOUT_S``) until the indexes have
applied it, so a document is searchable, through every replica, once its POST has answered;
when Milvus is down the write is still acknowledged (the store and its outbox hold it) and the
indexes catch up when Milvus is back, by themselves.
"""

from __future__ import annotations

import logging

from qa.corpus import Corpus
from qa.index.base import DenseIndex, LexicalIndex
from qa.index.outbox import OUTBOX_LOCK, OutboxWorker, rebuild

log = logging.getLogger(__name__)


class SharedCorpus(Corpus):
    """:class:`Corpus` whose indexes follow the store through the outbox worker."""

    def __init__(self, store, dense: DenseIndex, lexical: LexicalIndex, model_id: str, dimension: int, *,
                 visibility_timeout_s: float = 5.0, poll_s: float = 0.25, where: str = "PostgreSQL"):
        self.worker = OutboxWorker(store, (dense, lexical), poll_s=poll_s)
        self.visibility_timeout_s = visibility_timeout_s
        super().__init__(store, dense, lexical, model_id, dimension, where=where)
        self.worker.start()  # from the start: writes (the seeds too) wait for it

    # --- following the store: the worker does it ---------------------------------------------------
    def catch_up(self) -> int:
        """Apply what the outbox holds (if another replica is applying it, let that one finish)."""
        replayed = 0
        while applied := self.worker.step():
            replayed += applied
        return replayed

    def _apply_pending(self) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        seq = max(result.seq for result, _, _ in pending)
        if not self.worker.wait_applied(seq, self.visibility_timeout_s):
            log.warning("write %d acknowledged before the indexes applied it (%s); they catch up from the outbox",
                        seq, self.worker.last_error or "the index worker is behind")

    def delete_collection(self, name: str) -> bool:
        with self._write_lock:
            result = self.store.delete_collection(name)
            if result is None:
                return False
            self.worker.wait_applied(result.seq, self.visibility_timeout_s)
            return True

    def reindex(self) -> None:
        """Rebuild both indexes from the store (no re-embedding), holding the outbox so no replica applies
        changes meanwhile (they are applied after, idempotently)."""
        with self._write_lock, self.store.exclusive(OUTBOX_LOCK) as alone:
            if not alone:
                raise RuntimeError("another replica is applying the outbox right now; run `qa reindex` again")
            rebuild(self.store, self.indexes)

    # --- durability: Milvus keeps acknowledged writes; the worker records and prunes ---------------
    def checkpoint(self) -> None:
        """Nothing to do here: the worker records the applied sequence in Milvus after each batch."""

    def start_checkpointer(self) -> None:
        """The worker started with the corpus."""

    @property
    def lag(self) -> int | None:
        """Store changes the shared indexes have not applied yet (None while an engine is unreachable)."""
        return self.worker.lag()["lag"]

    def close(self) -> None:
        self.worker.stop()
        try:
            for index in self.indexes:
                index.close()
        finally:
            self.store.close()
