"""Answerability: retrieval scores mapped to a probability-like confidence.

A logistic model over a few query-level features. Its coefficients are fitted on public data by
``qa eval calibrate`` (questions with their paragraph in the corpus vs. questions from another
benchmark whose paragraphs are not) and shipped in ``calibration.json`` beside this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
FEATURES = ("dense_top", "sentence_top", "margin", "peak", "coverage", "same_lang", "dictionary_coverage", "cross")
DIRECTIONS = ("zh→zh", "en→en", "en→zh", "zh→en")  # question language → language of the best passage


def model_key(model_id: str) -> str:
    """Calibrations are per model (name and truncation), whatever the weights' hash."""
    name, _, rest = model_id.partition("@")
    return name + ("/" + rest.split("/", 1)[1] if "/" in rest else "")


@dataclass
class Calibration:
    model_id: str = ""
    weights: dict[str, float] = field(default_factory=lambda: {"dense_top": 25.0})
    bias: float = -10.0
    threshold: float = 0.5
    report: dict = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)  # per direction; ``threshold`` elsewhere

    def threshold_for(self, direction: str) -> float:
        """The threshold of one direction ("en→zh": an English question, a Chinese best passage)."""
        return self.thresholds.get(direction, self.threshold)

    def confidence(self, features: dict[str, float]) -> float:
        z = self.bias + sum(w * features.get(name, 0.0) for name, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    @classmethod
    def load(cls, model_id: str, path: Path = CALIBRATION_FILE) -> Calibration:
        """The calibration fitted for ``model_id`` (falls back to the default when none was fitted)."""
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            entry = data.get(model_key(model_id))
            if entry:
                return cls(model_id=model_id, weights=entry["weights"], bias=entry["bias"],
                           threshold=entry.get("threshold", 0.5), report=entry.get("report", {}),
                           thresholds=entry.get("thresholds", {}))
        return cls(model_id=model_id)
