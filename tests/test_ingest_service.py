"""Ingestion: the duplicate policy, document ids, folders, deletes, and passages that cite exactly.

Fast unit tests with the real USE-m model, the real parsers and the real seed report.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from embeddings.use_m import UseMEmbedder
from qa.ingest.parsers import DocumentDecodeError, EmptyDocumentError
from qa.ingest.service import InvalidDocumentIdError, content_hash, document_id_for
from qa.documents import DocumentNotFoundError
from qa.retrieval.types import SearchRequest
from qa.store.base import DEFAULT_COLLECTION, SearchFilter
from qa.settings import Settings
from qa.text.tokenize import tokenize
from qa.wiring import Services, build_services

from conftest import SEEDS_DIR

FERRY = "Ferry timetable\n\nThe first ferry to Hoy leaves Stromness at 07:00 on weekdays.\n\nOn Sundays the first ferry leaves at 09:30.\n"
FERRY_CHANGED = FERRY.replace("09:30", "10:15").replace("On Sundays", "On Sundays and holidays")


@pytest.fixture(scope="module")
def use_m() -> UseMEmbedder:
    return UseMEmbedder()


@pytest.fixture
def services(tmp_path: Path, use_m) -> Services:
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", embedder="use-m", seeds_dir=None,
                        cache_dir=tmp_path / "cache")
    built = build_services(settings, embedder=use_m)
    yield built
    built.close()


def ingest_text(services: Services, text: str, doc_id: str | None = None, filename: str | None = None):
    return services.documents.add(services.documents.parse(text, filename), doc_id)


def rowids_of(services: Services, doc_id: str) -> set[int]:
    return {e.rowid for batch in services.corpus.store.iter_entries(DEFAULT_COLLECTION) for e in batch
            if e.document_id == doc_id}


def vector_ids(services: Services) -> set[int]:
    dense = services.corpus.dense
    return {h.rowid for h in dense.search(np.ones(dense.dimension, np.float32) / np.sqrt(dense.dimension), 10_000,
                                          SearchFilter())}


def lexical_ids(services: Services, query: str, lang: str = "en") -> set[int]:
    return {h.rowid for h in services.corpus.lexical.search(tokenize(query), lang, 100, SearchFilter())}


def test_duplicate_policy(services: Services):
    added = ingest_text(services, FERRY, "ferry")
    assert (added.status, added.document_id, added.duplicate_of) == ("added", "ferry", None)
    assert added.passages == 2
    first_rows = rowids_of(services, "ferry")

    unchanged = ingest_text(services, FERRY, "ferry")
    assert (unchanged.status, unchanged.passages) == ("unchanged", 2)
    assert rowids_of(services, "ferry") == first_rows  # nothing rewritten
    generation = services.corpus.store.seq

    duplicate = ingest_text(services, FERRY, "ferry-copy")
    assert (duplicate.status, duplicate.passages, duplicate.duplicate_of) == ("duplicate", 0, "ferry")
    assert services.corpus.store.get_document(DEFAULT_COLLECTION, "ferry-copy") is None
    assert services.corpus.store.seq == generation

    replaced = ingest_text(services, FERRY_CHANGED, "ferry")
    assert (replaced.status, replaced.passages) == ("replaced", 2)
    new_rows = rowids_of(services, "ferry")
    assert not new_rows & first_rows
    assert vector_ids(services) == new_rows  # the old vectors are gone, the new ones are in
    assert lexical_ids(services, "ferry") == new_rows
    assert lexical_ids(services, "holidays") and lexical_ids(services, "holidays") <= new_rows
    assert services.corpus.store.get_document(DEFAULT_COLLECTION, "ferry")[1] == FERRY_CHANGED

    # the old content is free again once replaced: stored under another id it is new
    again = ingest_text(services, FERRY, "ferry-old")
    assert again.status == "added"


def test_content_means_title_and_text(services: Services):
    ingest_text(services, FERRY, "a")
    retitled = services.documents.parse(FERRY, title="Orkney ferries")
    result = services.documents.add(retitled, "b")
    assert result.status == "added", "a different title is different content"
    assert services.corpus.store.document_hash(DEFAULT_COLLECTION, "b") == content_hash("Orkney ferries", retitled.text)


def test_document_ids(services: Services):
    auto = ingest_text(services, FERRY)
    assert auto.document_id == "doc-" + content_hash("Ferry timetable", FERRY)[:16]
    assert ingest_text(services, FERRY).status == "unchanged"
    assert document_id_for("My Notes (2024)") == "My-Notes-2024"
    assert document_id_for("report_v1.2-final") == "report_v1.2-final"
    assert len(document_id_for("x" * 500)) == 128
    with pytest.raises(InvalidDocumentIdError):
        document_id_for("///")
    # Chinese names get a readable id, and different names never share one
    names = ["上海报告", "上海2024", "北京2024", "报告", "宝高", "報告"]
    ids = [document_id_for(n) for n in names]
    assert len(set(ids)) == len(names), ids
    assert all(re.fullmatch(r"[A-Za-z0-9_.\-]+", i) for i in ids), ids
    assert document_id_for("上海报告") == document_id_for("上海报告")  # stable: re-ingesting finds the same id
    assert document_id_for("上海报告").startswith("shang-hai-bao-gao")


def test_ingest_folder(services: Services, tmp_path: Path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "ferry.txt").write_text(FERRY, encoding="utf-8")
    (folder / "sub" / "bees.md").write_text("# Bees\n\nBees make honey from nectar.\n", encoding="utf-8")
    (folder / "sub" / "page.HTML").write_text("<h1>Glass</h1><p>Glass is made from sand.</p>", encoding="utf-8")
    (folder / "上海报告.txt").write_text("上海报告\n\n上海正在建设具有全球影响力的科技创新中心。\n", encoding="utf-8")
    data = Path(__file__).parent / "data"
    (folder / "memo.pdf").write_bytes((data / "fake-memo.pdf").read_bytes())
    (folder / "sub" / "tables.DOCX").write_bytes((data / "docx-tables.docx").read_bytes())
    (folder / "data.json").write_text("{}", encoding="utf-8")  # not a document format: skipped, said why
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4")
    (folder / "empty.txt").write_text("  \n", encoding="utf-8")
    report = services.documents.ingest_paths([folder])
    by_id = {r.document_id: r.status for _, r in report.results}
    assert by_id == {"ferry": "added", "bees": "added", "page": "added", document_id_for("上海报告"): "added",
                     "memo": "added", "tables": "added"}
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(skipped) == {"data.json", "broken.pdf", "empty.txt"}, skipped  # each with its reason
    assert "no text" in skipped["empty.txt"] and "json" in skipped["data.json"]
    assert services.corpus.store.count_documents() == 6
    assert report.passages_embedded > 0
    again = services.documents.ingest_paths([folder])
    assert {r.status for _, r in again.results} == {"unchanged"} and again.passages_embedded == 0
    with pytest.raises(FileNotFoundError):
        services.documents.ingest_paths([tmp_path / "missing"])


def test_bad_files_are_refused_before_anything_is_written(services: Services):
    with pytest.raises(DocumentDecodeError):
        services.documents.parse(b"\xfa\xfb\xfc", "x.txt")
    with pytest.raises(EmptyDocumentError):
        services.documents.parse(b"  \n ", "x.txt")
    assert services.corpus.store.count_documents() == 0 and services.corpus.store.seq == 0


def test_delete_removes_from_store_and_both_indexes(services: Services):
    ingest_text(services, FERRY, "ferry")
    ingest_text(services, "Bees\n\nBees make honey from the nectar of heather.\n", "bees")
    ferry_rows = rowids_of(services, "ferry")
    assert ferry_rows <= vector_ids(services) and ferry_rows <= lexical_ids(services, "ferry")

    services.documents.delete("ferry")
    with pytest.raises(DocumentNotFoundError):
        services.documents.delete("ferry")
    assert services.corpus.store.get_document(DEFAULT_COLLECTION, "ferry") is None
    assert not ferry_rows & vector_ids(services)
    assert lexical_ids(services, "ferry") == set()
    hits = services.search.search(SearchRequest(query="When does the first ferry to Hoy leave?", top_k=5)).hits
    assert hits and all(h.passage.document_id == "bees" for h in hits)
    assert services.corpus.dense.count() == services.corpus.lexical.count() == services.corpus.store.count_passages()


def test_seed_report_passages_cite_the_text_exactly(services: Services):
    (path,) = [p for p in SEEDS_DIR.iterdir() if p.suffix == ".txt"]
    ((_, result),) = services.documents.ingest_paths([path]).results
    assert result.status == "added"
    doc, text = services.documents.get(result.document_id)
    assert text == path.read_text(encoding="utf-8")
    passages = services.corpus.store.passages_of_document(DEFAULT_COLLECTION, doc.id)
    assert len(passages) == doc.passage_count == result.passages
    previous_end = 0
    for p in passages:
        assert text[p.start:p.end] == p.text and p.text == p.text.strip()
        assert p.start >= previous_end, "passages overlap"
        previous_end = p.end
        assert p.lang == "zh" and p.title == doc.title
        assert (p.source, p.published) == (doc.source, doc.published)
    # no sentence of the report is lost: every line that ends a sentence lies inside a passage
    for m in re.finditer(r"[^\n]+", text):
        if m.group().rstrip().endswith("。"):
            assert any(p.start <= m.start() and m.end() <= p.end for p in passages), m.group()[:30]
    # ... and the title and source line are not passages
    meta = next(m for m in re.finditer(r"[^\n]+", text) if doc.source in m.group())
    assert not any(p.start < meta.end() and meta.start() < p.end for p in passages)
    assert not any(doc.title in p.text for p in passages)
    # each passage's section is a heading line above it, and no heading is itself a passage
    lines = {m.group(): m.start() for m in re.finditer(r"[^\n]+", text)}
    sections = {p.section for p in passages}
    assert len(sections) > 1
    for p in passages:
        assert p.section in lines and lines[p.section] < p.start, (p.id, p.section)
    for section in sections:
        assert not any(q.start <= lines[section] < q.end for q in passages), section

def test_reingesting_the_seed_report_is_unchanged_and_a_search_finds_its_paragraph(services: Services):
    services.documents.ingest_paths([SEEDS_DIR])
    assert {r.status for _, r in services.documents.ingest_paths([SEEDS_DIR]).results} == {"unchanged"}
    result = services.search.search(SearchRequest(query="上海创智学院有多少研究生和导师？", top_k=3))
    assert any("190余名研究生" in h.passage.text for h in result.hits)
    for h in result.hits:
        assert h.passage.start <= h.evidence.start < h.evidence.end <= h.passage.end


class _TitleRecorder(UseMEmbedder):
    """The real USE-m model, recording the (text, title) pairs it is asked to encode as passages."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[str, str | None]] = []

    def encode_passages(self, texts, titles=None):
        self.seen += list(zip(texts, titles if titles is not None else [None] * len(texts)))
        return super().encode_passages(texts, titles)


def test_sentences_are_embedded_with_their_documents_title_even_alone(tmp_path: Path):
    recorder = _TitleRecorder()
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", embedder="use-m", seeds_dir=None,
                        cache_dir=tmp_path / "cache")
    services = build_services(settings, embedder=recorder)
    try:
        text = "Ferry timetable\n\nThe first ferry leaves at 07:00. It returns at 18:00.\n\nOne sentence only.\n"
        result = ingest_text(services, text)
        titled = {t for t, title in recorder.seen if title == "Ferry timetable"}
        untitled = {t for t, title in recorder.seen if title is None}
        assert {"The first ferry leaves at 07:00.", "It returns at 18:00.", "One sentence only."} <= titled
        assert {"The first ferry leaves at 07:00. It returns at 18:00.", "One sentence only."} <= untitled
        passages = services.corpus.store.passages_by_rowid(sorted(rowids_of(services, result.document_id)))
        rowid = next(r for r, p in passages.items() if p.text == "One sentence only.")
        spans, vectors = services.corpus.store.sentences_of([rowid])[rowid]
        assert len(spans) == 1 and vectors.shape[0] == 1
    finally:
        services.close()
