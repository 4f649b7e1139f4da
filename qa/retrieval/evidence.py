"""Evidence: the sentence (or two) inside a passage that best answers the question.

Each sentence is scored by its similarity to the question under the main embedding model (its
vector is stored at ingest, so this costs no model call). Words shared with the question are not
counted: on XQuAD they pulled the choice toward the sentence that echoes the question rather than
the one holding the answer (`qa eval xquad`, fp32, answer in evidence with them 0.841 / 0.865 /
0.848 / 0.843, without 0.846 / 0.874 / 0.848 / 0.843; docs/quality.md). A very
short best sentence is joined with its better neighbour so the evidence reads on its own, and so is
a neighbour that scores almost as well (the answer often sits next to the sentence that echoes the
question).
"""

from __future__ import annotations

import numpy as np

from qa.models import Passage
from qa.retrieval.types import Evidence

MIN_EVIDENCE_CHARS = 12


class EvidenceSelector:
    def __init__(self, join_margin: float = 0.1):
        self.join_margin = join_margin  # a neighbour scoring within this of the best joins the evidence

    def select(self, passage: Passage, spans: list[tuple[int, int]] | None, scores: np.ndarray | None) -> Evidence:
        """The evidence span of ``passage`` given its sentences' ``spans`` and their similarity ``scores``."""
        if not spans or scores is None or len(spans) < 2:
            return Evidence(passage.text, passage.start, passage.end)
        best = int(np.argmax(scores))
        s, e = spans[best]
        neighbours = [n for n in (best - 1, best + 1) if 0 <= n < len(spans)]
        n = max(neighbours, key=lambda k: scores[k])
        if e - s < MIN_EVIDENCE_CHARS or scores[n] >= scores[best] - self.join_margin:
            s, e = min(s, spans[n][0]), max(e, spans[n][1])
        return Evidence(passage.text[s - passage.start:e - passage.start], s, e)
