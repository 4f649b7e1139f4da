"""What a browser may do with the service: which Host it answers, and which origins may write.

* **Host** (DNS rebinding): a request whose ``Host`` header is not an allowed host gets 421. By
  default that is the loopback names (and the bound address), as /mcp already checked; set
  ``QA_ALLOWED_HOSTS`` for a service reached under other names (``*`` allows any).
* **Cross-origin writes**: a browser sends ``Origin`` with every POST, PUT, PATCH and DELETE it
  makes from a page. One from another origin (or ``Origin: null``) is refused with 403 unless that
  origin is listed in ``QA_CORS_ORIGINS``, whatever its content type, so a page on another site
  cannot add or delete documents through a visitor's browser with a form post or a "simple" fetch
  (which would need no preflight). ``Sec-Fetch-Site: cross-site`` is treated the same. Clients that
  are not browsers (curl, the ``openai`` client) send neither header and are not affected.
* **CORS** is off unless ``QA_CORS_ORIGINS`` lists origins; those get the CORS headers (preflight
  included) for reading and writing.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from qa.api.errors import error_response
from qa.settings import Settings

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
CORS_HEADERS = ["Authorization", "Content-Type", "X-Request-ID"]


def _host_name(host: str) -> str:
    """``Host`` header value → host name without port (``[::1]:8000`` → ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts(settings: Settings) -> list[str]:
    """QA_ALLOWED_HOSTS, or by default the loopback names plus the bound address (any host when bound to
    every interface, where the service's names are not known)."""
    if settings.allowed_hosts is not None:
        return [h.lower() for h in settings.allowed_hosts]
    bound = settings.host.strip("[]").lower()
    try:
        if ipaddress.ip_address(bound).is_unspecified:
            return ["*"]
    except ValueError:
        pass
    return sorted({*LOOPBACK_HOSTS, bound})


def host_allowed(host: str, allowed: list[str]) -> bool:
    name = _host_name(host)
    return any(a == "*" or a == name or (a.startswith("*.") and name.endswith(a[1:])) for a in allowed)


def own_origin(scope: Scope, host: str) -> str:
    return f"{scope.get('scheme', 'http')}://{host.strip().lower()}"


class BrowserGuardMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.origins = {o.rstrip("/").lower() for o in settings.cors_origins}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        if not host_allowed(host, self.hosts):
            await error_response(scope["path"], 421, "host_not_allowed",
                                 f"this service does not answer for the host {host[:100]!r}; add it to "
                                 "QA_ALLOWED_HOSTS if that is its name")(scope, receive, send)
            return
        if scope["method"] in UNSAFE_METHODS:
            origin = headers.get("origin")
            cross_site = headers.get("sec-fetch-site") in ("cross-site", "same-site")
            if origin is not None:
                origin = origin.rstrip("/").lower()
                foreign = origin != own_origin(scope, host) and origin not in self.origins
            else:
                foreign = cross_site
            if foreign:
                await error_response(scope["path"], 403, "cross_origin",
                                     f"requests that change data are not accepted from pages on {origin or 'another site'}; "
                                     "list the origin in QA_CORS_ORIGINS to allow it")(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_browser_safety(app, settings: Settings) -> None:
    """The host and origin checks; CORS headers for the listed origins (none by default)."""
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"], allow_headers=CORS_HEADERS,
                           expose_headers=["X-Request-ID", "Retry-After"], max_age=600)
    app.add_middleware(BrowserGuardMiddleware, settings=settings)
