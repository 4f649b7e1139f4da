"""The one place where infrastructure is built from settings and handed to the services."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from embeddings import Embedder, create_embedder
from embeddings.quantize import REDUCED_MODES
from qa.chat.service import ChatService
from qa.chat.upstream import UpstreamLLM
from qa.corpus import Corpus
from qa.documents import DocumentService
from qa.index import IndexCorruptError, IndexMismatchError, create_dense_index, create_lexical_index
from qa.ingest.formats import SUPPORTED_EXTENSIONS, ParseOptions
from qa.ingest.originals import OriginalFiles
from qa.ingest.service import IngestService
from qa.jobs import JobQueue, create_job_queue
from qa.model_choice import settled_quantize
from qa.keys import KeyService, create_key_store
from qa.retrieval.confidence import Calibration
from qa.retrieval.dictionary_leg import DictionaryLeg
from qa.retrieval.evidence import EvidenceSelector
from qa.retrieval.search import FusionWeights, SearchService
from qa.retrieval.timing import StageTimes
from qa.retrieval.types import SearchRequest
from qa.settings import Settings
from qa.store import DEFAULT_COLLECTION, create_store
from qa.text.dictionary import Dictionary, DictionaryUnavailable
from qa.text.tokenize import cross_language_query, tokenize

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    embedder: Embedder
    corpus: Corpus
    ingest: IngestService
    documents: DocumentService
    search: SearchService
    chat: ChatService | None = None  # built by build_services; None only where Services is made by hand
    originals: OriginalFiles | None = None  # kept uploads, layouts, page images
    jobs: JobQueue | None = None  # long uploads (started by the HTTP service)
    dictionary_status: str = "off"  # what /healthz says about the dictionary leg

    def close(self) -> None:
        if self.jobs is not None:
            self.jobs.stop()
        self.corpus.close()


def create_upstream(settings: Settings) -> UpstreamLLM | None:
    """The OpenAI-compatible language model for generated chat answers, when QA_LLM_BASE_URL is set."""
    if not settings.llm_base_url:
        return None
    return UpstreamLLM(settings.llm_base_url, settings.llm_api_key, settings.llm_model or "default",
                       settings.llm_timeout_s)


class FaissThreads:
    """``faiss.omp_set_num_threads(n)`` on the calling thread, once per thread.

    libgomp keeps the OpenMP thread count per thread (a thread the runtime did not start gets the
    process default, i.e. every core), so setting it once where the services are built would not
    reach the request threads of the HTTP threadpool: each thread applies it on its first search.
    """

    def __init__(self, threads: int):
        self.threads = max(1, threads)
        self._done = threading.local()

    def __call__(self) -> None:
        if not getattr(self._done, "applied", False):
            import faiss

            faiss.omp_set_num_threads(self.threads)
            self._done.applied = True


class ThreadLimitedSearch(SearchService):
    """:class:`SearchService` whose ranking (FAISS included) runs with ``faiss_threads`` OpenMP threads:
    on two cores, concurrent requests already keep every core busy."""

    faiss_threads: FaissThreads

    def rank(self, *args, **kwargs):
        self.faiss_threads()
        return super().rank(*args, **kwargs)


def load_calibration(model_id: str) -> Calibration:
    """The answerable calibration fitted for ``model_id``. A reduced-precision model (bf16, int8,
    OpenVINO) that has none yet borrows the one of its fp32 twin (same weights; vectors at cosine >= 0.98,
    so the confidence features barely move); ``QA_QUANTIZE=<mode> qa eval calibrate`` fits its own."""
    calibration = Calibration.load(model_id)
    base, _, precision = model_id.rpartition("/")
    if not calibration.report and precision in REDUCED_MODES:
        twin = Calibration.load(base)
        if twin.report:
            log.info("no calibration fitted for %s: using the fp32 one", model_id)
            twin.model_id = model_id
            return twin
    return calibration


def build_corpus(settings: Settings, model_id: str, dimension: int) -> Corpus:
    """The configured store and indexes, caught up with each other."""
    store = create_store(settings)
    try:
        if settings.distributed:
            from qa.shared_corpus import SharedCorpus

            return SharedCorpus(store, create_dense_index(settings, model_id, dimension),
                                create_lexical_index(settings), model_id, dimension,
                                visibility_timeout_s=settings.index_visibility_timeout_s, where=store.address)
        return Corpus(store, create_dense_index(settings, model_id, dimension), create_lexical_index(settings),
                      model_id, dimension, checkpoint_interval_s=settings.checkpoint_interval_s,
                      where=str(settings.data_dir))
    except (IndexCorruptError, IndexMismatchError) as exc:
        store.close()
        if "qa reindex" in str(exc):
            raise
        raise type(exc)(f"{exc}. Run `qa reindex --data-dir {settings.data_dir}` to rebuild the indexes from the "
                        "passage store.") from exc
    except BaseException:
        store.close()
        raise


def load_dictionary(settings: Settings) -> tuple[Dictionary | None, str]:
    """CC-CEDICT for the dictionary leg and the line /healthz shows. A dictionary that cannot be read is
    logged as an error and reported, and the service runs without the leg (never silently worse)."""
    if not settings.dictionary:
        return None, "off"
    try:
        dictionary = Dictionary.load(settings.dictionary_path, cache_dir=settings.cache_dir)
    except DictionaryUnavailable as exc:
        log.error("dictionary leg disabled: %s", exc)
        return None, f"unavailable: {exc}"
    return dictionary, f"CC-CEDICT, {dictionary.entries} entries"


class UncalibratedModelError(RuntimeError):
    """The service would run a model whose answerable threshold was never fitted."""


def check_calibrated(services: Services) -> None:
    """Refuse to serve a model without a fitted answerable calibration (its threshold would be a guess),
    unless QA_ANSWERABLE_THRESHOLD sets one explicitly."""
    search = services.search
    if services.settings.answerable_threshold is None and not search.calibration.report:
        model = search.calibration.model_id or services.embedder.model_id
        raise UncalibratedModelError(
            f"no answerable calibration is fitted for {model}: fit one with "
            f"`QA_EMBEDDER={services.settings.embedder} qa eval calibrate --eval-dir <folder with xquad/ and "
            "cmrc2018/>` (the same QA_* model settings), or set QA_ANSWERABLE_THRESHOLD to serve it anyway")


def build_services(settings: Settings, embedder: Embedder | None = None) -> Services:
    settings = settled_quantize(settings)
    embedder = embedder or create_embedder(settings)
    dictionary, dictionary_status = load_dictionary(settings)
    corpus = build_corpus(settings, embedder.model_id, embedder.dimension)
    originals = OriginalFiles(Path(settings.data_dir) / "originals")
    ingest = IngestService(corpus, embedder, settings.max_passage_tokens, settings.heading_max_chars,
                           ParseOptions.from_settings(settings), originals,
                           max_passages=settings.max_document_passages)
    documents = DocumentService(corpus, ingest)
    search = ThreadLimitedSearch(
        corpus, embedder, EvidenceSelector(join_margin=settings.evidence_join_margin,
                                                   min_chars=settings.evidence_min_chars),
        load_calibration(embedder.model_id), candidates=settings.candidates,
        weights=FusionWeights(lexical=settings.lexical_weight, sentence=settings.sentence_weight,
                              cross=settings.cross_weight, dictionary=settings.dictionary_weight,
                              rerank_depth=settings.rerank_depth,
                              balance_languages=settings.balance_languages),
        answerable_threshold=settings.answerable_threshold, dictionary=DictionaryLeg(dictionary),
    )
    search.faiss_threads = FaissThreads(settings.faiss_threads)
    search.faiss_threads()  # this thread too (ingest of the seeds, the CLI)
    chat = ChatService(search, create_upstream(settings), max_query_chars=settings.max_query_chars)
    return Services(settings, embedder, corpus, ingest, documents, search, chat, originals,
                    dictionary_status=dictionary_status)


def build_keys(settings: Settings) -> KeyService:
    """The API keys, kept where the passage store is (opened on first use)."""
    return KeyService(lambda: create_key_store(settings), cache_s=settings.key_cache_s)


def job_handlers(services: Services) -> dict:
    """What each kind of job does."""
    from qa.ingest.jobs import upload_handler

    return {"ingest": upload_handler(services.ingest)}


def start_jobs(services: Services) -> JobQueue:
    """The job queue of long uploads (``<data_dir>/jobs``, or PostgreSQL shared by every replica), with
    this process's worker, resuming what a restart (or a replica that died) interrupted."""
    services.jobs = create_job_queue(services.settings, job_handlers(services))
    return services.jobs


