"""Request and response bodies of the HTTP API."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from qa.ingest.service import ID_PATTERN, MAX_ID_CHARS, given_document_id
from qa.models import Passage
from qa.retrieval.types import Hit, SearchResult
from qa.store.base import COLLECTION_NAME_PATTERN, DEFAULT_COLLECTION, Collection


# What counts as blank for Python's str.isspace, Unicode's White_Space and ECMAScript's \s together, so
# that the published pattern (JSON Schema, ECMAScript regex) and the server agree on a blank string.
_BLANK = "\t\n\v\f\r \x1c-\x1f\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
NOT_BLANK = f"[^{_BLANK}]"
_NOT_BLANK = re.compile(NOT_BLANK)
NO_CONTROL = r"^[^\x00-\x1f\x7f-\x9f]*$"  # titles, sources, dates: one line, no control characters
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def not_blank(value: str, message: str) -> str:
    """``value`` when it has a visible character (the ``NOT_BLANK`` pattern), else ValueError(message)."""
    if not _NOT_BLANK.search(value):
        raise ValueError(message)
    return value


def no_control(value: str | None) -> str | None:
    """``value`` when it has no control character (the ``NO_CONTROL`` pattern), else ValueError."""
    bad = _CONTROL.search(value) if value is not None else None
    if bad:
        raise ValueError(f"contains the control character U+{ord(bad.group()):04X} at {bad.start()}: "
                         "send one line of text without control characters")
    return value


def pattern_field(pattern: str, *args, **kwargs):
    """A ``Field`` whose JSON Schema says ``pattern``; the model's own validator enforces it with a message
    that says what is wrong (pydantic's pattern error would only repeat the regular expression)."""
    return Field(*args, json_schema_extra={"pattern": pattern}, **kwargs)


def _integral(value):
    return int(value) if isinstance(value, float) and value.is_integer() else value


# An integer in a strict request body: JSON Schema's "integer" includes 2.0, which strict pydantic refuses.
JsonInt = Annotated[int, BeforeValidator(_integral)]


class SearchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    query: str = pattern_field(NOT_BLANK, ..., description="The question, in Chinese or English.",
                               examples=["上海在人工智能方面有什么目标？"])
    top_k: JsonInt = Field(5, ge=1, le=50, description="How many passages to return (1–50).")
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
        return not_blank(value, "query is empty: ask a question in Chinese or English")


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
    model_config = ConfigDict(extra="forbid", strict=True)

    title: str = pattern_field(NO_CONTROL, ..., min_length=1, max_length=500)
    text: str = pattern_field(NOT_BLANK, ..., description="The document text (plain text; paragraphs separated by "
                              "line breaks).")
    source: str | None = pattern_field(NO_CONTROL, None, max_length=500)
    published: str | None = pattern_field(NO_CONTROL, None, max_length=50)
    id: str | None = pattern_field(ID_PATTERN, None, min_length=1, max_length=MAX_ID_CHARS, description=(
        "Document id, kept exactly: letters, digits and '_', with '-' or '.' only between them; an id with "
        "Chinese letters gets their pinyin and a hash. Derived from the content when absent."))

    @field_validator("text")
    @classmethod
    def _has_text(cls, value: str) -> str:
        return not_blank(value, "text is empty: a document needs at least one paragraph")

    @field_validator("title", "source", "published")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return no_control(value)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str | None) -> str | None:
        return given_document_id(value) if value is not None else None


class UploadFields(BaseModel):
    """The text fields of a multipart upload beside its ``file``: the rules of a JSON document's."""

    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = DocumentBody.model_fields["id"]
    title: str | None = pattern_field(NO_CONTROL, None, min_length=1, max_length=500,
                                      description="Default: the file's own title (first heading, <title>).")

    _one_line = field_validator("title")(DocumentBody._one_line.__func__)
    _id = field_validator("id")(DocumentBody._id.__func__)


class DocumentBatchBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

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
    resumed: int = Field(0, description="How often a restart (or, on the distributed backend, another replica "
                         "after this one's worker died) resumed it.")
    worker: str | None = Field(None, description="The replica (host/pid) that runs or ran it, on the distributed "
                               "backend (every replica's worker takes jobs); null on the embedded one.")
    created_at: float
    updated_at: float

    @classmethod
    def from_job(cls, job) -> JobOut:
        data = job.public()
        return cls(id=data["id"], kind=data["kind"], state=data["state"], progress=data["progress"],
                   result=IngestOut(**data["result"]) if data["result"] else None, error=data["error"],
                   filename=data["params"].get("filename"), resumed=data["resumed"], worker=data["worker"],
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
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = pattern_field(COLLECTION_NAME_PATTERN, ..., description="1 to 64 characters: lower-case letters, "
                              "digits, '-' or '_', starting with a letter or digit.", examples=["hr-handbook"])
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
    seeds: str | None = Field(None, description="What became of the seeds folder on start: ingested, not needed, "
                              "none, missing or empty.")
    error: str | None = None
    dictionary: str | None = Field(
        None, description="The bilingual dictionary of the cross-language leg: 'CC-CEDICT, N entries', 'off', or "
        "'unavailable: why' (the service then answers without it: cross-language questions rank worse).")
    startup_s: dict[str, float] | None = Field(
        None, description="Seconds each part of the start-up took: imports (from the process's start to the "
        "loading of the services: the interpreter, the modules, the HTTP server), model (then waiting for it to "
        "load), services (store, indexes, dictionary), seeds, warm_up, and total (from the process's start to ready).")


def _rfc3339_text(value):
    """A date-time in a JSON body is a string (pydantic's lax mode would also take a number of seconds)."""
    if not isinstance(value, str):
        raise ValueError("give an RFC 3339 date-time string, e.g. 2027-01-31T18:00:00+08:00")
    return value


class KeyBody(BaseModel):
    """A new API key (``POST /v1/keys``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    role: Literal["read", "write", "admin"] = Field(..., description="read < write (add and delete documents) < "
                                                    "admin (collections and keys too).")
    collections: list[Annotated[str, Field(pattern=COLLECTION_NAME_PATTERN)]] | None = Field(
        None, min_length=1, max_length=1000, description="The collections the key sees; null: every collection "
        "(admin keys always see every collection).")
    name: str = pattern_field(NO_CONTROL, "", max_length=200, description="What the key is for (shown by "
                              "GET /v1/keys and `qa keys list`).")
    expires_at: Annotated[AwareDatetime, BeforeValidator(_rfc3339_text)] | None = Field(
        None, strict=False, description="When the key stops working (RFC 3339, with a time zone); null: never.")
    rate_per_second: float | None = Field(None, ge=0, description="Requests per second this key may make; null: "
                                          "the service's default (QA_RATE_LIMIT_PER_SECOND); 0: no limit.")
    rate_per_minute: JsonInt | None = Field(None, ge=0, description="Requests per minute; null: the default "
                                            "(QA_RATE_LIMIT_PER_MINUTE); 0: no limit.")

    @field_validator("name")
    @classmethod
    def _one_line(cls, value: str) -> str:
        return no_control(value)


class KeyOut(BaseModel):
    id: str = Field(description="The key's public id (its secret is never shown again).")
    name: str
    role: Literal["read", "write", "admin"]
    collections: list[str] | None = Field(description="null: every collection.")
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    state: Literal["active", "expired", "revoked"]
    rate_per_second: float | None
    rate_per_minute: int | None

    @classmethod
    def from_key(cls, key) -> KeyOut:
        from qa.keys.base import iso

        return cls(id=key.id, name=key.name, role=key.role.label,
                   collections=None if key.collections is None else list(key.collections),
                   created_at=iso(key.created_at), expires_at=iso(key.expires_at), revoked_at=iso(key.revoked_at),
                   state=key.state(), rate_per_second=key.rate_per_second, rate_per_minute=key.rate_per_minute)


class KeyCreatedOut(KeyOut):
    key: str = Field(description="The key itself: send it as `Authorization: Bearer <key>`. Shown only now.")


class KeyListOut(BaseModel):
    keys: list[KeyOut]
