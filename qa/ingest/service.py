"""Ingestion: parse → split into passages → tokenise → embed → write store and indexes.

Duplicate policy (explicit): a document whose content (title + text) is already stored under
another id is skipped as a duplicate; re-ingesting an id with unchanged content and metadata is a
no-op; re-ingesting an id with changed content (or the same content with other metadata, such as the
file a folder sync took it from) replaces all of its passages.
"""

from __future__ import annotations

import hashlib
import logging
import re
import unicodedata
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace

import numpy as np

from embeddings import Embedder
from qa.abandon import checkpoint
from qa.corpus import Corpus
from qa.ingest.chunker import chunk_document
from qa.ingest.formats import SUPPORTED_EXTENSIONS, ParseOptions, parse_file
from qa.ingest.originals import OriginalFiles
from qa.models import ParsedDocument, Passage, passage_id
from qa.store import DEFAULT_COLLECTION, StoredPassage
from qa.store.sqlite import new_document
from qa.text.lang import detect_lang
from qa.text.sentences import split_sentences
from qa.text.tokenize import passage_tokens

log = logging.getLogger(__name__)

_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
MAX_ID_CHARS = 128
# A given ASCII id is kept exactly when it is already URL-safe: letters, digits, '_', and '-' or '.' inside.
_ID_EXACT = r"[A-Za-z0-9_](?:[A-Za-z0-9_.\-]{0,%d}[A-Za-z0-9_])?" % (MAX_ID_CHARS - 2)
_ID_EXACT_RE = re.compile(_ID_EXACT)
# The same rule as a JSON Schema pattern: an exact ASCII id, or any id with a non-ASCII letter and no control character.
ID_PATTERN = rf"^(?:{_ID_EXACT}|[^\x00-\x1f\x7f-\x9f]*[^\x00-\x9f][^\x00-\x1f\x7f-\x9f]*)$"


class InvalidDocumentIdError(ValueError):
    """A document id that cannot be used in URLs and citations."""


class DocumentTooLargeError(ValueError):
    """A document with more passages than the service takes in one document."""


# The progress callback of the ingest running in this context (the embedder's hook is shared by all).
_progress: ContextVar[Callable[[int, int], None] | None] = ContextVar("qa_ingest_progress", default=None)


def _report_progress(done: int, total: int) -> None:
    """The embedder's progress hook: abandon the work of a client that has gone, else report progress."""
    checkpoint()
    callback = _progress.get()
    if callback is not None:
        callback(done, total)


@dataclass(frozen=True)
class _Planned:
    """A document to write: its id and content hash, its passages, their sentences and the spans to embed."""

    doc: ParsedDocument
    document_id: str
    digest: str
    drafts: list
    sentences: list[list[tuple[int, int]]]
    spans: list[list[tuple[int, int]]]


@dataclass(frozen=True)
class IngestResult:
    document_id: str
    status: str  # "added" | "replaced" | "unchanged" | "duplicate"
    passages: int
    duplicate_of: str | None = None


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


def _refuse_control_characters(name: str) -> None:
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise InvalidDocumentIdError(f"{name[:80]!r} cannot be used as a document id: it contains the control "
                                     f"character U+{ord(bad):04X}; use letters, digits, '-', '_' or '.'.")


def given_document_id(value: str) -> str:
    """The id a client gave (JSON ``id`` or the ``id`` field of an upload): one rule for both.

    An ASCII id is kept exactly when it is URL-safe (see ``_ID_EXACT``) and refused otherwise, so two
    different ids are never merged (``a/b`` and ``a\\x00b`` are refused, not both turned into ``a-b``).
    An id with Chinese (or other non-ASCII) letters gets its pinyin spelling and a hash, as a file name does.
    """
    if len(value) > MAX_ID_CHARS:
        raise InvalidDocumentIdError(f"the document id has {len(value)} characters; the limit is {MAX_ID_CHARS}")
    _refuse_control_characters(value)
    if value.isascii():
        if not _ID_EXACT_RE.fullmatch(value):
            raise InvalidDocumentIdError(
                f"{value!r} cannot be used as a document id: use letters, digits and '_', with '-' or '.' "
                f"only between them (at most {MAX_ID_CHARS} characters).")
        return value
    return document_id_for(value)


