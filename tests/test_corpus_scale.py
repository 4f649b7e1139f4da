"""The scale benchmark's data folder (bench.synthetic_corpus) on 300 passages: it opens as a qa data
folder with nothing to replay, its counts match what it says it holds, every search filter returns
what the data says (dense and lexical indexes against the store's own entries), and
``qa bench --corpus-scale`` runs end to end on it through the real server (light model)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bench.corpus_scale import LIGHT_MODEL, filter_variants
from conftest import EVAL_DIR
from bench.synthetic_corpus import (CorpusSpec, build_data_folder, expected_passages, folder_settings, index_data_folder,
                                    read_manifest)
from qa.store.base import SearchFilter
from qa.text.tokenize import passage_tokens
from qa.wiring import build_corpus

N = 300

pytestmark = pytest.mark.skipif(not (EVAL_DIR / "xquad" / "passages.jsonl").is_file(),
                                reason=f"no public eval sets in {EVAL_DIR}")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scale") / "data"
    stored = build_data_folder(path, CorpusSpec(passages=N, **LIGHT_MODEL), EVAL_DIR, indexes=False)
    assert stored["indexed"] is False and not (path / "vectors").exists()
    indexed = index_data_folder(path)  # the two steps a 1M build is run in
    assert indexed["indexed"] is True and indexed["seconds"]["store"] == stored["seconds"]["store"]
    return path


@pytest.fixture
def corpus(folder: Path):
    corpus = build_corpus(folder_settings(folder), LIGHT_MODEL["model_id"], LIGHT_MODEL["dimension"])
    yield corpus
    corpus.close()


def _filter(body: dict) -> SearchFilter:
    """A search body's filter fields as the value the indexes take."""
    return SearchFilter(collection=body.get("collection", "default"), lang=body.get("lang"),
                        document_ids=tuple(body["document_ids"]) if "document_ids" in body else None,
                        sources=tuple(body["sources"]) if "sources" in body else None,
                        published_from=body.get("published_from"), published_to=body.get("published_to"))


def test_the_folder_opens_with_nothing_to_replay_and_its_counts_match(folder: Path, corpus) -> None:
    manifest = read_manifest(folder)
    store = corpus.store
    assert manifest["passages"] == N == store.count_passages()
    assert store.seq > 0 and store.changes_since(0) == [] and corpus.lag == 0  # indexes checkpointed, log pruned
    assert set(manifest["collections"]) == {c.name for c in store.list_collections()} == {"default", "archive"}
    for name, counts in manifest["collections"].items():
        assert store.count_documents(name) == counts["documents"]
        assert store.count_passages(name) == counts["passages"] == corpus.dense.count(name) == corpus.lexical.count(name)
    assert sum(f[-1] for f in manifest["facets"]) == N
    assert 2 <= N / manifest["documents"] <= 6

    entries = [e for batch in store.iter_entries() for e in batch]
    assert len(entries) == N and {e.lang for e in entries} == {"zh", "en"}
    rowids = [e.rowid for e in entries]
    passages = store.passages_by_rowid(rowids)
    sentences = store.sentences_of(rowids)
    for e in entries:
        p = passages[e.rowid]
        spans, vectors = sentences[e.rowid]
        _, text = store.get_document(p.collection, p.document_id)
        assert text[p.start:p.end] == p.text
        assert len(spans) == 5 and vectors.shape == (5, LIGHT_MODEL["dimension"])
        assert all(p.start <= s < t <= p.end for s, t in spans)
        assert np.linalg.norm(e.vector) == pytest.approx(1.0, abs=2e-3)  # float16 in the store
        real = passage_tokens(None, p.text, p.lang)
        if p.lang == "en":  # word tokens never cross a sentence joint
            assert Counter(e.tokens) == Counter(real)
        else:  # jieba may cut differently where two sentences meet
            overlap = sum((Counter(e.tokens) & Counter(real)).values())
            assert overlap >= 0.9 * max(len(real), len(e.tokens))


def test_every_filter_returns_what_the_data_says(folder: Path, corpus) -> None:
    manifest = read_manifest(folder)
    entries = [e for batch in corpus.store.iter_entries() for e in batch]
    query = np.random.default_rng(3).standard_normal(LIGHT_MODEL["dimension"]).astype(np.float32)
    query /= np.linalg.norm(query)
    token = Counter(t for e in entries if e.lang == "zh" for t in set(e.tokens)).most_common(1)[0][0]
    for name, body in filter_variants(manifest).items():
        flt = _filter(body)
        wanted = {e.rowid for e in entries if flt.accepts(e)}
        assert wanted, f"filter {name} admits nothing: the benchmark would measure an empty search"
        if "document_ids" not in body or len(body) == 1:
            assert len(wanted) == expected_passages(manifest, body), name
        found = {h.rowid for h in corpus.dense.search(query, N, flt)}
        assert found == wanted, name
        lexical = {h.rowid for h in corpus.lexical.search([token], "zh", N, flt)}
        assert lexical == {e.rowid for e in entries if flt.accepts(e) and e.lang == "zh" and token in e.tokens}, name


def test_qa_bench_corpus_scale_runs_end_to_end(folder: Path, qa_cli, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(folder, data)  # the server writes into it
    out = tmp_path / "figures.json"
    run = qa_cli.run("bench", "--corpus-scale", N, "--corpus-dir", data, "--queries", 8, "--duration", 2,
                     "--load-rounds", 1, "--write-rounds", 2, "--eval-dir", EVAL_DIR, "--output", out, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "search p99 with writers ÷ without" in run.stdout
    f = json.loads(out.read_text(encoding="utf-8"))["corpus_scale"]
    assert f["params"]["passages"] == N and f["build"]["built_now"] is False
    assert f["startup_s"] > 0 and f["memory_at_ready_mib"]["VmRSS"] > 0 and f["disk"]["bytes_per_passage"] > 0
    assert set(f["search"]["filters"]) == {"none", "collection", "lang", "document_ids", "source", "published",
                                           "combined"}
    for name, figures in f["search"]["filters"].items():
        assert figures["n"] == 8 and figures["violations"] == 0, name
    assert f["search"]["filters"]["none"]["mean_hits"] == 5
    assert f["writes"]["post"]["n"] == 2 and f["writes"]["delete"]["n"] == 2
    c = f["concurrent"]
    assert c["searchers_alone"]["errors"] == c["searchers_with_writers"]["errors"] == c["writers"]["errors"] == 0
    assert c["searchers_with_writers"]["requests"] > 0 and c["writers"]["cycles"] > 0

    # the folder now holds N passages again (every benchmark write was deleted); another N is refused
    refused = qa_cli.run("bench", "--corpus-scale", N + 1, "--corpus-dir", data, "--eval-dir", EVAL_DIR, timeout=120)
    assert refused.returncode != 0
    assert f"holds a synthetic corpus of {N:,} passages" in refused.stdout + refused.stderr
