"""``qa bench --parity`` on a handful of evaluation passages: the real layout (python-docx), the real
converter (LibreOffice headless, installed by ``make test``'s setup), the real parsers and OCR, and the
light model (USE-m) in a cache of the test's own.

The first XQuAD article (zh and en) and the first eight CMRC passages are laid out as DOCX, PDF and
scans; the same questions are asked of each corpus and of the passages as plain text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.console import Console

from bench.parity import INSTALL_HINT, layouts, run
from qa.settings import Settings

from test_corpus_scale import EVAL_DIR  # ../shared/eval beside the checkout (or the folder holding a worktree)

pytestmark = pytest.mark.skipif(not (EVAL_DIR / "xquad" / "passages.jsonl").is_file(),
                                reason=f"the shared evaluation data is not in {EVAL_DIR}")


def test_parity_on_a_handful_of_passages(tmp_path: Path):
    assert shutil.which("soffice"), INSTALL_HINT  # make test installs it (scripts/setup.sh --office)
    settings = Settings(_env_file=None, embedder="use-m", cache_dir=tmp_path / "cache", seeds_dir=None,
                        data_dir=tmp_path / "data")
    result = run(settings, EVAL_DIR, limit=1, console=Console(width=160, record=True),
                 output=tmp_path / "parity.json")
    specs = layouts(EVAL_DIR, 1)
    assert [s.name for s in specs] == ["xquad-zh-000", "xquad-en-000", "cmrc-000"]
    assert result["pages"] >= 4  # several passages per page, but more than one page per benchmark
    figures = result["r_at_1"]
    assert set(figures) == {"xquad zh→zh", "xquad en→en", "xquad en→zh", "xquad zh→en", "cmrc2018 zh→zh"}
    for name, fig in figures.items():
        assert fig["n"] >= 10, (name, fig)
        assert fig["plain"] > 0.5, (name, fig)  # the questions find their passages at all
        assert fig["docx"] == fig["plain"], (name, fig)  # Word text comes out exactly: the same ranking
        assert abs(fig["pdf"] - fig["plain"]) <= 0.02, (name, fig)  # one question of ~50 may move
        assert abs(fig["scan"] - fig["plain"]) <= 0.06, (name, fig)
    identical = result["identical_text"]
    assert identical["docx"]["identical"] == identical["docx"]["passages"] == 18
    assert identical["pdf"]["identical"] >= 5  # the English article at least (Chinese rows gain CJK-Latin spaces)
    pages = result["pages_cited"]
    assert pages["pdf"]["cited_gold_correct"] == pages["pdf"]["cited_gold"] > 0
    assert pages["pdf"]["passages_correct"] == pages["pdf"]["passages_checked"] >= 18
    assert pages["scan"]["cited_gold_correct"] >= 0.9 * pages["scan"]["cited_gold"]
    assert (tmp_path / "parity.json").is_file()
