"""The seeds folder on first start (real ``qa serve``, USE-m): an unset, missing or empty folder is said in
the log and in /healthz, and ``QA_SEEDS_DIR=`` (empty) means no folder, not the current one."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ServerFailed, artifacts_dir, start_server


@pytest.mark.parametrize("seeds,expected", [("", "none"), ("no-such-folder", "missing"), ("empty-folder", "empty")])
def test_unusable_seeds_folder_is_reported(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, seeds, expected):
    root = tmp_path / "run"
    root.mkdir()
    (root / "empty-folder").mkdir()
    (root / "empty-folder" / "notes.bin").write_bytes(b"\x00\x01")  # not a supported file
    (root / "stray.txt").write_text("A text file in the working folder is not a seed.", encoding="utf-8")
    server = start_server(f"seeds-{expected}", root, artifacts_dir(tmp_path_factory), QA_EMBEDDER="use-m",
                          QA_SEEDS_DIR=seeds)
    try:
        try:
            health = server.wait_ready()
        except ServerFailed as exc:
            pytest.fail(str(exc), pytrace=False)
        assert health["ready"] is True and health["documents"] == 0, health
        assert health["seeds"].startswith(expected), health
        assert "seeds " + expected in server.log_text(), server.log_tail()
    finally:
        server.stop()


@pytest.mark.slow
def test_a_model_without_a_fitted_calibration_is_refused(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """EmbeddingGemma truncated to 128 dimensions has no calibration of its own: the service says so and how
    to fit one, instead of answering with a guessed threshold; QA_ANSWERABLE_THRESHOLD overrides."""
    server = start_server("uncalibrated", tmp_path, artifacts_dir(tmp_path_factory),
                          QA_EMBEDDER="sentence-transformers", QA_EMBEDDING_DIM=128, QA_SEEDS_DIR="")
    try:
        health = server.wait_ready()
        assert health["ready"] is False and health["status"] == "failed", health
        assert "no answerable calibration" in health["error"] and "qa eval calibrate" in health["error"], health
    finally:
        server.stop()
