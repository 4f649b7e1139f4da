"""Request and response bodies of the HTTP API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from qa.models import Passage
from qa.retrieval.types import Hit, SearchResult
from qa.store.base import DEFAULT_COLLECTION, Collection


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(..., description="The question, in Chinese or English.", examples=["上海在人工智能方面有什么目标？"])
    top_k: int = Field(5, ge=1, le=50, description="How many passages to return (1–50).")
    lang: Literal["zh", "en"] | None = Field(None, description="Only passages in this language.")
    document_ids: list[str] | None = Field(None, max_length=1000, description="Only passages of these documents.")
    explain: bool = Field(False, description="Return the component scores of each result.")
    collection: str = Field(DEFAULT_COLLECTION, description="The knowledge base to search (GET /v1/collections).")
    sources: list[str] | None = Field(None, max_length=1000, description="Only passages of documents with one of "
                                      "these sources.")
    published_from: str | None = Field(None, pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
                                       description="Only documents published on or after this date (YYYY[-MM[-DD]]).")
    published_to: str | None = Field(None, pattern=r"^\d{4}(-\d{2}(-\d{2})?)?$",
                                     description="Only documents published on or before this date (YYYY[-MM[-DD]]).")

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is empty: ask a question in Chinese or English")
        return value


class BoxOut(BaseModel):
    """Where a piece of text sits on a page: fractions (0-1) of the displayed page from its top-left."""

    page: int
    x0: float
    y0: float
    x1: float
    y1: float


class EvidenceOut(BaseModel):
    text: str
    start: int
    end: int
    boxes: list[BoxOut] | None = Field(None, description="For PDFs and scans: the evidence on its page(s).")


class PassageOut(BaseModel):
    """A citable passage: where it sits (document, section, paragraph) and its exact offsets."""

    passage_id: str
    document_id: str
    collection: str
    title: str
    section: str | None
    paragraph: int
    lang: str
    text: str
    start: int
    end: int
    source: str | None
    published: str | None
    page: int | None = Field(None, description="Page (slide) the passage starts on, 1-based; PDF, PPTX and scans.")
    page_end: int | None = Field(None, description="Page it ends on when it runs over a page break.")
    ocr_confidence: float | None = Field(None, description="Mean OCR confidence (0-1) of text read from a scan.")

    @classmethod
    def passage_fields(cls, p: Passage) -> dict:
        return dict(passage_id=p.id, document_id=p.document_id, collection=p.collection, title=p.title,
                    section=p.section, paragraph=p.paragraph, lang=p.lang, text=p.text, start=p.start, end=p.end,
                    source=p.source, published=p.published, page=p.page, page_end=p.page_end,
                    ocr_confidence=p.ocr_confidence)

    @classmethod
    def from_passage(cls, p: Passage) -> PassageOut:
        return cls(**cls.passage_fields(p))


class ResultOut(PassageOut):
    rank: int
    score: float
    evidence: EvidenceOut
    explain: dict[str, float] | None = None

    @classmethod
    def from_hit(cls, hit: Hit, boxes: list[dict] | None = None) -> ResultOut:
        return cls(
            rank=hit.rank, score=hit.score, **cls.passage_fields(hit.passage),
            evidence=EvidenceOut(text=hit.evidence.text, start=hit.evidence.start, end=hit.evidence.end,
                                 boxes=[BoxOut(**b) for b in boxes] if boxes else None),
            explain=hit.components or None,
        )


class SearchOut(BaseModel):
    query: str
    query_lang: str
    answerable: bool
    confidence: float = Field(description="Probability-like confidence that the corpus answers the question.")
    results: list[ResultOut]
    timings_ms: dict[str, float] | None = Field(
        None, description="With explain: milliseconds per stage of this search: tokenise (language, words, "
                          "cross-language tokens), embed (the question's vector: the model), dense, lexical, "
                          "cross_language, dictionary, fusion, second_stage, confidence, evidence, and total.")

    @classmethod
    def from_result(cls, result: SearchResult, boxes: Callable[[Hit], list[dict]] | None = None) -> SearchOut:
        return cls(query=result.query, query_lang=result.query_lang, answerable=result.answerable,
                   confidence=result.confidence,
                   results=[ResultOut.from_hit(h, boxes(h) if boxes else None) for h in result.hits],
                   timings_ms=result.timings_ms or None)


class DocumentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(..., min_length=1, max_length=500)
    text: str = Field(..., description="The document text (plain text; paragraphs separated by line breaks).")
    source: str | None = Field(None, max_length=500)
    published: str | None = Field(None, max_length=50)
    id: str | None = Field(None, max_length=128, description="Document id; derived from the content when absent.")

    @field_validator("text")
    @classmethod
    def _has_text(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty: a document needs at least one paragraph")
        return value


class DocumentBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    documents: list[DocumentBody] = Field(..., min_length=1, max_length=256,
                                          description="Up to 256 documents, embedded together and written one by one.")


class IngestOut(BaseModel):
    document_id: str
    status: Literal["added", "replaced", "unchanged", "duplicate"]
    passages: int
    duplicate_of: str | None = None


class JobAcceptedOut(BaseModel):
    job_id: str
    state: str
    location: str = Field(description="GET this for progress and the result.")


class JobOut(BaseModel):
    id: str
    kind: str
    state: Literal["queued", "running", "done", "failed"]
    progress: dict[str, dict[str, int]] = Field(description="Per stage (pages parsed, pages OCR'd, passages "
                                                "embedded): done and total.")
    result: IngestOut | None = None
    error: dict[str, str] | None = None
    filename: str | None = None
    resumed: int = Field(0, description="How often a restart resumed it.")
    created_at: float
    updated_at: float

    @classmethod
    def from_job(cls, job) -> JobOut:
        data = job.public()
        return cls(id=data["id"], kind=data["kind"], state=data["state"], progress=data["progress"],
                   result=IngestOut(**data["result"]) if data["result"] else None, error=data["error"],
                   filename=data["params"].get("filename"), resumed=data["resumed"],
                   created_at=data["created_at"], updated_at=data["updated_at"])


class IngestBatchOut(BaseModel):
    results: list[IngestOut]


class DocumentOut(BaseModel):
    id: str
    collection: str
    title: str
    lang: str
    source: str | None
    published: str | None
    passages: int
    created_at: str
    metadata: dict[str, str]
    text: str | None = None


class DocumentListOut(BaseModel):
    documents: list[DocumentOut]
    total: int


class CollectionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., description="1 to 64 characters: lower-case letters, digits, '-' or '_', starting with a "
                      "letter or digit.", examples=["hr-handbook"])
    description: str = Field("", max_length=2000)


class CollectionOut(BaseModel):
    name: str
    description: str
    created_at: str
    documents: int
    passages: int

    @classmethod
    def from_collection(cls, c: Collection) -> CollectionOut:
        return cls(name=c.name, description=c.description, created_at=c.created_at, documents=c.documents,
                   passages=c.passages)


class CollectionListOut(BaseModel):
    collections: list[CollectionOut]


class HealthOut(BaseModel):
    ready: bool
    status: str
    model: str | None
    passages: int | None
    documents: int | None
    collections: int | None = None
    index_lag: int | None = Field(None, description="Store changes the indexes have not applied yet.")
    answerable_threshold: float | None = Field(
        None, description="Confidence at or above which a search result is marked answerable.")
    error: str | None = None
    dictionary: str | None = Field(
        None, description="The bilingual dictionary of the cross-language leg: 'CC-CEDICT, N entries', 'off', or "
        "'unavailable: why' (the service then answers without it: cross-language questions rank worse).")
