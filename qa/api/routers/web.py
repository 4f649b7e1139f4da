"""The web page: GET / and its two static files, served from the package (no CDN, no build step)."""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

from qa.api.errors import ApiError

router = APIRouter(tags=["web"], include_in_schema=False)

_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    # Everything is same-origin; no inline script, no third-party anything.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
}


def _serve(name: str) -> Response:
    if name not in _FILES:
        raise ApiError(404, "not_found", f"no web file {name!r}")
    body = (files("qa") / "web" / name).read_bytes()
    return Response(body, media_type=_FILES[name], headers=_HEADERS)


@router.get("/")
def index() -> Response:
    return _serve("index.html")


@router.get("/web/{name}")
def static(name: str) -> Response:
    return _serve(name)
