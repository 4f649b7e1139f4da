"""The one place where infrastructure is built from settings and handed to the services."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from embeddings import Embedder, create_embedder
from qa.chat.service import ChatService
from qa.chat.upstream import UpstreamLLM
from qa.corpus import Corpus
from qa.ingest.service import IngestService
from qa.retrieval.confidence import Calibration
from qa.retrieval.evidence import EvidenceSelector
from qa.retrieval.search import FusionWeights, SearchService
from qa.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    embedder: Embedder
    corpus: Corpus
    ingest: IngestService
    search: SearchService
    chat: ChatService | None = None  # built by build_services; None only where Services is made by hand

    def close(self) -> None:
        self.corpus.close()


def create_upstream(settings: Settings) -> UpstreamLLM | None:
    """The OpenAI-compatible language model for generated chat answers, when QA_LLM_BASE_URL is set."""
    if not settings.llm_base_url:
        return None
    return UpstreamLLM(settings.llm_base_url, settings.llm_api_key, settings.llm_model or "default",
                       settings.llm_timeout_s)


def build_services(settings: Settings, embedder: Embedder | None = None) -> Services:
    embedder = embedder or create_embedder(settings)
    corpus = Corpus(settings.data_dir, embedder.model_id, embedder.dimension, settings)
    ingest = IngestService(corpus, embedder, settings.max_passage_tokens, settings.heading_max_chars)
    search = SearchService(
        corpus, embedder, EvidenceSelector(),
        Calibration.load(embedder.model_id), candidates=settings.candidates,
        weights=FusionWeights(lexical=settings.lexical_weight, sentence=settings.sentence_weight,
                              translit=settings.translit_weight, rerank_depth=settings.rerank_depth),
        answerable_threshold=settings.answerable_threshold,
    )
    chat = ChatService(search, create_upstream(settings), max_query_chars=settings.max_query_chars)
    return Services(settings, embedder, corpus, ingest, search, chat)


def ingest_seeds_if_empty(services: Services) -> None:
    seeds = services.settings.seeds_dir
    if seeds and Path(seeds).is_dir() and services.corpus.store.count_documents() == 0:
        log.info("empty store: ingesting %s", seeds)
        services.ingest.ingest_paths([Path(seeds)])


@dataclass
class ServiceHolder:
    """Builds the services in a background thread so the HTTP server answers /healthz while loading."""

    settings: Settings
    services: Services | None = None
    status: str = "starting"
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self, background: bool = True) -> None:
        if background:
            threading.Thread(target=self._load, name="qa-loader", daemon=True).start()
        else:
            self._load()

    def _load(self) -> None:
        try:
            self.status = "loading model"
            services = build_services(self.settings)
            self.status = "ingesting seeds"
            ingest_seeds_if_empty(services)
            self.services = services
            self.status = "ready"
        except Exception as exc:  # reported by /healthz and every request
            log.exception("start-up failed")
            self.error = f"{type(exc).__name__}: {exc}"
            self.status = "failed"
        finally:
            self.ready.set()
