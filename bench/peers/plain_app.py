"""A minimal semantic search service, written the way one writes it by hand: the peer ``qa bench --peers``
compares qa with. FastAPI + sentence-transformers (EmbeddingGemma's query/document prompts) + a FAISS
``IndexFlatIP`` over normalised vectors, everything in memory, no cache, no lexical leg, no evidence.

Run: ``PLAIN_MODEL_PATH=<sentence-transformers folder> uvicorn plain_app:app --app-dir bench/peers``
"""

import os
import threading

import faiss
from fastapi import FastAPI
from pydantic import BaseModel
from sentence_transformers import SentenceTransformer

model = SentenceTransformer(os.environ["PLAIN_MODEL_PATH"], device="cpu", local_files_only=True)
index = faiss.IndexFlatIP(model.get_sentence_embedding_dimension())
docs: list[dict] = []
lock = threading.Lock()
app = FastAPI()


class Doc(BaseModel):
    id: str
    text: str


class Query(BaseModel):
    query: str
    top_k: int = 5


@app.get("/healthz")
def healthz():
    return {"ok": True, "documents": len(docs)}


@app.post("/add")
def add(items: list[Doc]):
    vectors = model.encode([d.text for d in items], prompt_name="document", normalize_embeddings=True)
    with lock:
        index.add(vectors)
        docs.extend(d.model_dump() for d in items)
    return {"added": len(items), "total": len(docs)}


@app.post("/search")
def search(q: Query):
    vector = model.encode([q.query], prompt_name="query", normalize_embeddings=True)
    scores, rows = index.search(vector, min(q.top_k, max(len(docs), 1)))
    return [{"id": docs[r]["id"], "text": docs[r]["text"], "score": float(s)}
            for s, r in zip(scores[0], rows[0]) if r >= 0]
