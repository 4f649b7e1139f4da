"""JSON request bodies the handlers can take: not nested too deeply, no lone UTF-16 surrogates.

Both are valid JSON syntax that Python parses, yet they break later: a body nested 1,000 deep raises
RecursionError while parsing or validating, and a lone surrogate (``"\\ud800"``) is a ``str`` that
cannot be encoded as UTF-8, so it fails wherever the text is stored, tokenised or sent back. This
ASGI middleware reads a JSON body (the body limit outside it still applies while reading), checks it
once, answers a clear 4xx when it is unusable and otherwise hands the same bytes to the application.
A body that is not valid JSON at all goes through untouched: the handlers say what is wrong with it.
"""

from __future__ import annotations

import json
import re

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.api.errors import error_response

MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class UnusableJson(ValueError):
    def __init__(self, status: int, type_: str, message: str):
        super().__init__(message)
        self.status, self.type = status, type_


def is_json(content_type: str | None) -> bool:
    """A JSON media type, or none at all (the documents route reads a body without one as JSON)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return not media or media == "application/json" or media.endswith("+json")


def check_json(value: object, max_depth: int = MAX_DEPTH) -> None:
    """Raise :class:`UnusableJson` for a parsed body nested deeper than ``max_depth`` or holding a lone
    surrogate in a key or a string (iterative: a deep body cannot overflow the stack here)."""
    stack: list[tuple[object, int, str]] = [(value, 1, "body")]
    while stack:
        item, depth, where = stack.pop()
        if isinstance(item, str):
            bad = _SURROGATE.search(item)
            if bad:
                raise UnusableJson(422, "invalid_text", f"{where} contains a lone UTF-16 surrogate "
                                   f"(\\u{ord(bad.group()):04x}) at character {bad.start()}: send valid Unicode text")
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > max_depth:
            raise UnusableJson(400, "too_deep", f"the JSON body is nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                stack.append((key, depth, f"{where} key"))
                stack.append((child, depth + 1, f"{where}.{key}"[:200]))
        else:
            stack.extend((child, depth + 1, f"{where}[{i}]") for i, child in enumerate(item))


def parse_checked(raw: bytes) -> object:
    """``json.loads`` plus :func:`check_json`; ``ValueError`` (``JSONDecodeError``, ``UnicodeDecodeError``)
    for a body that is not JSON at all, :class:`UnusableJson` for one the service cannot use."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise UnusableJson(400, "too_deep", f"the JSON body is nested deeper than {MAX_DEPTH} levels") from exc
    check_json(value)
    return value


class JsonGuardMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS \
                or not is_json(Headers(scope=scope).get("content-type")):
            await self.app(scope, receive, send)
            return
        chunks, more = [], True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        del chunks
        if raw:
            try:
                parse_checked(raw)
            except UnusableJson as exc:
                await error_response(scope["path"], exc.status, exc.type, str(exc))(scope, receive, send)
                return
            except ValueError:
                pass  # not JSON: the handler answers 400 with its own message
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": raw, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
