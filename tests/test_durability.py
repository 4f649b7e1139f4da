"""Durability: a process killed mid-ingest, corrupt or foreign index files, and ``qa reindex``.

Real processes, real files: ``qa ingest`` is killed with SIGKILL at a random point, index files are
damaged byte by byte, and the data folder is then opened the way the service opens it.
"""

from __future__ import annotations

import os
import random
import re
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from qa.index.base import IndexCorruptError, IndexMismatchError
from qa.index.faiss_dense import FaissDenseIndex
from qa.ingest.chunker import chunk_document
from qa.ingest.parsers import SUPPORTED_EXTENSIONS as SUPPORTED_SUFFIXES
from qa.ingest.service import content_hash, document_id_for
from qa.models import Passage
from qa.retrieval.types import SearchRequest
from qa.settings import Settings
from qa.store import DEFAULT_COLLECTION, IndexEntry, SearchFilter, StoredPassage
from qa.store.sqlite import SqlitePassageStore, StoreError, new_document
from qa.text.tokenize import tokenize
from qa.wiring import Services, build_corpus, build_services

from conftest import SEEDS_DIR, QACli, QAServer, qa_env

SEED_QUESTION = "上海创智学院有多少研究生和导师？"
SEED_ANSWER = "190余名研究生"

EN_WORDS = ("harbour lantern granite orchard meadow copper signal ferry quarry beacon glacier willow compass "
            "barley canal timber falcon ember shingle tundra").split()
ZH_WORDS = "港口 灯塔 花岗岩 果园 草甸 铜矿 信号 渡轮 采石场 烽火 冰川 柳树 罗盘 大麦 运河 木材 猎鹰 余烬 卵石 冻原".split()


def seed_files() -> dict[str, Path]:
    return {document_id_for(p.stem): p for p in SEEDS_DIR.iterdir() if p.suffix.lower() in SUPPORTED_SUFFIXES}


def settings_for(data_dir: Path, cache_dir: Path) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, cache_dir=cache_dir, embedder="use-m", seeds_dir=None)


def open_services(data_dir: Path, cache_dir: Path) -> Services:
    return build_services(settings_for(data_dir, cache_dir))