# Questions the service asks itself before it says it is ready: short and long, Chinese (Traditional too)
# and English, so that every stage of a search has run once.
WARM_UP_QUESTIONS = (
    "預熱：上海G60科創走廊的徐汇区在哪里？",
    "When did the warm-up of the service start, and which stages of the search did it run through first?",
    "人工智能产业",
    "warm-up",
)


def warm_up(services: Services, model: bool = True) -> None:
    """Pay the first-use costs before the service says it is ready, so that the first question is as fast as
    the hundredth: jieba's dictionary, the Traditional → Simplified converter, pinyin, the model's forward
    passes at the question shapes (:meth:`~embeddings.base.Embedder.warm_up`), and two whole searches in the
    default collection (indexes, second stage, evidence)."""
    for question in WARM_UP_QUESTIONS:
        tokenize(question)
        cross_language_query(question, "zh")
    if model:  # not when it was warmed up as it loaded (embeddings.load_in_background)
        services.embedder.warm_up()
    for question in WARM_UP_QUESTIONS[:2]:
        services.search.search(SearchRequest(query=question, collection=DEFAULT_COLLECTION))



def ingest_seeds_if_empty(services: Services) -> str:
    """Ingest the seeds folder into an empty store; returns what happened, for the log and /healthz."""
    seeds = services.settings.seeds_dir
    if services.corpus.store.count_documents() > 0:
        return "not needed: the store has documents"
    if seeds is None:
        note = "none: QA_SEEDS_DIR is not set, the store is empty; add documents with POST /v1/documents or qa ingest"
    elif not Path(seeds).is_dir():
        note = f"missing: the seeds folder {Path(seeds).resolve()} does not exist, the store is empty; set QA_SEEDS_DIR"
    else:
        log.info("empty store: ingesting %s", seeds)
        report = services.documents.ingest_paths([Path(seeds)])
        for skipped in report.skipped:
            log.warning("seed %s skipped: %s", skipped.path, skipped.reason)
        if report.results:
            return f"ingested {len(report.results)} documents from {Path(seeds).resolve()}"
        note = (f"empty: the seeds folder {Path(seeds).resolve()} holds no document qa reads "
                f"({' '.join(sorted(SUPPORTED_EXTENSIONS))}), the store is empty")
    log.warning("seeds %s", note)
    return note


