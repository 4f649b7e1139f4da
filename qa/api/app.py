"""The FastAPI application: routers, error handlers, and the service holder."""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from qa import __version__
from qa.api.errors import install_error_handlers
from qa.api.routers import chat, collections, documents, files, embeddings, health, search, web
from qa.mcp_server import mount_streamable_http
from qa.settings import Settings, get_settings
from qa.wiring import ServiceHolder


def create_app(settings: Settings | None = None, holder: ServiceHolder | None = None) -> FastAPI:
    settings = settings or get_settings()
    holder = holder or ServiceHolder(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if holder.services is None and not holder.ready.is_set():
            holder.start(background=True)
        async with mcp_sessions.run():
            yield
        if holder.services is not None:
            holder.services.close()

    app = FastAPI(
        title="qa", version=__version__, lifespan=lifespan,
        description="Bilingual (Chinese/English) question answering over your documents, with exact citations.",
    )
    app.state.holder = holder
    install_error_handlers(app)
    for module in (search, collections, documents, files, health, chat, embeddings, web):
        app.include_router(module.router)
    mcp_sessions = mount_streamable_http(app, holder, settings)  # MCP over streamable HTTP at /mcp
    return app