def write_documents(folder: Path, count: int, rng: random.Random) -> list[Path]:
    """``count`` small documents, alternately English and Chinese, each paragraph one sentence."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        if n % 2 == 0:
            paras = [f"Station {n} report {k}: the {' '.join(rng.sample(EN_WORDS, 5))} logged {rng.randint(10, 999)} "
                     f"readings near checkpoint K{n:03d}-{k}." for k in range(4)]
            title = f"Field report {n}"
        else:
            paras = [f"第{n}号站点报告{k}:{''.join(rng.sample(ZH_WORDS, 5))}在检查点K{n:03d}-{k}记录了{rng.randint(10, 999)}次读数。"
                     for k in range(4)]
            title = f"野外报告{n}"
        path = folder / f"doc-{n:03d}.txt"
        path.write_text(title + "\n\n" + "\n\n".join(paras) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def committed_documents(store_path: Path) -> int:
    if not store_path.exists():
        return 0
    try:
        conn = sqlite3.connect(store_path, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def kill_9_once_committed(qa_cli: QACli, target: int, data: Path, log: Path, note: str, *args, **env) -> int:
    """Run ``qa *args``, SIGKILL it once ``target`` documents are committed in ``data``; the count then."""
    proc = qa_cli.popen(*args, log=log, **env)
    deadline = time.monotonic() + 300
    try:
        while committed_documents(data / "store.sqlite") < target and proc.poll() is None:
            assert time.monotonic() < deadline, f"{args[0]} too slow: " + log.read_text(errors="replace")[-2000:]
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, (
        f"{args[0]} ended ({proc.returncode}) before the kill at {target} documents ({note}): "
        + log.read_text(errors="replace")[-2000:])
    return committed_documents(data / "store.sqlite")


def assert_consistent(services: Services, files: dict[str, Path]) -> None:
    """Every stored document is complete and exact, and both indexes hold exactly the stored passages."""
    store, corpus = services.corpus.store, services.corpus
    docs = store.list_documents(DEFAULT_COLLECTION, limit=10_000)
    for doc in docs:
        path = files[doc.id]
        parsed = services.documents.parse(path.read_bytes(), path.name)
        expected = chunk_document(parsed, services.embedder.count_tokens, services.settings.max_passage_tokens)
        _, text = store.get_document(DEFAULT_COLLECTION, doc.id)
        assert text == parsed.text, f"{doc.id}: stored text differs from the file"
        stored = store.passages_of_document(DEFAULT_COLLECTION, doc.id)
        assert doc.passage_count == len(expected) == len(stored), f"{doc.id} is incomplete"
        assert [(p.start, p.end, p.text) for p in stored] == [(d.start, d.end, d.text) for d in expected]
        assert all(text[p.start:p.end] == p.text for p in stored)

    total = store.count_passages()
    rowids = {e.rowid for batch in store.iter_entries() for e in batch}
    assert len(rowids) == total
    assert corpus.dense.count() == total, f"vector index has {corpus.dense.count()} vectors, store {total} passages"
    assert corpus.lexical.count() == total, f"lexical index has {corpus.lexical.count()} passages, store {total}"
    if total:
        dim = corpus.dense.dimension
        hits = corpus.dense.search(np.ones(dim, dtype=np.float32) / np.sqrt(dim), total, SearchFilter())
        assert {h.rowid for h in hits} == rowids
    # both indexes have applied every change the store holds
    assert corpus.dense.applied_seq == store.seq == corpus.lexical.applied_seq


def assert_finds(services: Services, paragraph: str, document_id: str) -> None:
    result = services.search.search(SearchRequest(query=paragraph, top_k=3))
    assert result.hits, f"no result for {paragraph!r}"
    top = result.hits[0].passage
    assert top.document_id == document_id and top.text == paragraph, (paragraph, [h.passage.id for h in result.hits])



def _assert_seeds_answer(data: Path, cache: Path) -> None:
    """The data folder opens, holds exactly the seeds, and finds the seed answer."""
    services = open_services(data, cache)
    try:
        assert_consistent(services, seed_files())
        result = services.search.search(SearchRequest(query=SEED_QUESTION, top_k=3))
        assert any(SEED_ANSWER in h.passage.text for h in result.hits)
    finally:
        services.close()

def test_kill_9_during_ingest_leaves_a_consistent_data_folder(tmp_path: Path, qa_cli: QACli):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    paths = write_documents(tmp_path / "docs", 240, rng)
    files = {p.stem: p for p in paths}
    data, cache = tmp_path / "data", tmp_path / "cache"  # a fresh embedding cache: every vector is computed
    env = {"QA_EMBEDDER": "use-m", "QA_CACHE_DIR": cache}

    # 1. A first batch completes: indexes written at its generation.
    first = qa_cli.run("ingest", *paths[:40], "--data-dir", data, **env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert committed_documents(data / "store.sqlite") == 40

    # 2. The whole folder again, killed with SIGKILL once a random number of new documents is committed.
    target = 40 + rng.randint(5, 150)
    committed = kill_9_once_committed(qa_cli, target, data, tmp_path / "ingest.log", f"seed {seed}",
                                      "ingest", tmp_path / "docs", "--data-dir", data, **env)
    assert target <= committed < len(paths), (seed, target, committed)

    # 3. The folder opens; what was committed is complete, in order, and indexed; search works.
    services = open_services(data, cache)
    try:
        stored_ids = [d.id for d in services.corpus.store.list_documents(DEFAULT_COLLECTION, limit=10_000)]
        assert stored_ids == [p.stem for p in paths[:committed]], f"not a prefix of the ingest order (seed {seed})"
        assert_consistent(services, files)
        for doc_id in rng.sample(stored_ids, 6):
            paragraph = files[doc_id].read_text(encoding="utf-8").split("\n\n")[rng.randint(1, 4)].strip()
            assert_finds(services, paragraph, doc_id)
    finally:
        services.close()

    # 4. Ingesting again completes the folder: committed documents are unchanged, the rest added.
    again = qa_cli.run("ingest", tmp_path / "docs", "--data-dir", data, **env)
    assert again.returncode == 0, again.stdout + again.stderr
    output = again.stdout + again.stderr
    summary = re.search(r"(\d+) documents \((\d+) added, (\d+) replaced, (\d+) unchanged", output)
    assert summary, output
    assert (int(summary[2]), int(summary[4])) == (len(paths) - committed, committed), output
    assert output.count(": added (") == len(paths) - committed
    services = open_services(data, cache)
    try:
        assert services.corpus.store.count_documents() == len(paths)
        assert_consistent(services, files)
        assert_finds(services, files["doc-239"].read_text(encoding="utf-8").split("\n\n")[2].strip(), "doc-239")
    finally:
        services.close()

    ask = qa_cli.run("ask", "Which station logged readings near checkpoint K238-1?", "--data-dir", data, **env)
    assert ask.returncode == 0, ask.stdout + ask.stderr
    assert re.search(r"doc-\d{3}:\d+ \[\d+:\d+\]", ask.stdout), ask.stdout


# --- damaged and foreign index files ------------------------------------------------------------
@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, Path]:
    """A data folder holding the seed corpus, embedded with USE-m, closed."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    services = open_services(data, cache)
    try:
        services.documents.ingest_paths([SEEDS_DIR])
        assert services.corpus.store.count_passages() > 0
    finally:
        services.close()
    return data, cache


