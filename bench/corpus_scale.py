"""``qa bench --corpus-scale N``: the whole stack at N passages, through the real HTTP server.

Builds (or reuses) a data folder of N synthetic passages (:mod:`bench.synthetic_corpus`), then starts
``qa serve`` on it with the light model (``QA_EMBEDDER=use-m``; the folder's vectors are synthetic
unit vectors of its dimension) and measures:

* build time (store, each index, checkpoints), bytes on disk per passage (allocated blocks, as
  ``du`` counts them), start-up to ready, the server's resident memory (also that of the same
  server on an empty folder, so what the data costs is their difference);
* search latency **without the model**: every question is asked once first (those first requests,
  timed too, are the figure *with* the model), so the service's question-vector LRU holds it and
  the timed requests run the whole pipeline (both legs, fusion, second stage, evidence, HTTP) but
  no forward pass; p50/p95 with no filter and with each filter (collection, lang, document_ids,
  source, published range, combined), every hit checked against its filter; and the server's own
  stage timings of each question (``explain``), per stage and without the model (total − embed);
* ``POST /v1/documents`` and ``DELETE`` of one 3-paragraph document with the embedding cache warm
  (the same paragraphs posted once before, then re-posted under a fresh id after each delete, so
  duplicate detection does not skip them and nothing is embedded again), and the first search
  after each write;
* 8 searching clients alone, then with 2 clients writing (each posting and deleting its own
  3-paragraph document), alternating in rounds: search p50/p99 and the writes' latency.

Requests made one at a time also record the server's CPU time (``/proc/<pid>/stat``: user + system,
all threads), the figure the shared machine's load does not inflate (wall time waits for the other
processes' time slices). Every figure is printed as a table and returned (``--output`` writes it as
JSON); the load average is recorded at each phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from bench.benchmark import (
    cpu_seconds,
    LoadResult,
    QaSystem,
    QuestionStream,
    _fmt,
    latency_summary,
    machine_info,
    machine_line,
    make_qa,
    proc_memory_mib,
    run_load,
)
from bench.synthetic_corpus import (
    SECOND_COLLECTION,
    CorpusSpec,
    SentencePool,
    build_data_folder,
    disk_usage,
    expected_passages,
    index_data_folder,
    read_manifest,
)

OLD_BYTES_PER_PASSAGE = 27 * 1024  # issue 16: the store before it, measured with the same synthetic passages
LIGHT_MODEL = {"model_id": "use-m-v3", "dimension": 512}  # what QA_EMBEDDER=use-m reports


# =============================================================================================
# what is asked and written
# =============================================================================================
def load_questions(eval_dir: Path, n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct questions from XQuAD (zh and en) and CMRC 2018, shuffled."""
    questions = []
    for name in ("xquad", "cmrc2018"):
        with open(Path(eval_dir) / name / "questions.jsonl", encoding="utf-8") as fh:
            questions.extend({"q": q["question"], "lang": q["lang"]} for q in map(json.loads, filter(str.strip, fh)))
    unique = list({q["q"]: q for q in questions}.values())
    random.Random(seed).shuffle(unique)
    return unique[:n]


def filter_variants(manifest: dict) -> dict[str, dict]:
    """The search bodies' filter fields measured, from what the folder holds."""
    sources = manifest["sources"]
    return {
        "none": {},
        "collection": {"collection": SECOND_COLLECTION},
        "lang": {"lang": "zh"},
        "document_ids": {"document_ids": list(manifest["sample_documents"])[:10]},
        "source": {"sources": sources[:1]},
        "published": {"published_from": "2012", "published_to": "2012"},
        "combined": {"lang": "en", "sources": sources[:5], "published_from": "2005", "published_to": "2014"},
    }


def hit_violates(hit: dict, flt: dict) -> bool:
    """Whether a search result breaks its request's filter."""
    if hit.get("collection", "default") != flt.get("collection", "default"):
        return True
    if "lang" in flt and hit["lang"] != flt["lang"]:
        return True
    if "document_ids" in flt and hit["document_id"] not in flt["document_ids"]:
        return True
    if "sources" in flt and hit.get("source") not in flt["sources"]:
        return True
    if "published_from" in flt or "published_to" in flt:
        year = (hit.get("published") or "")[:4]
        if not year or not flt.get("published_from", "0000") <= year <= flt.get("published_to", "9999"):
            return True
    return False


