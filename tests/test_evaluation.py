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
