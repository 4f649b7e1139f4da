"""The benchmark definitions behind `qa eval` (pools, question sets, gold), on the real public data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.evaluation import _highest_threshold, load_runs, no_answer_report, RunFigures

EVAL_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "eval"

needs_data = pytest.mark.skipif(not (EVAL_DIR / "xquad" / "passages.jsonl").is_file(),
                                reason=f"no public benchmarks in {EVAL_DIR}")


@needs_data
def test_split_pool_holds_each_paragraph_in_one_language_alternating():
    pools, runs = load_runs("xquad", EVAL_DIR)
    split = pools["xquad-split"]
    assert len(split) == len(pools["xquad"]) // 2
    assert all(p["id"].startswith(("zh-", "en-")[int(p["id"].split("-")[1]) % 2]) for p in split)
    ids = {p["id"] for p in split}
    split_runs = [r for r in runs if r.pool == "xquad-split"]
    assert [r.name for r in split_runs] == ["xquad zh→split pool", "xquad en→split pool"]
    for run in split_runs:
        assert all(len(q.gold) == 1 and q.gold <= ids for q in run.questions)
        cross = sum(next(iter(q.gold)).split("-")[0] != q.lang for q in run.questions)
        assert 0.3 < cross / len(run.questions) < 0.7  # about half the questions are cross-lingual


@needs_data
def test_no_answer_sets_go_both_ways_and_keep_answerable_ones_apart():
    pools, runs = load_runs("noanswer", EVAL_DIR)
    out_of_corpus = {r.name: r for r in runs if not r.answerable}
    assert {"out-of-corpus cmrc → xquad", "out-of-corpus xquad-zh → cmrc", "out-of-corpus xquad-en → cmrc"} <= set(out_of_corpus)
    assert all(not q.gold for r in out_of_corpus.values() for q in r.questions)
    answerable = [r for r in runs if r.answerable]
    assert {r.pool for r in answerable} == {"xquad", "xquad-split", "cmrc2018"}  # one-language and mixed corpora
    assert all(q.gold for r in answerable for q in r.questions)
    half = {p["title"] for p in pools["xquad-half"]}
    assert half and half < {p["title"] for p in pools["xquad"]}
    # Out-of-corpus questions on a one-language corpus in all four directions (en → an all-Chinese corpus too).
    one_language = {(r.questions[0].lang, r.target_lang) for r in out_of_corpus.values() if r.target_lang}
    assert one_language == {("zh", "zh"), ("zh", "en"), ("en", "zh"), ("en", "en")}


def test_the_threshold_flags_at_most_the_allowed_share():
    confidences = np.linspace(0.0, 1.0, 1000)
    threshold = _highest_threshold(confidences, 0.01)
    assert (confidences < threshold).mean() <= 0.01
    assert (confidences < np.nextafter(threshold, 2.0)).mean() > 0.01  # and it is the highest such threshold


def test_no_answer_report_weights_each_set_by_its_size():
    figures = [RunFigures("a", 100, legs={"final": {}}, said_unanswerable=0.01),
               RunFigures("b", 300, legs={"final": {}}, said_unanswerable=0.03),
               RunFigures("ooc", 50, said_unanswerable=0.9)]
    report = no_answer_report(figures)
    assert report["answerable_flagged"] == pytest.approx(0.025)
    assert report["out_of_corpus_flagged"] == pytest.approx(0.9)


@needs_data
def test_qa_eval_runs_on_the_distributed_backend_beside_the_embedded_one(tmp_path, capsys) -> None:
    """``qa eval xquad --backend both`` on a slice of XQuAD (USE-m): the pools are built through the wiring
    on PostgreSQL + milvus-lite (started for the run) and on the data folder, and rank alike."""
    import json

    from rich.console import Console

    from bench.evaluation import run_eval
    from qa.settings import Settings

    eval_dir = tmp_path / "eval"
    (eval_dir / "xquad").mkdir(parents=True)
    passages = [json.loads(line) for line in (EVAL_DIR / "xquad" / "passages.jsonl").read_text().splitlines()]
    keep = {p["id"] for p in passages if int(p["id"].split("-")[1]) < 8}
    questions = [json.loads(line) for line in (EVAL_DIR / "xquad" / "questions.jsonl").read_text().splitlines()]
    (eval_dir / "xquad" / "passages.jsonl").write_text(
        "\n".join(json.dumps(p, ensure_ascii=False) for p in passages if p["id"] in keep))
    (eval_dir / "xquad" / "questions.jsonl").write_text(
        "\n".join(json.dumps(q, ensure_ascii=False) for q in questions if set(q["gold_passage_ids"]) <= keep))
    cache = tmp_path / "cache"  # pools and embeddings of this test's own; the model from the real cache
    cache.mkdir()
    (cache / "models").symlink_to(Settings().models_dir)
    settings = Settings(embedder="use-m", cache_dir=cache, seeds_dir=None)
    output = tmp_path / "both.json"
    run_eval("xquad", eval_dir, settings, limit=10, output=output, console=Console(width=160), backend="both")
    both = json.loads(output.read_text())
    assert [f["name"] for f in both["embedded"]] == [f["name"] for f in both["distributed"]]
    for e, d in zip(both["embedded"], both["distributed"]):
        assert e["n"] == d["n"] == 10
        assert abs(e["legs"]["final"]["R@1"] - d["legs"]["final"]["R@1"]) <= 0.1, (e["name"], e["legs"], d["legs"])
    assert "largest R@1 difference" in capsys.readouterr().out