def process_age_s() -> float:
    """Seconds since this process started (``/proc/self/stat``; where there is none, since this module loaded)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - _LOADED


_LOADED = time.perf_counter()


@dataclass
class ServiceHolder:
    """Builds the services in a background thread so the HTTP server answers /healthz while loading."""

    settings: Settings
    services: Services | None = None
    embedder: Future[Embedder] | None = None  # the model, loaded and warmed up from earlier on (qa serve)
    status: str = "starting"
    error: str | None = None
    seeds: str | None = None  # what became of the seeds folder (see ingest_seeds_if_empty)
    ready: threading.Event = field(default_factory=threading.Event)
    startup_s: dict[str, float] = field(default_factory=dict)  # seconds per part of the start-up (/healthz)

    @contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        times = StageTimes()
        try:
            with times.stage(part):
                yield
        finally:
            self.startup_s[part] = round(times.ms[part] / 1000.0, 2)

    def start(self, background: bool = True) -> None:
        if background:
            threading.Thread(target=self._load, name="qa-loader", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        try:
            self.status = "loading model"
            self.startup_s["imports"] = round(process_age_s(), 2)  # the interpreter, the modules, the HTTP server
            with self._timed("model"):
                embedder = self.embedder.result() if self.embedder is not None else None
            with self._timed("services"):
                services = build_services(self.settings, embedder)
            try:
                check_calibrated(services)
            except UncalibratedModelError:
                services.close()
                raise
            self.status = "ingesting seeds"
            with self._timed("seeds"):
                self.seeds = ingest_seeds_if_empty(services)
            self.status = "warming up"
            with self._timed("warm_up"):
                warm_up(services, model=self.embedder is None)
            services.corpus.start_checkpointer()
            start_jobs(services)
            self.services = services
            self.status = "ready"
            self.startup_s["total"] = round(process_age_s(), 2)
            log.info("ready after %.1f s (%s)", self.startup_s["total"],
                     ", ".join(f"{k} {v:.2f} s" for k, v in self.startup_s.items() if k != "total"))
        except Exception as exc:  # reported by /healthz and every request
            log.exception("start-up failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
        finally:
            self.ready.set()
