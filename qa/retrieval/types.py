"""Typed inputs and outputs of the search pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

from qa.models import Passage
from qa.store.base import DEFAULT_COLLECTION, SearchFilter


@dataclass(frozen=True)
class SearchRequest:
    query: str
    top_k: int = 5
    lang: str | None = None
    document_ids: tuple[str, ...] | None = None
    explain: bool = False
    collection: str = DEFAULT_COLLECTION
    sources: tuple[str, ...] | None = None
    published_from: str | None = None
    published_to: str | None = None

    def filter(self) -> SearchFilter:
        """The request's restrictions as the value every index evaluates itself."""
        return SearchFilter(collection=self.collection, lang=self.lang, document_ids=self.document_ids,
                            sources=self.sources, published_from=self.published_from,
                            published_to=self.published_to)


@dataclass(frozen=True)
class Evidence:
    text: str
    start: int
    end: int


@dataclass
class Hit:
    rank: int
    score: float
    passage: Passage
    evidence: Evidence
    components: dict[str, float] = field(default_factory=dict)


@dataclass
class SearchResult:
    query: str
    query_lang: str
    answerable: bool
    confidence: float
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)  # explain: milliseconds per stage