def write_documents(eval_dir: Path, count: int, seed: int = 1) -> list[dict]:
    """``count`` distinct 3-paragraph documents (three sentences a paragraph, pool sentences; the
    first Chinese, then alternating), bodies for ``POST /v1/documents`` without an id."""
    pool = SentencePool(eval_dir)
    rng = random.Random(seed)
    docs = []
    for i in range(count):
        lang = ("zh", "en")[i % 2]
        joint = "" if lang == "zh" else " "
        paragraphs = [joint.join(rng.choice(pool.sentences[lang]) for _ in range(3)) for _ in range(3)]
        docs.append({"title": f"Scale benchmark write {i}", "text": "\n\n".join(paragraphs),
                     "source": "bench-writes", "published": "2025-06-01"})
    return docs


# =============================================================================================
# the run
# =============================================================================================
class _Writes:
    """Posts a document under a fresh id and deletes it again; wall time (and, one request at a time,
    the server's CPU time) kept per operation."""

    def __init__(self, url: str, label: str, pid: int):
        self.url, self.label, self.pid, self.count = url, label, pid, 0
        self.reset()

    def reset(self) -> None:
        self.post, self.delete = _Timer(self.pid), _Timer(self.pid)

    def next_id(self) -> str:
        self.count += 1
        return f"bench-{self.label}-{self.count}"

    def post_one(self, http, body: dict) -> str:
        doc_id = self.next_id()
        with self.post:
            r = http.post(self.url + "/v1/documents", json={**body, "id": doc_id}, timeout=120)
        _check(r, 201, "POST /v1/documents")
        if r.json().get("status") != "added":
            raise RuntimeError(f"POST /v1/documents did not add {doc_id}: {r.text[:300]}")
        return doc_id

    def delete_one(self, http, doc_id: str) -> None:
        with self.delete:
            r = http.delete(f"{self.url}/v1/documents/{doc_id}", timeout=120)
        _check(r, 200, "DELETE /v1/documents")

    async def cycle(self, client, body: dict) -> None:
        """POST then DELETE, concurrently with other clients (wall time only: CPU is not theirs alone)."""
        doc_id = self.next_id()
        t0 = time.perf_counter()
        r = await client.post(self.url + "/v1/documents", json={**body, "id": doc_id})
        self.post.wall.append(time.perf_counter() - t0)
        _check(r, 201, "POST /v1/documents")
        t0 = time.perf_counter()
        r = await client.delete(f"{self.url}/v1/documents/{doc_id}")
        self.delete.wall.append(time.perf_counter() - t0)
        _check(r, 200, "DELETE /v1/documents")


def _check(r, status: int, what: str) -> None:
    if r.status_code != status:
        raise RuntimeError(f"{what} answered {r.status_code}: {r.text[:300]}")


def _summary(seconds: list[float]) -> dict:
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in latency_summary(seconds).items()}


class _Timer:
    """Wall and server CPU time of the requests made inside ``with timer:`` blocks."""

    def __init__(self, pid: int):
        self.pid = pid
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self) -> _Timer:
        self._cpu, self._t0 = cpu_seconds(self.pid), time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall.append(time.perf_counter() - self._t0)
        self.cpu.append(cpu_seconds(self.pid) - self._cpu)

    def summary(self) -> dict:
        cpu_ms = sorted(c * 1000 for c in self.cpu)
        return {**_summary(self.wall), "server_cpu_ms_mean": round(sum(cpu_ms) / len(cpu_ms), 2) if cpu_ms else None}


def _mib(pid: int) -> dict:
    return {k: round(v, 1) for k, v in proc_memory_mib(pid).items()}


def ensure_folder(n: int, folder: Path, eval_dir: Path, console: Console) -> tuple[dict, bool]:
    """The manifest of a folder holding ``n`` synthetic passages: built now (second value True), or
    one built before for the same ``n``."""
    manifest = read_manifest(folder) if folder.is_dir() else None
    if manifest is not None and manifest["passages"] != n:
        raise ValueError(f"{folder} holds a synthetic corpus of {manifest['passages']:,} passages, not {n:,}: "
                         "give another --corpus-dir, or --corpus-scale to match it")
    if manifest is not None and manifest.get("indexed"):
        console.print(f"reusing {folder} ({n:,} passages, built in {manifest['seconds']['total']:.0f} s)")
        return manifest, False
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as bar:
        tasks: dict[str, int] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(f"building: {phase}", total=total)
            bar.update(tasks[phase], completed=done)

        if manifest is not None:  # the store was built, its indexes not yet
            console.print(f"{folder}: store built before; building its indexes")
            return index_data_folder(folder, progress=progress), True
        return build_data_folder(folder, CorpusSpec(passages=n, **LIGHT_MODEL), eval_dir, progress=progress), True


