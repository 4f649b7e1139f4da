"""schemathesis over the live OpenAPI document of a real ``qa serve`` (USE-m): every check, a fixed seed.

Every phase runs (examples, coverage, fuzzing, stateful: add a document, read it, delete it, read it
again): no 5xx, every status code and body as documented, schema-valid requests accepted and invalid
ones refused, ``Allow`` on 405. The server is its own (the stateful phase deletes documents), and
tests/schemathesis/schemathesis.toml says which refusals of schema-valid requests are by design.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import QACli, QAServer, artifacts_dir, running_server

CONFIG = Path(__file__).with_name("schemathesis") / "schemathesis.toml"
SEED = 1
EXAMPLES = 25  # per operation and phase


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory):
    yield from running_server("schemathesis", tmp_path_factory, QA_EMBEDDER="use-m", QA_KEY_CACHE_S="1")


def test_schemathesis_finds_nothing(fuzzed_server: QAServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    # With keys on, as an exposed service runs: schemathesis sends an admin key (without limits), and its
    # ignored_auth check sends requests without it, and with a wrong one, to every route that needs one.
    key = QACli(tmp_path).run("keys", "create", "--role", "admin", "--rate-per-second", "0", "--rate-per-minute",
                              "0", "--data-dir", str(fuzzed_server.data_dir)).stdout.strip()
    time.sleep(1.5)  # QA_KEY_CACHE_S: the server knows keys exist
    assert fuzzed_server.client.get("/v1/collections").status_code == 401
    st = Path(sys.executable).with_name("st")
    command = [str(st) if st.exists() else "st", "--no-color", "--config-file", str(CONFIG),
               "run", f"{fuzzed_server.base_url}/openapi.json", "--header", f"Authorization: Bearer {key}",
               "--checks", "all", "--seed", str(SEED),
               "--max-examples", str(EXAMPLES), "--workers", "1", "--request-timeout", "120"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)  # its .schemathesis/
    report = artifacts_dir(tmp_path_factory) / "schemathesis.txt"
    report.write_text(run.stdout + run.stderr, encoding="utf-8")
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-120:])
    assert run.returncode == 0, f"schemathesis failed (full report: {report}):\n{tail}"
    selected = re.search(r"Selected: (\d+)/(\d+)", run.stdout)
    tested = re.search(r"Tested: (\d+)", run.stdout)
    assert selected and tested and int(tested.group(1)) == int(selected.group(2)) >= 12, tail
    log = fuzzed_server.log_text()
    assert "Traceback" not in log and " 500 " not in log, fuzzed_server.log_tail(200)
    assert key.split("_", 2)[2] not in log
