"""Every offered model configuration has its own fitted calibration (none falls back to the 0.5 default),
and the per-direction thresholds are what the service applies."""

from __future__ import annotations

import json
import typing

import pytest

from embeddings.quantize import QUANTIZE_MODES, model_id_suffix
from qa.retrieval.confidence import CALIBRATION_FILE, DIRECTIONS, FEATURES, Calibration
from qa.settings import Settings

GEMMA = "embeddinggemma-300m@cbf5a783"


def offered_model_ids() -> list[str]:
    """The model id of every embedder × precision the settings offer (``auto`` resolves to one of them)."""
    embedders = typing.get_args(Settings.model_fields["embedder"].annotation)
    assert set(embedders) == {"sentence-transformers", "use-m"}, "a new embedder needs its calibration here"
    return [GEMMA + model_id_suffix(mode) for mode in QUANTIZE_MODES] + ["use-m-v3"]


@pytest.mark.parametrize("model_id", offered_model_ids())
def test_every_offered_model_has_its_own_calibration(model_id: str):
    calibration = Calibration.load(model_id)
    assert calibration.report, f"no calibration fitted for {model_id}: run QA_... qa eval calibrate"
    assert set(calibration.weights) <= set(FEATURES)
    assert 0.0 < calibration.threshold < 1.0
    assert set(calibration.thresholds) <= set(DIRECTIONS)


def test_the_calibration_file_is_valid_json_with_reports():
    data = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))
    for key, entry in data.items():
        assert {"weights", "bias", "threshold", "report"} <= set(entry), key


def test_a_direction_uses_its_own_threshold():
    calibration = Calibration(threshold=0.3, thresholds={"en→zh": 0.2})
    assert calibration.threshold_for("en→zh") == 0.2
    assert calibration.threshold_for("zh→zh") == 0.3
    assert calibration.threshold_for("") == 0.3
