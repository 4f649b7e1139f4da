"""``qa eval``: retrieval quality on public benchmarks, through the same pipeline the API uses.

Benchmarks (../shared/eval): XQuAD zh/en (four directions: zh→zh, en→en, en→zh, zh→en), CMRC 2018
dev (zh→zh), and a mixed pool (all XQuAD passages plus the CMRC passages as one corpus). For each
run: R@1, R@5 and MRR@10 for the final pipeline and for each leg alone, the share of questions
whose gold answer lies inside the first result's evidence, and no-answer precision/recall (questions
of one benchmark asked against the other's corpus are out-of-corpus).

Each corpus is built once per model in ``<cache_dir>/eval/<model>/<pool>``; passage embeddings come
from the embedding cache, so reruns cost only the questions. ``backend="distributed"`` builds the
pools on PostgreSQL + Milvus instead (the engines the tests start, ``tests/engines.py``: a database and
a Milvus prefix per pool, rebuilt each run from the embedding cache), through the same wiring as
``QA_STORE=postgres QA_INDEX=milvus``; ``qa eval xquad --backend both`` runs both and compares them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from embeddings import Embedder, create_embedder
from qa.models import Block, ParsedDocument
from qa.retrieval.dictionary_leg import DictionaryLeg
from qa.retrieval.search import SearchService
from qa.store.base import DEFAULT_COLLECTION, SearchFilter
from qa.text.lang import detect_lang
from qa.settings import Settings
from qa.wiring import Services, build_services

LEGS = ("final", "dense", "lexical", "cross", "dictionary", "no dictionary")
# "cross": numbers, Latin words and pinyin of names in the other language's passages; "dictionary": CC-CEDICT
# translations there; "no dictionary": the final pipeline with the dictionary leg off (before/after).
POOL_FORMAT = "v7"  # bump when what ingestion stores changes, so cached eval pools are rebuilt


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@dataclass
class Question:
    id: str
    text: str
    lang: str
    gold: set[str]
    answers: list[str]


@dataclass
class Run:
    name: str
    pool: str
    target_lang: str | None
    questions: list[Question]
    answerable: bool = True


@dataclass
class RunFigures:
    name: str
    n: int
    legs: dict[str, dict[str, float]] = field(default_factory=dict)
    answer_in_evidence: float | None = None
    evidence_share: float | None = None  # mean evidence length as a share of its passage's length
    said_unanswerable: float = 0.0
    seconds: float = 0.0


def _both_answers(q: dict) -> list[str]:
    """Where either language's paragraph counts, the answer may be quoted in either language."""
    return [a for lang in ("zh", "en") for a in q["answers_by_lang"][lang]]


