"""Lexical BM25 index (bm25s), one per passage language so IDF and score scales never mix.

Tokens are computed once at ingest and kept in the store; this index is rebuilt from them after each
write batch (not per query) and persisted beside the vector index, stamped with the store
generation it reflects.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import bm25s
import numpy as np

from qa.index.files import atomic_write_json

log = logging.getLogger(__name__)


class _LangIndex:
    def __init__(self, rowids: np.ndarray, corpus: list[list[str]]):
        self.rowids = rowids
        self.retriever = bm25s.BM25(k1=1.2, b=0.75)
        # An empty token list would break bm25s; give such passages a token no query contains.
        self.retriever.index([toks or ["\u0000"] for toks in corpus], show_progress=False)

    def idf(self, tokens: list[str]) -> np.ndarray:
        """Inverse document frequency of each token in this language's passages (unseen: the maximum)."""
        vocab, indptr = self.retriever.vocab_dict, self.retriever.scores["indptr"]
        n = len(self.rowids)
        df = np.array([indptr[vocab[t] + 1] - indptr[vocab[t]] if t in vocab else 0 for t in tokens], dtype=np.float64)
        return np.log1p((n - df + 0.5) / (df + 0.5))

    def known(self, tokens: list[str]) -> list[str]:
        """The ``tokens`` some passage of this language uses."""
        vocab = self.retriever.vocab_dict
        return [t for t in tokens if t in vocab]

    def scores(self, tokens: list[str]) -> np.ndarray:
        known = self.known(tokens)
        if not known:
            return np.zeros(len(self.rowids), dtype=np.float32)
        return self.retriever.get_scores(known).astype(np.float32)


class LexicalIndex:
    """BM25 per language over passage tokens, keyed by passage rowid."""

    def __init__(self) -> None:
        self._by_lang: dict[str, _LangIndex] = {}
        self._lock = threading.RLock()
        self.generation = 0

    def __len__(self) -> int:
        """Passages indexed, all languages together."""
        with self._lock:
            return sum(len(index.rowids) for index in self._by_lang.values())

    def rebuild(self, rows: Iterable[tuple[int, str, list[str]]], generation: int) -> None:
        grouped: dict[str, tuple[list[int], list[list[str]]]] = defaultdict(lambda: ([], []))
        for rowid, lang, tokens in rows:
            ids, corpus = grouped[lang]
            ids.append(rowid)
            corpus.append(tokens)
        by_lang = {lang: _LangIndex(np.asarray(ids, dtype=np.int64), corpus) for lang, (ids, corpus) in grouped.items()}
        with self._lock:
            self._by_lang = by_lang
            self.generation = generation

    def search(self, tokens: list[str], lang: str, k: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """Top ``k`` (rowid, bm25 score) among passages of ``lang``; only positive scores."""
        with self._lock:
            index = self._by_lang.get(lang)
        if index is None or not tokens:
            return []
        scores = index.scores(tokens)
        if allowed is not None:
            mask = np.isin(index.rowids, np.fromiter(allowed, dtype=np.int64, count=len(allowed)))
            scores = np.where(mask, scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top])]
        return [(int(index.rowids[i]), float(scores[i])) for i in top if scores[i] > 0]

    def strength(self, tokens: list[str], lang: str, known_only: bool = False) -> float:
        """What a passage holding each of ``tokens`` once would score (the sum of their IDFs, words the
        corpus never uses at the maximum): BM25 scores divided by it are comparable across questions.
        ``known_only``: count only the tokens some passage of ``lang`` uses."""
        with self._lock:
            index = self._by_lang.get(lang)
        if index is not None and known_only:
            tokens = index.known(tokens)
        if index is None or not tokens:
            return 0.0
        return float(index.idf(tokens).sum())

    def coverage(self, query_tokens: list[str], passage_tokens: set[str], lang: str) -> float:
        """IDF-weighted share of the question's words that the passage contains (0 for another language).

        Words the corpus never uses (a place or a name it does not mention) weigh the most, so a
        question about something absent scores low even when its topic words all match.
        """
        with self._lock:
            index = self._by_lang.get(lang)
        unique = sorted(set(query_tokens))
        if index is None or not unique:
            return 0.0
        idf = index.idf(unique)
        found = np.array([t in passage_tokens for t in unique])
        return float(idf[found].sum() / idf.sum()) if idf.sum() > 0 else 0.0

    # --- persistence ----------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Persist each language's index under ``folder/lexical`` (swapped in whole by rename)."""
        target = folder / "lexical"
        tmp = folder / "lexical.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        with self._lock:
            for lang, index in self._by_lang.items():
                index.retriever.save(str(tmp / lang), show_progress=False)
                np.save(tmp / lang / "rowids.npy", index.rowids)
            atomic_write_json(tmp / "manifest.json", {"generation": self.generation, "langs": sorted(self._by_lang)})
        old = folder / "lexical.old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex | None:
        """The persisted index, or None when there is none or it cannot be read (callers rebuild from the store)."""
        target = folder / "lexical"
        if not target.exists() and (folder / "lexical.old").exists():
            target = folder / "lexical.old"  # killed between the two renames of save()
        if not target.exists():
            return None
        try:
            manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
            index = cls()
            for lang in manifest["langs"]:
                li = _LangIndex.__new__(_LangIndex)
                li.retriever = bm25s.BM25.load(str(target / lang), show_progress=False)
                li.rowids = np.load(target / lang / "rowids.npy")
                index._by_lang[lang] = li
            index.generation = int(manifest["generation"])
            return index
        except (OSError, ValueError, KeyError) as exc:
            log.warning("lexical index in %s not usable (%s); it will be rebuilt from the store", target, exc)
            return None
