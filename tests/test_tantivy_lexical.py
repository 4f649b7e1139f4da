"""The tantivy lexical index beyond the contract: scores against bm25s on real passages, and kill -9.

Run as a script (``python tests/test_tantivy_lexical.py FOLDER BATCH``) it is the writer the kill -9
tests start and kill: it applies a fixed, seeded sequence of steps (adds in two languages and two
collections, removals, collection drops), checkpointing every other step, and resumes after the last
checkpoint when restarted, as the corpus does with the store's change sequence.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from qa.index.tantivy_lexical import TantivyLexicalIndex, published_key, published_key_range  # noqa: E402
from qa.store.base import IndexEntry, SearchFilter  # noqa: E402

XQUAD = Path("/work/shared/eval/xquad")
SEEDS = ROOT / "seeds"


# --- scores against bm25s ------------------------------------------------------------------------
def _real_passages() -> dict[str, list[list[str]]]:
    """Tokens of real passages by language: the seed report's paragraphs and the XQuAD passages."""
    from qa.text.tokenize import passage_tokens

    texts: dict[str, list[str]] = {"zh": [], "en": []}
    for path in sorted(SEEDS.glob("*.txt")):
        texts["zh"].extend(p.strip() for p in path.read_text(encoding="utf-8").split("\n") if len(p.strip()) > 20)
    if (XQUAD / "passages.jsonl").exists():
        for line in (XQUAD / "passages.jsonl").read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            texts[row["lang"]].append(row["text"])
    return {lang: [passage_tokens(None, t, lang) for t in group] for lang, group in texts.items() if group}


def _real_questions() -> dict[str, list[str]]:
    from qa.text.tokenize import tokenize

    questions: dict[str, list[list[str]]] = {"zh": [], "en": []}
    if (XQUAD / "questions.jsonl").exists():
        for n, line in enumerate((XQUAD / "questions.jsonl").read_text(encoding="utf-8").splitlines()):
            if n % 3 == 0:
                row = json.loads(line)
                questions[row["lang"]].append(tokenize(row["question"]))
    return questions


# Tantivy stores a passage's length in one byte: exact up to 40 tokens, then rounded down to the
# nearest of 256 steps (1 in 8 or so at 100-300 tokens). A shorter length can only raise a score,
# by at most that step: measured on these passages, tantivy scores are bm25s's times 1.000 to 1.061.
LENGTH_ROUNDING_TOLERANCE = 1.08


def test_scores_agree_with_bm25s_on_real_passages(tmp_path):
    """Every hit's score is bm25s's "lucene" score (k1 = 1.2, b = 0.75) up to the length rounding, and
    the order agrees with bm25s's wherever the scores differ by more than that rounding."""
    import bm25s

    corpus, questions = _real_passages(), _real_questions()
    assert corpus.get("zh"), "the seed report gives Chinese passages"
    index = TantivyLexicalIndex(tmp_path / "lexical")
    checked = 0
    for lang, passages in corpus.items():
        index.add([IndexEntry(i, "default", f"d{i}", lang, None, None, tuple(t), np.zeros(1))
                   for i, t in enumerate(passages)])
        reference = bm25s.BM25(k1=1.2, b=0.75)
        reference.index([t or ["\u0000"] for t in passages], show_progress=False)
        queries = questions.get(lang) or [p[:12] for p in passages[::3]]  # no XQuAD: paragraph openings
        # bm25s counts a repeated query token again, as the protocol says; so must tantivy.
        first = passages[0][0]
        assert np.allclose(reference.get_scores([first, first]), 2 * reference.get_scores([first]))
        queries = [q + q[:2] if n % 5 == 0 else q for n, q in enumerate(queries)]
        for tokens in queries:
            known = [t for t in tokens if t in reference.vocab_dict]
            if not known:
                assert index.search(tokens, lang, 10, SearchFilter()) == []
                continue
            want = reference.get_scores(known)
            hits = index.search(tokens, lang, 10, SearchFilter())
            assert hits, tokens
            for hit in hits:
                assert want[hit.rowid] * (1 - 1e-5) <= hit.score <= want[hit.rowid] * LENGTH_ROUNDING_TOLERANCE, (
                    tokens, hit, want[hit.rowid])
            # Nothing bm25s scores above tantivy's last hit is missing (a passage left out scores at most
            # that in tantivy, and tantivy never scores below bm25s), and clear gaps keep their order.
            floor = hits[-1].score * (1 + 1e-5)  # float32 rounding; equal scores may come in either order
            clearly_better = {int(i) for i in np.flatnonzero(want > floor)}
            if len(hits) == 10:
                assert clearly_better <= {h.rowid for h in hits}, tokens
            for a, b in zip(hits, hits[1:]):
                assert want[a.rowid] * LENGTH_ROUNDING_TOLERANCE >= want[b.rowid], (tokens, a, b)
            checked += 1
        stats = index.term_stats("default", lang, passages[0][:5] + ["never-a-token"])
        vocab, indptr = reference.vocab_dict, reference.scores["indptr"]
        assert stats.documents == len(passages)
        assert stats.df == tuple(int(indptr[vocab[t] + 1] - indptr[vocab[t]]) if t in vocab else 0
                                 for t in passages[0][:5] + ["never-a-token"])
    assert checked >= 10, "too few questions compared"
    index.close()


