"""Folder sync (``qa sync``): a collection follows a folder tree.

Real files (tests/data: PDF, DOCX, PPTX; text files written here), the real light model (USE-m), the
real store and indexes; the resume and watch tests run ``qa sync`` as a subprocess and kill it with
SIGKILL, or stop it with SIGTERM, for real.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from qa.documents.sync import FOLDER_KEY, HASH_KEY, PATH_KEY, FolderConflictError, FolderSync, file_sha256
from qa.ingest.service import ID_PATTERN, path_document_id
from qa.retrieval.types import SearchRequest
from qa.settings import Settings
from qa.store.base import DEFAULT_COLLECTION
from qa.wiring import Services, build_services

from conftest import QACli
from test_durability import assert_consistent, kill_9_once_committed, write_documents
from test_ingest_service import services, use_m  # noqa: F401 (fixtures: a fresh data folder, the USE-m model)

DATA = Path(__file__).resolve().parent / "data"
FERRY = "Ferry timetable\n\nThe first ferry to Hoy leaves Stromness at 07:00 on weekdays.\n"
KITES = "Kite festival\n\nThe kite festival on the western beach opens at noon every Saturday in May.\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Real office files and text files in a small tree (with a hidden folder and an unsupported file)."""
    root = tmp_path / "docs"
    (root / "office").mkdir(parents=True)
    (root / "notes" / "2024").mkdir(parents=True)
    (root / ".git").mkdir()
    for name in ("fake-memo.pdf", "docx-tables.docx", "fake-power-point.pptx"):
        shutil.copy(DATA / name, root / "office" / name)
    (root / "notes" / "ferry.txt").write_text(FERRY, encoding="utf-8")
    (root / "notes" / "2024" / "渡轮.md").write_text("# 渡轮时刻表\n\n第一班渡轮每天早上七点从斯特罗姆内斯出发。\n", encoding="utf-8")
    (root / ".git" / "HEAD.txt").write_text("not a document\n", encoding="utf-8")
    (root / "notes" / "data.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    return root


def documents(services: Services, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, str]]:
    return {d.id: d.metadata for d in services.corpus.store.list_documents(collection, 10_000)}


def sync(services: Services, folder: Path, collection: str = DEFAULT_COLLECTION, **kw):
    return FolderSync(services.documents, folder, collection, **kw).run()


def test_path_ids_are_stable_unique_and_follow_the_id_rule():
    assert path_document_id("report.pdf") == "report.pdf"
    nested, flat = path_document_id("a/b.txt"), path_document_id("a-b.txt")
    assert nested != flat == "a-b.txt" and nested.startswith("a-b.txt-")
    assert path_document_id("a/b.txt") == nested  # stable
    chinese = path_document_id("notes/渡轮.md")
    assert chinese.isascii() and chinese != path_document_id("notes/渡船.md")
    long = path_document_id("x/" + "y" * 300 + ".txt")
    for doc_id in (nested, chinese, long):
        assert re.fullmatch(ID_PATTERN, doc_id) and len(doc_id) <= 128, doc_id


