"""Folder sync: a collection follows a folder tree (``qa sync FOLDER [--collection C] [--watch]``).

Each supported file under the folder is one document, whose id comes from its path relative to the
folder (:func:`qa.ingest.service.path_document_id`). A pass compares the folder with the collection:
new files are added, changed ones replaced, deleted ones removed, and unchanged ones skipped by the
SHA-256 of their bytes without being parsed.

What the sync added is recorded in each document's own metadata (``sync_path``, ``sync_sha256``,
``sync_folder``), written in the same transaction as the document, so the record can never disagree
with the store: a pass killed at any moment leaves every document either written with its record or
not at all, and the next pass finishes the job (the embedding cache makes re-embedding cheap).
Documents without a record (added through the API or ``qa ingest``) are never replaced or removed by
a sync; a file whose id such a document holds is reported as failed. A collection follows one folder:
syncing another folder into it is refused unless ``switch`` is given.

:func:`watch` runs a pass, then follows the folder with watchfiles (debounced) and runs a pass over
the paths that changed, until it is told to stop.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from qa.abandon import Abandoned, checkpoint
from qa.documents.service import DocumentService, FileToIngest, FolderProgress
from qa.ingest.formats import SUPPORTED_EXTENSIONS
from qa.ingest.service import path_document_id

log = logging.getLogger(__name__)

PATH_KEY, HASH_KEY, FOLDER_KEY = "sync_path", "sync_sha256", "sync_folder"


class FolderConflictError(ValueError):
    """The collection follows another folder."""


@dataclass(frozen=True)
class Record:
    """What the sync knows of a document it added: its id, file path (relative, POSIX) and file hash."""

    document_id: str
    path: str
    sha256: str
    folder: str


@dataclass
class SyncReport:
    """What one pass did, per relative path: added, replaced, removed, unchanged, failed (with reasons), and
    files whose content another document holds (not stored again; see the ingest duplicate policy)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (path, id of the document holding its content)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # unsupported types: not documents
    passages_embedded: int = 0
    seconds: float = 0.0
    stopped: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.added or self.replaced or self.removed or self.failed)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _ignored_name(name: str) -> bool:
    """Hidden files and folders, and the lock files office programs leave beside open documents."""
    return name.startswith((".", "~$"))