def load_runs(benchmark: str, eval_dir: Path) -> tuple[dict[str, list[dict]], list[Run]]:
    """The passage pools and the runs (question sets with gold) a benchmark name stands for."""
    xq_dir, cm_dir = eval_dir / "xquad", eval_dir / "cmrc2018"
    pools: dict[str, list[dict]] = {}
    runs: list[Run] = []
    want_xq = benchmark in ("xquad", "mixed", "all", "noanswer")
    want_cm = benchmark in ("cmrc2018", "mixed", "all", "noanswer")
    xq_p = _read_jsonl(xq_dir / "passages.jsonl") if want_xq else []
    xq_q = _read_jsonl(xq_dir / "questions.jsonl") if want_xq else []
    cm_p = _read_jsonl(cm_dir / "passages.jsonl") if want_cm else []
    cm_q = _read_jsonl(cm_dir / "questions.jsonl") if want_cm else []

    def xq(src: str, dst: str) -> Run:
        qs = [Question(q["id"], q["question"], q["lang"], set(q["gold_by_lang"][dst]), q["answers_by_lang"][dst])
              for q in xq_q if q["lang"] == src]
        return Run(f"xquad {src}→{dst}", "xquad", dst, qs)

    cm_questions = [Question(q["id"], q["question"], "zh", set(q["gold_passage_ids"]), q["answers"]) for q in cm_q]
    # Each paragraph in one language only, alternating (zh-0, en-1, zh-2, …): half the questions must
    # find a paragraph in the other language while same-language paragraphs of the same article
    # sit beside it; a fusion that favours the question's language shows here.
    split_pool = [p for p in xq_p if p["lang"] == ("zh", "en")[int(p["id"].split("-")[1]) % 2]]  # ids: "<lang>-<n>"
    split_ids = {p["id"] for p in split_pool}

    def split_runs() -> list[Run]:
        pools["xquad-split"] = split_pool
        return [Run(f"xquad {src}→split pool", "xquad-split", None,
                    [Question(q["id"], q["question"], src, set(q["gold_passage_ids"]) & split_ids, _both_answers(q))
                     for q in xq_q if q["lang"] == src])
                for src in ("zh", "en")]
    if benchmark in ("xquad", "all"):
        pools["xquad"] = xq_p
        runs += [xq("zh", "zh"), xq("en", "en"), xq("en", "zh"), xq("zh", "en")]
        for src in ("zh", "en"):  # both languages in one pool: either language's paragraph counts
            qs = [Question(q["id"], q["question"], src, set(q["gold_passage_ids"]), _both_answers(q))
                  for q in xq_q if q["lang"] == src]
            runs.append(Run(f"xquad {src}→zh+en pool", "xquad", None, qs))
        runs.extend(split_runs())
    if benchmark in ("cmrc2018", "all"):
        pools["cmrc2018"] = cm_p
        runs.append(Run("cmrc2018 zh→zh", "cmrc2018", None, cm_questions))
    if benchmark in ("mixed", "all"):
        pools["mixed"] = xq_p + cm_p
        for src in ("zh", "en"):
            qs = [Question(q["id"], q["question"], src, set(q["gold_passage_ids"]), _both_answers(q))
                  for q in xq_q if q["lang"] == src]
            runs.append(Run(f"mixed xquad-{src}", "mixed", None, qs))
        runs.append(Run("mixed cmrc2018", "mixed", None, cm_questions))
    if benchmark in ("noanswer", "all"):
        # Out-of-corpus questions: every other XQuAD article is left out of a pool and its questions
        # (both languages) are asked against it; CMRC questions are asked against XQuAD.
        titles = sorted({p["title"] for p in xq_p})
        left_out = set(titles[1::2])
        pools.setdefault("xquad", xq_p)
        pools["xquad-half"] = [p for p in xq_p if p["title"] not in left_out]
        title_of = {p["id"]: p["title"] for p in xq_p}
        if benchmark == "noanswer":
            runs += [xq("zh", "zh"), xq("en", "en"), xq("en", "zh"), xq("zh", "en"), *split_runs()]
        for src in ("zh", "en"):
            qs = [Question(q["id"], q["question"], src, set(), []) for q in xq_q
                  if q["lang"] == src and title_of[q["gold_by_lang"][src][0]] in left_out]
            runs.append(Run(f"out-of-corpus xquad-{src} → other articles", "xquad-half", None, qs, answerable=False))
            for dst in ("zh", "en"):  # ... and against each language alone: a one-language corpus, both directions
                runs.append(Run(f"out-of-corpus xquad {src}→{dst}, other articles", "xquad-half", dst, qs,
                                answerable=False))
        runs.append(Run("out-of-corpus cmrc → xquad", "xquad", None,
                        [Question(q.id, q.text, q.lang, set(), []) for q in cm_questions], answerable=False))
        # ... and the reverse: XQuAD questions (zh, and en across languages) against the CMRC corpus.
        pools.setdefault("cmrc2018", cm_p)
        if benchmark == "noanswer":
            runs.append(Run("cmrc2018 zh→zh", "cmrc2018", None, cm_questions))
        for src in ("zh", "en"):
            qs = [Question(q["id"], q["question"], src, set(), []) for q in xq_q if q["lang"] == src]
            runs.append(Run(f"out-of-corpus xquad-{src} → cmrc", "cmrc2018", None, qs, answerable=False))
    if not runs:
        raise ValueError(f"unknown benchmark {benchmark!r}: use xquad, cmrc2018, mixed, noanswer or all")
    return pools, runs


def eval_embedder(settings: Settings) -> Embedder:
    """The configured embedder; benchmark questions are public, so their vectors are kept for reruns."""
    embedder = create_embedder(settings)
    if hasattr(embedder, "persist_queries"):
        embedder.persist_queries = True
    return embedder