def test_add_unchanged_change_and_delete(services: Services, folder: Path):
    first = sync(services, folder)
    files = ["notes/2024/渡轮.md", "notes/ferry.txt", "office/docx-tables.docx", "office/fake-memo.pdf",
             "office/fake-power-point.pptx"]
    assert sorted(first.added) == files and not (first.failed or first.replaced or first.removed)
    assert first.ignored == [("notes/data.csv", "unsupported file type '.csv'")]  # and .git/ is not walked
    stored = documents(services)
    assert set(stored) == {path_document_id(f) for f in files}
    for rel in files:  # the record travels with the document itself
        meta = stored[path_document_id(rel)]
        assert (meta[PATH_KEY], meta[HASH_KEY], meta[FOLDER_KEY]) == (rel, file_sha256(folder / rel), str(folder))
    memo = services.corpus.store.passages_of_document(DEFAULT_COLLECTION, path_document_id("office/fake-memo.pdf"))
    assert memo and memo[0].page == 1  # parsed by the PDF parser: pages are kept
    before = services.corpus.store.seq

    # unchanged: skipped by hash, nothing written (not even parsed: the store's change sequence stays)
    again = sync(services, folder)
    assert sorted(again.unchanged) == files and not again.changed
    assert services.corpus.store.seq == before

    # changed, deleted and new files; a touched file with the same bytes is still unchanged
    (folder / "notes" / "ferry.txt").write_text(FERRY.replace("07:00", "06:45"), encoding="utf-8")
    (folder / "office" / "fake-memo.pdf").unlink()
    (folder / "notes" / "kites.txt").write_text(KITES, encoding="utf-8")
    os.utime(folder / "office" / "docx-tables.docx")
    third = sync(services, folder)
    assert (third.added, third.replaced, third.removed) == (["notes/kites.txt"], ["notes/ferry.txt"],
                                                            ["office/fake-memo.pdf"])
    assert len(third.unchanged) == 3 and not third.failed
    hits = services.search.search(SearchRequest(query="When does the first ferry to Hoy leave?", top_k=1)).hits
    assert "06:45" in hits[0].passage.text and hits[0].passage.document_id == path_document_id("notes/ferry.txt")
    assert path_document_id("office/fake-memo.pdf") not in documents(services)

    # a file renamed: removed under its old path, added under its new one (not refused as a duplicate)
    (folder / "notes" / "kites.txt").rename(folder / "notes" / "kite-festival.txt")
    renamed = sync(services, folder)
    assert (renamed.added, renamed.removed, renamed.duplicates) == (["notes/kite-festival.txt"], ["notes/kites.txt"], [])

    # a folder removed as a whole
    shutil.rmtree(folder / "notes")
    gone = sync(services, folder)
    assert sorted(gone.removed) == ["notes/2024/渡轮.md", "notes/ferry.txt", "notes/kite-festival.txt"]
    assert set(documents(services)) == {path_document_id("office/docx-tables.docx"),
                                        path_document_id("office/fake-power-point.pptx")}


def test_documents_added_otherwise_and_other_collections_are_left_alone(services: Services, folder: Path):
    docs = services.documents
    docs.create_collection("d")
    docs.add(docs.parse(KITES), "kites-api")  # an API-added document in the synced collection
    docs.add(docs.parse(FERRY.replace("Hoy", "Flotta")), "flotta", "d")
    sync(services, folder, "d")  # collection d follows the folder too (a copy of its own)
    clash = path_document_id("notes/ferry.txt")
    docs.add(docs.parse(FERRY.replace("Hoy", "Graemsay")), clash)  # takes the id a synced file would get

    report = sync(services, folder)
    assert [rel for rel, _ in report.failed] == ["notes/ferry.txt"]
    assert "did not add" in report.failed[0][1]
    assert "Graemsay" in docs.get(clash)[1]  # not replaced
    in_d = documents(services, "d")

    (folder / "office" / "fake-memo.pdf").unlink()
    (folder / "notes" / "kites.txt").write_text(KITES, encoding="utf-8")  # the API document's content
    second = sync(services, folder)
    assert second.removed == ["office/fake-memo.pdf"]
    assert second.duplicates == [("notes/kites.txt", "kites-api")]  # the duplicate policy holds: stored once
    assert {"kites-api", clash} <= set(documents(services))
    assert documents(services, "d") == in_d and "flotta" in in_d  # the other collection is untouched

    # emptying the folder removes what the sync added, and only that
    shutil.rmtree(folder)
    folder.mkdir()
    emptied = sync(services, folder)
    assert len(emptied.removed) == 3 and set(documents(services)) == {"kites-api", clash}


def test_a_collection_follows_one_folder(services: Services, folder: Path, tmp_path: Path):
    sync(services, folder)
    other = tmp_path / "other"
    shutil.copytree(folder / "notes", other)
    with pytest.raises(FolderConflictError, match="--switch"):
        sync(services, other)
    moved = sync(services, other, switch=True)  # the same files under other paths: re-added, old ones removed
    assert sorted(moved.added) == ["2024/渡轮.md", "ferry.txt"] and len(moved.removed) == 5
    assert {m[FOLDER_KEY] for m in documents(services).values()} == {str(other.resolve())}