# --- open writers, unreadable folders ------------------------------------------------------------
def test_writers_beyond_the_cap_are_closed_and_reopened(tmp_path, monkeypatch):
    import qa.index.tantivy_lexical as module

    monkeypatch.setattr(module, "MAX_OPEN_WRITERS", 2)
    index = TantivyLexicalIndex(tmp_path / "lexical")
    for round_ in range(3):
        for c in range(4):
            index.add([IndexEntry(c * 100 + round_, f"c{c}", "d", "en", None, None, ("word", f"r{round_}"), np.zeros(1))])
            assert len([p for p in index._parts.values() if p.writer is not None]) <= 2
    index.remove("c0", [0])
    for c in range(4):
        hits = index.search(["word"], "en", 10, SearchFilter(collection=f"c{c}"))
        assert {h.rowid for h in hits} == {c * 100 + r for r in range(3)} - {0}
    index.close()


def test_unreadable_or_foreign_folders_are_refused(tmp_path):
    import tantivy

    from qa.index.base import IndexCorruptError, IndexMismatchError

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "state.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="rebuild"):
        TantivyLexicalIndex(tmp_path / "a")
    (tmp_path / "b" / "default" / "en").mkdir(parents=True)
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("body")
    tantivy.Index(builder.build(), path=str(tmp_path / "b" / "default" / "en"))
    index = TantivyLexicalIndex(tmp_path / "b")
    with pytest.raises(IndexMismatchError, match="rebuild"):
        index.search(["x"], "en", 10, SearchFilter())
    (tmp_path / "c" / "default" / "en").mkdir(parents=True)
    (tmp_path / "c" / "default" / "en" / "meta.json").write_text("garbage", encoding="utf-8")
    with pytest.raises(IndexCorruptError, match="rebuild"):
        TantivyLexicalIndex(tmp_path / "c").count()


# --- publication dates --------------------------------------------------------------------------
def test_published_keys_order_as_the_strings_do():
    """ISO dates and their prefixes become integers in string order, and any two string bounds become
    the key range of exactly the ISO-date strings between them."""
    rng = random.Random(0)
    values = {"2025", "2025-00", "2025-00-00", "2025-01-01", "2024-12-31", "2025-12", "0000", "9999-99-99"}
    for _ in range(3000):
        parts = [rng.choice(["0000", "2024", "2025", "9999"])] + [f"{rng.randrange(100):02d}" for _ in
                                                                  range(rng.choice([0, 1, 2]))]
        values.add("-".join(parts))
    values = sorted(values)
    assert sorted(values, key=published_key) == values
    assert len({published_key(v) for v in values}) == len(values)
    for odd in ("2025/04/30", "2025-4-1", "spring", "", "2025-04-30T08"):
        assert published_key(odd) is None
    keys = [published_key(v) for v in values]
    bounds = values[::150] + ["", "1", "2025-", "2025-1", "2025-04-3", "2025-04-30x", "2025/04", "zzzz"]
    for low in bounds:
        for high in bounds:
            first, last = published_key_range(low, high)
            assert [v for v, k in zip(values, keys) if first <= k <= last] == [v for v in values if low <= v <= high]


# --- kill -9 -------------------------------------------------------------------------------------
CHECKPOINT_EVERY = 2
_VOCAB = [f"w{i}" for i in range(3000)]


def _step(step: int, batch: int) -> dict:
    """What step ``step`` does: adds (rowid → (collection, lang, tokens)), removals, a drop."""
    rng = random.Random(step)
    adds = {}
    for j in range(batch):
        rowid = step * 10_000 + j
        collection = "tmp" if step % 5 == 0 and j % 2 else "default"
        adds[rowid] = (collection, "zh" if j % 2 else "en",
                       ["common", f"r{rowid}", f"s{step}", *rng.choices(_VOCAB, k=40)])
    removes = [(step - 2) * 10_000 + j for j in range(0, batch, 3)] if step > 2 else []
    return {"adds": adds, "removes": removes, "drop": "tmp" if step % 5 == 4 else None}


def _apply(index: TantivyLexicalIndex, step: int, batch: int) -> None:
    plan = _step(step, batch)
    index.add([IndexEntry(rowid, c, f"doc{rowid // 10}", lang, None, None, tuple(tokens), np.zeros(1))
               for rowid, (c, lang, tokens) in plan["adds"].items()])
    index.remove("default", plan["removes"])
    if plan["drop"]:
        index.drop_collection(plan["drop"])


def _expected(upto: int, batch: int) -> dict[int, tuple[str, str, int]]:
    """rowid → (collection, lang, step added) after steps 1..upto."""
    state: dict[int, tuple[str, str, int]] = {}
    for step in range(1, upto + 1):
        plan = _step(step, batch)
        state.update({rowid: (c, lang, step) for rowid, (c, lang, _) in plan["adds"].items()})
        for rowid in plan["removes"]:
            if state.get(rowid, ("",))[0] == "default":
                del state[rowid]
        if plan["drop"]:
            state = {r: v for r, v in state.items() if v[0] != plan["drop"]}
    return state


