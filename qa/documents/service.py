"""The document service: the one way routers, MCP tools and the CLI reach documents and collections.

Writes go through ingestion (parse → passages → embed → store and indexes); reads come from the
store. Folder ingestion groups files so their passages are embedded together (the model's batch
speed), reports progress, skips what it cannot read with the reason, and can be killed and rerun:
documents already stored with the same content are recognised by hash and not embedded again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path

from qa.abandon import Abandoned, checkpoint
from qa.corpus import Corpus
from qa.ingest.formats import SUPPORTED_EXTENSIONS
from qa.ingest.service import DocumentTooLargeError, IngestResult, IngestService, document_id_for
from qa.models import Block, Document, ParsedDocument, Passage
from qa.store.base import DEFAULT_COLLECTION, Collection, check_collection_name

log = logging.getLogger(__name__)


class DocumentNotFoundError(LookupError):
    def __init__(self, collection: str, document_id: str):
        super().__init__(f"no document with id {document_id!r} in collection {collection!r}; "
                         f"GET /v1/documents?collection={collection} lists them")


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class FolderProgress:
    """What a folder ingest has done so far (handed to the progress callback)."""

    files_total: int
    files_done: int = 0
    passages_embedded: int = 0
    current: str = ""
    stage: str = ""  # within the current file, for long PDFs and scans: "pages parsed", "pages OCR'd"
    stage_done: int = 0
    stage_total: int = 0


@dataclass(frozen=True)
class FileToIngest:
    """A file to ingest under ``document_id``, with metadata to store beside the parser's; ``name`` is how
    reports call it (default: the path)."""

    path: Path
    document_id: str
    metadata: dict[str, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            object.__setattr__(self, "name", str(self.path))


@dataclass
class FolderReport:
    results: list[tuple[str, IngestResult]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    passages_embedded: int = 0
    seconds: float = 0.0
    stopped: bool = False  # told to stop (SIGTERM, Ctrl-C) before every file was done
    workers: dict[str, int] = field(default_factory=dict)  # through the job queue: documents each replica ingested

    def count(self, status: str) -> int:
        return sum(1 for _, r in self.results if r.status == status)


def expand_paths(paths: Iterable[Path], skipped: list[Skipped] | None = None) -> Iterator[Path]:
    """Files under ``paths`` (folders recursively) in a stable order; unsupported files are noted in
    ``skipped``."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if not p.is_file() or p.name.startswith("."):
                    continue
                if p.suffix.lower() in SUPPORTED_EXTENSIONS:
                    yield p
                elif skipped is not None:
                    skipped.append(Skipped(str(p), f"unsupported file type {p.suffix or '(none)'!r}"))
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")