def pools_dir(settings: Settings, embedder: Embedder) -> Path:
    """Where the cached evaluation corpora of this model (and way of making sentence vectors) live."""
    safe_model = re.sub(r"[^A-Za-z0-9_.-]+", "_", embedder.model_id)
    if settings.sentence_vectors != "contextual":
        safe_model += "_separate-sentences"
    return settings.cache_dir / "eval" / POOL_FORMAT / safe_model


def build_pool(name: str, passages: list[dict], settings: Settings, console: Console,
               embedder: Embedder | None = None) -> Services:
    """A corpus holding one document per benchmark paragraph (cached per model and pool)."""
    embedder = embedder or eval_embedder(settings)
    if not settings.distributed:  # the distributed backend's pools: a database of their own (distributed_pools)
        settings = settings.model_copy(update={"data_dir": pools_dir(settings, embedder) / name})
    services = build_services(settings.model_copy(update={"seeds_dir": None}), embedder)
    have = services.corpus.store.count_documents()
    if have >= len(passages):
        return services
    docs = []
    for p in passages:
        if services.corpus.store.document_hash(DEFAULT_COLLECTION, p["id"]) is None:
            text = p["text"].strip()
            docs.append((ParsedDocument(title=p.get("title") or p["id"], text=text,
                                        blocks=[Block("paragraph", 0, len(text), text)]), p["id"]))
    with _progress(console) as progress:
        task = progress.add_task(f"embedding and indexing {name} pool passages", total=None)
        # The embedding cache keeps every finished batch, so an interrupted build resumes.
        services.ingest.ingest_many(docs, on_progress=lambda done, total: progress.update(task, completed=done,
                                                                                          total=total))
    return services


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console)


def _rank_docs(ranked_rowids: Iterable[int], rowid_doc: dict[int, str], k: int = 10) -> list[str]:
    docs: list[str] = []
    for rowid in ranked_rowids:
        d = rowid_doc.get(rowid)
        if d is not None and d not in docs:
            docs.append(d)
            if len(docs) == k:
                break
    return docs


def _metrics(ranks: list[int | None]) -> dict[str, float]:
    n = len(ranks) or 1
    return {
        "R@1": sum(1 for r in ranks if r is not None and r < 1) / n,
        "R@5": sum(1 for r in ranks if r is not None and r < 5) / n,
        "MRR@10": sum(1.0 / (r + 1) for r in ranks if r is not None and r < 10) / n,
    }


def _doc_of_rowids(services: Services) -> dict[int, str]:
    return {e.rowid: e.document_id for batch in services.corpus.store.iter_entries(DEFAULT_COLLECTION) for e in batch}


def _without_dictionary(search: SearchService) -> SearchService:
    """The same pipeline with the dictionary leg off: the "before" of the dictionary leg."""
    plain = copy.copy(search)
    plain.weights = dataclasses.replace(search.weights, dictionary=0.0)
    plain.dictionary = DictionaryLeg(None)
    return plain


