"""Synthetic documents for the distributed-backend tests: real store writes, random unit vectors,
tokens from a small bilingual vocabulary (so BM25 statistics are non-trivial)."""

from __future__ import annotations

import numpy as np

from qa.models import Document, Passage
from qa.store.base import StoredPassage

VOCAB = {
    "en": "cat dog mat sat chased river bank money loan rate shanghai district park the a of".split(),
    "zh": "上海 徐汇 科创 走廊 银行 利率 公园 河流 猫 狗".split(),
}
SOURCES = ("wiki", "news", None)
DATES = ("2023-05-01", "2024-01-02", "2024-12-31T08:00:00", None)


def make_document(rng: np.random.Generator, document_id: str, dimension: int, passages: int = 3,
                  lang: str | None = None, collection: str = "default",
                  source: str | None = "", published: str | None = "") -> tuple[Document, str, list[StoredPassage]]:
    lang = lang or ("zh" if rng.random() < 0.4 else "en")
    source = SOURCES[rng.integers(len(SOURCES))] if source == "" else source
    published = DATES[rng.integers(len(DATES))] if published == "" else published
    text_parts, stored, offset = [], [], 0
    for i in range(1, passages + 1):
        tokens = list(rng.choice(VOCAB[lang], size=int(rng.integers(3, 12))))
        text = ("" if lang == "zh" else " ").join(tokens)
        vector = rng.normal(size=dimension).astype(np.float32)
        vector /= np.linalg.norm(vector)
        sentence_vectors = rng.normal(size=(2, dimension)).astype(np.float32)
        half = offset + len(text) // 2
        passage = Passage(id=f"{document_id}:{i}", document_id=document_id, section=None, paragraph=i, part=0,
                          lang=lang, start=offset, end=offset + len(text), text=text, collection=collection,
                          source=source, published=published)
        stored.append(StoredPassage(passage, tokens, vector, ((offset, half), (half, offset + len(text))),
                                    sentence_vectors))
        text_parts.append(text)
        offset += len(text) + 2
    document = Document(id=document_id, title=f"title {document_id}", lang=lang, source=source, published=published,
                        content_hash=f"hash-{document_id}-{rng.integers(1 << 30)}", passage_count=0,
                        created_at="2026-01-01T00:00:00+00:00", metadata={"k": "v"}, collection=collection)
    return document, "\n\n".join(text_parts), stored
