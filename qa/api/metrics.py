"""GET /metrics in the Prometheus text format (prometheus-client).

Per request (labelled by the route's template, never its raw path, so ids do not multiply series):
``qa_http_requests_total{method,route,status}``, ``qa_http_request_duration_seconds{method,route}``
and ``qa_http_server_errors_total{route}``; per search, ``qa_search_stage_seconds{stage}``. Read when scraped: ``qa_documents{collection}`` and
``qa_passages{collection}`` (the index sizes), ``qa_service_ready``, and the question micro-batcher's queue depth, batches and
batch sizes (``qa_model_*``). Document ingest rate: ``qa_http_requests_total{route="/v1/documents",
status="201"}``. Nothing here holds a query, a key or a document's text.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.wiring import ServiceHolder

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


def route_label(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class ServiceCollector:
    """Figures read from the running services at scrape time."""

    def __init__(self, holder: ServiceHolder):
        self.holder = holder

    def collect(self):
        services = self.holder.services
        yield GaugeMetricFamily("qa_service_ready", "1 when the service answers searches.", value=int(services is not None))
        if services is None:
            return
        documents = GaugeMetricFamily("qa_documents", "Documents stored, per collection.", labels=["collection"])
        passages = GaugeMetricFamily("qa_passages", "Passages stored (and indexed), per collection.",
                                     labels=["collection"])
        for collection in services.corpus.store.list_collections():
            documents.add_metric([collection.name], collection.documents)
            passages.add_metric([collection.name], collection.passages)
        yield documents
        yield passages
        batcher = _micro_batcher(services.embedder)
        if batcher is not None:
            stats = batcher.stats
            yield GaugeMetricFamily("qa_model_queue_texts", "Questions waiting for the model.",
                                    value=batcher._queued_texts)
            yield CounterMetricFamily("qa_model_batches", "Micro-batches of questions encoded.", value=stats.batches)
            yield CounterMetricFamily("qa_model_batched_texts", "Questions encoded in micro-batches.",
                                      value=stats.batched_texts)
            yield CounterMetricFamily("qa_model_direct_calls", "Encoder calls run on their own (lone questions, "
                                      "big calls).", value=stats.direct)
            yield GaugeMetricFamily("qa_model_largest_batch", "Most questions in one micro-batch so far.",
                                    value=stats.largest_batch)
            yield CounterMetricFamily("qa_model_passage_rounds", "Rounds of passage encoding (the passages of the "
                                      "uploads waiting for the model, taken together).", value=stats.passage_rounds)
            yield CounterMetricFamily("qa_model_passage_requests", "Passage requests (upload chunks) those rounds "
                                      "served.", value=stats.passage_requests)
            yield CounterMetricFamily("qa_model_passage_passes", "Forward passes of passages.",
                                      value=stats.passage_passes)
            yield CounterMetricFamily("qa_model_passage_texts", "Distinct passages and sentences encoded in rounds.",
                                      value=stats.passage_texts)
            yield GaugeMetricFamily("qa_model_largest_round", "Most passage requests in one round so far.",
                                    value=stats.largest_round)


def _micro_batcher(embedder):
    """The MicroBatchingEmbedder inside the embedder's wrappers, if any."""
    seen = 0
    while embedder is not None and seen < 10:
        if hasattr(embedder, "stats") and hasattr(embedder, "_queued_texts"):
            return embedder
        embedder, seen = getattr(embedder, "inner", None), seen + 1
    return None


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry, holder: ServiceHolder):
        self.app, self.holder, self.watching_search = app, holder, False
        self.stages = Histogram("qa_search_stage_seconds", "Time a search spends in each stage (embed, dense, "
                                "lexical, fusion, second_stage, evidence, ..., total).", ["stage"],
                                buckets=STAGE_BUCKETS, registry=registry)
        self.requests = Counter("qa_http_requests", "HTTP requests answered.", ["method", "route", "status"],
                                registry=registry)
        self.latency = Histogram("qa_http_request_duration_seconds", "Time to answer an HTTP request.",
                                 ["method", "route"], buckets=BUCKETS, registry=registry)
        self.errors = Counter("qa_http_server_errors", "Requests answered with a 5xx.", ["route"], registry=registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self.watching_search and self.holder.services is not None:  # once the services are up
            self.holder.services.search.timings_sink = self._observe_stages
            self.watching_search = True
        start, status = time.perf_counter(), 500

        async def observed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route, method = route_label(scope), scope["method"]
            self.requests.labels(method, route, str(status)).inc()
            self.latency.labels(method, route).observe(time.perf_counter() - start)
            if status >= 500:
                self.errors.labels(route).inc()


    def _observe_stages(self, ms: dict[str, float]) -> None:
        for stage, value in ms.items():
            self.stages.labels(stage).observe(value / 1000.0)


def install_metrics(app, holder: ServiceHolder) -> None:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(holder))

    async def metrics(_: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.router.routes.append(Route("/metrics", metrics, methods=["GET"], include_in_schema=False))
    app.add_middleware(MetricsMiddleware, registry=registry, holder=holder)