def run_corpus_scale(n: int, *, eval_dir: Path, folder: Path | None = None, questions: int = 100,
                     write_rounds: int = 20, load_s: float = 20.0, load_rounds: int = 2, searchers: int = 8,
                     writers: int = 2, console: Console | None = None) -> dict:
    """Build or reuse the folder, then measure the server on it (see the module docstring)."""
    import httpx

    console = console or Console()
    eval_dir = Path(eval_dir)
    figures: dict = {"machine": machine_info(),
                     "params": {"passages": n, "questions": questions, "write_rounds": write_rounds,
                                "load_s_per_phase": load_s, "load_rounds": load_rounds, "searchers": searchers,
                                "writers": writers, "embedder": "use-m", "top_k": 5},
                     "method": {"search_without_model": "question vectors cached in the service's LRU (each question "
                                "asked once first); the timed requests run everything but the model",
                                "writes": "embedding cache warm: the same paragraphs posted once before, re-posted "
                                "under fresh ids after each delete"},
                     "load_average": [], "notes": []}

    def phase(name: str) -> None:
        figures["load_average"].append({"phase": name, "1m": round(os.getloadavg()[0], 2)})
        console.print(f"[bold]{name}[/bold]  (load average {os.getloadavg()[0]:.1f})")

    with tempfile.TemporaryDirectory(prefix="qa-corpus-scale-") as tmp_name:
        tmp = Path(tmp_name)
        data = Path(folder) if folder is not None else tmp / "data"
        phase(f"data folder: {n:,} synthetic passages in {data}")
        manifest, built = ensure_folder(n, data, eval_dir, console)
        figures["build"] = {"built_now": built, "seconds": manifest["seconds"], "documents": manifest["documents"],
                            "collections": manifest["collections"]}
        du = disk_usage(data)
        figures["disk"] = {"bytes": du, "bytes_per_passage": round(du["total"] / n, 1),
                           "share_of_old_27_kib": round(du["total"] / n / OLD_BYTES_PER_PASSAGE, 3)}
        cache = tmp / "cache"  # a fresh embedding cache: the warm-up writes below fill it
        cache.mkdir()
        http = httpx.Client(trust_env=False)
        server = None
        try:
            phase("baseline: the same server on an empty data folder")
            empty = make_qa(tmp, "empty", cache, QA_EMBEDDER="use-m")
            server = empty.server
            server.start()
            startup_empty = server.wait_ready(lambda: empty.ready(http))
            qs = load_questions(eval_dir, questions)
            for q in qs[:20]:
                _check(http.post(empty.url + "/v1/search", json={"query": q["q"]}, timeout=60), 200, "search")
            figures["empty_folder"] = {"startup_s": round(startup_empty, 2), "memory_mib": _mib(server.proc.pid)}
            server.stop()

            phase(f"qa serve on {n:,} passages: start-up")
            qa = make_qa(tmp, "scale", cache, data_dir=data, QA_EMBEDDER="use-m")
            server = qa.server
            server.start()
            figures["startup_s"] = round(server.wait_ready(lambda: qa.ready(http)), 2)
            health = http.get(qa.url + "/healthz", timeout=10).json()
            if health.get("passages") != n:
                raise RuntimeError(f"the server counts {health.get('passages')} passages, the folder {n}")
            figures["memory_at_ready_mib"] = _mib(server.proc.pid)
            console.print(f"  ready after {figures['startup_s']:.1f} s, RSS "
                          f"{figures['memory_at_ready_mib'].get('VmRSS', 0):,.0f} MiB")

            figures["search"] = _measure_search(http, qa, qs, filter_variants(manifest), manifest, phase)
            figures["memory_after_searches_mib"] = _mib(server.proc.pid)
            docs = write_documents(eval_dir, 1 + writers)
            figures["writes"] = _measure_writes(http, qa, docs[0], qs, write_rounds, phase)
            figures["concurrent"] = _measure_concurrent(qa, qs, docs[1:], searchers, load_s, load_rounds, phase)
            figures["memory_end_mib"] = _mib(server.proc.pid)
            figures["memory_data_mib"] = round(figures["memory_after_searches_mib"]["VmRSS"]
                                               - figures["empty_folder"]["memory_mib"]["VmRSS"], 1)
        finally:
            if server is not None:
                server.stop()
            http.close()
    print_corpus_scale(figures, console)
    return figures