def document_id_for(name: str) -> str:
    """A URL-safe document id from a file name (or, through :func:`given_document_id`, a non-ASCII id).

    A name with Chinese (or other non-ASCII) characters is spelled in pinyin and gets 8 hex digits of its
    hash, so that "上海报告.txt" has an id and "上海2024" / "北京2024" or "报告" / "宝高" stay apart.
    """
    _refuse_control_characters(name)
    readable, suffix = name, ""
    if not name.isascii():
        from pypinyin import lazy_pinyin

        readable = "-".join(lazy_pinyin(name))
        suffix = "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    cleaned = _ID_UNSAFE.sub("-", readable).strip("-.")[:MAX_ID_CHARS - len(suffix)].rstrip("-.")
    if not cleaned and not suffix:
        raise InvalidDocumentIdError(f"{name!r} cannot be used as a document id: use letters, digits, '-', '_' or '.'.")
    return (cleaned or "doc") + suffix


def path_document_id(relative: str) -> str:
    """The document id of a file at ``relative`` (a POSIX path inside a synced folder): stable, unique per path.

    A path that is already an exact id (``report.pdf``) is kept; any other (``a/b.txt``, ``报告.pdf``) gets
    its readable form (as :func:`document_id_for` spells it) and 8 hex digits of the path's hash, so that
    ``a/b.txt`` and ``a-b.txt`` stay apart and an id never depends on which other files exist.
    """
    if len(relative) <= MAX_ID_CHARS and _ID_EXACT_RE.fullmatch(relative):
        return relative
    readable = document_id_for(relative)
    if not relative.isascii():  # document_id_for has added the hash already
        return readable
    suffix = "-" + hashlib.sha256(relative.encode()).hexdigest()[:8]
    return readable[:MAX_ID_CHARS - len(suffix)].rstrip("-.") + suffix


