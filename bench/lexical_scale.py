"""Micro-benchmark of the tantivy lexical index at scale: ``python -m bench.lexical_scale``.

Builds an index of N synthetic passages shaped like real ones (five sentences of the XQuAD passages,
tokenized with ``qa``'s tokenizer and recombined at random, in both languages; three passages per
document, 50 sources, dates over ten years), then measures on it, without the HTTP server or the model:

* build: bulk add in batches of 4,096 (what a rebuild from the store does);
* write: add one 3-paragraph document, remove it, replace one (remove + add), median and p95 ms;
* search: p50/p95 ms of the XQuAD questions (100 candidates, as the search pipeline asks), alone and
  with each filter, wall clock and CPU time of the searching thread (on a machine other processes keep
  busy the CPU time is the figure to compare), and of ``term_stats``;
* search while another thread writes without pause;
* disk bytes per passage.

``--sizes 10000,100000,1000000`` picks the corpus sizes; ``--folder`` keeps the indexes (default: a
temporary folder, removed afterwards) and a later run with the same folder measures them without
building them again. Prints one table; ``--json`` prints the figures as JSON too.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from qa.index.tantivy_lexical import TantivyLexicalIndex
from qa.store.base import IndexEntry, SearchFilter

XQUAD = Path("/work/shared/eval/xquad")
SENTENCES_PER_PASSAGE = 5
PASSAGES_PER_DOCUMENT = 3
BATCH = 4096
CANDIDATES = 100
_NO_VECTOR = np.zeros(1, dtype=np.float32)


def real_sentences(folder: Path = XQUAD) -> dict[str, list[list[str]]]:
    """Tokens of every sentence of the XQuAD passages, by language."""
    from qa.text.sentences import split_sentences
    from qa.text.tokenize import passage_tokens

    out: dict[str, list[list[str]]] = {"en": [], "zh": []}
    for line in (folder / "passages.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        for a, b in split_sentences(row["text"]):
            tokens = passage_tokens(None, row["text"][a:b], row["lang"])
            if tokens:
                out[row["lang"]].append(tokens)
    return out


def real_questions(folder: Path = XQUAD, limit: int = 400) -> list[tuple[str, list[str]]]:
    from qa.text.tokenize import tokenize

    rows = [json.loads(line) for line in (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines()]
    random.Random(0).shuffle(rows)
    return [(row["lang"], tokenize(row["question"])) for row in rows[:limit]]


class SyntheticCorpus:
    """Passages of recombined real sentences; passage ``i`` is the same for every run."""

    def __init__(self, sentences: dict[str, list[list[str]]]):
        self.sentences = sentences

    def entries(self, first: int, last: int, collection: str = "default") -> list[IndexEntry]:
        """Passages ``first`` … ``last - 1`` (odd rowids Chinese, even English)."""
        rng = np.random.default_rng(first)
        n = last - first
        picks = {lang: rng.integers(0, len(s), size=(n, SENTENCES_PER_PASSAGE)) for lang, s in self.sentences.items()}
        days, sources = rng.integers(0, 3650, size=n), rng.integers(0, 50, size=n)
        out = []
        for i, rowid in enumerate(range(first, last)):
            lang = "zh" if rowid % 2 else "en"
            sentences = self.sentences[lang]
            tokens = tuple(t for s in picks[lang][i] for t in sentences[s])
            day = int(days[i])
            out.append(IndexEntry(
                rowid=rowid, collection=collection, document_id=f"doc{rowid // PASSAGES_PER_DOCUMENT}", lang=lang,
                source=f"source{sources[i]}", published=f"{2015 + day // 365}-{day % 365 // 31 + 1:02d}-{day % 31 + 1:02d}",
                tokens=tokens, vector=_NO_VECTOR))
        return out


def _ms(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples) * 1000, samples[min(len(samples) - 1, int(len(samples) * 0.95))] * 1000


def _search_while_writing(index: TantivyLexicalIndex, corpus: SyntheticCorpus,
                          questions: list[tuple[str, list[str]]], first_rowid: int) -> tuple[float, float]:
    """Search latency while another thread adds and removes 3-paragraph documents without pause."""
    done = threading.Event()

    def write() -> None:
        rowid = first_rowid
        while not done.is_set():
            doc = corpus.entries(rowid, rowid + PASSAGES_PER_DOCUMENT)
            index.add(doc)
            index.remove("default", [e.rowid for e in doc])
            rowid += PASSAGES_PER_DOCUMENT

    writer = threading.Thread(target=write)
    writer.start()
    samples = []
    try:
        for lang, tokens in questions:
            t = time.perf_counter()
            index.search(tokens, lang, CANDIDATES, SearchFilter())
            samples.append(time.perf_counter() - t)
    finally:
        done.set()
        writer.join()
    return _ms(samples)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def measure(size: int, folder: Path, corpus: SyntheticCorpus, questions: list[tuple[str, list[str]]],
            writes: int = 15) -> dict:
    start = time.perf_counter()
    index = TantivyLexicalIndex(folder)
    figures: dict = {"passages": size}
    if index.count() == size:  # --folder kept from an earlier run: measure it as it is
        figures["open_s"] = round(time.perf_counter() - start, 2)
    else:
        index.reset()
        for first in range(0, size, BATCH):
            index.add(corpus.entries(first, min(size, first + BATCH)))
            print(f"\r  building {min(size, first + BATCH):,}/{size:,}", end="", flush=True)
        build_s = time.perf_counter() - start
        print()
        figures.update(build_s=round(build_s, 1), build_per_s=round(size / build_s))

    adds, removes, replaces = [], [], []
    next_rowid = size + 10 * PASSAGES_PER_DOCUMENT  # new documents start after the corpus
    for _ in range(writes):
        doc = corpus.entries(next_rowid, next_rowid + PASSAGES_PER_DOCUMENT)
        doc = [IndexEntry(e.rowid, e.collection, doc[0].document_id, doc[0].lang, e.source, e.published, e.tokens,
                          e.vector) for e in doc]  # one document: one language
        t = time.perf_counter()
        index.add(doc)
        adds.append(time.perf_counter() - t)
        replacement = [IndexEntry(e.rowid + PASSAGES_PER_DOCUMENT, e.collection, e.document_id, e.lang, e.source,
                                  e.published, e.tokens[::-1], e.vector) for e in doc]
        t = time.perf_counter()
        index.remove("default", [e.rowid for e in doc])
        index.add(replacement)
        replaces.append(time.perf_counter() - t)
        t = time.perf_counter()
        index.remove("default", [e.rowid for e in replacement])
        removes.append(time.perf_counter() - t)
        next_rowid += 2 * PASSAGES_PER_DOCUMENT
    figures["add_doc_ms"] = _ms(adds)
    figures["remove_doc_ms"] = _ms(removes)
    figures["replace_doc_ms"] = _ms(replaces)

    some_docs = tuple(f"doc{d}" for d in random.Random(1).sample(range(size // PASSAGES_PER_DOCUMENT), 20))
    filters = {
        "none": SearchFilter(),
        "document_ids(20)": SearchFilter(document_ids=some_docs),
        "sources(2 of 50)": SearchFilter(sources=("source1", "source2")),
        "published(1 year)": SearchFilter(published_from="2020", published_to="2020"),
        "all three": SearchFilter(document_ids=some_docs, sources=("source1", "source2"), published_from="2016"),
    }
    for name, flt in filters.items():
        for lang, tokens in questions[:20]:  # warm up (first open, first published-range look-up)
            index.search(tokens, lang, CANDIDATES, flt)
        samples, cpu = [], []
        for lang, tokens in questions:
            t, c = time.perf_counter(), time.thread_time()  # tantivy searches in the calling thread
            index.search(tokens, lang, CANDIDATES, flt)
            samples.append(time.perf_counter() - t)
            cpu.append(time.thread_time() - c)
        figures[f"search_ms[{name}]"] = _ms(samples)
        figures[f"search_cpu_ms[{name}]"] = _ms(cpu)
    samples = []
    for lang, tokens in questions:
        t = time.perf_counter()
        index.term_stats("default", lang, tokens)
        samples.append(time.perf_counter() - t)
    figures["term_stats_ms"] = _ms(samples)
    figures["search_ms[while writing]"] = _search_while_writing(index, corpus, questions, size + 10**6)
    index.mark_applied(1)
    index.checkpoint()
    index.close()
    figures["disk_bytes_per_passage"] = round(_folder_bytes(folder) / size)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="corpus sizes, comma-separated")
    parser.add_argument("--folder", type=Path, help="where to build the indexes (kept); default: a temporary folder")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",")]
    corpus = SyntheticCorpus(real_sentences())
    questions = real_questions()
    base = args.folder or Path(tempfile.mkdtemp(prefix="qa-lexical-bench-"))
    results = []
    try:
        for size in sizes:
            print(f"{size:,} passages")
            folder = base / f"n{size}"
            results.append(measure(size, folder, corpus, questions))
    finally:
        if args.folder is None:
            shutil.rmtree(base, ignore_errors=True)
    keys = list(dict.fromkeys(k for r in results for k in r if k != "passages"))
    print()
    print("| passages | " + " | ".join(f"{r['passages']:,}" for r in results) + " |")
    print("|---|" + "---|" * len(results))
    for key in keys:
        cells = [f"{r[key][0]:.1f} / {r[key][1]:.1f}" if isinstance(r.get(key), tuple) else f"{r.get(key, '')}"
                 for r in results]
        pair = any(isinstance(r.get(key), tuple) for r in results)
        print(f"| {key}{' (p50 / p95)' if pair else ''} | " + " | ".join(cells) + " |")
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
