"""Typed inputs and outputs of the search pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

from qa.models import Passage


@dataclass(frozen=True)
class SearchRequest:
    query: str
    top_k: int = 5
    lang: str | None = None
    document_ids: tuple[str, ...] | None = None
    explain: bool = False


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
