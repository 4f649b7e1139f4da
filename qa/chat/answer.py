"""The extractive answer: the best evidence sentences, quoted with [n] markers, then the sources.

No language model is involved: every sentence of the answer is a verbatim span of a stored
passage (the ``evidence`` the search picked), so the answer can never say more than the documents.
The frame around the quotes ("According to the documents" / "根据文档") follows the language of the
question; the quotes stay in the language of the documents.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from qa.retrieval.types import Evidence, Hit, SearchResult

MAX_QUOTES = 3
QUOTE_MARGIN = 0.05  # a further hit is quoted only if it scores within this of the best one
EXCERPT_CHARS = 160

REFUSAL = {
    "en": "The documents do not answer this question.",
    "zh": "文档中没有找到这个问题的答案。",
}
FALLBACK_NOTE = {
    "en": "(The language model was unavailable; showing the extractive answer.)",
    "zh": "（语言模型暂不可用，以下为抽取式答案。）",
}
_LEAD = {"en": "According to the documents:", "zh": "根据文档："}
_SOURCES = {"en": "Sources:", "zh": "来源："}


@dataclass(frozen=True)
class Citation:
    """One numbered source: the ``[index]`` marker in the answer points here.

    ``start``/``end`` are the passage's offsets in its document; ``evidence.start``/``end`` are
    document offsets too, so the evidence sits at ``text[evidence.start - start:evidence.end - start]``.
    """

    index: int
    passage_id: str
    document_id: str
    title: str
    section: str | None
    paragraph: int
    start: int
    end: int
    evidence: Evidence
    score: float
    text: str
    collection: str = "default"
    page: int | None = None

    @classmethod
    def from_hit(cls, index: int, hit: Hit) -> Citation:
        p = hit.passage
        return cls(index=index, passage_id=p.id, document_id=p.document_id, title=p.title, section=p.section,
                   paragraph=p.paragraph, start=p.start, end=p.end, evidence=hit.evidence, score=hit.score,
                   text=p.text, collection=p.collection, page=p.page)

    def to_dict(self) -> dict:
        return asdict(self)


def lang_key(lang: str) -> str:
    return "zh" if lang == "zh" else "en"


def citations_for(hits: list[Hit]) -> list[Citation]:
    return [Citation.from_hit(i + 1, h) for i, h in enumerate(hits)]


def quoted_hits(result: SearchResult, max_quotes: int = MAX_QUOTES) -> list[Hit]:
    """The best hit, plus up to ``max_quotes - 1`` more that score nearly as well with new evidence."""
    if not result.hits:
        return []
    best = result.hits[0]
    chosen, seen = [best], {best.evidence.text.strip()}
    for hit in result.hits[1:]:
        if len(chosen) >= max_quotes or hit.score < best.score - QUOTE_MARGIN:
            break
        text = hit.evidence.text.strip()
        if text and text not in seen:
            chosen.append(hit)
            seen.add(text)
    return chosen


def _where(c: Citation, lang: str) -> str:
    if lang == "zh":
        parts = [f"《{c.title}》" if c.title else "", c.section or "", f"第{c.paragraph}段"]
        return " · ".join(p for p in parts if p)
    parts = [c.title, c.section or "", f"paragraph {c.paragraph}"]
    return " — ".join(p for p in parts if p)


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS].rstrip() + "…"


def sources_block(citations: list[Citation], lang: str) -> str:
    """``Sources:`` / ``来源：`` then one line per citation: ``[n] title — section — paragraph N`` and the passage."""
    lang = lang_key(lang)
    lines = [_SOURCES[lang]]
    for c in citations:
        lines.append(f"[{c.index}] {_where(c, lang)}")
        lines.append(f"    “{_excerpt(c.text)}”")
    return "\n".join(lines)


def extractive_body(citations: list[Citation], lang: str) -> str:
    """The answer proper: the lead-in, then each evidence sentence followed by its marker."""
    lang = lang_key(lang)
    gap = "" if lang == "zh" else " "
    quotes = [f"{' '.join(c.evidence.text.split())}{gap}[{c.index}]" for c in citations]
    return "\n".join([_LEAD[lang], *quotes])


def extractive_answer(result: SearchResult, lang: str, with_sources: bool = True) -> tuple[str, list[Citation]]:
    """(answer text, citations) for an answerable result; the refusal and no citations otherwise."""
    if not result.answerable or not result.hits:
        return REFUSAL[lang_key(lang)], []
    citations = citations_for(quoted_hits(result))
    text = extractive_body(citations, lang)
    if with_sources:
        text += "\n\n" + sources_block(citations, lang)
    return text, citations