class IngestService:
    """Adds, replaces and deletes documents in a corpus."""

    def __init__(self, corpus: Corpus, embedder: Embedder, max_passage_tokens: int, heading_max_chars: int,
                 parse_options: ParseOptions | None = None, originals: OriginalFiles | None = None,
                 max_passages: int | None = None):
        self.corpus = corpus
        self.originals = originals
        self.embedder = embedder
        self.max_passage_tokens = max_passage_tokens
        self.parse_options = parse_options or ParseOptions(heading_max_chars=heading_max_chars)
        self.max_passages = max_passages  # per document; None: no limit
        if hasattr(embedder, "on_progress"):  # one hook for every ingest; each call's own callback is in its context
            embedder.on_progress = _report_progress

    def parse(self, raw: bytes | str, filename: str | None = None, title: str | None = None,
              on_progress: Callable[[str, int, int], None] | None = None) -> ParsedDocument:
        """Any supported file (PDF, DOCX, PPTX, images, text; see :mod:`qa.ingest.formats`);
        ``on_progress(stage, done, total)`` follows a long parse (pages parsed, pages OCR'd). The parse is
        abandoned at its next progress report when its client has gone or the server stops."""

        def progress(stage: str, done: int, total: int) -> None:
            checkpoint()
            if on_progress is not None:
                on_progress(stage, done, total)

        return parse_file(raw, filename, replace(self.parse_options, title=title, on_progress=progress))

    def ingest(self, doc: ParsedDocument, document_id: str | None = None,
               on_progress: Callable[[int, int], None] | None = None,
               collection: str = DEFAULT_COLLECTION) -> IngestResult:
        """Store one parsed document (see the module docstring for the duplicate policy)."""
        return self.ingest_many([(doc, document_id)], on_progress, collection)[0]

    def ingest_many(self, docs: Sequence[tuple[ParsedDocument, str | None]],
                    on_progress: Callable[[int, int], None] | None = None,
                    collection: str = DEFAULT_COLLECTION) -> list[IngestResult]:
        """Store parsed documents (``(document, id or None)``, in order): the passages of those not
        stored yet are embedded together (batched across documents by length; ``on_progress(done,
        total)`` follows it), then each document is written in its own transaction and the indexes
        are persisted once at the end."""
        self.corpus.collection(collection)  # CollectionNotFoundError before any model work
        planned: list[IngestResult | _Planned] = []
        for doc, document_id in docs:
            digest = content_hash(doc.title, doc.text)
            document_id = document_id_for(document_id) if document_id else "doc-" + digest[:16]
            skipped = self._already_stored(collection, digest, document_id, doc.metadata)
            planned.append(skipped if skipped is not None else _Planned(doc, document_id, digest, *self._plan(doc)))
        todo = [p for p in planned if isinstance(p, _Planned)]
        checkpoint()  # nothing is embedded for a client that has gone (or a server that stops)
        vectors, span_vectors = self._embed([d.text for p in todo for d in p.drafts],
                                            [own for p in todo for own in p.spans],
                                            [p.doc.title for p in todo for _ in p.drafts], on_progress)
        stored, cursor = [], 0
        for p in todo:
            n = len(p.drafts)
            stored.append(self._stored(p, vectors[cursor:cursor + n], span_vectors[cursor:cursor + n]))
            cursor += n
        ready = iter(stored)
        with self.corpus.batch():  # holds the write lock: decide again, another request may have written meanwhile
            return [self._write(collection, p, next(ready)) if isinstance(p, _Planned) else p for p in planned]

    def _plan(self, doc: ParsedDocument) -> tuple[list, list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
        """Passages of ``doc``, their sentences (document offsets) and the spans to embed (passage offsets).

        Passages are embedded whole, and each of their sentences too, with the document's title (second
        stage and evidence; a one-sentence passage gets its titled vector as well, so every passage's
        sentence score comes from the same kind of vector), or pooled from the passage's forward pass
        when the embedder can (see ``QA_SENTENCE_VECTORS``).
        """
        drafts = chunk_document(doc, self.embedder.count_tokens, self.max_passage_tokens)
        if self.max_passages is not None and len(drafts) > self.max_passages:
            raise DocumentTooLargeError(f"the document {doc.title[:80]!r} makes {len(drafts)} passages; the limit is "
                                        f"{self.max_passages} (QA_MAX_DOCUMENT_PASSAGES): split it into several")
        sentences = [split_sentences(d.text, d.start) for d in drafts]
        spans = [[(s - d.start, e - d.start) for s, e in own] for d, own in zip(drafts, sentences)]
        return drafts, sentences, spans

    def _embed(self, texts: list[str], spans: list[list[tuple[int, int]]], titles: list[str],
               on_progress: Callable[[int, int], None] | None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Passage and sentence vectors; sentences carry their document's title in the model's prompt."""
        token = _progress.set(on_progress)
        try:
            return self.embedder.encode_passages_with_spans(texts, spans, titles)
        finally:
            _progress.reset(token)

    @staticmethod
    def _stored(p: _Planned, vectors: np.ndarray, span_vectors: list[np.ndarray]) -> list[StoredPassage]:
        """The passages of a planned document as the store keeps them (tokens, vectors, sentences)."""
        doc, document_id = p.doc, p.document_id
        return [
            StoredPassage(
                passage=Passage(
                    id=passage_id(document_id, d.paragraph, d.part), document_id=document_id, section=d.section,
                    paragraph=d.paragraph, part=d.part, lang=d.lang, start=d.start, end=d.end, text=d.text,
                    title=doc.title, source=doc.source, published=doc.published,
                    page=d.page, page_end=d.page_end, ocr_confidence=d.ocr_confidence,
                ),
                tokens=passage_tokens(d.section, d.text, d.lang),
                vector=vectors[i],
                sentences=tuple(own),
                sentence_vectors=span_vectors[i] if own else None,
            )
            for i, (d, own) in enumerate(zip(p.drafts, p.sentences))
        ]

    def _write(self, collection: str, p: _Planned, stored: list[StoredPassage]) -> IngestResult:
        """Write one planned document (the caller holds the corpus batch)."""
        checkpoint()  # each document commits in full or, abandoned before its commit, not at all
        skipped = self._already_stored(collection, p.digest, p.document_id, p.doc.metadata)
        if skipped is not None:
            return skipped
        doc = p.doc
        document = new_document(p.document_id, doc.title, detect_lang(doc.text), doc.source, doc.published,
                                p.digest, doc.metadata, collection)
        replaced = self.corpus.store.document_hash(collection, p.document_id) is not None
        if self.originals is not None:  # before the document: a stored document never lacks its original
            if doc.original is not None:
                self.originals.save(collection, p.document_id, doc.original, doc.original_ext or "", doc.layout)
            elif replaced:
                self.originals.delete(collection, p.document_id)
        self.corpus.write_document(collection, document, doc.text, stored)
        return IngestResult(p.document_id, "replaced" if replaced else "added", len(stored))

    def _already_stored(self, collection: str, digest: str, document_id: str,
                        metadata: dict[str, str]) -> IngestResult | None:
        """``unchanged`` when this id holds this content and metadata, ``duplicate`` when another id holds this
        content in the collection, else None (the same content with other metadata is written again)."""
        existing = self.corpus.store.document_by_hash(collection, digest)
        if existing == document_id:
            found = self.corpus.store.get_document(collection, document_id)
            if found is not None and found[0].metadata == metadata:
                return IngestResult(document_id, "unchanged", found[0].passage_count)
        elif existing is not None:
            return IngestResult(document_id, "duplicate", 0, duplicate_of=existing)
        return None