def evaluate_run(run: Run, services: Services, console: Console, collect: list | None = None,
                 baseline: bool = True, rowid_doc: dict[int, str] | None = None,
                 tops: list[tuple[Question, int | None]] | None = None) -> RunFigures:
    """Rank every question of ``run``; ``collect`` receives (features, answerable, direction, run name) for
    calibration. ``baseline``: also rank with the dictionary leg off (the "no dictionary" leg; twice the work).
    ``rowid_doc``: the gold id each passage stands for (default: its document id); ``tops`` receives each
    question with the rowid of its first result."""
    search = services.search
    plain = _without_dictionary(search) if baseline else None
    rowid_doc = rowid_doc if rowid_doc is not None else _doc_of_rowids(services)
    flt = SearchFilter(DEFAULT_COLLECTION, lang=run.target_lang)
    ranks: dict[str, list[int | None]] = {leg: [] for leg in LEGS}
    in_evidence = 0
    evidence_share = 0.0
    unanswerable = 0
    started = time.perf_counter()
    texts = [q.text for q in run.questions]
    with _progress(console) as progress:
        task = progress.add_task(run.name, total=len(texts))
        for i in range(0, len(texts), 64):  # batch-encode: fills the query cache the pipeline reads
            services.embedder.encode_queries(texts[i:i + 64])
        for q in run.questions:
            query = q.text.strip()
            qvec = services.embedder.encode_queries([query])[0]
            ranking = search.rank(qvec, query, detect_lang(query), flt)
            scored, ranked = ranking.scored, ranking.ordered
            orders = {
                "final": [r for r, _ in ranked],
                "dense": sorted(scored, key=lambda r: -scored[r]["dense"]),
            }
            if plain is not None:
                orders["no dictionary"] = [r for r, _ in plain.rank(qvec, query, detect_lang(query), flt).ordered]
            for leg in ("lexical", "cross", "dictionary"):  # each sparse leg alone: only the passages it scores
                orders[leg] = [r for r in sorted(scored, key=lambda r: -scored[r].get(leg, 0.0))
                               if scored[r].get(leg, 0.0) > 0]
            for leg, order in orders.items():
                docs = _rank_docs(order, rowid_doc)
                ranks[leg].append(next((j for j, d in enumerate(docs) if d in q.gold), None))
            if tops is not None:
                tops.append((q, ranked[0][0] if ranked else None))
            confident = bool(ranked) and search.answerable(ranking)[1]
            unanswerable += not confident
            if collect is not None and ranked:
                collect.append((ranking.features, run.answerable, ranking.direction, run.name))
            if run.answerable and q.answers and ranked:
                top = ranked[0][0]
                spans, sent_scores = ranking.sentences.get(top, (None, None))
                passage = ranking.passages[top]
                ev = search.evidence.select(passage, spans, sent_scores).text
                in_evidence += any(_norm(a) in _norm(ev) for a in q.answers)
                evidence_share += len(ev) / max(len(passage.text), 1)
            progress.advance(task)
    n = len(run.questions)
    fig = RunFigures(run.name, n, seconds=time.perf_counter() - started, said_unanswerable=unanswerable / max(n, 1))
    if run.answerable:
        fig.legs = {leg: _metrics(r) for leg, r in ranks.items() if r}
        fig.answer_in_evidence = in_evidence / max(n, 1)
        fig.evidence_share = evidence_share / max(n, 1)
    return fig


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def fit_calibration(samples: list[tuple[dict[str, float], bool]], names: list[str], steps: int = 4000
                    ) -> tuple[dict[str, float], float]:
    """Logistic regression (plain gradient descent on standardised features) → raw weights and bias."""
    x = np.array([[f.get(n, 0.0) for n in names] for f, *_ in samples], dtype=np.float64)
    y = np.array([1.0 if a else 0.0 for _, a, *_ in samples])
    mu, sd = x.mean(0), x.std(0) + 1e-9
    z = (x - mu) / sd
    w, b = np.zeros(len(names)), 0.0
    pos = y.mean()
    sample_w = np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))  # balance the two classes
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(z @ w + b)))
        g = (p - y) * sample_w
        w -= 0.5 * (z.T @ g) / len(y)
        b -= 0.5 * g.mean()
    raw_w = w / sd
    return {n: float(v) for n, v in zip(names, raw_w)}, float(b - (raw_w * mu).sum())


def print_figures(figures: list[RunFigures], console: Console) -> None:
    table = Table(title="retrieval quality (R@1 / R@5 / MRR@10)")
    for col in ("run", "n", "final", "dense only", "lexical only", "cross-language only", "dictionary only",
                "final without dictionary", "answer in evidence (length ÷ passage)", "said unanswerable"):
        table.add_column(col)
    for f in figures:
        cells = [" / ".join(f"{f.legs[leg][m]:.3f}" for m in ("R@1", "R@5", "MRR@10")) if leg in f.legs else "—"
                 for leg in LEGS]
        table.add_row(f.name, str(f.n), *cells,
                      f"{f.answer_in_evidence:.3f} ({f.evidence_share:.2f})" if f.answer_in_evidence is not None else "—",
                      f"{f.said_unanswerable:.3f}")
    console.print(table)


BACKENDS = ("embedded", "distributed", "both")