class DocumentService:
    """Collections and documents: add, list, read, delete."""

    def __init__(self, corpus: Corpus, ingest: IngestService, group_passages: int = 256):
        self.corpus = corpus
        self.ingest_service = ingest
        self.group_passages = group_passages

    # --- collections ---------------------------------------------------------------------------
    def create_collection(self, name: str, description: str = "") -> Collection:
        return self.corpus.create_collection(check_collection_name(name), description)

    def ensure_collection(self, name: str) -> Collection:
        return self.corpus.store.ensure_collection(check_collection_name(name))

    def list_collections(self) -> list[Collection]:
        return self.corpus.store.list_collections()

    def collection(self, name: str) -> Collection:
        return self.corpus.collection(name)

    def delete_collection(self, name: str) -> None:
        """Remove a collection and everything in it; the default collection is emptied and stays."""
        self.corpus.collection(name)
        self.corpus.delete_collection(name)
        if self.ingest_service.originals is not None:
            self.ingest_service.originals.delete_collection(name)
        if name == DEFAULT_COLLECTION:
            self.corpus.store.ensure_collection(DEFAULT_COLLECTION, "The default knowledge base.")

    # --- documents -----------------------------------------------------------------------------
    def parse(self, raw: bytes | str, filename: str | None = None, title: str | None = None) -> ParsedDocument:
        return self.ingest_service.parse(raw, filename, title=title)

    def add(self, doc: ParsedDocument, document_id: str | None = None, collection: str = DEFAULT_COLLECTION,
            on_progress: Callable[[int, int], None] | None = None) -> IngestResult:
        return self.ingest_service.ingest(doc, document_id, on_progress, collection)

    def add_many(self, docs: Sequence[tuple[ParsedDocument, str | None]], collection: str = DEFAULT_COLLECTION,
                 on_progress: Callable[[int, int], None] | None = None) -> list[IngestResult]:
        return self.ingest_service.ingest_many(docs, on_progress, collection)

    def list(self, collection: str = DEFAULT_COLLECTION, limit: int = 100, offset: int = 0) -> tuple[list[Document], int]:
        found = self.corpus.collection(collection)
        return self.corpus.store.list_documents(collection, limit, offset), found.documents

    def get(self, document_id: str, collection: str = DEFAULT_COLLECTION) -> tuple[Document, str]:
        self.corpus.collection(collection)
        found = self.corpus.store.get_document(collection, document_id)
        if found is None:
            raise DocumentNotFoundError(collection, document_id)
        return found

    def delete(self, document_id: str, collection: str = DEFAULT_COLLECTION) -> None:
        self.corpus.collection(collection)
        if not self.corpus.delete_document(collection, document_id):
            raise DocumentNotFoundError(collection, document_id)
        if self.ingest_service.originals is not None:  # the kept file, its layout and page images
            self.ingest_service.originals.delete(collection, document_id)

    def passage(self, passage_id: str, collection: str = DEFAULT_COLLECTION) -> Passage | None:
        self.corpus.collection(collection)
        return self.corpus.store.passage(collection, passage_id)

    def counts(self) -> tuple[int, int]:
        """(documents, passages) over every collection."""
        return self.corpus.store.count_documents(), self.corpus.store.count_passages()

    # --- folders -------------------------------------------------------------------------------
    def ingest_paths(self, paths: Iterable[Path], collection: str = DEFAULT_COLLECTION,
                     progress: Callable[[FolderProgress], None] | None = None) -> FolderReport:
        """Ingest files and folders (recursively, supported types only) into ``collection``; each file's
        document id comes from its name without the extension. See :meth:`ingest_files`."""
        self.corpus.collection(collection)
        skipped: list[Skipped] = []
        files = [FileToIngest(p, document_id_for(p.stem)) for p in expand_paths(paths, skipped)]
        report = self.ingest_files(files, collection, progress)
        report.skipped[:0] = skipped
        return report

    def ingest_files(self, files: Sequence[FileToIngest], collection: str = DEFAULT_COLLECTION,
                     progress: Callable[[FolderProgress], None] | None = None) -> FolderReport:
        """Ingest files into ``collection`` under the given ids, with their extra metadata.

        Files are parsed and grouped until about ``group_passages`` paragraphs, whose passages are then
        embedded together; each document is still written in its own transaction, so a kill loses at
        most the group being embedded, and a rerun skips every stored document by its content hash.
        A file that cannot be read or parsed (or makes too many passages) is skipped with the reason;
        the rest go on. When the process is told to stop (:func:`qa.abandon.stop_all`), the work in
        flight is abandoned before it writes and the report says ``stopped``.
        """
        self.corpus.collection(collection)
        report = FolderReport()
        started = time.monotonic()
        state = FolderProgress(files_total=len(files))
        group: list[tuple[FileToIngest, ParsedDocument]] = []
        group_size = 0

        def flush() -> None:
            nonlocal group, group_size
            if not group:
                return
            embedded_before = state.passages_embedded

            def on_embed(done: int, total: int) -> None:
                state.passages_embedded = embedded_before + done
                if progress:
                    progress(state)

            try:
                results = self.add_many([(doc, f.document_id) for f, doc in group], collection, on_embed)
            except DocumentTooLargeError:  # refused while planning, before anything was embedded: one at a time
                results = []
                for f, doc in group:
                    try:
                        results.append(self.add(doc, f.document_id, collection, on_embed))
                    except DocumentTooLargeError as exc:
                        results.append(None)
                        report.skipped.append(Skipped(f.name, str(exc)))
            # what the group wrote (unchanged documents and duplicates were not embedded)
            state.passages_embedded = embedded_before + sum(r.passages for r in results
                                                             if r is not None and r.status in ("added", "replaced"))
            report.results.extend((f.name, r) for (f, _), r in zip(group, results) if r is not None)
            state.files_done += len(group)
            if progress:
                progress(state)
            group, group_size = [], 0

        try:
            for f in files:
                checkpoint()
                state.current = f.path.name
                try:
                    def pages(stage: str, done: int, total: int) -> None:
                        state.stage, state.stage_done, state.stage_total = stage, done, total
                        if progress:
                            progress(state)

                    doc = self.ingest_service.parse(f.path.read_bytes(), f.path.name, on_progress=pages)
                except (OSError, ValueError) as exc:  # parser errors are ValueErrors with a message
                    report.skipped.append(Skipped(f.name, str(exc)))
                    state.files_done += 1
                    continue
                doc.metadata.update(f.metadata)
                group.append((f, doc))
                group_size += max(1, sum(1 for b in doc.blocks if b.kind == "paragraph"))
                if group_size >= self.group_passages:
                    flush()
            flush()
        except Abandoned:
            report.stopped = True
        report.passages_embedded = state.passages_embedded
        report.seconds = time.monotonic() - started
        return report

    # --- re-embedding --------------------------------------------------------------------------
    def copy_from(self, source: Corpus, on_document: Callable[[str], None] | None = None) -> int:
        """Ingest every document of ``source`` (every collection) again, as it was parsed when it was first
        ingested (passage ids and offsets kept): how a data folder is re-embedded with another model."""
        copied = 0
        for found in source.store.list_collections():
            self.ensure_collection(found.name)
            offset = 0
            while docs := source.store.list_documents(found.name, 500, offset):
                offset += len(docs)
                for doc in docs:
                    _, text = source.store.get_document(found.name, doc.id)
                    parsed = as_parsed(doc, text, source.store.passages_of_document(found.name, doc.id))
                    self.add(parsed, doc.id, found.name)
                    copied += 1
                    if on_document:
                        on_document(doc.id)
        return copied


def as_parsed(doc: Document, text: str, passages: Sequence[Passage]) -> ParsedDocument:
    """The document as it was parsed when ingested, rebuilt from its stored passages and sections.

    Parsing the stored text again would not do: it is the visible text of an HTML page or a text whose
    title came separately, so paragraphs (and with them passage ids and citations) would shift.
    """
    ordered = sorted(passages, key=lambda p: (p.paragraph, p.part))
    blocks, section = [], None
    for _, parts in groupby(ordered, key=lambda p: p.paragraph):
        parts = list(parts)
        start, end = parts[0].start, parts[-1].end
        if parts[0].section is not None and parts[0].section != section:
            section = parts[0].section
            blocks.append(Block("heading", start, start, section))  # only its place and name matter
        blocks.append(Block("paragraph", start, end, text[start:end], page=parts[0].page))
    return ParsedDocument(title=doc.title, text=text, blocks=blocks, source=doc.source, published=doc.published,
                          metadata=dict(doc.metadata))
