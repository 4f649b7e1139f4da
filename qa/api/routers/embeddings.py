"""POST /v1/embeddings: the service's own embedding model behind OpenAI's embeddings API.

Texts are encoded as *documents* (passages) by default: that is what a caller building its own
index needs, and a frontend that embeds both its documents and its queries through this one
endpoint then compares like with like. ``input_type: "query"`` (an extension, as in other
embedding APIs) uses the question encoding instead, which is what this service's own search does
for questions (EmbeddingGemma prefixes the two differently). Vectors are L2-normalised float32;
``encoding_format: "base64"`` returns their little-endian bytes, as the ``openai`` client expects.
"""

from __future__ import annotations

import base64
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, field_validator

from qa.api.deps import get_services
from qa.api.errors import ApiError
from qa.api.schemas import NOT_BLANK, JsonInt, not_blank
from qa.wiring import Services

router = APIRouter(tags=["embeddings (OpenAI-compatible)"])

MAX_INPUTS = 256
MAX_INPUT_CHARS = 32_000
_TEXT = {"type": "string", "pattern": NOT_BLANK, "description": f"At most {MAX_INPUT_CHARS} characters."}


class EmbeddingsBody(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    input: Annotated[str | list[str], WithJsonSchema({"anyOf": [_TEXT, {  # what _limits checks, published
        "type": "array", "items": _TEXT, "minItems": 1, "maxItems": MAX_INPUTS}]})] = Field(
        ..., description="A text or a list of texts (token arrays are not accepted).")
    model: str | None = Field(None, description='"qa" or the embedding model id; default: the service\'s model.')
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: JsonInt | None = Field(None, description="Must equal the model's dimension when given.")
    input_type: Literal["document", "passage", "query"] = Field(
        "document", description="Extension: encode as documents (default) or as search queries."
    )
    user: str | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _texts(cls, value):
        if isinstance(value, list) and value and not all(isinstance(v, str) for v in value):
            raise ValueError("input must be a string or a list of strings (token arrays are not supported)")
        return value

    @field_validator("input")
    @classmethod
    def _limits(cls, value: str | list[str]) -> str | list[str]:
        texts = [value] if isinstance(value, str) else value
        if not texts:
            raise ValueError("input is an empty list")
        if len(texts) > MAX_INPUTS:
            raise ValueError(f"input has {len(texts)} texts; the limit is {MAX_INPUTS}")
        for i, text in enumerate(texts):
            not_blank(text, f"input[{i}] is empty")
            if len(text) > MAX_INPUT_CHARS:
                raise ValueError(f"input[{i}] has {len(text)} characters; the limit is {MAX_INPUT_CHARS}")
        return value


@router.post("/v1/embeddings")
def create_embeddings(body: EmbeddingsBody, services: Services = Depends(get_services)) -> JSONResponse:
    embedder = services.embedder
    model_id = embedder.model_id
    if body.model not in (None, "qa", model_id, model_id.split("@")[0]):
        raise ApiError(404, "model_not_found",
                       f"The model {body.model!r} does not exist; use \"qa\" or {model_id!r}", "model")
    if body.dimensions is not None and body.dimensions != embedder.dimension:
        raise ApiError(400, "unsupported_dimensions",
                       f"this model returns {embedder.dimension}-dimensional vectors", "dimensions")
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    encode = embedder.encode_queries if body.input_type == "query" else embedder.encode_passages
    vectors = np.asarray(encode(texts), dtype="<f4")
    data = []
    for i, vec in enumerate(vectors):
        value = base64.b64encode(vec.tobytes()).decode("ascii") if body.encoding_format == "base64" \
            else [float(x) for x in vec]
        data.append({"object": "embedding", "index": i, "embedding": value})
    tokens = sum(embedder.count_tokens(t) for t in texts)
    return JSONResponse({"object": "list", "data": data, "model": model_id,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
