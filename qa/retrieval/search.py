"""The search pipeline: dense and lexical legs → language-aware fusion → sentence-level second stage
→ confidence → evidence.

- Lexical evidence only counts where the question and the passage share a language (BM25 across
  languages is noise); the dense leg carries cross-lingual questions. BM25 scores are divided by what
  a passage holding every question word would score, so fusion stays comparable across questions,
  corpus sizes and language mixes.
- Second stage: the best fused candidates are re-scored with their sentences' vectors (same model,
  stored at ingest): a question usually matches one sentence of its paragraph more sharply than the
  paragraph as a whole. The best sentence is also the evidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embeddings import Embedder
from qa.corpus import Corpus
from qa.index.base import IndexHit
from qa.models import Passage
from qa.retrieval.confidence import Calibration
from qa.retrieval.dictionary_leg import DictionaryLeg, DictionaryMatch, cross_language_features
from qa.retrieval.evidence import EvidenceSelector
from qa.retrieval.timing import StageTimes
from qa.retrieval.types import Hit, SearchRequest, SearchResult
from qa.store.base import SearchFilter
from qa.text.lang import detect_lang
from qa.text.tokenize import passage_tokens, tokenize, cross_language_query


@dataclass(frozen=True)
class FusionWeights:
    lexical: float = 0.3  # weight of the (query-normalised) BM25 score, same-language passages only
    sentence: float = 0.6  # share of the best-sentence similarity in the semantic score
    cross: float = 0.2  # weight of cross-language matches (numbers, Latin words, pinyin of names)
    dictionary: float = 0.15  # weight of dictionary translations (other-language passages only; <= lexical)
    rerank_depth: int = 20  # fused candidates re-scored by the second stage
    balance_languages: bool = True  # sparse legs reorder within a language, never lift one language as a whole


Scored = dict[int, dict[str, float]]


@dataclass
class Ranking:
    scored: Scored
    langs: dict[int, str]
    ordered: list[tuple[int, dict[str, float]]]
    passages: dict[int, Passage]
    sentences: dict[int, tuple[list[tuple[int, int]], np.ndarray]]
    features: dict[str, float]
    direction: str = ""  # question language → language of the best passage, e.g. "en→zh"


class SearchService:
    def __init__(self, corpus: Corpus, embedder: Embedder, evidence: EvidenceSelector,
                 calibration: Calibration, candidates: int = 50, weights: FusionWeights | None = None,
                 answerable_threshold: float | None = None, dictionary: DictionaryLeg | None = None):
        self.corpus = corpus
        self.embedder = embedder
        self.evidence = evidence
        self.calibration = calibration
        self.candidates = candidates
        self.weights = weights or FusionWeights()
        self.threshold = calibration.threshold if answerable_threshold is None else answerable_threshold
        self.threshold_override = answerable_threshold
        self.dictionary = dictionary or DictionaryLeg(None)

    # Where every search's stage times go besides `explain` (the HTTP layer's metrics), when set.
    timings_sink: Callable[[dict[str, float]], None] | None = None

    def search(self, request: SearchRequest) -> SearchResult:
        times = StageTimes()
        with times.stage("total"):
            result = self._search(request, times)
        if request.explain:
            result.timings_ms = times.rounded()
        if self.timings_sink is not None:
            self.timings_sink(times.ms)
        return result

    def _search(self, request: SearchRequest, times: StageTimes) -> SearchResult:
        query = request.query.strip()
        with times.stage("tokenise"):
            query_lang = detect_lang(query)
        flt = request.filter()
        self.corpus.collection(flt.collection)  # CollectionNotFoundError before any model work
        if flt.matches_nothing:
            return SearchResult(query, query_lang, False, 0.0, [])
        with times.stage("embed"):
            qvec = self.embedder.encode_queries([query])[0]
        ranking = self.rank(qvec, query, query_lang, flt, times)
        if not ranking.ordered:
            return SearchResult(query, query_lang, False, 0.0, [])
        with times.stage("confidence"):
            confidence, answerable = self.answerable(ranking)
        with times.stage("evidence"):
            top = ranking.ordered[: request.top_k]
            missing = [rowid for rowid, _ in top if rowid not in ranking.passages]
            passages = {**ranking.passages, **(self.corpus.store.passages_by_rowid(missing) if missing else {})}
            hits = []
            for rowid, comp in top:
                p = passages.get(rowid)
                if p is None:
                    continue
                spans, sent_scores = ranking.sentences.get(rowid, (None, None))
                hits.append(Hit(
                    rank=len(hits) + 1, score=round(float(comp["score"]), 6), passage=p,
                    evidence=self.evidence.select(p, spans, sent_scores),
                    components={k: round(float(v), 6) for k, v in comp.items()} if request.explain else {},
                ))
        return SearchResult(query, query_lang, answerable, round(confidence, 4), hits)

    def answerable(self, ranking: Ranking) -> tuple[float, bool]:
        """The calibrated confidence and whether it clears the threshold of the ranking's direction."""
        confidence = self.calibration.confidence(ranking.features)
        threshold = (self.calibration.threshold_for(ranking.direction) if self.threshold_override is None
                     else self.threshold_override)
        return confidence, confidence >= threshold

    def rank(self, qvec: np.ndarray, query: str, query_lang: str, flt: SearchFilter,
             times: StageTimes | None = None) -> Ranking:
        """Both stages for one question: every candidate's component scores, best first, and the features
        (``times``: where the time went, by stage)."""
        times = times or StageTimes()
        with times.stage("tokenise"):
            tokens = tokenize(query)
        with times.stage("dictionary"):
            translated = self._translated(query, query_lang, flt)
        scored, langs = self.score_candidates(qvec, query, tokens, query_lang, flt, times, translated)
        with times.stage("second_stage"):
            passages, sentences = self._second_stage(qvec, scored)
            ordered = sorted(scored.items(), key=lambda kv: (-kv[1].get("stage", 1.0), -kv[1]["score"]))
        with times.stage("confidence"):
            features = self._features(ordered, tokens, query_lang, passages, flt.collection)
            top = passages.get(ordered[0][0]) if ordered else None
            if top is not None and top.lang != query_lang:
                features.update(cross_language_features(ordered[0][1], translated, top))
        direction = f"{query_lang}→{top.lang}" if top is not None else ""
        return Ranking(scored, langs, ordered, passages, sentences, features, direction)

    def _translated(self, query: str, query_lang: str, flt: SearchFilter) -> DictionaryMatch:
        """The dictionary leg: the question's words translated, scored in the other language's passages."""
        other_lang = "en" if query_lang == "zh" else "zh"
        return self.dictionary.match(
            query, query_lang, lambda toks, k: [(h.rowid, h.score) for h in self._sparse(toks, other_lang, flt, k)],
            lambda toks: self.corpus.lexical.term_stats(flt.collection, other_lang, toks), self.candidates)

    def _sparse(self, tokens: list[str], lang: str, flt: SearchFilter, k: int | None = None) -> list[IndexHit]:
        if not tokens or flt.lang not in (None, lang):
            return []
        return self.corpus.lexical.search(tokens, lang, k or self.candidates, flt)

    def _strength(self, tokens: list[str], lang: str, collection: str, known_only: bool = False) -> float:
        """What a passage holding each of ``tokens`` once would score (the sum of their IDFs, words the
        corpus never uses at the maximum): BM25 scores divided by it are comparable across questions.
        ``known_only``: count only the tokens some passage of ``lang`` uses."""
        if not tokens:
            return 0.0
        stats = self.corpus.lexical.term_stats(collection, lang, tokens)
        if stats.documents == 0:
            return 0.0
        idf = stats.idf()
        if known_only:
            idf = idf[np.asarray(stats.df) > 0]
        return float(idf.sum())

    def score_candidates(self, qvec: np.ndarray, query: str, tokens: list[str], query_lang: str,
                         flt: SearchFilter, times: StageTimes | None = None,
                         translated: DictionaryMatch | None = None) -> tuple[Scored, dict[int, str]]:
        """First stage: dense, lexical (same language), cross-language (numbers, Latin words, pinyin) and
        dictionary (translated words, other language) legs, fused. Returns the scored candidates and each
        one's language."""
        times = times or StageTimes()
        with times.stage("dense"):
            dense = self.corpus.dense.search(qvec, self.candidates, flt)
        fused: Scored = {h.rowid: {"dense": float(h.score), "lexical": 0.0} for h in dense}
        langs = {h.rowid: h.lang for h in dense}
        other_lang = "en" if query_lang == "zh" else "zh"
        with times.stage("tokenise"):
            cross_tokens = cross_language_query(query, query_lang)
        with times.stage("lexical"):
            self._add_sparse_leg(fused, langs, "lexical", self._sparse(tokens, query_lang, flt),
                                 self._strength(tokens, query_lang, flt.collection), qvec, flt.collection)
        with times.stage("cross_language"):
            self._add_sparse_leg(fused, langs, "cross", self._sparse(cross_tokens, other_lang, flt),
                                 self._strength(cross_tokens, other_lang, flt.collection, known_only=True), qvec,
                                 flt.collection)
        if translated is not None and translated.scores:  # already divided by its strength
            hits = [IndexHit(rowid, score, other_lang) for rowid, score in
                    sorted(translated.scores.items(), key=lambda kv: -kv[1])]
            self._add_sparse_leg(fused, langs, "dictionary", hits, 1.0, qvec, flt.collection)
        with times.stage("fusion"):
            for comp in fused.values():
                comp["sentence"] = comp["dense"]
                comp["score"] = self._combine(comp)
            if self.weights.balance_languages:
                self._balance_languages(fused, {r for r, lang in langs.items() if lang == query_lang})
        return fused, langs

    def _balance_languages(self, fused: Scored, same_lang: set[int]) -> None:
        """BM25 only ever scores passages in the question's language, the cross leg only passages in the
        other one, so each lends one language a bonus the other cannot earn. In a corpus mixing both,
        that lifts every same-topic paragraph of the favoured language above the answer in the other.
        Each language's candidates are therefore offset by the sparse bonus of that language's best
        candidate: the legs still reorder passages within their language (a constant offset changes
        nothing in a one-language corpus), and the languages meet on the semantic score."""
        best: dict[bool, float] = {}
        for rowid, comp in fused.items():
            side = rowid in same_lang
            if side not in best or comp["score"] > fused[best[side]]["score"]:
                best[side] = rowid
        offsets = {side: fused[rowid]["score"] - self._semantic(fused[rowid]) for side, rowid in best.items()}
        for rowid, comp in fused.items():
            comp["language_offset"] = offsets[rowid in same_lang]
            comp["score"] = self._combine(comp)

    def _add_sparse_leg(self, fused: Scored, langs: dict[int, str], name: str, hits: list[IndexHit],
                        strength: float, qvec: np.ndarray, collection: str) -> None:
        """Merge BM25 hits as component ``name``, scaled by what a passage holding every question word
        would score (so a weak best match stays weak: in a mixed-language corpus the question's own
        language gets no bonus for merely sharing a few words); new candidates get their dense score
        from the stored vectors. For the cross-language leg "every question word" means every one the
        other language's passages use at all: most words of a question have no counterpart there
        ("district", "secretary"), and counting them would drown the one name that does ("Xuhui")."""
        if not hits or strength <= 0:
            return
        missing = [h.rowid for h in hits if h.rowid not in fused]
        if missing:
            for rowid, vec in zip(missing, self.corpus.dense.vectors(collection, missing)):
                fused[rowid] = {"dense": float(vec @ qvec), "lexical": 0.0}
        for h in hits:
            langs[h.rowid] = h.lang
            fused[h.rowid][name] = min(1.0, h.score / strength)
            fused[h.rowid][f"{name}_bm25"] = h.score

    def _semantic(self, comp: dict[str, float]) -> float:
        return (1 - self.weights.sentence) * comp["dense"] + self.weights.sentence * comp["sentence"]

    def _combine(self, comp: dict[str, float]) -> float:
        w = self.weights
        return (self._semantic(comp) + w.lexical * comp["lexical"] + w.cross * comp.get("cross", 0.0)
                + w.dictionary * comp.get("dictionary", 0.0) - comp.get("language_offset", 0.0))

    def _second_stage(self, qvec: np.ndarray, scored: Scored
                      ) -> tuple[dict[int, Passage], dict[int, tuple[list[tuple[int, int]], np.ndarray]]]:
        w = self.weights
        top = sorted(scored, key=lambda r: -scored[r]["score"])[: w.rerank_depth]
        stored = self.corpus.store.sentences_of(top)
        passages = self.corpus.store.passages_by_rowid(top)
        out = {}
        for rowid in top:
            comp = scored[rowid]
            comp["stage"] = 2.0
            if rowid in stored and rowid in passages:
                spans, vectors = stored[rowid]
                scores = vectors @ qvec
                comp["sentence"] = float(scores.max())
                out[rowid] = (spans, scores)
            comp["score"] = self._combine(comp)
        return passages, out

    def _margin(self, ordered: list[tuple[int, dict[str, float]]]) -> float:
        """How far the best candidate leads the next, on every leg but the dictionary's: the dictionary's
        evidence enters the confidence through its own signal (``dictionary_coverage``), and its shared
        general words ("district", "say") would otherwise narrow every lead across languages alike."""
        stage = ordered[0][1].get("stage", 1.0)
        same_stage = [c for _, c in ordered if c.get("stage", 1.0) == stage]
        scores = sorted((c["score"] - self.weights.dictionary * c.get("dictionary", 0.0)
                         for c in (same_stage if len(same_stage) > 1 else [c for _, c in ordered])), reverse=True)
        return scores[0] - scores[1] if len(scores) > 1 else 1.0

    def _features(self, ordered: list[tuple[int, dict[str, float]]], query_tokens: list[str], query_lang: str,
                  passages: dict[int, Passage], collection: str) -> dict[str, float]:
        """Question-level signals for the confidence model (see qa.retrieval.confidence.FEATURES)."""
        if not ordered:
            return {}
        top = passages.get(ordered[0][0])
        same_lang = top is not None and top.lang == query_lang
        coverage = 0.0
        if same_lang and query_tokens:
            words = set(passage_tokens(top.section, top.text, top.lang))
            coverage = self._coverage(query_tokens, words, query_lang, collection)
        by_sentence = sorted((c.get("sentence", c["dense"]) for _, c in ordered), reverse=True)
        return {
            # How far the best match stands out from the next ones: a question one paragraph answers
            # peaks; a question on the corpus's general topic (or on nothing in it) stays flat.
            "peak": by_sentence[0] - (sum(by_sentence[1:10]) / len(by_sentence[1:10]) if len(by_sentence) > 1 else 0.0),
            "dense_top": max(c["dense"] for _, c in ordered),
            "sentence_top": max(c.get("sentence", c["dense"]) for _, c in ordered),
            "margin": self._margin(ordered),
            "coverage": coverage,
            "same_lang": 1.0 if same_lang else 0.0,
        }

    def _coverage(self, query_tokens: list[str], passage_tokens: set[str], lang: str, collection: str) -> float:
        """IDF-weighted share of the question's words that the passage contains.

        Words the corpus never uses (a place or a name it does not mention) weigh the most, so a
        question about something absent scores low even when its topic words all match.
        """
        unique = sorted(set(query_tokens))
        if not unique:
            return 0.0
        stats = self.corpus.lexical.term_stats(collection, lang, unique)
        if stats.documents == 0:
            return 0.0
        idf = stats.idf()
        found = np.array([t in passage_tokens for t in unique])
        return float(idf[found].sum() / idf.sum()) if idf.sum() > 0 else 0.0
