"""``qa migrate`` on the real engines: a data folder into PostgreSQL + Milvus and back, without
re-embedding, verified by counts and by sample questions answered alike by both backends; a rerun
skips what is there; a target that differs is reported (exit 1)."""

from __future__ import annotations

from conftest import SEEDS_DIR
from engines import milvus_prefix


def test_migrate_a_data_folder_into_postgres_and_milvus_and_back(qa_cli, tmp_path, postgres_engine, milvus_engine):
    light = {"QA_EMBEDDER": "use-m"}
    distributed = {**light, "QA_STORE": "postgres", "QA_POSTGRES_DSN": postgres_engine.new_database(),
                   "QA_INDEX": "milvus", "QA_MILVUS_URI": milvus_engine.uri, "QA_MILVUS_PREFIX": milvus_prefix()}
    folder = tmp_path / "data"
    extra = tmp_path / "extra.txt"
    extra.write_text("Tide tables\n\nThe harbour office prints the tide tables every spring.\n", encoding="utf-8")
    ran = qa_cli.run("ingest", SEEDS_DIR, extra, "--data-dir", folder, **light)
    assert ran.returncode == 0, ran.stderr
    key_id = qa_cli.run("keys", "create", "--role", "read", "--all", "--data-dir", folder, **light).stdout.split("_")[1]

    into = qa_cli.run("migrate", "--from-data-dir", folder, "--questions", "12", **distributed)
    assert into.returncode == 0, into.stderr
    assert "verified" in into.stderr and "12 sample questions" in into.stderr and "0 already there" in into.stderr
    assert "; 1 API keys" in into.stderr  # the keys go along
    assert key_id in qa_cli.run("keys", "list", **distributed).stdout

    again = qa_cli.run("migrate", "--from-data-dir", folder, "--questions", "4", **distributed)
    assert again.returncode == 0, again.stderr
    assert "copied 0 documents" in again.stderr and "2 already there" in again.stderr and "; 0 API keys" in again.stderr

    back = tmp_path / "back"
    out = qa_cli.run("migrate", "--to-data-dir", back, "--questions", "12", **distributed)
    assert out.returncode == 0, out.stderr
    assert "verified" in out.stderr and (back / "store.sqlite").is_file()
    assert "; 1 API keys" in out.stderr and key_id in qa_cli.run("keys", "list", "--data-dir", back, **light).stdout

    # a target holding something else is not reported as verified
    other = tmp_path / "other.txt"
    other.write_text("Ferries\n\nThe night ferry leaves at eleven.\n", encoding="utf-8")
    assert qa_cli.run("ingest", other, "--data-dir", back, **light).returncode == 0
    differs = qa_cli.run("migrate", "--to-data-dir", back, "--questions", "4", **distributed)
    assert differs.returncode == 1 and "differs" in differs.stderr, differs.stderr