def walk(folder: Path, under: Iterable[str] | None = None) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of every file under ``folder`` (or only under the relative paths
    ``under``), sorted, hidden ones left out."""
    roots = [folder] if under is None else [folder / u for u in sorted(set(under))]
    seen: set[str] = set()
    for root in roots:
        candidates = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in candidates:
            rel = path.relative_to(folder).as_posix()
            if rel in seen or not path.is_file() or any(_ignored_name(part) for part in PurePosixPath(rel).parts):
                continue
            seen.add(rel)
            yield rel, path


class FolderSync:
    """Makes ``collection`` follow ``folder`` through a :class:`DocumentService`."""

    def __init__(self, documents: DocumentService, folder: Path, collection: str, switch: bool = False):
        self.documents = documents
        self.folder = folder.resolve()
        self.collection = collection
        self.switch = switch

    def records(self) -> tuple[dict[str, Record], set[str]]:
        """The sync records of the collection by relative path, and every document id in it."""
        store = self.documents.corpus.store
        records: dict[str, Record] = {}
        ids: set[str] = set()
        offset = 0
        while docs := store.list_documents(self.collection, 1000, offset):
            offset += len(docs)
            for doc in docs:
                ids.add(doc.id)
                meta = doc.metadata
                if PATH_KEY in meta and HASH_KEY in meta:
                    records[meta[PATH_KEY]] = Record(doc.id, meta[PATH_KEY], meta[HASH_KEY], meta.get(FOLDER_KEY, ""))
        return records, ids

    def _check_folder(self, records: dict[str, Record]) -> None:
        others = {r.folder for r in records.values()} - {str(self.folder)}
        if others and not self.switch:
            other = sorted(others)[0]
            raise FolderConflictError(
                f"collection {self.collection!r} follows the folder {other} "
                f"({sum(r.folder == other for r in records.values())} documents); sync that folder, or pass "
                f"--switch to make it follow {self.folder} (documents from {other} whose path is not in "
                f"{self.folder} are then removed)")

    def run(self, changed: Iterable[str] | None = None,
            progress: Callable[[FolderProgress], None] | None = None) -> SyncReport:
        """One pass over the whole folder, or only over the relative paths in ``changed`` (files or
        folders, present or deleted)."""
        started = time.monotonic()
        self.documents.collection(self.collection)
        report = SyncReport()
        records, ids = self.records()
        self._check_folder(records)
        try:
            self._pass(report, records, ids, None if changed is None else sorted(set(changed)), progress)
        except Abandoned:  # told to stop: what was written is complete, the next pass does the rest
            report.stopped = True
        report.seconds = time.monotonic() - started
        return report

    def _pass(self, report: SyncReport, records: dict[str, Record], ids: set[str], scope: list[str] | None,
              progress: Callable[[FolderProgress], None] | None) -> None:

        def in_scope(rel: str) -> bool:
            return scope is None or any(rel == s or rel.startswith(s.rstrip("/") + "/") for s in scope)

        present: dict[str, Path] = {}
        for rel, path in walk(self.folder, scope):
            if path.suffix.lower() in SUPPORTED_EXTENSIONS:
                present[rel] = path
            else:
                report.ignored.append((rel, f"unsupported file type {path.suffix or '(none)'!r}"))

        # Removals first: a renamed file is then added, not refused as a duplicate of its old self.
        for rel, record in sorted(records.items()):
            if rel not in present and in_scope(rel):
                checkpoint()
                try:
                    self.documents.delete(record.document_id, self.collection)
                except LookupError:  # gone meanwhile
                    pass
                report.removed.append(rel)

        todo: list[FileToIngest] = []
        for rel, path in present.items():
            checkpoint()
            document_id = path_document_id(rel)
            try:
                digest = file_sha256(path)
            except OSError as exc:  # deleted or unreadable since the walk
                report.failed.append((rel, str(exc)))
                continue
            record = records.get(rel)
            if record is not None and record.sha256 == digest and record.document_id == document_id \
                    and record.folder == str(self.folder):
                report.unchanged.append(rel)
                continue
            if record is None and document_id in ids:
                report.failed.append((rel, f"the collection holds a document {document_id!r} that the sync did not "
                                           "add (through the API or qa ingest); it is left alone"))
                continue
            todo.append(FileToIngest(path, document_id, {PATH_KEY: rel, HASH_KEY: digest,
                                                         FOLDER_KEY: str(self.folder)}, name=rel))
        folder_report = self.documents.ingest_files(todo, self.collection, progress)
        for rel, result in folder_report.results:
            if result.status == "added":
                report.added.append(rel)
            elif result.status == "replaced":
                report.replaced.append(rel)
            elif result.status == "unchanged":  # a record lost its file hash only: nothing to write
                report.unchanged.append(rel)
            else:
                report.duplicates.append((rel, result.duplicate_of or ""))
        report.failed += [(s.path, s.reason) for s in folder_report.skipped]
        report.passages_embedded = folder_report.passages_embedded
        report.stopped = folder_report.stopped


def relative_changes(folder: Path, paths: Iterable[str]) -> set[str]:
    """The relative POSIX paths of changed absolute ``paths`` under ``folder`` (hidden ones left out)."""
    folder = folder.resolve()
    found = set()
    for raw in paths:
        try:
            rel = Path(raw).resolve().relative_to(folder).as_posix()
        except ValueError:
            continue
        if rel != "." and not any(_ignored_name(part) for part in PurePosixPath(rel).parts):
            found.add(rel)
    return found


def watch(sync: FolderSync, stop: threading.Event, on_pass: Callable[[SyncReport], None],
          progress: Callable[[FolderProgress], None] | None = None, debounce_ms: int = 1000,
          on_ready: Callable[[], None] | None = None) -> None:
    """A full pass, then a pass over what changed after every quiet ``debounce_ms``, until ``stop`` is set.
    ``on_ready`` is called once the watcher follows the folder (changes made after it are seen)."""
    from watchfiles import watch as watch_changes

    changes = watch_changes(sync.folder, stop_event=stop, debounce=debounce_ms, step=50, raise_interrupt=False,
                            yield_on_timeout=True, rust_timeout=200)
    next(changes)  # the watcher is running (a timeout with no change): changes from now on are caught
    on_pass(sync.run(progress=progress))
    if on_ready is not None:
        on_ready()
    for batch in changes:
        if stop.is_set():
            break
        if not batch:
            continue
        rels = relative_changes(sync.folder, (path for _, path in batch))
        if rels:
            on_pass(sync.run(rels, progress=progress))
