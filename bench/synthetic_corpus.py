"""A data folder of N synthetic passages shaped like real ones, for the whole-stack scale benchmark.

Passages are five sentences each, drawn from the shared eval sets (XQuAD zh/en, CMRC 2018; split
with :func:`qa.text.sentences.split_sentences`) and recombined; their lexical tokens are the real
:func:`qa.text.tokenize.passage_tokens` of those sentences (computed once per pool sentence and
concatenated: the same tokens as the whole passage's, up to jieba's choices at sentence joints).
Vectors come from :class:`bench.benchmark.ClusteredVectors` in place of the model: a document's
passages and sentences lie near one cluster centre. Documents hold 2-6 passages; a tenth of them
live in a second collection; sources and published dates (a few of each left empty) make every
search filter selectable. The folder records what it holds in ``bench-corpus.json``.

Everything is written through the store protocol (one transaction per document, as ingest writes),
the store's commits not waiting for the disk while building (the folder is synced once at the
end; bulk building is not what the benchmark measures); then both indexes are built from the
store in batches, checkpointed, and the store's change log pruned, so a server opens the folder
without replaying anything.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from qa.index.files import atomic_write_json
from qa.ingest.service import content_hash
from qa.models import Passage, passage_id
from qa.settings import Settings
from qa.store import create_store
from qa.store.base import DEFAULT_COLLECTION, PassageStore, StoredPassage
from qa.store.sqlite import SqlitePassageStore, new_document
from qa.text.sentences import split_sentences
from qa.text.tokenize import passage_tokens

MANIFEST = "bench-corpus.json"
SECOND_COLLECTION = "archive"
EPOCH = date(2000, 1, 1)
DATE_SPAN_DAYS = 26 * 365  # 2000-01-01 … 2025-12-27


@dataclass(frozen=True)
class CorpusSpec:
    """What to build. ``model_id``/``dimension`` must be those of the embedder the server runs
    (the light model by default), or the server refuses the folder as another model's."""

    passages: int
    model_id: str = "use-m-v3"
    dimension: int = 512
    sentences_per_passage: int = 5
    min_passages_per_document: int = 2
    max_passages_per_document: int = 6
    second_collection_share: float = 0.1
    sources: int = 20
    missing_share: float = 0.05  # documents without a source, and (independently) without a date
    clusters: int = 2000
    seed: int = 0


class SentencePool:
    """The sentences of the eval sets' passages, per language, with their passages' titles."""

    def __init__(self, eval_dir: Path, min_chars: int = 8):
        self.sentences: dict[str, list[str]] = {"zh": [], "en": []}
        self.titles: dict[str, list[str]] = {"zh": [], "en": []}
        self._tokens: dict[tuple[str, int], list[str]] = {}
        files = [Path(eval_dir) / name / "passages.jsonl" for name in ("xquad", "cmrc2018")]
        for path in files:
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: pass --eval-dir pointing at the shared eval data")
            with open(path, encoding="utf-8") as fh:
                for p in map(json.loads, filter(str.strip, fh)):
                    lang, text = p["lang"], p["text"].strip()
                    if lang not in self.sentences:
                        continue
                    self.titles[lang].append(p.get("title") or p["id"])
                    self.sentences[lang].extend(text[s:e] for s, e in split_sentences(text) if e - s >= min_chars)

    def tokens(self, lang: str, i: int) -> list[str]:
        key = (lang, i)
        found = self._tokens.get(key)
        if found is None:
            found = self._tokens[key] = passage_tokens(None, self.sentences[lang][i], lang)
        return found


@dataclass
class SyntheticDocument:
    collection: str
    document_id: str
    title: str
    lang: str
    source: str | None
    published: str | None
    text: str
    passages: list[StoredPassage]