@contextmanager
def pool_settings(settings: Settings, backend: str) -> Iterator[Callable[[str], Settings]]:
    """The settings of each pool's corpus: the configured ones (embedded), or, for ``distributed``, a
    PostgreSQL database and Milvus prefix per pool on engines started for this run (as the tests start
    them) and stopped after."""
    if backend == "embedded":
        if settings.distributed:
            raise ValueError("qa eval builds one corpus per pool: with QA_STORE=postgres use --backend distributed, "
                             "which starts PostgreSQL and milvus-lite for the run")
        yield lambda name: settings
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from engines import engines_for_a_run  # the engines the tests start
    from pydantic import SecretStr

    scratch = Path(tempfile.mkdtemp(prefix="qa-eval-dist-"))
    try:
        with engines_for_a_run() as (postgres, milvus):
            def settings_for(name: str) -> Settings:
                tag = re.sub(r"[^a-z0-9]+", "_", name.lower())
                return settings.model_copy(update={
                    "store": "postgres", "index": "milvus", "postgres_dsn": SecretStr(postgres.database(f"eval_{tag}")),
                    "milvus_uri": milvus.uri, "milvus_prefix": f"eval_{tag}", "data_dir": scratch / tag})

            yield settings_for
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_eval(benchmark: str, eval_dir: Path, settings: Settings, *, limit: int | None = None,
             output: Path | None = None, console: Console | None = None, calibrate: bool = False,
             embedder: Embedder | None = None, backend: str = "embedded") -> list[RunFigures]:
    console = console or Console()
    eval_dir = Path(eval_dir)
    if not (eval_dir / "xquad").is_dir():
        raise FileNotFoundError(f"{eval_dir} has no xquad/ folder: pass --eval-dir pointing at shared/eval")
    if backend == "both":
        embedder = embedder or eval_embedder(settings)
        both = {b: run_eval(benchmark, eval_dir, settings, limit=limit, console=console, embedder=embedder,
                            backend=b) for b in ("embedded", "distributed")}
        compare_backends(both["embedded"], both["distributed"], console)
        if output:
            output.write_text(json.dumps({b: [f.__dict__ for f in figs] for b, figs in both.items()}, indent=1,
                                         ensure_ascii=False), encoding="utf-8")
        return both["distributed"]
    pools, runs = load_runs(benchmark, eval_dir)
    embedder = embedder or eval_embedder(settings)
    figures = []
    samples: list = []
    with pool_settings(settings, backend) as settings_for:
        services = {name: build_pool(name, passages, settings_for(name), console, embedder)
                    for name, passages in pools.items()}
        try:
            for run in runs:
                if limit:
                    run.questions = run.questions[:limit]
                figures.append(evaluate_run(run, services[run.pool], console, samples if calibrate else None,
                                            baseline=not calibrate))
        finally:
            if backend != "embedded":  # before its engines stop
                for built in services.values():
                    built.close()
    print_figures(figures, console)
    if output:
        output.write_text(json.dumps([f.__dict__ for f in figures], indent=1, ensure_ascii=False), encoding="utf-8")
    if calibrate:
        return figures, samples  # type: ignore[return-value]
    return figures


def compare_backends(embedded: list[RunFigures], distributed: list[RunFigures], console: Console) -> float:
    """R@1 of the final pipeline per run on both backends, and the largest difference."""
    table = Table(title="R@1 of the final pipeline: embedded vs distributed backend")
    for col in ("run", "n", "embedded", "distributed", "difference"):
        table.add_column(col)
    worst = 0.0
    for e, d in zip(embedded, distributed):
        if "final" not in e.legs:
            continue
        a, b = e.legs["final"]["R@1"], d.legs["final"]["R@1"]
        worst = max(worst, abs(a - b))
        table.add_row(e.name, str(e.n), f"{a:.4f}", f"{b:.4f}", f"{b - a:+.4f}")
    console.print(table)
    console.print(f"largest R@1 difference: {worst:.4f}")
    return worst


def no_answer_report(figures: list[RunFigures]) -> dict[str, float]:
    """Share of out-of-corpus questions flagged unanswerable, and of answerable ones wrongly flagged."""
    ooc = [f for f in figures if not f.legs]
    inc = [f for f in figures if f.legs]
    total = lambda fs: sum(f.n for f in fs) or 1  # noqa: E731
    return {
        "out_of_corpus_flagged": sum(f.said_unanswerable * f.n for f in ooc) / total(ooc),
        "answerable_flagged": sum(f.said_unanswerable * f.n for f in inc) / total(inc),
    }


