"""The dictionary leg: a question's words translated by CC-CEDICT and looked up in the other language's
passages with BM25.

A question is a list of concepts (one per content word or dictionary phrase, each with its
translations; see :mod:`qa.text.dictionary`). A passage scores, for each concept, the BM25 of the
concept's translations it holds, capped at the concept's IDF (the IDF of its most common known
translation: three synonyms in one passage count as one word, a long list of senses earns no more
than one), and the sum is divided by the sum of those IDFs: 1.0 means every translatable concept of
the question is in the passage. Only translations some passage of the other language uses count, as
in the cross-language leg: most senses a dictionary lists never occur in a given corpus.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from qa.index.base import TermStats
from qa.models import Passage
from qa.text.dictionary import Concept, Dictionary
from qa.text.tokenize import passage_tokens


TermSearch = Callable[[list[str], int], list[tuple[int, float]]]
TermStatsOf = Callable[[list[str]], TermStats]


@dataclass
class DictionaryMatch:
    """The leg's result for one question: normalised scores by passage, and what coverage needs."""

    scores: dict[int, float] = field(default_factory=dict)
    concepts: list[tuple[tuple[str, ...], float]] = field(default_factory=list)  # (known translations, idf)
    unknown_weight: float = 0.0  # translatable concepts no passage of the other language uses, at the maximum IDF

    def coverage(self, passage_tokens: set[str]) -> float:
        """IDF-weighted share of the question's translatable concepts that the passage holds in some
        translation (concepts the corpus never uses weigh the most, as in the same-language coverage)."""
        total = sum(idf for _, idf in self.concepts) + self.unknown_weight
        if total <= 0:
            return 0.0
        found = sum(idf for tokens, idf in self.concepts if any(t in passage_tokens for t in tokens))
        return found / total


class DictionaryLeg:
    """Scores passages of the other language by the question's dictionary translations."""

    def __init__(self, dictionary: Dictionary | None):
        self.dictionary = dictionary

    def concepts(self, query: str, query_lang: str) -> list[Concept]:
        return self.dictionary.concepts(query, query_lang) if self.dictionary is not None else []

    def match(self, query: str, query_lang: str, search: TermSearch, stats: TermStatsOf, k: int) -> DictionaryMatch:
        """Score the other language's passages: ``search(tokens, k)`` is BM25 over them (filters applied)
        as (passage id, score) best first, ``stats(tokens)`` their term statistics."""
        result = DictionaryMatch()
        concepts = self.concepts(query, query_lang)
        if not concepts:
            return result
        totals: dict[int, float] = {}
        for concept in concepts:
            tokens = list(dict.fromkeys(concept.translations))
            term_stats = stats(tokens)
            if term_stats.documents == 0:
                return result
            known = term_stats.known(tokens)
            if not known:
                result.unknown_weight += float(np.log1p((term_stats.documents + 0.5) / 0.5))
                continue
            idf = float(term_stats.idf()[[i for i, d in enumerate(term_stats.df) if d > 0]].min())
            result.concepts.append((tuple(known), idf))
            for rowid, bm25 in search(known, k):
                totals[rowid] = totals.get(rowid, 0.0) + min(bm25, idf)
        strength = sum(idf for _, idf in result.concepts)
        if strength > 0:
            best = sorted(totals.items(), key=lambda kv: -kv[1])[:k]
            result.scores = {rowid: total / strength for rowid, total in best}
        return result


def cross_language_features(top: dict[str, float], translated: DictionaryMatch, passage: Passage) -> dict[str, float]:
    """Confidence signals for a best passage in the other language, where same-language coverage
    cannot exist: the share of the question's translatable concepts it holds (dictionary), and its
    cross-language match (numbers, Latin words, names through pinyin)."""
    words = set(passage_tokens(passage.section, passage.text, passage.lang))
    return {"dictionary_coverage": translated.coverage(words), "cross": float(top.get("cross", 0.0))}
