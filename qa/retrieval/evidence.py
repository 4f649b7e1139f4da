"""Evidence: the sentence (or two) inside a passage that best answers the question.

Sentences are scored by the light multilingual encoder (cross-lingual) plus, when the question and
the passage share a language, the share of question tokens the sentence contains. A very short best
sentence is joined with its better neighbour so the evidence reads on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embeddings import Embedder
from qa.models import Passage
from qa.retrieval.types import Evidence
from qa.text.sentences import split_sentences
from qa.text.tokenize import tokenize

MIN_EVIDENCE_CHARS = 12


class EvidenceSelector:
    def __init__(self, sentence_encoder: Embedder | None, lexical_weight: float = 1.0):
        self.encoder = sentence_encoder
        self.lexical_weight = lexical_weight

    def select(self, query: str, query_lang: str, passages: Sequence[Passage]) -> list[Evidence]:
        spans_per_passage = [self._spans(p) for p in passages]
        flat = [(i, s, e) for i, spans in enumerate(spans_per_passage) for s, e in spans]
        if not flat:
            return [Evidence(p.text, p.start, p.end) for p in passages]
        texts = [passages[i].text[s - passages[i].start:e - passages[i].start] for i, s, e in flat]
        scores = np.zeros(len(flat), dtype=np.float32)
        if self.encoder is not None:
            q = self.encoder.encode_queries([query])[0]
            scores += self.encoder.encode_passages(texts) @ q
        q_tokens = set(tokenize(query))
        if q_tokens:
            for j, (i, _, _) in enumerate(flat):
                if passages[i].lang == query_lang:
                    overlap = len(q_tokens & set(tokenize(texts[j]))) / len(q_tokens)
                    scores[j] += self.lexical_weight * overlap
        out = []
        offset = 0
        for i, spans in enumerate(spans_per_passage):
            p = passages[i]
            if not spans:
                out.append(Evidence(p.text, p.start, p.end))
                continue
            local = scores[offset:offset + len(spans)]
            offset += len(spans)
            best = int(np.argmax(local))
            s, e = spans[best]
            if e - s < MIN_EVIDENCE_CHARS and len(spans) > 1:
                neighbours = [n for n in (best - 1, best + 1) if 0 <= n < len(spans)]
                n = max(neighbours, key=lambda k: local[k])
                s, e = min(s, spans[n][0]), max(e, spans[n][1])
            out.append(Evidence(p.text[s - p.start:e - p.start], s, e))
        return out

    @staticmethod
    def _spans(p: Passage) -> list[tuple[int, int]]:
        return split_sentences(p.text, p.start)
