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
from pathlib import Path

import pytest

from conftest import QAServer, artifacts_dir, running_server

CONFIG = Path(__file__).with_name("schemathesis") / "schemathesis.toml"
SEED = 1
EXAMPLES = 25  # per operation and phase


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory):
    yield from running_server("schemathesis", tmp_path_factory, QA_EMBEDDER="use-m")


def test_schemathesis_finds_nothing(fuzzed_server: QAServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    st = Path(sys.executable).with_name("st")
    command = [str(st) if st.exists() else "st", "--no-color", "--config-file", str(CONFIG),
               "run", f"{fuzzed_server.base_url}/openapi.json", "--checks", "all", "--seed", str(SEED),
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
