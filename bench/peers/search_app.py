"""A minimal semantic search service, written the way one writes it by hand: the app of the peers
``qa bench --peers`` compares qa with. FastAPI + a sentence-transformers model (EmbeddingGemma's
query/document prompts) + a FAISS ``IndexFlatIP`` over normalised vectors, everything in memory, no
cache, no lexical leg, no evidence. The peers differ only in how the model runs: ``plain_app.py`` (torch
fp32) and ``openvino_app.py`` (sentence-transformers' OpenVINO backend).
"""

import threading
from collections.abc import Callable

import faiss
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

Encode = Callable[[list[str], str], np.ndarray]  # (texts, prompt name) -> normalised vectors


class Doc(BaseModel):
    id: str
    text: str


class Query(BaseModel):
    query: str
    top_k: int = 5


class Texts(BaseModel):
    texts: list[str]
    prompt_name: str = "document"


def search_app(encode: Encode, dimension: int) -> FastAPI:
    index = faiss.IndexFlatIP(dimension)
    docs: list[dict] = []
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/healthz")
    def healthz():
        return {"ok": True, "documents": len(docs)}

    @app.post("/add")
    def add(items: list[Doc]):
        vectors = encode([d.text for d in items], "document")
        with lock:
            index.add(vectors)
            docs.extend(d.model_dump() for d in items)
        return {"added": len(items), "total": len(docs)}

    @app.post("/search")
    def search(q: Query):
        vector = encode([q.query], "query")
        scores, rows = index.search(vector, min(q.top_k, max(len(docs), 1)))
        return [{"id": docs[r]["id"], "text": docs[r]["text"], "score": float(s)}
                for s, r in zip(scores[0], rows[0]) if r >= 0]

    @app.post("/embed")
    def embed(body: Texts):
        """The vectors themselves, so that the benchmark and the tests can compare the peers' models."""
        return {"vectors": encode(body.texts, body.prompt_name).tolist()}

    return app
