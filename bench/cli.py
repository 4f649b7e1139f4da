"""The development commands of the ``qa`` command line: ``qa eval`` (retrieval quality, calibration) and
``qa bench`` (speed over HTTP, the index at scale, Matryoshka truncation). ``qa.cli`` registers them
when this package is importable (a source checkout); the service itself does not need them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add ``eval`` and ``bench`` to the ``qa`` command."""
    app.command("eval")(eval_cmd)
    app.command("bench")(bench)


def eval_cmd(benchmark: str = typer.Argument(..., help="xquad | cmrc2018 | mixed | noanswer | all | calibrate"),
             eval_dir: Path = typer.Option(Path("../shared/eval"), help="Folder holding xquad/ and cmrc2018/."),
             limit: Optional[int] = typer.Option(None, help="Only the first N questions per direction."),
             output: Optional[Path] = typer.Option(None, help="Also write the figures as JSON here."),
             backend: str = typer.Option("embedded", help="embedded (the data-folder pools, cached), distributed "
                                         "(PostgreSQL + milvus-lite started for the run, as the tests start them) or "
                                         "both (and their R@1 side by side).")) -> None:
    """Retrieval quality (R@1, R@5, MRR@10 per direction) through the same code the API uses.

    `qa eval calibrate` fits the answerable confidence on in- vs out-of-corpus questions and stores it.
    """
    from bench.evaluation import BACKENDS, calibrate, run_eval
    from qa.cli import _fail, _settings

    if not (eval_dir / "xquad").is_dir():
        _fail(f"{eval_dir} holds no xquad/ folder: pass --eval-dir pointing at the shared eval data")
    if backend not in BACKENDS:
        _fail(f"--backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if benchmark == "calibrate":
        calibrate(eval_dir, _settings(None), limit=limit, console=Console(width=160))
        return
    try:
        run_eval(benchmark, eval_dir, _settings(None), limit=limit, output=output, console=Console(width=160),
                 backend=backend)
    except ValueError as exc:
        _fail(str(exc))


def bench(passages: int = typer.Option(240, help="XQuAD paragraphs in the search corpus (zh and en alternating)."),
          ingest_passages: int = typer.Option(16, help="Paragraphs timed for ingest throughput (embedded from scratch)."),
          queries: int = typer.Option(100, help="Warm single-client questions timed per system."),
          duration: float = typer.Option(20.0, help="Seconds of load per concurrency level and system."),
          concurrency: str = typer.Option("8,32", help="Concurrent clients of the load runs (comma-separated)."),
          load_rounds: int = typer.Option(2, min=1, help="Rounds each load level is split into (memory is read "
                                          "after each, so more rounds show whether it levels off)."),
          peers: bool = typer.Option(False, "--peers", help="Also measure the peers: txtai's API and a hand-written FastAPI+FAISS app "
                                "on sentence-transformers, in fp32 torch and on its OpenVINO backend."),
          first_stage: bool = typer.Option(False, "--first-stage",
                                           help="Also measure qa with its second stage off (QA_RERANK_DEPTH=0)."),
          scale: Optional[int] = typer.Option(None, help="Instead: the approximate index at this many synthetic vectors."),
          scale_budget: float = typer.Option(600.0, help="Build seconds per index variant before extrapolating."),
          scale_variants: Optional[str] = typer.Option(
              None, help="--scale: index variants to build, comma-separated: hnsw, hnsw_sq8 (default: both)."),
          corpus_scale: Optional[int] = typer.Option(
              None, min=1, help="Instead: the whole stack (real server, light model) on a data folder of this many "
              "synthetic passages: build, disk, start-up, memory, POST/DELETE, search per filter, searchers + writers "
              "(--queries distinct questions, --duration seconds of load per phase, --load-rounds)."),
          corpus_dir: Optional[Path] = typer.Option(
              None, help="--corpus-scale: build the folder here (kept), or reuse the one an earlier run built here."),
          write_rounds: int = typer.Option(20, min=1, help="--corpus-scale: timed POST + DELETE rounds."),
          matryoshka: Optional[str] = typer.Option(None, help="Instead: qa eval xquad at these dims, e.g. 512,256."),
          formats: bool = typer.Option(False, "--formats", help="Instead: document parsing speed (PDF pages/s, "
                                       "embedding excluded) and OCR speed and character error rate."),
          parity: bool = typer.Option(False, "--parity", help="Instead: R@1 of the evaluation passages laid out as "
                                      "DOCX, PDF (LibreOffice) and scans (OCR) next to the same passages as plain text, "
                                      "and whether cited pages are right."),
          limit: Optional[int] = typer.Option(None, "--limit", min=1, help="--parity: only the first N XQuAD articles "
                                              "and N CMRC documents (8 passages each), for a quick run."),
          ocr: bool = typer.Option(True, "--ocr/--no-ocr", help="--parity: also the scans (OCR: the slow part)."),
          startup: bool = typer.Option(False, "--startup", help="Instead: start-up to ready on a warm cache (an "
                                       "empty data folder, then --load-rounds restarts on it) and the first question "
                                       "against the next --queries."),
          ingest: bool = typer.Option(False, "--ingest", help="Instead: ingest of --ingest-passages never-embedded "
                                      "paragraphs over HTTP, through the batch endpoint and one POST per document from "
                                      "8 clients, alternating on fresh servers for --load-rounds rounds."),
          auth: bool = typer.Option(False, "--auth", help="Instead: what API keys and rate limits cost per request "
                                    "(a server without keys and one with a key, side by side, alternating; "
                                    "--passages, --queries requests per route and round, --load-rounds rounds)."),
          eval_dir: Path = typer.Option(Path("../shared/eval"), help="Folder holding xquad/."),
          eval_limit: Optional[int] = typer.Option(None, help="--matryoshka, --parity: only the first N questions per "
                                                   "direction."),
          output: Optional[Path] = typer.Option(None, help="Also write the figures as JSON here."),
          ) -> None:
    """Benchmark over HTTP (start-up, ingest, latency, load, memory; --peers), or --startup / --ingest / --scale /
    --corpus-scale / --matryoshka / --formats / --parity / --auth."""
    from bench.benchmark import SCALE_VARIANTS, check_scale_variants, run_bench, run_scale, run_truncation, write_json
    from qa.cli import _settings

    out = Console(width=160)
    if parity:
        from bench.parity import ToolMissingError, run as run_parity
        from qa.cli import _fail

        try:
            run_parity(_settings(None), eval_dir, limit=limit, questions=eval_limit, ocr=ocr, console=out, output=output)
        except ToolMissingError as exc:
            _fail(str(exc))
    elif auth:
        from bench.auth_overhead import run_auth_overhead

        write_json(output, {"auth": run_auth_overhead(_settings(None), eval_dir=eval_dir, passages=passages,
                                                      requests=queries, rounds=load_rounds, console=out)})
    elif formats:
        from bench.formats import run as run_formats

        write_json(output, {"formats": run_formats(console=out)})
    elif startup:
        from bench.benchmark import run_startup

        write_json(output, {"startup": run_startup(_settings(None), rounds=load_rounds, queries=queries,
                                                   eval_dir=eval_dir, console=out)})
    elif ingest:
        from bench.benchmark import run_ingest

        write_json(output, {"ingest": run_ingest(_settings(None), paragraphs=ingest_passages, rounds=load_rounds,
                                                 eval_dir=eval_dir, console=out)})
    elif scale:
        variants = [v.strip() for v in scale_variants.split(",") if v.strip()] if scale_variants else SCALE_VARIANTS
        try:
            check_scale_variants(variants)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--scale-variants") from exc
        write_json(output, {"scale": run_scale(scale, variants=variants, budget_s=scale_budget, console=out)})
    elif corpus_scale:
        from bench.corpus_scale import run_corpus_scale

        write_json(output, {"corpus_scale": run_corpus_scale(
            corpus_scale, eval_dir=eval_dir, folder=corpus_dir, questions=queries, write_rounds=write_rounds,
            load_s=duration, load_rounds=load_rounds, console=out)})
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
