"""The search pipeline: dense and lexical legs → language-aware fusion → confidence → evidence.

Lexical evidence only counts where the question and the passage share a language (BM25 across
languages is noise); the dense leg carries cross-lingual questions. BM25 scores are scaled by the
best score of the same query, so fusion stays comparable whatever the corpus size or language mix.
"""

from __future__ import annotations

import numpy as np

from embeddings import Embedder
from qa.corpus import Corpus
from qa.retrieval.confidence import Calibration
from qa.retrieval.evidence import EvidenceSelector
from qa.retrieval.types import Hit, SearchRequest, SearchResult
from qa.text.lang import detect_lang
from qa.text.tokenize import tokenize


class SearchService:
    def __init__(self, corpus: Corpus, embedder: Embedder, evidence: EvidenceSelector,
                 calibration: Calibration, candidates: int = 50, lexical_weight: float = 0.15,
                 answerable_threshold: float | None = None):
        self.corpus = corpus
        self.embedder = embedder
        self.evidence = evidence
        self.calibration = calibration
        self.candidates = candidates
        self.lexical_weight = lexical_weight
        self.threshold = calibration.threshold if answerable_threshold is None else answerable_threshold

    def search(self, request: SearchRequest) -> SearchResult:
        query = request.query.strip()
        query_lang = detect_lang(query)
        allowed = self.corpus.allowed_rowids(request.lang, request.document_ids)
        if allowed is not None and not allowed:
            return SearchResult(query, query_lang, False, 0.0, [])
        qvec = self.embedder.encode_queries([query])[0]
        scored = self.score_candidates(qvec, query, query_lang, allowed)
        if not scored:
            return SearchResult(query, query_lang, False, 0.0, [])
        ranked = sorted(scored.items(), key=lambda kv: -kv[1]["score"])
        top_features = self.features(ranked)
        confidence = self.calibration.confidence(top_features)
        top = ranked[: request.top_k]
        passages = self.corpus.passages([rowid for rowid, _ in top])
        ordered = [passages[rowid] for rowid, _ in top if rowid in passages]
        evidences = self.evidence.select(query, query_lang, ordered)
        hits = [
            Hit(rank=i + 1, score=round(float(comp["score"]), 6), passage=p, evidence=ev,
                components={k: round(float(v), 6) for k, v in comp.items()} if request.explain else {})
            for i, ((_, comp), p, ev) in enumerate(zip(top, ordered, evidences))
        ]
        return SearchResult(query, query_lang, confidence >= self.threshold, round(confidence, 4), hits)

    def score_candidates(self, qvec: np.ndarray, query: str, query_lang: str, allowed: set[int] | None
              ) -> dict[int, dict[str, float]]:
        scores, ids = self.corpus.vectors.search(qvec[None, :], self.candidates, allowed)
        fused: dict[int, dict[str, float]] = {
            int(i): {"dense": float(s), "lexical": 0.0} for s, i in zip(scores[0], ids[0])
        }
        lexical = self.corpus.lexical.search(tokenize(query), query_lang, self.candidates, allowed)
        if lexical:
            best = lexical[0][1]
            missing = [rowid for rowid, _ in lexical if rowid not in fused]
            if missing:
                vecs = self.corpus.vectors.reconstruct(missing)
                for rowid, vec in zip(missing, vecs):
                    fused[rowid] = {"dense": float(vec @ qvec), "lexical": 0.0}
            for rowid, bm25 in lexical:
                fused[rowid]["lexical"] = bm25 / best
                fused[rowid]["bm25"] = bm25
        for comp in fused.values():
            comp["score"] = comp["dense"] + self.lexical_weight * comp["lexical"]
        return fused

    @staticmethod
    def features(ranked: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
        first = ranked[0][1]
        second = ranked[1][1] if len(ranked) > 1 else {"dense": 0.0, "score": 0.0}
        return {
            "dense_top": max(c["dense"] for _, c in ranked),
            "score_top": first["score"],
            "margin": first["score"] - second["score"],
            "bm25_top": first.get("bm25", 0.0),
        }
