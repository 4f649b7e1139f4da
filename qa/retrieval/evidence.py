"""Evidence: the sentences inside a passage that best answer the question, at least a snippet long.

Each sentence is scored by its similarity to the question under the main embedding model (its
vector is stored at ingest, so this costs no model call). Words shared with the question are not
counted: on XQuAD they pulled the choice toward the sentence that echoes the question rather than
the one holding the answer (docs/quality.md).

The evidence starts at the best sentence and grows by whole sentences, each time toward the better
scoring neighbour, while it is shorter than ``min_chars`` or while that neighbour scores within
``join_margin`` of the best (the answer often sits next to the sentence that echoes the question).
Length is counted in Latin-character equivalents: a CJK character counts as three, about what it
carries against a letter (EmbeddingGemma's tokenizer: ~4 Latin characters and ~1.3 Chinese
characters per token), so a snippet holds about as much text in either language. With the default
240 (about 60 tokens: two English sentences, or 80 Chinese characters) the evidence is a readable
snippet, never a bare clause; docs/quality.md has the rate of answers inside it at each size.
"""

from __future__ import annotations

import re

import numpy as np

from qa.models import Passage
from qa.retrieval.types import Evidence

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
CJK_WEIGHT = 3


def text_size(text: str) -> int:
    """``text``'s length in Latin-character equivalents (a CJK character counts as :data:`CJK_WEIGHT`)."""
    return len(text) + (CJK_WEIGHT - 1) * len(_CJK.findall(text))


class EvidenceSelector:
    def __init__(self, join_margin: float = 0.1, min_chars: int = 240):
        self.join_margin = join_margin  # a neighbour scoring within this of the best joins the evidence
        self.min_chars = min_chars  # the evidence grows until it is at least this long (see text_size)

    def select(self, passage: Passage, spans: list[tuple[int, int]] | None, scores: np.ndarray | None) -> Evidence:
        """The evidence span of ``passage`` given its sentences' ``spans`` and their similarity ``scores``."""
        if not spans or scores is None or len(spans) < 2:
            return Evidence(passage.text, passage.start, passage.end)
        best = int(np.argmax(scores))
        first = last = best
        while True:
            options = [k for k in (first - 1, last + 1) if 0 <= k < len(spans)]
            if not options:
                break
            n = max(options, key=lambda k: scores[k])
            short = text_size(self._text(passage, spans[first][0], spans[last][1])) < self.min_chars
            if not short and scores[n] < scores[best] - self.join_margin:
                break
            first, last = min(first, n), max(last, n)
        s, e = spans[first][0], spans[last][1]
        return Evidence(self._text(passage, s, e), s, e)

    @staticmethod
    def _text(passage: Passage, start: int, end: int) -> str:
        return passage.text[start - passage.start:end - passage.start]