def test_sync_resumes_after_kill_9(tmp_path: Path, qa_cli: QACli):
    rng = random.Random(13)
    folder = tmp_path / "docs"
    paths = write_documents(folder / "reports", 160, rng)
    data, cache = tmp_path / "data", tmp_path / "cache"  # a fresh embedding cache: every vector is computed
    env = {"QA_EMBEDDER": "use-m", "QA_CACHE_DIR": cache}
    target = rng.randint(20, 100)
    committed = kill_9_once_committed(qa_cli, target, data, tmp_path / "sync.log", "sync", "sync", folder,
                                      "--data-dir", data, **env)
    assert target <= committed < len(paths)

    # meanwhile the folder changes: one committed file edited, one deleted, one new
    files = sorted(paths)
    files[0].write_text(files[0].read_text(encoding="utf-8") + "\nAn added line about harbour lanterns.\n",
                        encoding="utf-8")
    files[1].unlink()
    extra = folder / "reports" / "late.txt"
    extra.write_text(KITES, encoding="utf-8")

    again = qa_cli.run("sync", folder, "--data-dir", data, **env)
    out = again.stdout + again.stderr
    assert again.returncode == 0, out
    summary = re.search(r"sync: (\d+) added, (\d+) replaced, (\d+) removed, (\d+) unchanged", " ".join(out.split()))
    assert summary, out
    assert tuple(map(int, summary.groups())) == (len(paths) - committed + 1, 1, 1, committed - 2), out

    settings = Settings(_env_file=None, data_dir=data, cache_dir=cache, embedder="use-m", seeds_dir=None)
    services = build_services(settings)
    try:
        expected = {path_document_id(p.relative_to(folder).as_posix()): p for p in [*files[2:], files[0], extra]}
        stored = documents(services)
        assert set(stored) == set(expected)  # each file once, none missing, the deleted one gone
        assert all(m[HASH_KEY] == file_sha256(expected[i]) for i, m in stored.items())
        assert_consistent(services, expected)  # complete documents, indexes holding exactly the stored passages
    finally:
        services.close()
    third = qa_cli.run("sync", folder, "--data-dir", data, **env)
    assert "0 added, 0 replaced, 0 removed, 160 unchanged" in " ".join((third.stdout + third.stderr).split())


def _wait_for(log: Path, pattern: str, proc, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = " ".join(log.read_text(errors="replace").split())
        if re.search(pattern, text):
            return text
        assert proc.poll() is None, f"qa sync --watch ended ({proc.returncode}):\n{text[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} not seen in the log:\n{log.read_text(errors='replace')[-3000:]}")


def test_watch_follows_new_and_deleted_files_and_stops_on_sigterm(tmp_path: Path, qa_cli: QACli):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "ferry.txt").write_text(FERRY, encoding="utf-8")
    data = tmp_path / "data"
    env = {"QA_EMBEDDER": "use-m"}
    log = tmp_path / "watch.log"
    proc = qa_cli.popen("sync", folder, "--watch", "--debounce-ms", "200", "--data-dir", data, log=log, **env)
    try:
        _wait_for(log, r"watching ", proc)
        assert "added ferry.txt" in log.read_text()
        (folder / "sub").mkdir()
        shutil.copy(DATA / "fake-memo.pdf", folder / "sub" / "memo.pdf")
        _wait_for(log, r"added sub/memo\.pdf", proc)
        (folder / "ferry.txt").unlink()
        _wait_for(log, r"removed ferry\.txt", proc)
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    assert "SIGTERM: stopping" in log.read_text()
    ask = qa_cli.run("ask", "Who wrote the memo?", "--data-dir", data, **env)  # the data folder opens and answers
    assert ask.returncode == 0, ask.stdout + ask.stderr
    assert path_document_id("sub/memo.pdf") in ask.stdout and "ferry.txt" not in ask.stdout
