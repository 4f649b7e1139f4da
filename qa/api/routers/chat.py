"""OpenAI-compatible chat: POST /v1/chat/completions (plain or streamed) and GET /v1/models.

Any OpenAI-compatible frontend (Open WebUI, LibreChat, the ``openai`` client) can use the service
as a model named ``qa``. Besides the usual fields, a reply carries ``citations`` (numbered like the
``[n]`` markers in the text), ``answerable`` and ``confidence`` at the top level; a streamed reply
carries them in its last chunk, before ``data: [DONE]``.

Request decisions: ``content`` may be a string or a list of text parts (``{"type": "text", "text"}``),
which are joined with newlines; any other part (an image) is refused with 400. Unknown extra fields
(temperature, max_tokens, user, ...) are accepted and ignored. ``include_sources: false`` (an extension)
leaves the "Sources" block out of the text; the structured ``citations`` are always sent.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from qa.api.deps import get_holder, get_services
from qa.api.errors import ApiError
from qa.api.principal import principal_of
from qa.chat.service import MODELS, ChatAnswer, ChatInputError, ChatService, resolve_question, split_model
from qa.wiring import ServiceHolder
from qa.wiring import Services

log = logging.getLogger(__name__)
router = APIRouter(tags=["chat (OpenAI-compatible)"])

MAX_MESSAGES = 200
MAX_MESSAGE_CHARS = 32_000
_CREATED = int(time.time())


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | None = Field(None, description="A string, or a list of text parts (joined with newlines).")
    name: str | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _join_text_parts(cls, value):
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, list):
            texts = []
            for part in value:
                if not (isinstance(part, dict) and part.get("type") in ("text", "input_text")
                        and isinstance(part.get("text"), str)):
                    raise ValueError('only text content parts ({"type": "text", "text": "..."}) are supported')
                texts.append(part["text"])
            return "\n".join(texts)
        raise ValueError("content must be a string or a list of text parts")

    @field_validator("content")
    @classmethod
    def _not_too_long(cls, value: str | None) -> str | None:
        if value is not None and len(value) > MAX_MESSAGE_CHARS:
            raise ValueError(f"message has {len(value)} characters; the limit is {MAX_MESSAGE_CHARS}")
        return value


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)
    include_usage: bool = False


class ChatCompletionBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description='"qa" (generated when a language model is configured, else '
                                                'extractive) or "qa-extractive", over the default collection; '
                                                '"qa/<collection>" asks another knowledge base; default "qa".')
    messages: list[ChatMessageIn] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: StreamOptions | None = None
    include_sources: bool = Field(True, description='Extension: append the "Sources" block to the answer text.')


def _citations(answer: ChatAnswer) -> list[dict]:
    return [c.to_dict() for c in answer.citations]


def _extras(answer: ChatAnswer) -> dict:
    return {"citations": _citations(answer), "answerable": answer.answerable, "confidence": answer.confidence,
            "retrieval_query": answer.retrieval_query, "answer_mode": answer.mode}


def _chat(services: Services) -> ChatService:
    if services.chat is None:
        raise ApiError(503, "not_configured", "the chat service is not configured")
    return services.chat


def _sse(data: dict | str) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


def _stream(chat: ChatService, messages: list[dict], model: str, with_sources: bool) -> Iterator[str]:
    cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())

    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
                     **extra})

    yield chunk({"role": "assistant", "content": ""})
    try:
        for event in chat.stream(messages, model, with_sources):
            if isinstance(event, ChatAnswer):
                yield chunk({}, "stop", **_extras(event))
            elif event:
                yield chunk({"content": event})
    except Exception as exc:  # headers are sent: report in-band, then end the stream
        log.exception("chat stream failed")
        yield _sse({"error": {"message": f"{type(exc).__name__}: {exc}", "type": "server_error",
                              "param": None, "code": "internal_error"}})
    yield _sse("[DONE]")


@router.post("/v1/chat/completions")
def chat_completions(body: ChatCompletionBody, request: Request, services: Services = Depends(get_services)):
    """An answer to the last user message, citing the passages it comes from (OpenAI wire format)."""
    chat = _chat(services)
    messages = [{"role": m.role, "content": m.content or ""} for m in body.messages]
    try:
        model = chat.check_model(body.model, principal_of(request.scope).sees)
        resolve_question(messages)  # refuse a conversation without a question before any streaming starts
    except ChatInputError as exc:
        raise ApiError(exc.status, exc.code or "invalid_request", str(exc), exc.param) from exc
    if body.stream:
        return StreamingResponse(_stream(chat, messages, model, body.include_sources),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    answer = chat.answer(messages, model, body.include_sources)
    return JSONResponse({
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                     "finish_reason": "stop", "logprobs": None}],
        **_extras(answer),
    })


def _model(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": _CREATED, "owned_by": "qa"}


def _offered(holder: ServiceHolder, request: Request) -> list[str]:
    """Every collection's chat models once the service is ready, before that the default ones: those over
    the collections the request's key sees."""
    services = holder.services
    offered = list(MODELS) if services is None or services.chat is None else services.chat.offered()
    sees = principal_of(request.scope).sees
    return [m for m in offered if sees(split_model(m)[1])]


@router.get("/v1/models")
def list_models(request: Request, holder: ServiceHolder = Depends(get_holder)) -> dict:
    """The chat models: ``qa`` and ``qa-extractive`` over the default collection and ``qa/<collection>`` for
    every other knowledge base the key sees (answered while the service is still loading too)."""
    return {"object": "list", "data": [_model(m) for m in _offered(holder, request)]}


@router.get("/v1/models/{model_id:path}")
def get_model(model_id: str, request: Request, holder: ServiceHolder = Depends(get_holder)) -> dict:
    offered = _offered(holder, request)
    if model_id not in offered:
        raise ApiError(404, "model_not_found", f"The model {model_id!r} does not exist; this service offers "
                       f"{', '.join(offered) or 'no model to this key'}", "model")
    return _model(model_id)
