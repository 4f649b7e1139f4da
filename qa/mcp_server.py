"""MCP server (official ``mcp`` SDK): the search, a passage, and a cited answer, as tools for agents.

Tools (each returns structured content, and the same JSON as text):

* ``search(query, top_k=5, lang=None, collection="default")`` — the cited passages, exactly as
  ``POST /v1/search`` returns them;
* ``get_passage(passage_id, collection="default")`` — one passage with its document offsets, as
  ``GET /v1/passages/{id}``;
* ``ask(question, collection="default")`` — the chat answer (extractive, or generated when a language model is configured)
  with numbered citations, ``answerable`` and ``confidence``.

Two transports: stdio (``qa mcp``, for desktop clients that start the server themselves) and
streamable HTTP, mounted in the running HTTP service at ``/mcp`` (stateless: any number of clients,
no session affinity). The services load in the background in both cases; a tool called while they
load waits for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import BaseModel, Field
from starlette.routing import Route

from qa import __version__
from qa.api.errors import error_body
from qa.api.principal import hide_unseen, principal_of, require_collection
from qa.api.schemas import EvidenceOut, PassageOut, SearchOut
from qa.chat.service import ChatInputError
from qa.keys import OPEN, Principal
from qa.retrieval.types import SearchRequest
from qa.store.base import DEFAULT_COLLECTION, CollectionNotFoundError, InvalidCollectionNameError
from qa.settings import Settings
from qa.wiring import ServiceHolder, Services

LOAD_TIMEOUT_S = 900.0

INSTRUCTIONS = (
    "Question answering over a collection of Chinese and English documents, with exact citations. "
    "Use `ask` for a short cited answer, `search` for the best passages (each with the evidence sentence "
    "and character offsets), `get_passage` to read a cited passage in full. When `answerable` is false the "
    "documents do not answer the question: say so rather than guessing."
)


class CitationOut(BaseModel):
    index: int = Field(description="The [index] marker in the answer text.")
    passage_id: str
    document_id: str
    title: str
    section: str | None
    paragraph: int
    start: int = Field(description="Passage start offset in the document.")
    end: int
    evidence: EvidenceOut = Field(description="The quoted sentence; offsets in the document.")
    score: float
    text: str = Field(description="The passage text.")
    collection: str = Field("default", description="The knowledge base the passage belongs to.")
    page: int | None = Field(None, description="First page of the passage (paged formats only).")


class AskOut(BaseModel):
    question: str
    answer: str
    answerable: bool
    confidence: float
    citations: list[CitationOut]


CollectionArg = Annotated[str, Field(description="The knowledge base (collection) to use; default \"default\".")]


def _principal(ctx: Context | None) -> Principal:
    """Who calls: the API key of the HTTP request (checked by the HTTP service), or over stdio the local
    user who started ``qa mcp``, who may read everything."""
    request = ctx.request_context.request if ctx is not None else None
    return OPEN if request is None else principal_of(request.scope)


@contextmanager
def _tool_errors(principal: Principal, services: Callable[[], Services], collection: str) -> Iterator[None]:
    """A collection the caller's key does not see is answered as a missing one; unknown or invalid
    collections become tool errors naming those there are (that the key sees)."""
    try:
        require_collection(principal, collection,
                           lambda: [c.name for c in services().documents.list_collections()])
        yield
    except CollectionNotFoundError as exc:
        raise ToolError(str(hide_unseen(principal, exc))) from exc
    except InvalidCollectionNameError as exc:
        raise ToolError(str(exc)) from exc


def _services(holder: ServiceHolder) -> Services:
    holder.ready.wait(LOAD_TIMEOUT_S)
    if holder.services is None:
        raise ToolError(f"the QA service is not available: {holder.error or holder.status}")
    return holder.services


def create_mcp_server(holder: ServiceHolder, start_holder: bool = False) -> MCPServer:
    """The MCP server over ``holder``'s services; ``start_holder`` loads them when the server starts."""

    @asynccontextmanager
    async def lifespan(_: MCPServer):
        if start_holder and holder.services is None and not holder.ready.is_set() and holder.status == "starting":
            holder.start(background=True)
        yield {}

    server = MCPServer("qa", title="qa: bilingual question answering with citations", version=__version__,
                       instructions=INSTRUCTIONS, lifespan=lifespan, log_level="WARNING")

    @server.tool(title="Search the documents")
    def search(query: Annotated[str, Field(min_length=1, max_length=2000, description="The question, Chinese or English.")],
               top_k: Annotated[int, Field(ge=1, le=50, description="How many passages.")] = 5,
               lang: Annotated[Literal["zh", "en"] | None, Field(description="Only passages in this language.")] = None,
               collection: CollectionArg = DEFAULT_COLLECTION, ctx: Context | None = None,
               ) -> SearchOut:
        """Passages that answer the question, best first, each with its evidence sentence and exact offsets."""
        if not query.strip():
            raise ToolError("query is empty: ask a question in Chinese or English")
        with _tool_errors(_principal(ctx), lambda: _services(holder), collection):
            result = _services(holder).search.search(SearchRequest(query=query, top_k=top_k, lang=lang,
                                                                   collection=collection))
        return SearchOut.from_result(result)

    @server.tool(title="Read a passage")
    def get_passage(passage_id: Annotated[str, Field(description='A passage id, e.g. "doc:3".')],
                    collection: CollectionArg = DEFAULT_COLLECTION, ctx: Context | None = None) -> PassageOut:
        """One passage by id: its text, document, section, paragraph number and offsets."""
        with _tool_errors(_principal(ctx), lambda: _services(holder), collection):
            p = _services(holder).documents.passage(passage_id, collection)
        if p is None:
            raise ToolError(f"no passage with id {passage_id!r} in collection {collection!r}; passage ids come from "
                            "search results")
        return PassageOut.from_passage(p)

    @server.tool(title="Ask a question")
    def ask(question: Annotated[str, Field(min_length=1, max_length=2000, description="Chinese or English.")],
            collection: CollectionArg = DEFAULT_COLLECTION, ctx: Context | None = None) -> AskOut:
        """A short answer with numbered [n] citations, or a plain statement that the documents do not answer."""
        chat = _services(holder).chat
        if chat is None:
            raise ToolError("the chat service is not configured")
        model = "qa" if collection == DEFAULT_COLLECTION else f"qa/{collection}"
        try:
            with _tool_errors(_principal(ctx), lambda: _services(holder), collection):
                _services(holder).documents.collection(collection)  # unknown: say which ones there are
                answer = chat.answer([{"role": "user", "content": question}], model, with_sources=False)
        except ChatInputError as exc:
            raise ToolError(str(exc)) from exc
        return AskOut(question=answer.question, answer=answer.text, answerable=answer.answerable,
                      confidence=answer.confidence,
                      citations=[CitationOut.model_validate(c.to_dict()) for c in answer.citations])

    return server