def _measure_search(http, qa: QaSystem, qs: list[dict], variants: dict[str, dict], manifest: dict,
                    phase: Callable[[str], None]) -> dict:
    phase(f"search: {len(qs)} questions, first with the model, then without it under {len(variants)} filters")
    pid = qa.server.proc.pid
    first = _Timer(pid)
    for q in qs:
        with first:
            r = http.post(qa.url + "/v1/search", json={"query": q["q"]}, timeout=60)
        _check(r, 200, "search")
    names = list(variants)
    timers = {name: _Timer(pid) for name in names}
    hits: dict[str, int] = dict.fromkeys(names, 0)
    violations: dict[str, int] = dict.fromkeys(names, 0)
    for i, q in enumerate(qs):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotated: drift spreads over all
            with timers[name]:
                r = http.post(qa.url + "/v1/search", json={"query": q["q"], "top_k": 5, **variants[name]}, timeout=60)
            _check(r, 200, f"search ({name})")
            results = r.json()["results"]
            hits[name] += len(results)
            violations[name] += sum(hit_violates(h, variants[name]) for h in results)
    out: dict = {"with_model_first_ask": first.summary(), "filters": {}, "stages": _stage_times(http, qa, qs)}
    for name in names:
        try:
            admitted = expected_passages(manifest, variants[name])
        except ValueError:
            admitted = None
        out["filters"][name] = {"filter": variants[name], "passages_admitted": admitted,
                                "mean_hits": round(hits[name] / len(qs), 2), "violations": violations[name],
                                **timers[name].summary()}
    return out


def _stage_times(http, qa: QaSystem, qs: list[dict]) -> dict:
    """The server's own stage timings (``explain``'s ``timings_ms``) of each question, asked once more without
    a filter (its vector in the LRU): p50 / p95 ms per stage, and of the pipeline without the model (total −
    embed: tokenising, both lexical legs, dense, fusion, second stage, confidence, evidence), the figure issue
    15 bounds at 5 ms p50 at 10,000 passages."""
    per_stage: dict[str, list[float]] = {}
    for q in qs:
        r = http.post(qa.url + "/v1/search", json={"query": q["q"], "top_k": 5, "explain": True}, timeout=60)
        _check(r, 200, "search (explain)")
        ms = r.json()["timings_ms"]
        for stage, value in {**ms, "without_model": ms["total"] - ms.get("embed", 0.0)}.items():
            per_stage.setdefault(stage, []).append(value / 1000.0)
    return {stage: _summary(seconds) for stage, seconds in per_stage.items()}


def _measure_writes(http, qa: QaSystem, doc: dict, qs: list[dict], rounds: int,
                    phase: Callable[[str], None]) -> dict:
    phase(f"writes: POST and DELETE of one 3-paragraph document, {rounds} rounds, embedding cache warm")
    writes = _Writes(qa.url, "latency", qa.server.proc.pid)
    writes.delete_one(http, writes.post_one(http, doc))  # embeds the paragraphs once: the cache is warm from here
    writes.reset()
    after = _Timer(qa.server.proc.pid)
    stream = QuestionStream(qs)
    for _ in range(rounds):
        doc_id = writes.post_one(http, doc)
        for _ in range(2):  # the first search after the POST, then after the DELETE
            with after:
                r = http.post(qa.url + "/v1/search", json={"query": stream.next()["q"]}, timeout=60)
            _check(r, 200, "search")
            if doc_id:
                writes.delete_one(http, doc_id)
                doc_id = None
    return {"post": writes.post.summary(), "delete": writes.delete.summary(),
            "first_search_after_a_write": after.summary()}


