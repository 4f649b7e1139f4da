"""Sentence spans for Chinese and English text.

``split_sentences`` is used twice: by the chunker, to split over-long paragraphs at sentence ends,
and by answering, to pick the evidence sentence inside a passage. It returns spans, never copies,
so a citation can point at the exact characters of the original text.

Rules:

* A sentence ends after 。！？；｡ (and their runs, "？！"), always.
* It ends after ASCII ``!`` ``?`` ``;`` unless the next character continues an ASCII token
  (a letter, digit or one of ``/=&%#_-+@~.,:``), so "a?b=1" in a URL is not split but "好!然后" is.
* It ends after ``.`` and ``…`` only when whitespace or the end of the text follows:
  "3.5" and "example.com" do not split, "e.g. this" does (accepted).
  A period after a single letter ("J. Smith") or after a bare list number at the start of a
  sentence ("1. Item") is not treated as a sentence end.
* Closing quotes and brackets right after the end mark (”’」』）)"'》】］]〉) stay with the sentence.
* A blank line (a paragraph break) always ends a sentence; a single newline does not.
* Spans are trimmed of surrounding whitespace; only whitespace lies between consecutive spans.
"""

from __future__ import annotations

_ALWAYS = frozenset("。！？；｡")
_ASCII_STRONG = frozenset("!?;")
_NEEDS_SPACE = frozenset(".…．")
_TERMINATORS = _ALWAYS | _ASCII_STRONG | _NEEDS_SPACE
_CLOSERS = frozenset("”’」』）)\"'》】］]〉")
_ASCII_CONTINUERS = frozenset("/=&%#_-+@~.,:")


def split_sentences(text: str, start: int = 0) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of ``text``, shifted by ``start``.

    ``text[s - start:e - start]`` is one sentence with no surrounding whitespace; the characters
    between consecutive spans (and before the first / after the last) are all whitespace.
    """
    spans: list[tuple[int, int]] = []
    n = len(text)
    seg = 0
    i = 0
    while i < n:
        c = text[i]
        if c in _TERMINATORS:
            j = i + 1
            while j < n and text[j] in _TERMINATORS:
                j += 1
            run_end = j
            while j < n and text[j] in _CLOSERS:
                j += 1
            if _is_boundary(text, seg, i, run_end, j):
                _emit(spans, text, seg, j, start)
                seg = j
            i = j
            continue
        if c == "\n":
            k = i + 1
            while k < n and text[k] != "\n" and text[k].isspace():
                k += 1
            if k < n and text[k] == "\n":  # a blank line: paragraph break
                _emit(spans, text, seg, i, start)
                seg = k
                i = k
                continue
        i += 1
    _emit(spans, text, seg, n, start)
    return spans


def _is_boundary(text: str, seg: int, i: int, run_end: int, j: int) -> bool:
    """Whether the end marks ``text[i:run_end]`` (followed by closers up to ``j``) end a sentence."""
    run = text[i:run_end]
    if any(ch in _ALWAYS for ch in run):
        return True
    nxt = text[j] if j < len(text) else None
    if nxt is None or nxt.isspace():
        if run == "." and j == run_end:
            # "J. Smith", "1. Item": a lone period after an initial or a bare list number.
            word_start = i
            while word_start > seg and not text[word_start - 1].isspace():
                word_start -= 1
            word = text[word_start:i]
            if len(word) == 1 and word.isascii() and word.isalpha():
                return False
            if word.isdigit() and len(word) <= 3 and not text[seg:word_start].strip():
                return False
        return True
    if any(ch in _ASCII_STRONG for ch in run):
        return not (nxt.isascii() and (nxt.isalnum() or nxt in _ASCII_CONTINUERS))
    return False


def trim_span(text: str, a: int, b: int) -> tuple[int, int]:
    """``(a, b)`` narrowed so that ``text[a:b]`` neither starts nor ends with whitespace."""
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def _emit(spans: list[tuple[int, int]], text: str, a: int, b: int, shift: int) -> None:
    a, b = trim_span(text, a, b)
    if a < b:
        spans.append((a + shift, b + shift))
