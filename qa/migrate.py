"""``qa migrate``: copy a knowledge base between backends without re-embedding, then verify it.

The copy goes store to store through the :class:`~qa.store.base.PassageStore` seam, so it works both
ways (a data folder into PostgreSQL, or PostgreSQL into a data folder): every collection, document,
text, passage, token list, passage vector and sentence vector is read from the source and written to
the target one document per transaction, as an ingest would write it, but with the stored vectors.
The target's indexes then follow its change sequence as after any write (the embedded corpus
replays it on open; the outbox worker applies it to Milvus). Documents the target already holds
with the same content hash are skipped, so an interrupted migration resumes where it stopped.

API keys go along (:func:`copy_keys`: their salted hashes, scopes and states), so the same keys work
after the move.

Verification: the same counts of documents and passages per collection, and a sample of questions
(the first sentence of passages spread over the corpus) answered alike by both backends: the same
top passages, each scored within 0.01 (so in the same order but for near ties), and the same verdict
(the embedded lexical index, tantivy, rounds passage lengths above 40 tokens in BM25; the Milvus leg
scores exact lengths).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from qa.keys import KeyStore
from qa.models import Document
from qa.store.base import IndexEntry, PassageStore, StoredPassage


@dataclass
class MigrationReport:
    documents: int = 0
    passages: int = 0
    skipped: int = 0  # already in the target with the same content
    counts: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # collection → source/target docs, passages


def _documents(source: PassageStore, collection: str, batch: int) -> Iterator[list[IndexEntry]]:
    """The entries of a collection grouped by document (a document's passages are written in one
    transaction, so their rowids are consecutive)."""
    current: list[IndexEntry] = []
    for entries in source.iter_entries(collection, batch=batch):
        for entry in entries:
            if current and entry.document_id != current[0].document_id:
                yield current
                current = []
            current.append(entry)
    if current:
        yield current


def copy_store(source: PassageStore, target: PassageStore, batch: int = 2048,
               progress: Callable[[int], None] | None = None) -> MigrationReport:
    """Copy every collection of ``source`` into ``target`` (see the module docstring)."""
    report = MigrationReport()
    for key in ("model_id", "dimension"):
        value = source.get_meta(key)
        if value is not None and target.get_meta(key) is None:
            target.set_meta(key, value)
    for collection in source.list_collections():
        target.ensure_collection(collection.name, collection.description)
        for entries in _documents(source, collection.name, batch):
            document_id = entries[0].document_id
            found = source.get_document(collection.name, document_id)
            if found is None:  # deleted meanwhile
                continue
            document, text = found
            if target.document_hash(collection.name, document_id) == document.content_hash:
                report.skipped += 1
                continue
            rowids = [e.rowid for e in entries]
            passages = source.passages_by_rowid(rowids)
            sentences = source.sentences_of(rowids)
            stored = []
            for entry in entries:
                spans, vectors = sentences.get(entry.rowid, ([], None))
                stored.append(StoredPassage(passages[entry.rowid], list(entry.tokens), entry.vector,
                                            tuple(spans), vectors))
            target.replace_document(collection.name, _as_new(document), text, stored)
            report.documents += 1
            report.passages += len(stored)
            if progress:
                progress(len(stored))
    for collection in source.list_collections():
        name = collection.name
        report.counts[name] = (source.count_documents(name), target.count_documents(name),
                               source.count_passages(name), target.count_passages(name))
    return report


def _as_new(document: Document) -> Document:
    return Document(id=document.id, title=document.title, lang=document.lang, source=document.source,
                    published=document.published, content_hash=document.content_hash, passage_count=0,
                    created_at=document.created_at, metadata=dict(document.metadata),
                    collection=document.collection)


def sample_questions(store: PassageStore, count: int) -> list[tuple[str, str]]:
    """(collection, question) pairs: the first sentence of passages spread evenly over the corpus."""
    entries = [e for batch in store.iter_entries(batch=4096) for e in batch]
    if not entries:
        return []
    step = max(1, len(entries) // count)
    picked = entries[::step][:count]
    passages = store.passages_by_rowid([e.rowid for e in picked])
    sentences = store.sentences_of([e.rowid for e in picked])
    questions = []
    for entry in picked:
        passage = passages[entry.rowid]
        spans = sentences.get(entry.rowid, ([], None))[0]
        text = passage.text
        if spans:
            start, end = spans[0]
            text = passage.text[start - passage.start:end - passage.start]
        questions.append((entry.collection, text.strip()[:300]))
    return questions


SCORE_TOLERANCE = 0.01  # tantivy rounds passage lengths above 40 tokens in BM25; the Milvus leg does not


def compare_answers(first, second, questions: list[tuple[str, str]], top_k: int = 5) -> list[str]:
    """Differences between two search services' answers to the same questions (empty: the same verdict,
    the same top passages each scored within :data:`SCORE_TOLERANCE`, so in the same order but for
    near ties)."""
    from qa.retrieval.types import SearchRequest

    differences = []
    for collection, question in questions:
        if not question:
            continue
        a, b = (service.search(SearchRequest(query=question, top_k=top_k + 5, collection=collection))
                for service in (first, second))
        scores_a, scores_b = ({h.passage.id: h.score for h in r.hits} for r in (a, b))
        agree = a.answerable == b.answerable and all(
            abs(scores.get(h.passage.id, -1.0) - h.score) <= SCORE_TOLERANCE
            for mine, scores in ((a, scores_b), (b, scores_a)) for h in mine.hits[:top_k])
        if not agree:
            differences.append(f"{question[:60]!r} in {collection}: "
                               f"{[(h.passage.id, round(h.score, 4)) for h in a.hits[:top_k]]} (answerable {a.answerable})"
                               f" vs {[(h.passage.id, round(h.score, 4)) for h in b.hits[:top_k]]} (answerable {b.answerable})")
    return differences


def copy_keys(source: KeyStore, target: KeyStore) -> int:
    """Every API key of ``source`` that ``target`` lacks (by id), as stored; how many were copied."""
    missing = [key for key in source.list() if target.get(key.id) is None]
    for key in missing:
        target.add(key)
    return len(missing)
