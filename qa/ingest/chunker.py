"""Turn a parsed document into passages: one per paragraph, split at sentence ends when too long.

* Every ``paragraph`` block is one passage. Its section is the nearest ``heading`` block above it
  (``None`` if there is none; the title is not a section); paragraphs are numbered 1.. in
  document order (only paragraph blocks count).
* A paragraph whose ``count_tokens`` exceeds ``max_tokens`` is split into consecutive parts
  numbered 1.. (part 0 means "the whole paragraph"): its sentences (:func:`split_sentences`) are
  packed greedily, each part as long as fits the budget. A single sentence over the budget is cut,
  as a last resort, at the longest prefix that fits (found by bisection on ``count_tokens``),
  backed off to a comma, enumeration mark or space in that prefix's second half when there is one.
* Every part's text is ``doc.text[start:end]`` (the whitespace between packed sentences is kept
  inside a part; parts never start or end with whitespace). ``lang`` is ``detect_lang`` of the
  part's own text.
* Paged formats: each part carries the page it starts on and, when it runs onto a later page, the
  page it ends on (``ParsedDocument.pages_of``; a document rebuilt from stored passages has only
  its blocks' pages); text read by OCR carries its mean recognition confidence
  (``ParsedDocument.ocr_confidence``).
"""

from __future__ import annotations

from collections.abc import Callable

from qa.models import ParsedDocument, PassageDraft
from qa.text.lang import detect_lang
from qa.text.sentences import split_sentences, trim_span

__all__ = ["chunk_document"]

_SOFT_BREAKS = frozenset(",，、:：;；)）]】」』”’ \t\n\u3000\u00a0-—")


def chunk_document(doc: ParsedDocument, count_tokens: Callable[[str], int], max_tokens: int) -> list[PassageDraft]:
    """The passages of ``doc`` (see the module docstring)."""
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
    text = doc.text
    drafts: list[PassageDraft] = []
    section: str | None = None
    paragraph = 0
    for block in doc.blocks:
        if block.kind == "heading":
            section = " ".join(block.text.split())
            continue
        if block.kind != "paragraph":
            continue
        paragraph += 1
        if count_tokens(block.text) <= max_tokens:
            spans = [(block.start, block.end)]
        else:
            spans = _split_paragraph(text, block.start, block.end, count_tokens, max_tokens)
        whole = len(spans) == 1
        for part, (start, end) in enumerate(spans, start=1):
            piece = text[start:end]
            page, page_end = doc.pages_of(start, end) if doc.page_starts else (block.page, None)
            drafts.append(PassageDraft(
                section=section, paragraph=paragraph, part=0 if whole else part, lang=detect_lang(piece),
                start=start, end=end, text=piece, page=page, page_end=page_end,
                ocr_confidence=doc.ocr_confidence(start, end),
            ))
    return drafts


def _split_paragraph(text: str, start: int, end: int, count_tokens: Callable[[str], int],
                     max_tokens: int) -> list[tuple[int, int]]:
    units: list[tuple[int, int]] = []
    for s, e in split_sentences(text[start:end], start=start):
        if count_tokens(text[s:e]) <= max_tokens:
            units.append((s, e))
        else:
            units.extend(_cut(text, s, e, count_tokens, max_tokens))
    parts: list[tuple[int, int]] = []
    cur: tuple[int, int] | None = None
    for s, e in units:
        if cur is None:
            cur = (s, e)
        elif count_tokens(text[cur[0]:e]) <= max_tokens:
            cur = (cur[0], e)
        else:
            parts.append(cur)
            cur = (s, e)
    if cur is not None:
        parts.append(cur)
    return parts


def _cut(text: str, a: int, b: int, count_tokens: Callable[[str], int], max_tokens: int) -> list[tuple[int, int]]:
    """Cut the over-long sentence ``text[a:b]`` into pieces that each fit ``max_tokens``."""
    pieces: list[tuple[int, int]] = []
    while a < b:
        if count_tokens(text[a:b]) <= max_tokens:
            pieces.append((a, b))
            break
        lo, hi = 0, b - a  # count(text[a:a+lo]) fits (empty), count(text[a:a+hi]) does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count_tokens(text[a:a + mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid
        cut = a + max(lo, 1)  # a single character over the budget is still taken, to make progress
        for k in range(cut - 1, a + (cut - a) // 2, -1):
            if text[k] in _SOFT_BREAKS and not text[k - 1].isspace():
                cut = k + 1
                break
        s, e = trim_span(text, a, cut)
        if s < e:
            pieces.append((s, e))
        a = cut
        while a < b and text[a].isspace():
            a += 1
    return pieces