def _writer(folder: Path, batch: int) -> None:
    index = TantivyLexicalIndex(folder)
    step = index.durable_seq
    while True:
        step += 1
        _apply(index, step, batch)
        index.mark_applied(step)
        if step % CHECKPOINT_EVERY == 0:
            index.checkpoint()
        print(step, flush=True)


def _found(index: TantivyLexicalIndex) -> dict[int, tuple[str, str]]:
    found = {}
    for collection in ("default", "tmp"):
        for lang in ("en", "zh"):
            for hit in index.search(["common"], lang, 10**7, SearchFilter(collection=collection)):
                assert hit.rowid not in found, "a rowid indexed twice"
                found[hit.rowid] = (collection, lang)
    return found


def _check_after_kill(folder: Path, batch: int) -> int:
    index = TantivyLexicalIndex(folder)
    durable = index.durable_seq
    found = _found(index)
    before, window = _expected(durable, batch), range(durable + 1, durable + CHECKPOINT_EVERY + 1)
    touched = set()
    for step in window:  # changes after the checkpoint may or may not be there yet
        plan = _step(step, batch)
        touched |= set(plan["adds"]) | set(plan["removes"])
        if plan["drop"]:
            touched |= {r for r, v in before.items() if v[0] == plan["drop"]} | {r for r in found if found[r][0] == plan["drop"]}
    for rowid, (collection, lang, _) in before.items():
        if rowid not in touched:
            assert found.get(rowid) == (collection, lang), f"rowid {rowid} applied by change {durable} is missing"
    assert not (set(found) - set(before) - touched), "passages that no change up to the checkpoint added"
    # Nothing half-written: every passage found holds all its tokens.
    for step in {v[2] for v in before.values()} | set(window):
        holders = {h.rowid for lang in ("en", "zh") for c in ("default", "tmp")
                   for h in index.search([f"s{step}"], lang, 10**7, SearchFilter(collection=c))}
        assert holders == {r for r in found if r // 10_000 == step}, f"step {step}"
    # Replaying the changes after the checkpoint gives exactly the state the sequence says.
    for step in window:
        _apply(index, step, batch)
    index.mark_applied(window[-1])
    index.checkpoint()
    want = _expected(window[-1], batch)
    assert _found(index) == {r: (c, lang) for r, (c, lang, _) in want.items()}
    assert index.count() == len(want)
    index.close()
    return durable


def _unfinished_files(folder: Path) -> int:
    """Segment files no commit refers to yet: a commit or a merge is being written."""
    count = 0
    for meta in folder.glob("*/*/meta.json"):
        try:
            live = {s["segment_id"].replace("-", "") for s in json.loads(meta.read_text())["segments"]}
            names = [p.name for p in meta.parent.iterdir()]
        except (OSError, ValueError):  # renamed or replaced while we looked
            continue
        count += sum(1 for n in names if not n.startswith(".") and n != "meta.json" and n.split(".")[0] not in live)
    return count


def _kill_rounds(tmp_path: Path, batch: int, rounds: int, wait: tuple[float, float],
                 at_unfinished_files: int = 0) -> list[int]:
    """``rounds`` kills at random moments, then ``at_unfinished_files`` kills at the first moment
    segment files no commit refers to are on disk (a commit or merge under way)."""
    folder = tmp_path / "lexical"
    rng = random.Random(batch)
    durables, unfinished = [], 0
    for round_ in range(rounds + at_unfinished_files):
        proc = subprocess.Popen([sys.executable, __file__, str(folder), str(batch)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            first = proc.stdout.readline()  # one step done: the writer is up
            assert first.strip().isdigit(), proc.stderr.read()
            if round_ < rounds:
                time.sleep(rng.uniform(*wait))
            else:
                deadline = time.monotonic() + 30
                while not _unfinished_files(folder) and time.monotonic() < deadline:
                    time.sleep(0.002)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        unfinished += _unfinished_files(folder) > 0
        durables.append(_check_after_kill(folder, batch))
    assert durables[-1] > 0, "no checkpoint was ever written"
    assert durables == sorted(durables)
    if at_unfinished_files:
        assert unfinished >= at_unfinished_files, "no kill landed while segment files were being written"
    return durables


def test_kill_9_while_writing(tmp_path):
    """Small steps killed at random moments: every reopening is consistent with its durable_seq."""
    _kill_rounds(tmp_path, batch=12, rounds=4, wait=(0.0, 2.0), at_unfinished_files=1)


def test_kill_9_while_merging(tmp_path):
    """Larger steps (400 passages a step, a new segment per commit): tantivy merges segments in the
    background every few steps, so kills land during merges too (files of an unfinished merge are left
    beside the index and collected when the next writer opens)."""
    _kill_rounds(tmp_path, batch=400, rounds=2, wait=(1.0, 4.0), at_unfinished_files=2)


if __name__ == "__main__":
    _writer(Path(sys.argv[1]), int(sys.argv[2]))