def _measure_concurrent(qa: QaSystem, qs: list[dict], docs: list[dict], searchers: int, load_s: float, rounds: int,
                        phase: Callable[[str], None]) -> dict:
    import httpx

    phase(f"{searchers} searching clients alone, then with {len(docs)} writing, {rounds} rounds of "
          f"{load_s / rounds:.0f} s each")
    pid = qa.server.proc.pid
    stream = QuestionStream(qs)
    writes = _Writes(qa.url, "writer", pid)
    free_docs = list(docs)

    async def search(client) -> None:
        r = await client.post(qa.url + "/v1/search", json={"query": stream.next()["q"], "top_k": 5})
        _check(r, 200, "search")

    async def write(client) -> None:
        doc = free_docs.pop()
        try:
            await writes.cycle(client, doc)
        finally:
            free_docs.append(doc)

    async def go(with_writers: bool, seconds: float) -> tuple[LoadResult, LoadResult | None]:
        limits = httpx.Limits(max_connections=searchers + len(docs) + 2)
        async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits, trust_env=False) as client:
            if not with_writers:
                return await run_load(search, concurrency=searchers, duration_s=seconds, client=client), None
            s, w = await asyncio.gather(
                run_load(search, concurrency=searchers, duration_s=seconds, client=client),
                run_load(write, concurrency=len(docs), duration_s=seconds, client=client))
            return s, w

    with httpx.Client(trust_env=False) as http:  # the writers' paragraphs embedded once, before any timing
        for doc in docs:
            writes.delete_one(http, writes.post_one(http, doc))
    writes.reset()
    alone, together, writer_runs = LoadResult(searchers), LoadResult(searchers), LoadResult(len(docs))
    cpu = {"alone": 0.0, "with_writers": 0.0}
    for r in range(rounds):
        for with_writers in ((False, True) if r % 2 == 0 else (True, False)):
            before = cpu_seconds(pid)
            s, w = asyncio.run(go(with_writers, load_s / rounds))
            cpu["with_writers" if with_writers else "alone"] += cpu_seconds(pid) - before
            if with_writers:
                together, writer_runs = together.merge(s), writer_runs.merge(w)
            else:
                alone = alone.merge(s)
    out = {"searchers_alone": {**alone.summary(), "server_cpu_s": round(cpu["alone"], 2)},
           "searchers_with_writers": {**together.summary(), "server_cpu_s": round(cpu["with_writers"], 2)},
           "writers": {"cycles": writer_runs.requests, "errors": writer_runs.errors,
                       "post": _summary(writes.post.wall), "delete": _summary(writes.delete.wall)}}
    for name, res in (("searchers_alone", alone), ("searchers_with_writers", together), ("writers", writer_runs)):
        if res.error_samples:
            out[name]["error_samples"] = res.error_samples
    p99_alone, p99_with = out["searchers_alone"]["p99_ms"], out["searchers_with_writers"]["p99_ms"]
    out["p99_with_over_without"] = round(p99_with / p99_alone, 3) if p99_alone else None
    return out


