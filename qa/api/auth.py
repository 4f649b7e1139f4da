"""API keys on every route: who is asking (401), whether the key's role allows the route (403), and
whether the key is within its rate limits (429). The collections a key sees are checked where a
request names one (:mod:`qa.api.principal`): outside its scope is answered as missing (404).

Every route has a rule in :data:`POLICY` by method and route template; a route without one needs an
admin key (a route added later is closed until it is given a rule; ``tests/test_auth.py`` fails until
it is classified). Public: the web page and its files, the OpenAPI document and its viewers, and
``/healthz`` (whose body says only ``ready`` and ``status`` to a request without a key that sees every
collection). ``/metrics`` needs a key that sees every collection (it names them all).

While no key exists the service is open (every request may do everything), as before keys existed;
``qa serve`` refuses to bind a non-loopback address then (``Settings.loopback_only``), unless told
``--insecure-no-auth``.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.api.errors import error_response, flat_routes
from qa.api.principal import ANONYMOUS, KEY_ID, SCOPE_KEY
from qa.api.ratelimit import RateLimiter
from qa.keys import KeyRefused, KeyService, Principal, Role
from qa.settings import Settings
from qa.store.base import StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Need:
    """What a route asks of the request's key: a role (``None``: nothing, public) and, for routes that
    speak of every collection at once, a key that sees them all."""

    role: Role | None
    whole: bool = False


PUBLIC, READ, WRITE, ADMIN = Need(None), Need(Role.READ), Need(Role.WRITE), Need(Role.ADMIN)

POLICY: dict[tuple[str, str], Need] = {
    # the page, the API's description, liveness
    ("GET", "/"): PUBLIC, ("GET", "/web/{name}"): PUBLIC, ("GET", "/healthz"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC, ("GET", "/docs"): PUBLIC, ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    # reading
    ("POST", "/v1/search"): READ,
    ("GET", "/v1/collections"): READ, ("GET", "/v1/collections/{name}"): READ,
    ("GET", "/v1/documents"): READ, ("GET", "/v1/documents/{document_id}"): READ,
    ("GET", "/v1/passages/{passage_id}"): READ,
    ("GET", "/v1/documents/{document_id}/file"): READ, ("GET", "/v1/documents/{document_id}/pages/{page}"): READ,
    ("GET", "/v1/documents/{document_id}/boxes"): READ,
    ("GET", "/v1/jobs"): READ, ("GET", "/v1/jobs/{job_id}"): READ,
    ("POST", "/v1/chat/completions"): READ, ("GET", "/v1/models"): READ, ("GET", "/v1/models/{model_id}"): READ,
    ("POST", "/v1/embeddings"): READ,
    ("GET", "/mcp"): READ, ("POST", "/mcp"): READ, ("DELETE", "/mcp"): READ,  # the tools only read
    ("GET", "/metrics"): Need(Role.READ, whole=True),
    # writing documents
    ("POST", "/v1/documents"): WRITE, ("POST", "/v1/documents/batch"): WRITE,
    ("DELETE", "/v1/documents/{document_id}"): WRITE,
    # administration
    ("POST", "/v1/collections"): ADMIN, ("DELETE", "/v1/collections/{name}"): ADMIN,
    ("POST", "/v1/keys"): ADMIN, ("GET", "/v1/keys"): ADMIN, ("DELETE", "/v1/keys/{key_id}"): ADMIN,
}


_CONVERTER = re.compile(r":\w+}")


def need_for(method: str, template: str) -> Need:
    """The rule of a route (templates as the OpenAPI document writes them: ``{model_id:path}`` is
    ``{model_id}``); a route without one needs an admin key."""
    return POLICY.get((method, _CONVERTER.sub("}", template)), ADMIN)


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def matching_route(routes: list[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route that will answer this request (the first full match, as the router picks it); ``None``
    when none does (the router answers 404 or 405 without touching any data)."""
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return route
    return None


class AuthMiddleware:
    def __init__(self, app: ASGIApp, keys: KeyService, settings: Settings, routes: list[BaseRoute]):
        self.app, self.keys = app, keys
        self._routes, self._flat = routes, ([], 0)  # the router's own list: routes added after this count
        self.limits = ((settings.rate_limit_per_second, 1.0), (settings.rate_limit_per_minute, 60.0))
        self.limiter = RateLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = "GET" if scope["method"] == "HEAD" else scope["method"]
        route = matching_route(self.routes, scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route  # refusals are counted under the route's template too (/metrics)
        template = route.path
        need = need_for(method, template)
        token = bearer_token(Headers(scope=scope))
        try:
            principal = await self._authenticate(token)
        except (KeyRefused, StoreError) as exc:
            if need.role is None:  # public: answered as to a request without a key
                scope[SCOPE_KEY] = ANONYMOUS
                await self.app(scope, receive, send)
                return
            if isinstance(exc, StoreError):  # the key store (PostgreSQL) cannot be reached: fail closed
                await self._refuse(scope, receive, send, 503, "unavailable", f"API keys cannot be checked: {exc}",
                                   {"Retry-After": "5"})
                return
            await self._refuse(scope, receive, send, 401, exc.reason, exc.message,
                               {"WWW-Authenticate": 'Bearer realm="qa"' + (
                                   "" if exc.reason == "missing_key" else ', error="invalid_token"')})
            return
        scope[SCOPE_KEY] = principal
        if principal.key_id is not None:
            scope[KEY_ID] = principal.key_id
        if need.role is not None:
            refusal = self._check(principal, need, method, template)
            if refusal is not None:
                await self._refuse(scope, receive, send, 403, "forbidden", refusal)
                return
            if principal.key_id is not None:
                wait = self.limiter.admit(principal.key_id, self._limits(principal))
                if wait > 0:
                    await self._refuse(scope, receive, send, 429, "rate_limited",
                                       f"API key {principal.key_id} made too many requests: "
                                       f"{self._describe(principal)}; retry in {wait:.2f} s",
                                       {"Retry-After": str(max(1, math.ceil(wait)))})
                    return
        await self.app(scope, receive, send)

    @property
    def routes(self) -> list[BaseRoute]:
        flat, seen = self._flat
        if seen != len(self._routes):
            self._flat = flat, seen = list(flat_routes(self._routes)), len(self._routes)
        return flat

    async def _authenticate(self, token: str | None) -> Principal:
        if self.keys.needs_store(token):  # a cache miss reads the store: not on the event loop
            return await run_in_threadpool(self.keys.authenticate, token)
        return self.keys.authenticate(token)

    @staticmethod
    def _check(principal: Principal, need: Need, method: str, template: str) -> str | None:
        if not principal.allows(need.role):
            return (f"API key {principal.key_id} has the {principal.role.label} role; {method} {template} needs "
                    f"{need.role.label}")
        if need.whole and not principal.sees_all:
            return f"{method} {template} speaks of every collection: it needs a key that sees all of them"
        return None

    def _limits(self, principal: Principal) -> tuple[tuple[float, float], ...]:
        (second, _), (minute, _) = self.limits
        return ((second if principal.rate_per_second is None else principal.rate_per_second, 1.0),
                (minute if principal.rate_per_minute is None else principal.rate_per_minute, 60.0))

    def _describe(self, principal: Principal) -> str:
        parts = [f"{n:g} a {w}" for (n, _), w in zip(self._limits(principal), ("second", "minute")) if n > 0]
        return " and ".join(parts) + " allowed"

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, type_: str, message: str,
                      headers: dict | None = None) -> None:
        await error_response(scope["path"], status, type_, message, headers)(scope, receive, send)