class DocumentMaker:
    """Synthetic documents, deterministic for a spec (same seed, same folder)."""

    def __init__(self, spec: CorpusSpec, pool: SentencePool):
        from bench.benchmark import ClusteredVectors  # the 1M-vector index study's generator

        self.spec, self.pool = spec, pool
        self.rng = np.random.default_rng(spec.seed)
        self.vectors = ClusteredVectors(spec.dimension, spec.clusters, spec.seed)
        self.source_names = [f"source-{i:02d}" for i in range(spec.sources)]

    def documents(self, start: int = 0, batch: int = 512) -> Iterator[SyntheticDocument]:
        """Documents until ``spec.passages`` passages are made; vectors are drawn ``batch`` documents at a time."""
        made, number = 0, start
        while made < self.spec.passages:
            plans = []
            while len(plans) < batch and made < self.spec.passages:
                n = int(self.rng.integers(self.spec.min_passages_per_document, self.spec.max_passages_per_document + 1))
                n = min(n, self.spec.passages - made)
                plans.append(self._plan(number, n))
                made += n
                number += 1
            yield from self._with_vectors(plans)

    def _plan(self, number: int, n: int) -> dict:
        spec, rng = self.spec, self.rng
        lang = "zh" if rng.random() < 0.5 else "en"
        pool = self.pool.sentences[lang]
        picks = rng.integers(0, len(pool), (n, spec.sentences_per_passage))
        missing_source, missing_date = rng.random(2) < spec.missing_share
        return {
            "collection": SECOND_COLLECTION if rng.random() < spec.second_collection_share else DEFAULT_COLLECTION,
            "document_id": f"syn-{number:07d}", "lang": lang, "picks": picks,
            "title": self.pool.titles[lang][int(rng.integers(len(self.pool.titles[lang])))],
            "source": None if missing_source else self.source_names[int(rng.integers(spec.sources))],
            "published": None if missing_date else (EPOCH + timedelta(days=int(rng.integers(DATE_SPAN_DAYS)))).isoformat(),
            "cluster": int(rng.integers(spec.clusters)),
        }

    def _with_vectors(self, plans: list[dict]) -> Iterator[SyntheticDocument]:
        per_passage = np.concatenate([[p["cluster"]] * len(p["picks"]) for p in plans])
        passage_vectors = self.vectors.sample(len(per_passage), self.rng, per_passage)
        sentence_vectors = self.vectors.sample(len(per_passage) * self.spec.sentences_per_passage, self.rng,
                                               np.repeat(per_passage, self.spec.sentences_per_passage))
        row = 0
        for plan in plans:
            n = len(plan["picks"])
            yield self._document(plan, passage_vectors[row:row + n],
                                 sentence_vectors[row * self.spec.sentences_per_passage:
                                                  (row + n) * self.spec.sentences_per_passage])
            row += n

    def _document(self, plan: dict, vectors: np.ndarray, sentence_vectors: np.ndarray) -> SyntheticDocument:
        lang, doc_id, k = plan["lang"], plan["document_id"], self.spec.sentences_per_passage
        joint = "" if lang == "zh" else " "
        parts: list[str] = []
        offset = 0
        laid_out = []  # (start, end, sentence spans, tokens) per passage
        for picks in plan["picks"]:
            if parts:
                parts.append("\n\n")
                offset += 2
            start, spans, tokens = offset, [], []
            for j, pick in enumerate(picks):
                sentence = self.pool.sentences[lang][int(pick)]
                if j:
                    parts.append(joint)
                    offset += len(joint)
                parts.append(sentence)
                spans.append((offset, offset + len(sentence)))
                offset += len(sentence)
                tokens.extend(self.pool.tokens(lang, int(pick)))
            laid_out.append((start, offset, spans, tokens))
        text = "".join(parts)
        stored = [
            StoredPassage(
                passage=Passage(id=passage_id(doc_id, i + 1, 0), document_id=doc_id, section=None, paragraph=i + 1,
                                part=0, lang=lang, start=start, end=end, text=text[start:end], title=plan["title"],
                                source=plan["source"], published=plan["published"], collection=plan["collection"]),
                tokens=tokens, vector=vectors[i], sentences=tuple(spans),
                sentence_vectors=sentence_vectors[i * k:(i + 1) * k],
            )
            for i, (start, end, spans, tokens) in enumerate(laid_out)
        ]
        return SyntheticDocument(plan["collection"], doc_id, plan["title"], lang, plan["source"], plan["published"],
                                 text, stored)