# =============================================================================================
# the table
# =============================================================================================
def _rows(f: dict) -> list[tuple[str, str, str]]:
    """(metric, value, issue 16's target at 1M) for the figures of one run."""
    s = f["search"]["filters"]
    w, c, b = f["writes"], f["concurrent"], f["build"]["seconds"]
    rows = [
        ("build: store, s", _fmt(b.get("store")), ""),
        ("build: indexes (dense + lexical add, checkpoints), s",
         _fmt(sum(v for k, v in b.items() if k.startswith(("dense", "lexical")))), ""),
        ("data folder, bytes per passage", _fmt(f["disk"]["bytes_per_passage"], 0),
         f"≤ {OLD_BYTES_PER_PASSAGE // 2:,} (half of 27 KiB)"),
        ("start-up to ready, s", _fmt(f["startup_s"], 2), "≤ 30"),
        ("start-up to ready on an empty folder, s", _fmt(f["empty_folder"]["startup_s"], 2), ""),
        ("RSS after the searches, MiB", _fmt(f["memory_after_searches_mib"].get("VmRSS"), 0), ""),
        ("RSS minus the same server on an empty folder, MiB", _fmt(f["memory_data_mib"], 0), "≤ 4,096"),
        ("peak RSS (VmHWM) at the end, MiB", _fmt(f["memory_end_mib"].get("VmHWM"), 0), ""),
        ("POST 3-paragraph document (cache warm): p50 / p95 ms · server CPU ms", _lat(w["post"]),
         "p50 ≤ 100 and ≤ 2× at 10k"),
        ("DELETE of it: p50 / p95 ms · server CPU ms", _lat(w["delete"]), "p50 ≤ 100 and ≤ 2× at 10k"),
        ("first search after a write: p50 / p95 ms · server CPU ms", _lat(w["first_search_after_a_write"]), ""),
        ("search with the model (first ask): p50 / p95 ms · server CPU ms",
         _lat(f["search"]["with_model_first_ask"]), ""),
    ]
    stages = f["search"].get("stages") or {}
    if "without_model" in stages:
        rows.append(("one search without the model, server's stage timings (total − embed): p50 / p95 ms",
                     f"{_fmt(stages['without_model']['p50_ms'])} / {_fmt(stages['without_model']['p95_ms'])} ("
                     + ", ".join(f"{k} {_fmt(v['p50_ms'])}" for k, v in stages.items()
                                 if k not in ("total", "embed", "without_model")) + ")", "p50 ≤ 5 at 10k (issue 15)"))
    for name, v in s.items():
        admitted = v.get("passages_admitted")
        share = f" ({admitted / f['params']['passages']:.2%} admitted)" if admitted is not None else ""
        bad = f", {v['violations']} HITS OUTSIDE THE FILTER" if v["violations"] else ""
        rows.append((f"search without the model, filter {name}: p50 / p95 ms · server CPU ms",
                     _lat(v) + share + bad, "p50 ≤ 20"))
    rows += [
        (f"{f['params']['searchers']} searchers alone: p50 / p99 ms, q/s",
         f"{_fmt(c['searchers_alone']['p50_ms'])} / {_fmt(c['searchers_alone']['p99_ms'])}, "
         f"{_fmt(c['searchers_alone']['qps'])}", ""),
        (f"{f['params']['searchers']} searchers + {f['params']['writers']} writers: p50 / p99 ms, q/s",
         f"{_fmt(c['searchers_with_writers']['p50_ms'])} / {_fmt(c['searchers_with_writers']['p99_ms'])}, "
         f"{_fmt(c['searchers_with_writers']['qps'])}", ""),
        ("search p99 with writers ÷ without", _fmt(c["p99_with_over_without"], 2), "≤ 2"),
        ("server CPU per search, alone / with writers (their writes included), ms",
         f"{_fmt(1000 * c['searchers_alone']['server_cpu_s'] / max(c['searchers_alone']['requests'], 1))} / "
         f"{_fmt(1000 * c['searchers_with_writers']['server_cpu_s'] / max(c['searchers_with_writers']['requests'], 1))}",
         ""),
        ("writers under load: POST / DELETE p50 ms, cycles",
         f"{_fmt(c['writers']['post']['p50_ms'])} / {_fmt(c['writers']['delete']['p50_ms'])}, "
         f"{c['writers']['cycles']}", ""),
    ]
    return rows


def _lat(t: dict) -> str:
    return f"{_fmt(t['p50_ms'])} / {_fmt(t['p95_ms'])} · {_fmt(t.get('server_cpu_ms_mean'))}"


def print_corpus_scale(figures: dict, console: Console) -> None:
    table = Table(title=f"qa at {figures['params']['passages']:,} synthetic passages, real server, light model (USE-m)")
    table.add_column("metric")
    table.add_column("measured", justify="right")
    table.add_column("issue 16 target at 1M", justify="right")
    for row in _rows(figures):
        table.add_row(*row)
    console.print(table)
    console.print(machine_line(figures["machine"]) + "; load average per phase: "
                  + ", ".join(f"{p['1m']:.1f}" for p in figures["load_average"]))
    for note in figures.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {note}")


def markdown_table(runs: list[dict]) -> str:
    """One markdown table, a column per run (for docs/performance.md)."""
    header = "| metric | " + " | ".join(f"{r['params']['passages']:,} passages" for r in runs) + " | target at 1M |"
    lines = [header, "|---|" + "---|" * len(runs) + "---|"]
    per_run = [_rows(r) for r in runs]
    for i, (label, _, target) in enumerate(per_run[0]):
        lines.append(f"| {label} | " + " | ".join(rows[i][1] for rows in per_run) + f" | {target} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m bench.corpus_scale RUN.json [RUN.json …]: the markdown table
    import sys

    print(markdown_table([json.loads(Path(a).read_text(encoding="utf-8"))["corpus_scale"] for a in sys.argv[1:]]))
