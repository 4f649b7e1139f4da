"""API keys over real HTTP (a ``qa serve`` with USE-m): the auth matrix, rate limits, revocation, the
OpenAI client's key, MCP, the logs, the published OpenAPI, ``qa serve`` on a non-loopback address, and
the web page in Chromium.

The matrix takes every route of the application (enumerated from ``create_app``, so a route added later
fails here until it is classified in ROUTES) × each kind of key (none, invalid, expired, revoked,
read A, write A, admin, read all) × the key's own collection and another one. A collection outside a
key's scope must answer exactly as a collection that does not exist.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from conftest import QACli, QAServer, artifacts_dir, free_port, running_server
from test_web import browser_page  # noqa: F401  (the Chromium fixture)

SEES = {"read-a": ("read", {"a"}), "write-a": ("write", {"a"}), "admin": ("admin", None),
        "read-all": ("read", None)}
REFUSED = {"none": "missing_key", "invalid": "invalid_key", "expired": "expired_key", "revoked": "revoked_key"}
KINDS = [*REFUSED, *SEES]
ROLES = {"read": 1, "write": 2, "admin": 3}
MISSING = "zz-missing"  # a collection that does not exist: what an unseen one must look like


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QAServer]:
    yield from running_server("keys", tmp_path_factory, QA_EMBEDDER="use-m", QA_SEEDS_DIR="", QA_KEY_CACHE_S="1",
                              QA_RATE_LIMIT_PER_SECOND="4", QA_RATE_LIMIT_PER_MINUTE="1000", QA_LOG_FORMAT="json",
                              QA_ANSWERABLE_THRESHOLD="0")


@dataclass
class World:
    server: QAServer
    cli: QACli
    keys: dict[str, str | None] = field(default_factory=dict)  # kind -> key
    ids: dict[str, str] = field(default_factory=dict)  # kind -> key id
    passages: dict[str, str] = field(default_factory=dict)  # collection -> a passage id
    jobs: dict[str, str] = field(default_factory=dict)  # collection -> a job id
    baseline: dict[tuple[str, str], int] = field(default_factory=dict)  # statuses while the service was open

    def call(self, method: str, url: str, key: str | None = None, **kwargs) -> httpx.Response:
        """The answer, its body read unless it is an event stream (GET /mcp's stays open: only its status
        and headers are read)."""
        headers = dict(kwargs.pop("headers", {}))
        if key:
            headers["Authorization"] = f"Bearer {key}"
        with self.server.client.stream(method, url, headers=headers, timeout=60, **kwargs) as resp:
            if not resp.headers.get("content-type", "").startswith("text/event-stream"):
                resp.read()
        return resp

    def admin(self, method: str, url: str, **kwargs) -> httpx.Response:
        return self.call(method, url, self.keys.get("admin"), **kwargs)

    def qa(self, *args: str) -> str:
        run = self.cli.run(*args, "--data-dir", str(self.server.data_dir), timeout=120)
        assert run.returncode == 0, run.stderr + run.stdout
        return run.stdout.strip()

    def new_key(self, body: dict) -> tuple[str, str]:
        resp = self.admin("POST", "/v1/keys", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()["key"], resp.json()["id"]


def _add(world: World, collection: str, text: str, doc_id: str | None = None, key_holder: Callable = None) -> None:
    body = {"title": f"{doc_id or 'note'} in {collection}", "text": text, **({"id": doc_id} if doc_id else {})}
    resp = (key_holder or world.admin)("POST", "/v1/documents", params={"collection": collection}, json=body)
    assert resp.status_code == 201, resp.text


def _token_id(token: str) -> str:
    return token.split("_")[1]


@pytest.fixture(scope="module")
def world(server: QAServer, tmp_path_factory: pytest.TempPathFactory) -> World:
    cwd = tmp_path_factory.mktemp("keys-cli")
    w = World(server, QACli(cwd))
    # While no key exists the service is open: build two collections with a document, a file and a job each.
    for c in ("a", "b"):
        assert w.call("POST", "/v1/collections", json={"name": c}).status_code == 201
        _add(w, c, f"The harbour of {c.upper()} opened in 1901.\n\nShips from {c.upper()} sailed every week.", "doc")
        resp = w.call("POST", "/v1/documents", params={"collection": c},
                      files={"file": ("notes.txt", f"Notes of {c}: the lighthouse is red.".encode())},
                      data={"id": "filedoc"})
        assert resp.status_code == 201, resp.text
        resp = w.call("POST", "/v1/documents", params={"collection": c, "background": "true"},
                      files={"file": ("job.txt", f"A job of {c}: the pier is long.".encode())})
        assert resp.status_code == 202, resp.text
        w.jobs[c] = resp.json()["job_id"]
        found = w.call("POST", "/v1/search", json={"query": "harbour", "collection": c, "document_ids": ["doc"]})
        w.passages[c] = found.json()["results"][0]["passage_id"]
    for c, job in w.jobs.items():
        deadline = time.monotonic() + 120
        while w.call("GET", f"/v1/jobs/{job}").json()["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline, f"job {job} did not finish"
            time.sleep(0.3)
    for method in ("GET", "DELETE"):
        w.baseline[(method, "/mcp")] = w.call(method, "/mcp", headers=MCP_HEADERS).status_code

    # Keys from the command line ...
    unlimited = ("--rate-per-second", "0", "--rate-per-minute", "0")
    w.keys["admin"] = w.qa("keys", "create", "--role", "admin", "--name", "matrix admin", *unlimited)
    w.keys["read-a"] = w.qa("keys", "create", "--role", "read", "-c", "a", *unlimited)
    w.keys["revoked"] = w.qa("keys", "create", "--role", "admin", *unlimited)
    w.qa("keys", "revoke", _token_id(w.keys["revoked"]))
    time.sleep(1.2)  # QA_KEY_CACHE_S=1: the server now knows that keys exist
    # ... and from the admin API
    no_limit = {"rate_per_second": 0, "rate_per_minute": 0}
    w.keys["write-a"], _ = w.new_key({"role": "write", "collections": ["a"], **no_limit})
    w.keys["read-all"], _ = w.new_key({"role": "read", **no_limit})
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=3)
    w.keys["expired"], _ = w.new_key({"role": "admin", "expires_at": expires.isoformat(), **no_limit})
    assert w.call("GET", "/v1/keys", w.keys["expired"]).status_code == 200  # until it expires
    w.keys["invalid"] = "qa_0123456789ab_" + "A" * 43
    w.keys["none"] = None
    time.sleep(max(0.0, (expires - datetime.now(timezone.utc)).total_seconds() + 0.2))
    w.ids = {k: _token_id(v) for k, v in w.keys.items() if v}
    return w


# --- the routes ------------------------------------------------------------------------------------
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MCP_INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "matrix", "version": "1"}}}


@dataclass
class Req:
    method: str
    url: str
    kwargs: dict = field(default_factory=dict)
    ok: int | tuple[int, str] = 200  # the answer when the key may do it: a status, or a status and error type
    token: str | None = None  # the part naming the target (a collection, a job): replaced to compare refusals


def unique() -> str:
    return uuid.uuid4().hex[:10]


def _in(c: str, path: str, ok=200, **params) -> Req:
    return Req("GET", path, {"params": {"collection": c, **params}}, ok, c)


def _delete_document(w: World, c: str) -> Req:
    doc_id = f"del-{unique()}"
    if c != MISSING:
        _add(w, c, f"To be deleted {unique()}.", doc_id)
    return Req("DELETE", f"/v1/documents/{doc_id}", {"params": {"collection": c}}, 200, c)


def _delete_collection(w: World, c: str) -> Req:
    name = f"tmp-{unique()}"
    assert w.admin("POST", "/v1/collections", json={"name": name}).status_code == 201
    return Req("DELETE", f"/v1/collections/{name}")


def _delete_key(w: World, c: str) -> Req:
    return Req("DELETE", f"/v1/keys/{w.new_key({'role': 'read'})[1]}")


def _job(w: World, c: str) -> Req:
    job = w.jobs.get(c, "0" * 32)
    return Req("GET", f"/v1/jobs/{job}", ok=200, token=job)


@dataclass
class Route:
    need: str  # public | read | write | admin | read-all (a read key that sees every collection)
    build: Callable[[World, str | None], Req]
    scoped: bool = False  # aimed at one collection (or a job of one): run against the key's own and another


ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/"): Route("public", lambda w, c: Req("GET", "/")),
    ("GET", "/web/{name}"): Route("public", lambda w, c: Req("GET", "/web/app.js")),
    ("GET", "/healthz"): Route("public", lambda w, c: Req("GET", "/healthz")),
    ("GET", "/openapi.json"): Route("public", lambda w, c: Req("GET", "/openapi.json")),
    ("GET", "/docs"): Route("public", lambda w, c: Req("GET", "/docs")),
    ("GET", "/docs/oauth2-redirect"): Route("public", lambda w, c: Req("GET", "/docs/oauth2-redirect")),
    ("GET", "/redoc"): Route("public", lambda w, c: Req("GET", "/redoc")),
    ("GET", "/metrics"): Route("read-all", lambda w, c: Req("GET", "/metrics")),
    ("POST", "/mcp"): Route("read", lambda w, c: Req("POST", "/mcp", {"json": MCP_INIT, "headers": MCP_HEADERS})),
    ("GET", "/mcp"): Route("read", lambda w, c: Req("GET", "/mcp", {"headers": MCP_HEADERS},
                                                    w.baseline[("GET", "/mcp")])),
    ("DELETE", "/mcp"): Route("read", lambda w, c: Req("DELETE", "/mcp", {"headers": MCP_HEADERS},
                                                       w.baseline[("DELETE", "/mcp")])),
    ("POST", "/v1/search"): Route("read", lambda w, c: Req(
        "POST", "/v1/search", {"json": {"query": "When did the harbour open?", "collection": c}}, 200, c), True),
    ("GET", "/v1/collections"): Route("read", lambda w, c: Req("GET", "/v1/collections")),
    ("GET", "/v1/collections/{name}"): Route("read", lambda w, c: Req("GET", f"/v1/collections/{c}", token=c), True),
    ("POST", "/v1/collections"): Route("admin", lambda w, c: Req(
        "POST", "/v1/collections", {"json": {"name": f"new-{unique()}"}}, 201)),
    ("DELETE", "/v1/collections/{name}"): Route("admin", _delete_collection),
    ("GET", "/v1/documents"): Route("read", lambda w, c: _in(c, "/v1/documents"), True),
    ("POST", "/v1/documents"): Route("write", lambda w, c: Req("POST", "/v1/documents", {
        "params": {"collection": c}, "json": {"title": "new", "text": f"A new note {unique()}."}}, 201, c), True),
    ("POST", "/v1/documents/batch"): Route("write", lambda w, c: Req("POST", "/v1/documents/batch", {
        "params": {"collection": c}, "json": {"documents": [{"title": "b", "text": f"Batch {unique()}."}]}}, 201, c),
        True),
    ("GET", "/v1/documents/{document_id}"): Route("read", lambda w, c: _in(c, "/v1/documents/doc"), True),
    ("DELETE", "/v1/documents/{document_id}"): Route("write", _delete_document, True),
    ("GET", "/v1/passages/{passage_id}"): Route("read", lambda w, c: _in(
        c, f"/v1/passages/{w.passages.get(c, w.passages['b'])}"), True),
    ("GET", "/v1/documents/{document_id}/file"): Route("read", lambda w, c: _in(c, "/v1/documents/filedoc/file"),
                                                       True),
    ("GET", "/v1/documents/{document_id}/pages/{page}"): Route("read", lambda w, c: _in(
        c, "/v1/documents/filedoc/pages/1", (404, "no_pages")), True),
    ("GET", "/v1/documents/{document_id}/boxes"): Route("read", lambda w, c: _in(
        c, "/v1/documents/filedoc/boxes", start=0, end=5), True),
    ("GET", "/v1/jobs"): Route("read", lambda w, c: Req("GET", "/v1/jobs")),
    ("GET", "/v1/jobs/{job_id}"): Route("read", _job, True),
    ("POST", "/v1/chat/completions"): Route("read", lambda w, c: Req("POST", "/v1/chat/completions", {"json": {
        "model": f"qa/{c}", "messages": [{"role": "user", "content": "When did the harbour open?"}]}}, 200, c), True),
    ("GET", "/v1/models"): Route("read", lambda w, c: Req("GET", "/v1/models")),
    ("GET", "/v1/models/{model_id}"): Route("read", lambda w, c: Req("GET", f"/v1/models/qa/{c}", token=c), True),
    ("POST", "/v1/embeddings"): Route("read", lambda w, c: Req("POST", "/v1/embeddings", {"json": {"input": "harbour"}})),
    ("POST", "/v1/keys"): Route("admin", lambda w, c: Req("POST", "/v1/keys", {"json": {"role": "read"}}, 201)),
    ("GET", "/v1/keys"): Route("admin", lambda w, c: Req("GET", "/v1/keys")),
    ("DELETE", "/v1/keys/{key_id}"): Route("admin", _delete_key),
}


def app_routes() -> set[tuple[str, str]]:
    """Every (method, template) the application serves, as the OpenAPI document writes templates."""
    from qa.api.app import create_app
    from qa.api.errors import flat_routes
    from qa.settings import Settings

    app = create_app(Settings(embedder="use-m", data_dir=Path("/nonexistent-qa-data")))
    return {(m, re.sub(r":\w+}", "}", r.path)) for r in flat_routes(app.router.routes)
            for m in (getattr(r, "methods", None) or ()) if m != "HEAD"}


def test_every_route_is_in_the_matrix():
    assert app_routes() == set(ROUTES), "classify the new or removed routes in ROUTES (and qa.api.auth.POLICY)"


def error_code(resp: httpx.Response) -> str | None:
    try:
        err = resp.json().get("error") or {}
    except ValueError:
        return None
    return err.get("code") or err.get("type")  # the OpenAI shape carries qa's type as its code


def test_auth_matrix(world: World):
    problems: list[str] = []
    checked = 0

    def check(cond: bool, where: str, resp: httpx.Response, what: str) -> None:
        if not cond:
            text = resp.text[:300] if hasattr(resp, "_content") else "(a stream)"
            problems.append(f"{where}: expected {what}, got {resp.status_code} {text}")

    for (method, template), route in ROUTES.items():
        for kind in KINDS:
            for target in (("a", "b") if route.scoped else (None,)):
                req = route.build(world, target)
                key = world.keys[kind]
                resp = world.call(req.method, req.url, key, **req.kwargs)
                checked += 1
                where = f"{kind} {method} {template}" + (f" in {target}" if target else "")
                ok_status, ok_type = req.ok if isinstance(req.ok, tuple) else (req.ok, None)
                if route.need == "public":
                    check(resp.status_code == ok_status, where, resp, str(ok_status))
                    continue
                if kind in REFUSED:
                    check(resp.status_code == 401 and error_code(resp) == REFUSED[kind]
                          and resp.headers.get("www-authenticate", "").startswith("Bearer"), where, resp,
                          f"401 {REFUSED[kind]} with WWW-Authenticate: Bearer")
                    continue
                role, sees = SEES[kind]
                needed = "read" if route.need == "read-all" else route.need
                if ROLES[role] < ROLES[needed] or (route.need == "read-all" and sees is not None):
                    check(resp.status_code == 403 and error_code(resp) == "forbidden", where, resp, "403 forbidden")
                elif target is not None and sees is not None and target not in sees:
                    missing = route.build(world, MISSING)
                    if req.token and req.token != target:  # a job: compare with a job that does not exist
                        missing = _job(world, MISSING)
                    as_missing = world.call(missing.method, missing.url, key, **missing.kwargs)
                    same = as_missing.text.replace(missing.token or MISSING, req.token or target)
                    check(resp.status_code == 404 and as_missing.status_code == 404 and resp.text == same, where,
                          resp, f"exactly the answer for a missing one ({as_missing.status_code} {same[:200]})")
                else:
                    check(resp.status_code == ok_status and (ok_type is None or error_code(resp) == ok_type),
                          where, resp, f"{req.ok}")
    assert not problems, f"{len(problems)} wrong answers of {checked}:\n" + "\n".join(problems)
    assert checked == len(KINDS) * sum(2 if r.scoped else 1 for r in ROUTES.values()) > 350


def test_a_write_outside_the_scope_changes_nothing(world: World):
    doc_id = f"keep-{unique()}"
    _add(world, "b", "Keep this note in b.", doc_id)
    for kind in ("write-a", "read-a", "read-all"):
        world.call("DELETE", f"/v1/documents/{doc_id}", world.keys[kind], params={"collection": "b"})
        world.call("POST", "/v1/documents", world.keys[kind], params={"collection": "b"},
                   json={"id": doc_id, "title": "replaced", "text": "Replaced."})
    resp = world.admin("GET", f"/v1/documents/{doc_id}", params={"collection": "b"})
    assert resp.status_code == 200 and resp.json()["text"] == "Keep this note in b."


def test_a_key_sees_only_its_collections_in_lists(world: World):
    read_a = world.keys["read-a"]
    names = [c["name"] for c in world.call("GET", "/v1/collections", read_a).json()["collections"]]
    assert names == ["a"]
    assert [m["id"] for m in world.call("GET", "/v1/models", read_a).json()["data"]] == ["qa/a"]
    jobs = {j["id"] for j in world.call("GET", "/v1/jobs", read_a).json()}
    assert world.jobs["a"] in jobs and world.jobs["b"] not in jobs
    results = world.call("POST", "/v1/search", read_a, json={"query": "harbour", "collection": "a"}).json()["results"]
    assert results and {r["collection"] for r in results} == {"a"}
    everything = {c["name"] for c in world.call("GET", "/v1/collections", world.keys["read-all"]).json()["collections"]}
    assert {"a", "b", "default"} <= everything
    health = world.call("GET", "/healthz", read_a).json()
    assert health["ready"] and health["documents"] is None and health["model"] is None  # counts: for keys seeing all
    assert world.call("GET", "/healthz").json()["documents"] is None
    assert world.call("GET", "/healthz", world.keys["read-all"]).json()["documents"] > 0


def test_malformed_credentials_are_401(world: World):
    for header in ("Bearer", "Basic dXNlcjpwYXNz", "Bearer not-a-key", "bearer " + "x" * 5000,
                   f"Basic {world.keys['admin']}", f"Bearer {world.keys['admin']}x"):
        resp = world.server.client.get("/v1/documents", headers={"Authorization": header})
        assert resp.status_code == 401 and resp.headers["www-authenticate"].startswith("Bearer"), (header, resp.text)
    ok = world.server.client.get("/v1/documents", params={"collection": "a"},
                                 headers={"Authorization": f"bearer  {world.keys['read-a']}"})
    assert ok.status_code == 200  # the scheme is case-insensitive, blanks before the key are ignored


def test_rate_limits(world: World):
    limited, limited_id = world.new_key({"role": "read"})  # the server's default: 4 a second, 1000 a minute
    answers = [world.call("GET", "/v1/models", limited) for _ in range(6)]
    statuses = [r.status_code for r in answers]
    assert statuses[:4] == [200] * 4 and 429 in statuses[4:], statuses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]  # the OpenAI shape on the OpenAI routes, so clients back off
    assert error["code"] == "rate_limited" and limited_id in error["message"] and "4 a second" in error["message"]
    other = world.call("GET", "/v1/documents", world.keys["read-a"], params={"collection": "a"})
    assert other.status_code == 200  # per key
    rest = world.call("GET", "/v1/collections", limited)
    assert rest.status_code == 429 and rest.json()["error"]["type"] == "rate_limited"
    time.sleep(1.0)
    assert world.call("GET", "/v1/collections", limited).status_code == 200

    per_minute, _ = world.new_key({"role": "read", "rate_per_second": 0, "rate_per_minute": 3})
    statuses = [world.call("GET", "/v1/collections", per_minute).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    wait = int(world.call("GET", "/v1/collections", per_minute).headers["retry-after"])
    assert 15 <= wait <= 20  # one request per 20 s comes back


def test_revocation(world: World):
    key, key_id = world.new_key({"role": "read"})
    assert world.call("GET", "/v1/collections", key).status_code == 200
    revoked = world.admin("DELETE", f"/v1/keys/{key_id}")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    assert error_code(world.call("GET", "/v1/collections", key)) == "revoked_key"  # at once on this server
    assert world.admin("DELETE", "/v1/keys/0123456789ab").status_code == 404
    own = world.admin("DELETE", f"/v1/keys/{world.ids['admin']}")
    assert own.status_code == 409 and own.json()["error"]["type"] == "own_key"  # a key does not revoke itself

    key, key_id = world.new_key({"role": "read"})
    assert world.call("GET", "/v1/collections", key).status_code == 200
    world.qa("keys", "revoke", key_id)  # another process: refused within QA_KEY_CACHE_S (1 s)
    started = time.monotonic()
    while world.call("GET", "/v1/collections", key).status_code == 200:
        assert time.monotonic() - started < 2.5, "a key revoked with qa keys was still accepted"
        time.sleep(0.1)
    listed = world.qa("keys", "list")
    assert re.search(rf"^{key_id}\trevoked\tread\t\*\t", listed, re.M), listed
    assert key not in listed and "digest" not in listed


def test_the_admin_api_refuses_bad_keys_requests(world: World):
    for body in ({"role": "admin", "collections": ["a"]}, {"role": "read", "collections": []},
                 {"role": "read", "expires_at": "2001-01-01T00:00:00Z"}, {"role": "read", "expires_at": 4102444800},
                 {"role": "read", "expires_at": "2099-01-01T00:00:00"}, {"role": "owner"},
                 {"role": "read", "collections": ["Bad Name"]}, {"role": "read", "rate_per_minute": -1}):
        resp = world.admin("POST", "/v1/keys", json=body)
        assert resp.status_code == 422 and resp.json()["error"]["message"], (body, resp.text)
    listed = world.admin("GET", "/v1/keys").json()["keys"]
    assert {k["id"] for k in listed} >= {world.ids[k] for k in SEES} | {world.ids["expired"], world.ids["revoked"]}
    assert all(set(k) == {"id", "name", "role", "collections", "created_at", "expires_at", "revoked_at", "state",
                          "rate_per_second", "rate_per_minute"} for k in listed)
    states = {k["id"]: k["state"] for k in listed}
    assert states[world.ids["expired"]] == "expired" and states[world.ids["revoked"]] == "revoked"


def test_the_openai_client_uses_the_key(world: World):
    import openai

    client = openai.OpenAI(base_url=f"{world.server.base_url}/v1", api_key=world.keys["read-a"], max_retries=0)
    assert [m.id for m in client.models.list()] == ["qa/a"]
    reply = client.chat.completions.create(model="qa/a", messages=[{"role": "user", "content": "When did the "
                                                                                                 "harbour open?"}])
    assert "1901" in reply.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="qa/b", messages=[{"role": "user", "content": "Ships?"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{world.server.base_url}/v1", api_key="sk-wrong", max_retries=0).models.list()


def test_mcp_tools_stay_in_the_keys_collections(world: World):
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    def client(key: str | None) -> Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return Client(streamable_http_client(f"{world.server.base_url}/mcp",
                                             http_client=create_mcp_http_client(headers=headers)),
                      read_timeout_seconds=120)

    async def session() -> None:
        async with client(world.keys["read-a"]) as mcp:
            found = await mcp.call_tool("search", {"query": "harbour", "collection": "a"})
            assert not found.is_error and {r["collection"] for r in found.structured_content["results"]} == {"a"}
            for tool, args in (("search", {"query": "harbour"}), ("ask", {"question": "harbour?"}),
                               ("get_passage", {"passage_id": world.passages["b"]})):
                other = await mcp.call_tool(tool, {**args, "collection": "b"})
                missing = await mcp.call_tool(tool, {**args, "collection": MISSING})
                assert other.is_error and missing.is_error
                assert other.content[0].text == missing.content[0].text.replace(MISSING, "b"), (tool, other.content)
                assert "'b'" in other.content[0].text and "default" not in other.content[0].text
            answer = await mcp.call_tool("ask", {"question": "When did the harbour open?", "collection": "a"})
            assert not answer.is_error and "1901" in answer.structured_content["answer"]

    asyncio.run(session())
    refused = world.call("POST", "/mcp", json=MCP_INIT, headers=MCP_HEADERS)
    assert refused.status_code == 401


def test_logs_hold_key_ids_never_keys(world: World):
    text = world.server.log_text()
    for token in filter(None, world.keys.values()):
        assert token.split("_", 2)[2] not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [r for r in records if r.get("logger") == "qa.access"]
    assert {r.get("key_id") for r in access} >= {world.ids["read-a"], world.ids["admin"]}
    refused = [r for r in access if r.get("status") == 401]
    assert refused and all(r.get("key_id") is None and r["route"] != "unmatched" for r in refused)


def test_openapi_documents_the_bearer_scheme(world: World):
    schema = world.call("GET", "/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        **schema["components"]["securitySchemes"]["bearer"], "type": "http", "scheme": "bearer"}
    for path, item in schema["paths"].items():
        for method, op in item.items():
            need = ROUTES[(method.upper(), path)].need
            if need == "public":
                assert {} in op["security"], (method, path)
                continue
            assert op["security"] == [{"bearer": []}], (method, path)
            assert {"401", "403", "429"} <= set(op["responses"]), (method, path)
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
            assert "Retry-After" in op["responses"]["429"]["headers"]


# --- qa serve on a non-loopback address ------------------------------------------------------------
def test_serve_refuses_a_non_loopback_address_without_keys(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    cli = QACli(tmp_path)
    data = tmp_path / "data"
    refused = cli.run("serve", "--host", "0.0.0.0", "--port", str(free_port()), "--data-dir", str(data),
                      QA_EMBEDDER="use-m", timeout=120)
    assert refused.returncode == 2
    message = " ".join(refused.stderr.split())
    assert "no API key exists" in message and "--insecure-no-auth" in message and "qa keys create" in message

    logs = artifacts_dir(tmp_path_factory)
    port = free_port()
    proc = cli.popen("serve", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data),
                     "--insecure-no-auth", log=logs / "server-insecure.log", QA_EMBEDDER="use-m", QA_SEEDS_DIR="")
    try:
        assert _wait_health(port, proc) == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/collections").status_code == 200  # open, as asked
    finally:
        _stop(proc)

    token = cli.run("keys", "create", "--role", "admin", "--data-dir", str(data), QA_EMBEDDER="use-m").stdout.strip()
    proc = cli.popen("serve", "--host", "0.0.0.0", "--port", str(port), "--data-dir", str(data),
                     log=logs / "server-keyed.log", QA_EMBEDDER="use-m", QA_SEEDS_DIR="")
    try:
        assert _wait_health(port, proc) == 200  # a key exists: it starts, and asks for keys
        assert httpx.get(f"http://127.0.0.1:{port}/v1/collections").status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/v1/collections",
                         headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        _stop(proc)


def _wait_health(port: int, proc, timeout: float = 300) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            resp = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            if resp.json().get("ready"):
                return resp.status_code
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(0.5)
    raise AssertionError("the server was not ready in time")


def _stop(proc) -> None:
    import os
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


# --- the web page ----------------------------------------------------------------------------------
@pytest.mark.browser
def test_the_page_asks_for_a_key_once_and_then_works(world: World, browser_page):
    page = browser_page
    base = world.server.base_url
    page.goto(f"{base}/")
    page.wait_for_selector("#key-form:not([hidden])")  # the service answered 401: the page asks
    page.fill("#key-input", "qa_0123456789ab_" + "B" * 43)
    page.press("#key-input", "Enter")
    page.wait_for_function("() => document.querySelector('#key-error').textContent.includes('refused')")
    page.fill("#key-input", world.keys["read-a"])
    page.click("#key-save")
    page.wait_for_selector("#key-form[hidden]", state="attached")
    page.wait_for_function("() => [...document.querySelectorAll('#collection option')].map(o => o.value).join() === 'a'")
    assert page.evaluate("() => sessionStorage.getItem('qa.key')") == world.keys["read-a"]

    page.fill("#question", "When did the harbour open?")
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions")) as request:
        page.press("#question", "Enter")
    assert request.value.headers["authorization"] == f"Bearer {world.keys['read-a']}"
    assert request.value.post_data_json["model"] == "qa/a"
    turn = page.locator(".turn").last
    turn.locator(".citation").first.wait_for()
    page.wait_for_selector(".turn .answer:not(.streaming)")
    assert "1901" in turn.locator(".answer").inner_text()
    turn.locator(".citation button").first.click()
    page.locator("#panel-text mark.evidence").wait_for()  # the passage panel loads with the key too

    page.reload()  # the key is kept for the tab: not asked again
    page.wait_for_selector("#status.ok")
    page.wait_for_function("() => document.querySelector('#collection option') !== null")
    assert page.locator("#key-form").is_hidden()
    assert page.dialogs == [] and page.errors == []
