"""``python -m bench.ingest_speed``: does folder ingest run at the model's speed?

Writes ``--files`` text files (XQuAD paragraphs, Chinese and English alternating, one paragraph per
file with a title line) into a temporary folder, then, in one run and in alternating order:

* **raw**: the configured embedder alone, on exactly the texts ingest embeds (each paragraph, and each
  of its sentences with the document's title) through ``encode_passages_with_spans`` — what the model
  costs, nothing else;
* **ingest**: ``DocumentService.ingest_paths`` of the folder into a fresh data folder — parsing,
  chunking, tokenising, embedding, the store's transactions and the indexes.

Both start with an empty embedding cache. Prints paragraphs/s of each and their ratio, and a rerun of the
ingest (resume: nothing embedded again).

    python -m bench.ingest_speed [--files 120] [--eval-dir ../shared/eval] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

from qa.settings import Settings


def write_folder(eval_dir: Path, folder: Path, n: int) -> list[tuple[str, str]]:
    """``n`` files of one XQuAD paragraph each (zh and en alternating); returns (title, text) pairs."""
    rows = [json.loads(line) for line in (eval_dir / "xquad" / "passages.jsonl").open(encoding="utf-8") if line.strip()]
    by_lang = {lang: [r for r in rows if r["lang"] == lang] for lang in ("zh", "en")}
    picked = [by_lang[("zh", "en")[i % 2]][i // 2] for i in range(n)]
    folder.mkdir(parents=True, exist_ok=True)
    docs = []
    for i, row in enumerate(picked):
        title = f"{row.get('title') or 'XQuAD'} {i}"
        text = row["text"].strip()
        (folder / f"p{i:05d}.txt").write_text(f"{title}\n\n{text}\n", encoding="utf-8")
        docs.append((title, text))
    return docs


def run(files: int, eval_dir: Path, workdir: Path) -> dict:
    from embeddings import create_embedder
    from qa.ingest.chunker import chunk_document
    from qa.text.sentences import split_sentences
    from qa.wiring import build_services

    folder = workdir / "docs"
    write_folder(eval_dir, folder, files)
    base = Settings()
    out: dict = {"files": files, "machine": platform.processor() or platform.machine()}

    # raw: the model on the very texts ingest embeds (cold cache of its own)
    raw_settings = base.model_copy(update={"cache_dir": workdir / "cache-raw", "data_dir": workdir / "unused"})
    raw = create_embedder(raw_settings)
    texts, spans, titles = [], [], []
    services = build_services(base.model_copy(update={"cache_dir": workdir / "cache-ingest",
                                                       "data_dir": workdir / "data", "seeds_dir": None}))
    for path in sorted(folder.iterdir()):
        parsed = services.documents.parse(path.read_bytes(), path.name)
        for d in chunk_document(parsed, services.embedder.count_tokens, base.max_passage_tokens):
            texts.append(d.text)
            spans.append([(s - d.start, e - d.start) for s, e in split_sentences(d.text, d.start)])
            titles.append(parsed.title)
    raw.encode_queries(["warm-up"])
    started = time.perf_counter()
    raw.encode_passages_with_spans(texts, spans, titles)
    raw_s = time.perf_counter() - started

    services.embedder.encode_queries(["warm-up"])
    started = time.perf_counter()
    report = services.documents.ingest_paths([folder])
    ingest_s = time.perf_counter() - started
    started = time.perf_counter()
    again = services.documents.ingest_paths([folder])
    rerun_s = time.perf_counter() - started
    services.close()
    sentences = sum(len(s) for s in spans)
    out.update({
        "model": raw.model_id, "paragraphs": len(texts), "sentences": sentences,
        "raw_s": raw_s, "ingest_s": ingest_s, "raw_paragraphs_per_s": len(texts) / raw_s,
        "ingest_paragraphs_per_s": report.passages_embedded / ingest_s,
        "ingest_over_raw": (report.passages_embedded / ingest_s) / (len(texts) / raw_s),
        "rerun_s": rerun_s, "rerun_unchanged": again.count("unchanged"), "rerun_embedded": again.passages_embedded,
        "skipped": len(report.skipped),
    })
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=120)
    parser.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="qa-ingest-speed-"))
    try:
        result = run(args.files, args.eval_dir, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"{result['paragraphs']} paragraphs ({result['sentences']} sentences), model {result['model']}")
    print(f"  raw model, same texts:  {result['raw_paragraphs_per_s']:6.2f} paragraphs/s ({result['raw_s']:.1f} s)")
    print(f"  qa ingest of the folder: {result['ingest_paragraphs_per_s']:6.2f} paragraphs/s ({result['ingest_s']:.1f} s)"
          f"  → {result['ingest_over_raw']:.2f}× the raw model")
    print(f"  rerun (resume): {result['rerun_unchanged']} unchanged, {result['rerun_embedded']} embedded, "
          f"{result['rerun_s']:.1f} s")
    if args.output:
        args.output.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