def _flip_bytes(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    middle = len(raw) // 2
    for i in range(middle, min(middle + 32, len(raw))):
        raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _vector_file(data: Path) -> Path:
    """The largest file of the default collection's dense index (its vectors)."""
    return max((data / "vectors" / "default").iterdir(), key=lambda p: p.stat().st_size)


CORRUPTIONS = {
    "flipped bytes": lambda data: _flip_bytes(_vector_file(data)),
    "truncated index": lambda data: _truncate(_vector_file(data)),
    "index file missing": lambda data: _vector_file(data).unlink(),
    "manifest not JSON": lambda data: (data / "vectors" / "dense.json").write_text("{not json", encoding="utf-8"),
}


def _snapshot(data: Path) -> dict[str, bytes]:
    folder = data / "vectors"
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_vector_index_is_refused_then_repaired_by_reindex(seeded, qa_cli: QACli, corruption):
    data, cache = seeded
    CORRUPTIONS[corruption](data)
    damaged = _snapshot(data)

    with pytest.raises(IndexCorruptError, match="qa reindex"):
        open_services(data, cache)
    ask = qa_cli.run("ask", SEED_QUESTION, "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=cache)
    assert ask.returncode != 0
    assert "qa reindex" in ask.stdout + ask.stderr and "Traceback" not in ask.stdout + ask.stderr, ask.stderr
    assert _snapshot(data) == damaged, "the damaged index was rewritten instead of refused"

    reindex = qa_cli.run("reindex", "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=cache)
    assert reindex.returncode == 0, reindex.stdout + reindex.stderr
    _assert_seeds_answer(data, cache)
    ask = qa_cli.run("ask", SEED_QUESTION, "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=cache)
    assert ask.returncode == 0, ask.stdout + ask.stderr


def test_server_refuses_a_corrupt_index_and_says_how_to_repair_it(seeded, tmp_path: Path, qa_cli: QACli):
    data, cache = seeded
    _flip_bytes(_vector_file(data))
    damaged = _snapshot(data)

    def serve(name: str) -> QAServer:
        server = QAServer(name=name, data_dir=data, log_path=tmp_path / f"{name}.log",
                          env=qa_env(QA_EMBEDDER="use-m", QA_CACHE_DIR=cache), cwd=qa_cli.cwd)
        server.start()
        return server

    server = serve("corrupt")
    try:
        health = server.wait_ready(timeout=120)
        assert health["ready"] is False and health["status"] == "failed", health
        assert "qa reindex" in health["error"], health
        assert server.health().status_code == 503
        resp = server.client.post("/v1/search", json={"query": SEED_QUESTION})
        assert resp.status_code == 503, resp.text
        error = resp.json()["error"]
        assert error["type"] == "service_failed" and "qa reindex" in error["message"], error
    finally:
        server.stop()
    assert _snapshot(data) == damaged, "the server rewrote the damaged index instead of refusing it"

    reindex = qa_cli.run("reindex", "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=cache)
    assert reindex.returncode == 0, reindex.stdout + reindex.stderr
    server = serve("repaired")
    try:
        assert server.wait_ready(timeout=120)["ready"] is True, server.log_tail()
        resp = server.client.post("/v1/search", json={"query": SEED_QUESTION, "top_k": 3})
        assert resp.status_code == 200 and any(SEED_ANSWER in r["text"] for r in resp.json()["results"]), resp.text
    finally:
        server.stop()


def test_store_opened_with_another_model_is_refused(seeded):
    """The passages were embedded with USE-m; a service configured with another model must not use them."""
    data, cache = seeded
    before = _snapshot(data)
    with pytest.raises(IndexMismatchError, match="qa reindex") as info:
        build_corpus(settings_for(data, cache), "embeddinggemma-300m@00000000", 768)
    assert "use-m-v3" in str(info.value)
    assert _snapshot(data) == before


def test_index_files_of_another_model_are_refused_then_repaired(seeded, tmp_path: Path, qa_cli: QACli):
    """Index files copied in from a folder built with another model: refused, and `qa reindex` repairs."""
    data, cache = seeded
    import shutil

    shutil.rmtree(data / "vectors")
    foreign = FaissDenseIndex(data / "vectors", 256, "some-other-model@1234")
    foreign.add([IndexEntry(rowid=i + 1, collection=DEFAULT_COLLECTION, document_id="x", lang="en", source=None,
                            published=None, tokens=(), vector=v) for i, v in enumerate(np.eye(3, 256, dtype=np.float32))])
    foreign.mark_applied(1)
    foreign.checkpoint()
    foreign.close()
    with pytest.raises(IndexMismatchError, match="qa reindex") as info:
        open_services(data, cache)
    assert "some-other-model@1234" in str(info.value)
    reindex = qa_cli.run("reindex", "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=cache)
    assert reindex.returncode == 0, reindex.stdout + reindex.stderr
    services = open_services(data, cache)
    try:
        assert_consistent(services, seed_files())
    finally:
        services.close()


@pytest.mark.slow
def test_use_m_folder_opened_with_embeddinggemma_is_refused(seeded, qa_cli: QACli):
    """The real mismatch: the default model (EmbeddingGemma) pointed at a folder embedded with USE-m."""
    data, _ = seeded
    before = _snapshot(data)
    proc = qa_cli.run("ask", SEED_QUESTION, "--data-dir", data, QA_EMBEDDER="sentence-transformers", timeout=600)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "qa reindex" in output and "use-m-v3" in output and "Traceback" not in output, output
    assert _snapshot(data) == before



MARKDOWN = "---\ntitle: Beekeeping\nsource: Apiary Monthly\n---\n\n# Beekeeping\n\n## Swarming\n\n" \
    "A colony preparing to swarm raises queen cells.\n\n## Winter\n\nBees form a cluster to keep warm.\n"
HTML = "<html><head><title>Glass</title></head><body><h1>Glass</h1><h2>Making</h2><p>Glass is made from sand.</p>" \
    "<h2>Playing</h2><p>Wet fingers on spinning bowls make the sound of the <b>armonica</b>.</p></body></html>"


def _passage_layout(store) -> dict[str, list[tuple]]:
    out = {}
    for doc in store.list_documents(DEFAULT_COLLECTION, limit=10_000):
        rows = store.passages_of_document(DEFAULT_COLLECTION, doc.id)
        out[doc.id] = (doc.title, doc.source, doc.published, doc.metadata,
                       sorted((p.id, p.start, p.end, p.section, p.text) for p in rows))
    return out


@pytest.fixture
def mixed(seeded) -> tuple[Path, Path]:
    """The seed report plus a Markdown file, an HTML page and a text whose title came separately."""
    data, cache = seeded
    services = open_services(data, cache)
    try:
        ing = services.documents
        assert ing.add(ing.parse(MARKDOWN.encode(), "bees.md"), "bees").status == "added"
        assert ing.add(ing.parse(HTML.encode(), "glass.html"), "glass").status == "added"
        posted = ing.parse("Ferries leave Stromness at 07:00.\n\nOn Sundays they leave at 09:30.", title="Ferries")
        assert ing.add(posted, "ferries").status == "added"
    finally:
        services.close()
    return data, cache


def test_reembed_keeps_every_passage_and_citation(mixed, qa_cli: QACli):
    """`qa reindex --reembed` embeds the stored passages again; ids, offsets and sections do not move."""
    data, cache = mixed
    store = SqlitePassageStore(data / "store.sqlite")
    before = _passage_layout(store)
    store.close()
    proc = qa_cli.run("reindex", "--reembed", "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=cache)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    services = open_services(data, cache)
    try:
        assert _passage_layout(services.corpus.store) == before
        assert services.corpus.dense.count() == services.corpus.lexical.count() == services.corpus.store.count_passages()
        result = services.search.search(SearchRequest(query="How do bees keep warm in winter?", top_k=1))
        assert result.hits[0].passage.id == "bees:2" and result.hits[0].passage.section == "Winter"
    finally:
        services.close()


@pytest.mark.slow
def test_switching_to_embeddinggemma_with_qa_reindex(mixed, qa_cli: QACli):
    """The path the refusal names: `qa reindex` with the new model re-embeds everything, citations intact."""
    data, _ = mixed
    store = SqlitePassageStore(data / "store.sqlite")
    before = _passage_layout(store)
    store.close()
    env = {"QA_EMBEDDER": "sentence-transformers"}  # the default cache: the installed model
    refused = qa_cli.run("ask", SEED_QUESTION, "--data-dir", data, **env)
    assert refused.returncode != 0 and "qa reindex" in refused.stdout + refused.stderr
    proc = qa_cli.run("reindex", "--data-dir", data, **env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = SqlitePassageStore(data / "store.sqlite")
    try:
        assert store.get_meta("model_id").startswith("embeddinggemma-300m@")
        assert _passage_layout(store) == before
    finally:
        store.close()
    ask = qa_cli.run("ask", SEED_QUESTION, "--data-dir", data, **env)
    assert ask.returncode == 0, ask.stdout + ask.stderr
    target = next(p for p in before[document_id_for(next(iter(seed_files().values())).stem)][4] if SEED_ANSWER in p[4])
    assert f"{target[0]} [{target[1]}:{target[2]}]" in ask.stdout, ask.stdout

def test_corrupt_lexical_index_is_refused_then_rebuilt_from_the_store(seeded, qa_cli: QACli):
    """The lexical index is derived from the stored tokens: an unreadable one is refused with the command
    that rebuilds it, and `qa reindex` does."""
    data, cache = seeded
    (data / "lexical" / "state.json").write_text("garbage", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="qa reindex"):
        open_services(data, cache)
    reindex = qa_cli.run("reindex", "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=cache)
    assert reindex.returncode == 0, reindex.stdout + reindex.stderr
    _assert_seeds_answer(data, cache)


def test_a_lost_lexical_index_is_rebuilt_from_the_store(seeded):
    """A data folder whose lexical index is gone (deleted, or copied without it) opens: the index is
    rebuilt from the tokens kept in the store."""
    data, cache = seeded
    import shutil

    shutil.rmtree(data / "lexical")
    _assert_seeds_answer(data, cache)


def test_unreadable_store_is_refused_with_a_clear_message(tmp_path: Path, qa_cli: QACli):
    data = tmp_path / "data"
    data.mkdir()
    (data / "store.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="not a readable qa store"):
        open_services(data, tmp_path / "cache")
    proc = qa_cli.run("ask", SEED_QUESTION, "--data-dir", data, QA_EMBEDDER="use-m", QA_CACHE_DIR=tmp_path / "cache")
    assert proc.returncode != 0
    assert "not a readable qa store" in proc.stdout + proc.stderr and "Traceback" not in proc.stderr


def test_index_lagging_the_store_is_caught_up_on_open(seeded):
    """A crash between the store commit and the index write: the next open restores the index from the store."""
    data, cache = seeded
    services = open_services(data, cache)
    try:
        doc = services.documents.parse("Ferry timetable\n\nThe first ferry to Hoy leaves Stromness at 07:00 on weekdays.\n",
                                    "ferry.txt")
        stale = _snapshot(data)
        # Write through the store only, as a process killed right after the commit would have.
        drafts = chunk_document(doc, services.embedder.count_tokens, 400)
        vectors = services.embedder.encode_passages([d.text for d in drafts])
        passages = [StoredPassage(Passage(f"ferry:{d.paragraph}", "ferry", d.section, d.paragraph, d.part, d.lang,
                                          d.start, d.end, d.text, doc.title), tokenize(d.text), vectors[i])
                    for i, d in enumerate(drafts)]
        services.corpus.store.replace_document(DEFAULT_COLLECTION,
            new_document("ferry", doc.title, "en", None, None, content_hash(doc.title, doc.text), {}), doc.text, passages)
    finally:
        services.close()
    assert _snapshot(data) == stale  # the index files still describe the old generation

    services = open_services(data, cache)
    try:
        assert_consistent(services, {**seed_files(),
                                     "ferry": _write(data.parent / "ferry.txt", doc.text)})
        assert_finds(services, "The first ferry to Hoy leaves Stromness at 07:00 on weekdays.", "ferry")
    finally:
        services.close()


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path

