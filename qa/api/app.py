"""The FastAPI application: routers, error handlers, the service holder, and the middleware that keeps it
safe to expose (docs/security.md), from the outside in: request id and access line, metrics, Host and
Origin checks (CORS when configured), API keys and rate limits, body size and read deadline, uploads at
once, client watch, JSON guard."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from qa import __version__
from qa.api.auth import AuthMiddleware
from qa.api.browser import install_browser_safety
from qa.api.clientwatch import ClientWatchMiddleware
from qa.api.errors import install_error_handlers
from qa.api.jsonguard import JsonGuardMiddleware
from qa.api.limits import BodyLimitMiddleware, IngestGateMiddleware
from qa.api.logs import RequestIdMiddleware
from qa.api.metrics import install_metrics
from qa.api.openapi import install_openapi
from qa.api.routers import chat, collections, documents, embeddings, files, health, keys, search, web
from qa.mcp_server import mount_streamable_http
from qa.settings import Settings, get_settings
from qa.wiring import ServiceHolder, build_keys


def create_app(settings: Settings | None = None, holder: ServiceHolder | None = None) -> FastAPI:
    settings = settings or get_settings()
    holder = holder or ServiceHolder(settings)
    key_service = build_keys(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if holder.services is None and not holder.ready.is_set():
            holder.start(background=True)
        async with mcp_sessions.run():
            yield
        if holder.services is not None:
            holder.services.close()
        key_service.close()

    app = FastAPI(
        title="qa", version=__version__, lifespan=lifespan,
        description="Bilingual (Chinese/English) question answering over your documents, with exact citations.",
    )
    app.state.holder = holder
    app.state.keys = key_service
    install_error_handlers(app)
    install_openapi(app)
    # Outermost last: the body limit and read deadline apply to everything that reads a body.
    app.add_middleware(JsonGuardMiddleware)
    app.add_middleware(ClientWatchMiddleware)
    app.add_middleware(IngestGateMiddleware, settings=settings)
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    app.add_middleware(AuthMiddleware, keys=key_service, settings=settings, routes=app.router.routes)
    install_browser_safety(app, settings)  # before the above: Host and Origin
    install_metrics(app, holder)
    app.add_middleware(RequestIdMiddleware)  # outermost: every answer has an id and an access line
    for module in (search, collections, documents, files, health, chat, embeddings, keys, web):
        app.include_router(module.router)
    mcp_sessions = mount_streamable_http(app, holder, settings)  # MCP over streamable HTTP at /mcp
    return app
