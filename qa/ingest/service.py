"""Ingestion: parse → split into passages → tokenise → embed → write store and indexes.

Duplicate policy (explicit): a document whose content (title + text) is already stored under
another id is skipped as a duplicate; re-ingesting an id with unchanged content is a no-op;
re-ingesting an id with changed content replaces all of its passages.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


from embeddings import Embedder
from qa.corpus import Corpus
from qa.ingest.chunker import chunk_document
from qa.ingest.parsers import parse_document
from qa.models import ParsedDocument, Passage, passage_id
from qa.store import StoredPassage
from qa.store.sqlite import new_document
from qa.text.lang import detect_lang
from qa.text.sentences import split_sentences
from qa.text.tokenize import passage_tokens

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")


class InvalidDocumentIdError(ValueError):
    """A document id that cannot be used in URLs and citations."""


@dataclass(frozen=True)
class IngestResult:
    document_id: str
    status: str  # "added" | "replaced" | "unchanged" | "duplicate"
    passages: int
    duplicate_of: str | None = None


def content_hash(title: str, text: str) -> str:
    return hashlib.sha256(f"{title}\n{text}".encode()).hexdigest()


def document_id_for(name: str) -> str:
    """A URL-safe document id from a file name or a given id.

    A name with Chinese (or other non-ASCII) characters is spelled in pinyin and gets 8 hex digits of its
    hash, so that "上海报告.txt" has an id and "上海2024" / "北京2024" or "报告" / "宝高" stay apart.
    """
    readable, suffix = name, ""
    if not name.isascii():
        from pypinyin import lazy_pinyin

        readable = "-".join(lazy_pinyin(name))
        suffix = "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    cleaned = _ID_UNSAFE.sub("-", readable).strip("-.")[:128 - len(suffix)].rstrip("-.")
    if not cleaned and not suffix:
        raise InvalidDocumentIdError(f"{name!r} cannot be used as a document id: use letters, digits, '-', '_' or '.'.")
    return (cleaned or "doc") + suffix


class IngestService:
    """Adds, replaces and deletes documents in a corpus."""

    def __init__(self, corpus: Corpus, embedder: Embedder, max_passage_tokens: int, heading_max_chars: int):
        self.corpus = corpus
        self.embedder = embedder
        self.max_passage_tokens = max_passage_tokens
        self.heading_max_chars = heading_max_chars

    def parse(self, raw: bytes | str, filename: str | None = None, title: str | None = None) -> ParsedDocument:
        return parse_document(raw, filename, title=title, heading_max_chars=self.heading_max_chars)

    def ingest(self, doc: ParsedDocument, document_id: str | None = None,
               on_progress: Callable[[int, int], None] | None = None) -> IngestResult:
        """Store one parsed document (see the module docstring for the duplicate policy)."""
        digest = content_hash(doc.title, doc.text)
        document_id = document_id_for(document_id) if document_id else "doc-" + digest[:16]
        skipped = self._already_stored(digest, document_id)
        if skipped is not None:
            return skipped

        drafts, sentences, spans = self._plan(doc)
        previous = getattr(self.embedder, "on_progress", None)
        if on_progress is not None and hasattr(self.embedder, "on_progress"):
            self.embedder.on_progress = on_progress
        try:
            vectors, span_vectors = self.embedder.encode_passages_with_spans([d.text for d in drafts], spans)
        finally:
            if hasattr(self.embedder, "on_progress"):
                self.embedder.on_progress = previous
        lang = detect_lang(doc.text)
        sentence_vectors = [
            span_vectors[i] if len(own) > 1 else (vectors[i:i + 1] if own else None)
            for i, own in enumerate(sentences)
        ]
        stored = [
            StoredPassage(
                passage=Passage(
                    id=passage_id(document_id, d.paragraph, d.part), document_id=document_id, section=d.section,
                    paragraph=d.paragraph, part=d.part, lang=d.lang, start=d.start, end=d.end, text=d.text,
                    title=doc.title, source=doc.source, published=doc.published,
                ),
                tokens=passage_tokens(d.section, d.text, d.lang),
                vector=vectors[i],
                sentences=tuple(sentences[i]),
                sentence_vectors=sentence_vectors[i],
            )
            for i, d in enumerate(drafts)
        ]
        document = new_document(document_id, doc.title, lang, doc.source, doc.published, digest, doc.metadata)
        with self.corpus.batch():  # holds the write lock: decide again, another request may have written meanwhile
            skipped = self._already_stored(digest, document_id)
            if skipped is not None:
                return skipped
            replaced = self.corpus.store.document_hash(document_id) is not None
            self.corpus.write_document(document, doc.text, stored)
        return IngestResult(document_id, "replaced" if replaced else "added", len(stored))

    def _plan(self, doc: ParsedDocument) -> tuple[list, list[list[tuple[int, int]]], list[list[tuple[int, int]]]]:
        """Passages of ``doc``, their sentences (document offsets) and the spans to embed (passage offsets).

        Passages are embedded whole; sentences of multi-sentence passages too (second stage and evidence),
        pooled from the passage's forward pass when the embedder can (see ``QA_SENTENCE_VECTORS``).
        """
        drafts = chunk_document(doc, self.embedder.count_tokens, self.max_passage_tokens)
        sentences = [split_sentences(d.text, d.start) for d in drafts]
        spans = [[(s - d.start, e - d.start) for s, e in own] if len(own) > 1 else [] for d, own in zip(drafts, sentences)]
        return drafts, sentences, spans

    def prefetch(self, docs: Iterable[ParsedDocument]) -> None:
        """Embed the passages of many documents in one go (batched across documents by length) so that
        ingesting them one by one afterwards only reads the embedding cache."""
        texts, spans = [], []
        for doc in docs:
            drafts, _, own = self._plan(doc)
            texts += [d.text for d in drafts]
            spans += own
        self.embedder.encode_passages_with_spans(texts, spans)

    def ingest_many(self, docs: Sequence[tuple[ParsedDocument, str | None]]) -> list[IngestResult]:
        """Store several parsed documents (``(document, id or None)``): their passages are embedded
        together first (batched across documents by length), then each document is written in its
        own transaction and the indexes are persisted once at the end."""
        self.prefetch(doc for doc, _ in docs)
        with self.corpus.batch():
            return [self.ingest(doc, document_id) for doc, document_id in docs]

    def _already_stored(self, digest: str, document_id: str) -> IngestResult | None:
        """``unchanged`` or ``duplicate`` when this content is stored already, else None."""
        existing = self.corpus.store.document_by_hash(digest)
        if existing == document_id:
            found = self.corpus.store.get_document(document_id)
            if found is not None:
                return IngestResult(document_id, "unchanged", found[0].passage_count)
        elif existing is not None:
            return IngestResult(document_id, "duplicate", 0, duplicate_of=existing)
        return None

    def ingest_paths(self, paths: Iterable[Path], progress: Callable[[str, int, int], None] | None = None
                     ) -> list[IngestResult]:
        """Ingest files and folders (recursively, supported suffixes only), one transaction per file."""
        files = sorted(_expand(paths))
        results = []
        with self.corpus.batch():
            for n, path in enumerate(files):
                if progress:
                    progress(path.name, n, len(files))
                doc = self.parse(path.read_bytes(), path.name)
                results.append(self.ingest(doc, document_id_for(path.stem)))
        if progress:
            progress("", len(files), len(files))
        return results

    def delete(self, document_id: str) -> bool:
        return self.corpus.delete_document(document_id)


def _expand(paths: Iterable[Path]) -> Iterable[Path]:
    for path in paths:
        path = Path(path)
        if path.is_dir():
            yield from (p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"{path} does not exist")