class StreamableHTTPEndpoint:
    """The ASGI endpoint at /mcp. A session manager runs only once, so each application lifespan
    (``run()``) gets a fresh one: an app served, stopped and served again (tests) keeps working."""

    def __init__(self, server: MCPServer, settings: Settings):
        self.server, self.settings = server, settings
        self.manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def run(self):
        self.server.streamable_http_app(stateless_http=True, host=self.settings.host)  # makes a new manager
        manager = self.server.session_manager
        async with manager.run():
            self.manager = manager
            try:
                yield
            finally:
                self.manager = None

    async def __call__(self, scope, receive, send) -> None:
        if self.manager is None:
            response = JSONResponse(error_body("not_ready", "the MCP endpoint is not running"), status_code=503)
            await response(scope, receive, send)
            return
        await self.manager.asgi_app(scope, receive, send)


def mount_streamable_http(app: FastAPI, holder: ServiceHolder, settings: Settings, path: str = "/mcp"
                          ) -> StreamableHTTPEndpoint:
    """Add the MCP endpoint to ``app`` at ``path``; enter the returned endpoint's ``run()`` in the app's lifespan."""
    endpoint = StreamableHTTPEndpoint(create_mcp_server(holder), settings)
    app.router.routes.append(Route(path, endpoint=endpoint, methods=["GET", "POST", "DELETE"]))
    return endpoint


def run_stdio(settings: Settings) -> None:
    """Serve MCP over stdin/stdout (``qa mcp``); the services load in the background meanwhile."""
    create_mcp_server(ServiceHolder(settings), start_holder=True).run("stdio")