class _BulkSqliteStore(SqlitePassageStore):
    """The SQLite store whose commits do not wait for the disk (``synchronous=OFF``): for building a
    benchmark folder only, synced once when the build ends."""

    def _conn(self):
        conn = super()._conn()
        if not getattr(self._local, "bulk", False):
            conn.execute("PRAGMA synchronous=OFF")
            self._local.bulk = True
        return conn

    def finish(self) -> None:
        conn = self._conn()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


@dataclass
class BuildReport:
    folder: str
    spec: dict
    documents: int = 0
    passages: int = 0
    collections: dict[str, dict[str, int]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    published_range: list[str] = field(default_factory=list)
    sample_documents: dict[str, int] = field(default_factory=dict)  # some default-collection ids → passages
    facets: list[list] = field(default_factory=list)  # [collection, lang, source, year, passages]
    seconds: dict[str, float] = field(default_factory=dict)


def folder_settings(folder: Path, **extra) -> Settings:
    return Settings(data_dir=Path(folder), **extra)


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def build_data_folder(folder: Path, spec: CorpusSpec, eval_dir: Path, *, indexes: bool = True,
                      progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Build ``folder`` (missing or empty) as the module docstring says and return its manifest;
    ``progress(phase, done, total)`` follows the passages written and indexed. ``indexes=False``
    stops after the store (:func:`index_data_folder` builds them later, e.g. with other index code)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty: give a new folder (or the folder of an earlier build to reuse it)")
    folder.mkdir(parents=True, exist_ok=True)
    report = BuildReport(folder=str(folder), spec=asdict(spec))
    tell = progress or (lambda *_: None)
    t0 = time.perf_counter()
    pool = SentencePool(eval_dir)
    store = _BulkSqliteStore(folder_settings(folder).data_dir / "store.sqlite")
    try:
        store.set_meta("model_id", spec.model_id)
        store.set_meta("dimension", str(spec.dimension))
        store.ensure_collection(DEFAULT_COLLECTION, "The default knowledge base.")
        store.ensure_collection(SECOND_COLLECTION, "Synthetic second knowledge base.")
        sources, dates, counts, facets = set(), [], {}, {}
        rng = np.random.default_rng(spec.seed + 7)
        for doc in DocumentMaker(spec, pool).documents():
            document = new_document(doc.document_id, doc.title, doc.lang, doc.source, doc.published,
                                    content_hash(doc.title, doc.text), {}, doc.collection)
            store.replace_document(doc.collection, document, doc.text, doc.passages)
            c = counts.setdefault(doc.collection, {"documents": 0, "passages": 0})
            c["documents"] += 1
            c["passages"] += len(doc.passages)
            report.documents += 1
            report.passages += len(doc.passages)
            if doc.source:
                sources.add(doc.source)
            if doc.published:
                dates.append(doc.published)
            facet = (doc.collection, doc.lang, doc.source or "", (doc.published or "")[:4])
            facets[facet] = facets.get(facet, 0) + len(doc.passages)
            if doc.collection == DEFAULT_COLLECTION and len(report.sample_documents) < 50 and rng.random() < 0.05:
                report.sample_documents[doc.document_id] = len(doc.passages)
            if report.documents % 200 == 0:
                tell("store", report.passages, spec.passages)
        tell("store", report.passages, spec.passages)
        store.finish()
    finally:
        store.close()
    _sync_folder(folder)
    report.seconds["store"] = round(time.perf_counter() - t0, 2)
    report.collections = counts
    report.sources = sorted(sources)
    report.published_range = [min(dates), max(dates)] if dates else []
    report.facets = [[*k, v] for k, v in sorted(facets.items())]
    manifest = {**asdict(report), "indexed": False}
    atomic_write_json(folder / MANIFEST, manifest)
    return index_data_folder(folder, progress=progress) if indexes else manifest


def index_data_folder(folder: Path, *, progress: Callable[[str, int, int], None] | None = None) -> dict:
    """(Re)build both indexes of a built folder from its store, checkpointed; returns the manifest,
    which records the seconds."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder} holds no {MANIFEST}: build it with build_data_folder first")
    settings = folder_settings(folder)
    store = create_store(settings)
    try:
        seconds = build_indexes(store, settings, CorpusSpec(**manifest["spec"]), progress=progress)
    finally:
        store.close()
    _sync_folder(folder)
    manifest["seconds"] = {"store": manifest["seconds"]["store"], **seconds}
    manifest["seconds"]["total"] = round(sum(manifest["seconds"].values()), 2)
    manifest["indexed"] = True
    atomic_write_json(folder / MANIFEST, manifest)
    return manifest


def build_indexes(store: PassageStore, settings: Settings, spec: CorpusSpec, *, batch: int = 10_000,
                  progress: Callable[[str, int, int], None] | None = None) -> dict[str, float]:
    """Both configured indexes from the store's entries (one pass, in batches), checkpointed; the
    store then forgets the changes they hold. Returns seconds per step."""
    from qa.index import create_dense_index, create_lexical_index

    seconds = {"dense_add": 0.0, "lexical_add": 0.0}
    seq = store.seq
    indexes = {"dense": create_dense_index(settings, spec.model_id, spec.dimension),
               "lexical": create_lexical_index(settings)}
    try:
        for index in indexes.values():
            index.reset()
        done = 0
        for entries in store.iter_entries(batch=batch):
            for name, index in indexes.items():
                t0 = time.perf_counter()
                index.add(entries)
                seconds[f"{name}_add"] += time.perf_counter() - t0
            done += len(entries)
            if progress:
                progress("indexes", done, spec.passages)
        for name, index in indexes.items():
            index.mark_applied(seq)
            t0 = time.perf_counter()
            settle = getattr(index, "settle", None)  # a backend with background upkeep (HNSW builds) ends it first
            if settle is not None:
                settle()
            seconds[f"{name}_settle"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            index.checkpoint()
            seconds[f"{name}_checkpoint"] = time.perf_counter() - t0
        store.prune_changes(seq)
    finally:
        for index in indexes.values():
            index.close()
    return {k: round(v, 2) for k, v in seconds.items()}


def _sync_folder(folder: Path) -> None:
    """fsync every file of the folder (the build wrote without waiting for the disk)."""
    for root, _, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def disk_usage(folder: Path) -> dict[str, int]:
    """Bytes on disk (allocated blocks, as ``du`` counts them) of the folder and of each top-level entry."""
    out: dict[str, int] = {}
    for entry in sorted(Path(folder).iterdir()):
        paths = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        out[entry.name] = sum(p.stat().st_blocks * 512 for p in paths)
    out["total"] = sum(out.values())
    return out


def expected_passages(manifest: dict, flt: dict) -> int:
    """How many passages of the built folder a search filter (the HTTP body's fields; ``published_*``
    as whole years, ``document_ids`` among ``sample_documents``) admits, from the manifest's counts."""
    if "document_ids" in flt:
        if set(flt) - {"document_ids"}:
            raise ValueError("expected_passages counts document_ids alone")
        return sum(manifest["sample_documents"].get(d, 0) for d in flt["document_ids"])
    low, high = flt.get("published_from"), flt.get("published_to")
    if any(v is not None and len(v) != 4 for v in (low, high)):
        raise ValueError("expected_passages counts whole years only (YYYY)")
    total = 0
    for collection, lang, source, year, passages in manifest["facets"]:
        if collection != flt.get("collection", DEFAULT_COLLECTION):
            continue
        if flt.get("lang") not in (None, lang) or ("sources" in flt and source not in flt["sources"]):
            continue
        if (low or high) and not (year and (low or "0000") <= year <= (high or "9999")):
            continue
        total += passages
    return total
