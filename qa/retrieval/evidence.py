"""Evidence: the sentence (or two) inside a passage that best answers the question.

Each sentence is scored by its similarity to the question under the main embedding model (its
vector is stored at ingest, so this costs no model call) plus, when question and passage share a
language, the share of the question's words it contains. A very short best sentence is joined with
its better neighbour so the evidence reads on its own, and so is a neighbour that scores almost as
well (the answer often sits in the sentence next to the one that echoes the question).
"""

from __future__ import annotations

import numpy as np

from qa.models import Passage
from qa.retrieval.types import Evidence
from qa.text.tokenize import tokenize

MIN_EVIDENCE_CHARS = 12


class EvidenceSelector:
    def __init__(self, lexical_weight: float = 0.5, join_margin: float = 0.1):
        self.lexical_weight = lexical_weight
        self.join_margin = join_margin  # a neighbour scoring within this of the best joins the evidence

    def sentence_scores(self, qvec: np.ndarray, query_tokens: set[str], same_lang: bool, passage: Passage,
                        spans: list[tuple[int, int]], vectors: np.ndarray) -> np.ndarray:
        scores = vectors @ qvec
        if same_lang and query_tokens:
            for j, (s, e) in enumerate(spans):
                words = set(tokenize(passage.text[s - passage.start:e - passage.start]))
                scores[j] += self.lexical_weight * len(query_tokens & words) / len(query_tokens)
        return scores

    def select(self, passage: Passage, spans: list[tuple[int, int]] | None, scores: np.ndarray | None) -> Evidence:
        if not spans or scores is None or len(spans) < 2:
            return Evidence(passage.text, passage.start, passage.end)
        best = int(np.argmax(scores))
        s, e = spans[best]
        neighbours = [n for n in (best - 1, best + 1) if 0 <= n < len(spans)]
        n = max(neighbours, key=lambda k: scores[k])
        if e - s < MIN_EVIDENCE_CHARS or scores[n] >= scores[best] - self.join_margin:
            s, e = min(s, spans[n][0]), max(e, spans[n][1])
        return Evidence(passage.text[s - passage.start:e - passage.start], s, e)