def _threshold_report(conf_pos: np.ndarray, conf_neg: np.ndarray, threshold: float) -> dict:
    flagged_pos, flagged_neg = int((conf_pos < threshold).sum()), int((conf_neg < threshold).sum())
    return {
        "threshold": threshold,
        "answerable_questions": int(len(conf_pos)),
        "out_of_corpus_questions": int(len(conf_neg)),
        "answerable_flagged": flagged_pos / max(1, len(conf_pos)),
        "out_of_corpus_flagged": flagged_neg / max(1, len(conf_neg)),
        "unanswerable_precision": flagged_neg / max(1, flagged_neg + flagged_pos),
        "unanswerable_recall": flagged_neg / max(1, len(conf_neg)),
    }


def _highest_threshold(conf_pos: np.ndarray, max_flagged: float) -> float:
    """The highest threshold that flags (strictly below it) at most ``max_flagged`` of ``conf_pos``."""
    return float(np.sort(conf_pos)[int(max_flagged * len(conf_pos))])


MIN_DIRECTION_SAMPLES = 200  # a direction with fewer answerable questions keeps the overall threshold


def calibrate(eval_dir: Path, settings: Settings, *, limit: int | None = None, console: Console | None = None,
              max_answerable_flagged: float = 0.01, path: Path | None = None) -> dict:
    """Fit the confidence model on in-corpus vs out-of-corpus questions and store it for this model.

    One logistic model over :data:`qa.retrieval.confidence.FEATURES`; a threshold per direction
    (question language → language of the best passage): the highest one that flags at most
    ``max_answerable_flagged`` of that direction's answerable questions. The report gives, overall and
    per direction, the share of answerable and of out-of-corpus questions flagged at those thresholds.
    """
    from qa.retrieval.confidence import CALIBRATION_FILE, DIRECTIONS, FEATURES, Calibration, model_key

    console = console or Console()
    embedder = eval_embedder(settings)
    figures, samples = run_eval("noanswer", eval_dir, settings, limit=limit, console=console, calibrate=True,
                                embedder=embedder)
    weights, bias = fit_calibration(samples, list(FEATURES))
    cal = Calibration(weights=weights, bias=bias)
    conf = np.array([cal.confidence(f) for f, *_ in samples])
    pos = np.array([a for _, a, *_ in samples], dtype=bool)
    dirs = np.array([d for _, _, d, _ in samples])
    names = np.array([name for *_, name in samples])
    threshold = _highest_threshold(conf[pos], max_answerable_flagged)
    thresholds: dict[str, float] = {}
    per_direction: dict[str, dict] = {}
    for d in DIRECTIONS:
        here = dirs == d
        if (pos & here).sum() >= MIN_DIRECTION_SAMPLES:
            thresholds[d] = _highest_threshold(conf[pos & here], max_answerable_flagged)
        per_direction[d] = _threshold_report(conf[pos & here], conf[~pos & here], thresholds.get(d, threshold))
    applied = np.array([thresholds.get(d, threshold) for d in dirs])
    flagged = conf < applied
    report = {
        **_threshold_report(conf[pos], conf[~pos], threshold),
        "answerable_flagged": float(flagged[pos].mean()),
        "out_of_corpus_flagged": float(flagged[~pos].mean()),
        "unanswerable_precision": float(flagged[~pos].sum() / max(1, flagged.sum())),
        "unanswerable_recall": float(flagged[~pos].mean()),
        "max_answerable_flagged": max_answerable_flagged,
        "per_direction": per_direction,
        # the share of each question set flagged unanswerable at the fitted thresholds (answerable sets: refusals)
        "per_run": {str(name): float(flagged[names == name].mean()) for name in dict.fromkeys(names)},
        "data": "in corpus: XQuAD zh/en, 4 directions on one-language corpora and 2 on the split (mixed) pool, "
                "and CMRC 2018 dev; out of corpus: questions on XQuAD articles left out of the pool (zh and en, "
                "against both languages and against each language alone), CMRC 2018 dev questions against "
                "XQuAD, and XQuAD questions (zh and en) against CMRC 2018",
    }
    path = path or CALIBRATION_FILE
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    model_id = embedder.model_id
    data[model_key(model_id)] = {"weights": weights, "bias": bias, "threshold": threshold, "thresholds": thresholds,
                                 "report": report}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    console.print(json.dumps(report, indent=1, ensure_ascii=False))
    return report


__all__ = ["run_eval", "fit_calibration", "no_answer_report", "load_runs", "calibrate"]
