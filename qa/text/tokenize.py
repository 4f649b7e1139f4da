"""Lexical tokens for BM25: jieba words for Chinese, lower-cased words for English.

Traditional Chinese is folded to Simplified first (OpenCC), so 繁體 and 简体 text share tokens.
Codes such as "1+N+1", "G60" or "3.5" are kept whole as well as in their parts, so they still match.

Cross-language tokens bridge the two languages: numbers and Latin-script words as they are, and names through pinyin: a Chinese passage also carries the pinyin of
its multi-character words ("徐汇" → ``py:xuhui``, "曹立强" → ``py:caoliqiang`` and ``py:liqiang``), and
an English question is looked up in them by its words and adjacent word pairs ("Cao Liqiang" →
``py:caoliqiang``). A Chinese question is looked up in English passages by the pinyin of its words.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache

import jieba
from opencc import OpenCC
from pypinyin import lazy_pinyin

jieba.setLogLevel(logging.WARNING)

_CODE = re.compile(r"[A-Za-z0-9]+(?:[+\-_./·][A-Za-z0-9]+)+")
_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff\uf900-\ufaff]+")
_CJK_RUN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_CJK_WORDS = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]+")

# Function words and question words that carry no topic. Kept small on purpose: BM25's IDF handles the rest.
STOPWORDS_ZH = frozenset(
    "的 了 是 在 和 与 及 或 也 都 就 而 把 被 对 为 以 于 之 其 这 那 这个 那个 这些 那些 有 没有 吗 呢 吧 啊 "
    "什么 哪 哪个 哪些 哪里 哪儿 谁 何 何时 多少 几 怎么 怎样 如何 为什么 是否 是不是 请问 一个 一些 中 上 下 "
    "我 你 他 她 它 我们 你们 他们 将 等 个 着 过 所 从 到 向 由".split()
)
STOPWORDS_EN = frozenset(
    "a an the of in on at to for from by with and or but is are was were be been being do does did "
    "what which who whom whose when where why how that this these those it its as into about than "
    "there their they he she his her we our you your i me my not no can could would should will shall "
    "has have had may might must if then so such any all each other some".split()
)

_converter_lock = threading.Lock()
_converter = OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Fold Traditional Chinese characters to Simplified (no-op for other text)."""
    if not _CJK_RUN.search(text):
        return text
    with _converter_lock:
        return _converter.convert(text)


@lru_cache(maxsize=65536)
def _segment(run: str) -> tuple[str, ...]:
    return tuple(jieba.lcut_for_search(run))


def search_words(run: str) -> tuple[str, ...]:
    """jieba's search-mode words of a run of Chinese characters (long words and the words inside them)."""
    return _segment(run)


def normalize(text: str) -> str:
    """NFKC (full-width → half-width), lower case, Simplified Chinese."""
    return to_simplified(unicodedata.normalize("NFKC", text)).lower()


def tokenize(text: str) -> list[str]:
    """BM25 tokens of ``text`` in either language (stopwords removed, order kept)."""
    text = normalize(text)
    tokens: list[str] = [code for code in _CODE.findall(text)]
    for match in _WORD.finditer(text):
        piece = match.group()
        if _CJK_RUN.match(piece):
            tokens.extend(w for w in _segment(piece) if w not in STOPWORDS_ZH)
        elif piece not in STOPWORDS_EN:
            tokens.append(piece)
    return tokens


PINYIN_PREFIX = "py:"
_MIN_PINYIN_CHARS = 4  # single syllables ("an", "he", "long") collide with English words


@lru_cache(maxsize=65536)
def _pinyin(word: str) -> str:
    return "".join(lazy_pinyin(word))


def pinyin_tokens(text: str) -> list[str]:
    """``py:``-prefixed pinyin of the multi-character Chinese words in ``text`` (for passages)."""
    out: list[str] = []
    for match in _CJK_WORDS.finditer(normalize(text)):
        for word in _segment(match.group()):
            if len(word) < 2 or word in STOPWORDS_ZH:
                continue
            out.append(PINYIN_PREFIX + _pinyin(word))
            if len(word) == 3:  # a personal name: the given name alone is how it is often written
                out.append(PINYIN_PREFIX + _pinyin(word[1:]))
    return [t for t in out if len(t) - len(PINYIN_PREFIX) >= _MIN_PINYIN_CHARS]


_LATIN_OR_NUMBER = re.compile(r"[a-z]{2,}|[0-9]+(?:\.[0-9]+)?")


def cross_language_query(text: str, query_lang: str) -> list[str]:
    """Tokens that look a question up in passages of the other language.

    Numbers and Latin-script words are written the same in both ("1990", "G60", "NFL"); names are
    bridged by pinyin (see the module docstring).
    """
    norm = normalize(text)
    shared = [t for t in _LATIN_OR_NUMBER.findall(norm) if t not in STOPWORDS_EN]
    if query_lang == "zh":
        return shared + [t[len(PINYIN_PREFIX):] for t in pinyin_tokens(text)]
    words = [w for w in re.findall(r"[a-z]+", norm) if w not in STOPWORDS_EN]
    candidates = words + [a + b for a, b in zip(words, words[1:])]
    return shared + [PINYIN_PREFIX + w for w in candidates if len(w) >= _MIN_PINYIN_CHARS]


def passage_tokens(section: str | None, text: str, lang: str) -> list[str]:
    """Lexical tokens of a passage: its words (with its section's), plus pinyin of Chinese words."""
    tokens = tokenize(f"{section} {text}" if section else text)
    return tokens + pinyin_tokens(text) if lang == "zh" else tokens
