"""Lexical (BM25) index on tantivy: incremental, one tantivy index per collection and language.

Layout under the folder given to the constructor::

    state.json                  {"format": ..., "seq": durable_seq}  (atomic write)
    <collection>/<lang>/        a tantivy index (segments, meta.json)
    .trash-*                    folders being deleted (a drop or reset interrupted by a crash)

Each (collection, language) pair has its own tantivy index, so BM25 statistics (IDF, average length)
are per collection and per language and score scales never mix. Indexes open lazily, on the first
search or write that needs them.

Tokens are ``qa``'s own (:mod:`qa.text.tokenize`) and are indexed exactly as given: joined by spaces
and split again by tantivy's whitespace tokenizer (no lower-casing, no stemming), or handed over as a
:class:`tantivy.PreTokenizedString` when a token itself holds whitespace.

Scores: tantivy's BM25 is Lucene's (k1 = 1.2, b = 0.75, idf = ln(1 + (N - df + 0.5) / (df + 0.5)))
with the classic ``(k1 + 1)`` factor in the numerator; bm25s's default "lucene" method leaves that
factor out, so scores are divided by ``k1 + 1`` to be on the scale the rest of ``qa`` knows. Two
differences remain, both shared with Lucene: a passage's length is stored in one byte (exact up to 40
tokens, then rounded down to one of 256 steps, about 1 in 8 at 100–300 tokens), which moves
scores by a few per cent at most (``tests/test_tantivy_lexical.py`` measures it against bm25s); and
statistics count a removed passage until tantivy merges its segment away (tantivy merges segments in
the background). A repeated query token counts again (its term query is boosted by its count).

Writes: ``add``/``remove`` change the index and commit before they return (so the change is
searchable at once); a commit writes new small segments and fsyncs them, costing what the change
costs. Replaying a change is idempotent: each passage carries a hash of its entry, and an ``add`` of a
rowid already indexed with the same hash does nothing (no delete, no commit), with a different hash
replaces it. ``checkpoint`` writes ``state.json`` with the applied sequence number; everything up to
it is already committed, so a restart reopens at ``durable_seq`` and the store replays the rest.

A rowid's collection and language never change (the store issues new rowids for new passages), so an
``add`` looks for an earlier version of a rowid only in the index the entry goes to.

Threads: one writer at a time (a lock); searches read the latest searcher, an immutable snapshot
that each commit replaces, and never take the write lock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import threading
import uuid
from bisect import bisect_left, bisect_right
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import tantivy
from tantivy import Document, FieldType, Occur, Query

from qa.index.base import IndexCorruptError, IndexHit, IndexMismatchError, LexicalIndex, TermStats
from qa.index.files import atomic_write_json
from qa.store.base import IndexEntry, SearchFilter, check_collection_name, published_bounds

log = logging.getLogger(__name__)

K1 = 1.2  # tantivy's BM25 constants (k1 = 1.2, b = 0.75), the same as bm25s's defaults
FORMAT = "qa-tantivy-lexical/1"
STATE_FILE = "state.json"
TRASH_PREFIX = ".trash-"
WRITER_HEAP_BYTES = 32_000_000  # per (collection, language) writer; tantivy's minimum is 15 MB
# A writer holds about 7 MB and 7 threads (indexing, segment updates, merges): only the writers of the
# most recently written indexes stay open (closing one abandons its merges; the next writer redoes them).
MAX_OPEN_WRITERS = 8
_LANG = re.compile(r"[a-z][a-z0-9_-]{0,15}")
_WHITESPACE = re.compile(r"\s")

# Fields: rowid (the key: deletes and look-ups), hash (of the whole entry, for idempotent replay),
# tokens (BM25), and the attributes filters use: document id and source as raw terms, the publication
# date (its first 10 characters, as SearchFilter compares them) as an integer key when it is an ISO
# date or a prefix of one (range queries on a fast field), else as a raw term.
_FIELDS = ("rowid", "hash", "tokens", "document_id", "source", "published_key", "published")


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_integer_field("rowid", indexed=True, fast=True)
    builder.add_integer_field("hash", fast=True)
    builder.add_text_field("tokens", tokenizer_name="whitespace", index_option="freq")
    for name in ("document_id", "source", "published"):
        builder.add_text_field(name, tokenizer_name="raw", index_option="basic")
    builder.add_integer_field("published_key", fast=True)
    return builder.build()


SCHEMA = _schema()


_ISO_PREFIX = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?")
_MONTHS = _DAYS = 101  # a part's two digits + 1; 0 when the part is absent
_KEYS = range(10_000 * _MONTHS * _DAYS)


def published_key(value: str) -> int | None:
    """An integer that orders ISO dates and their prefixes ("2025", "2025-04", "2025-04-30") exactly as
    their strings order ("2025" < "2025-01-01" < "2025-04"); None for any other string."""
    match = _ISO_PREFIX.fullmatch(value)
    if match is None:
        return None
    year, month, day = match.groups()
    return (int(year) * _MONTHS + (int(month) + 1 if month else 0)) * _DAYS + (int(day) + 1 if day else 0)


def _key_string(key: int) -> str:
    """The string of the smallest key ≥ ``key`` that some string has (non-decreasing in ``key``)."""
    year, rest = divmod(key, _MONTHS * _DAYS)
    month, day = divmod(rest, _DAYS)
    if month == 0:
        return f"{year:04d}" if day == 0 else f"{year:04d}-00"  # a day without a month: the next month key
    return f"{year:04d}-{month - 1:02d}" + (f"-{day - 1:02d}" if day else "")


def published_key_range(low: str, high: str) -> tuple[int, int]:
    """The keys of the ISO-date strings ``s`` with ``low <= s <= high`` (any strings as bounds)."""
    return bisect_left(_KEYS, low, key=_key_string), bisect_right(_KEYS, high, key=_key_string) - 1


def entry_hash(entry: IndexEntry) -> int:
    """A signed 64-bit digest of everything the index keeps of ``entry`` (a tuple's repr is unambiguous)."""
    key = repr((entry.collection, entry.document_id, entry.lang, entry.source, entry.published, tuple(entry.tokens)))
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little",
                          signed=True)


def _document(entry: IndexEntry, digest: int) -> Document:
    doc = Document(rowid=entry.rowid, hash=digest, document_id=entry.document_id)
    tokens = entry.tokens
    if "" in tokens or _WHITESPACE.search("".join(tokens)):  # joined by spaces, they would not split back
        pieces = [tantivy.Token(t, i, 0) for i, t in enumerate(tokens)]
        doc.add_pre_tokenized_text("tokens", tantivy.PreTokenizedString("", pieces))
    else:
        doc.add_text("tokens", " ".join(tokens))
    if entry.source is not None:
        doc.add_text("source", entry.source)
    if entry.published:
        key = published_key(entry.published[:10])
        if key is None:
            doc.add_text("published", entry.published[:10])
        else:
            doc.add_integer("published_key", key)
    return doc


class _Snapshot:
    """One searcher (an immutable view of the index) and what is derived from it lazily."""

    def __init__(self, searcher: tantivy.Searcher):
        self.searcher = searcher
        self._published: list[str] | None = None

    def odd_published_between(self, low: str, high: str) -> list[str]:
        """The distinct publication dates that are not ISO dates (rare) within ``[low, high]``."""
        values = self._published
        if values is None:  # once per snapshot: cost of the distinct odd values, not of the corpus
            values = sorted(term for term, _ in self.searcher.terms_with_prefix("published", "", limit=None))
            self._published = values
        return values[bisect_left(values, low):bisect_right(values, high)]

    def present(self, rowids: Sequence[int]) -> dict[int, int]:
        """rowid → entry hash of those ``rowids`` this snapshot holds."""
        if not rowids or self.searcher.num_docs == 0:
            return {}
        query = Query.term_set_query(SCHEMA, "rowid", list(rowids))
        addresses = [address for _, address in self.searcher.search(query, len(rowids) + 16, count=False).hits]
        if not addresses:
            return {}
        ids = self.searcher.fast_field_values("rowid", addresses)
        digests = self.searcher.fast_field_values("hash", addresses)
        return {int(r): int(h) for r, h in zip(ids, digests)}


class _Part:
    """The tantivy index of one (collection, language)."""

    def __init__(self, path: Path, create: bool):
        self.path = path
        try:
            if create and not (path / "meta.json").exists():
                path.mkdir(parents=True, exist_ok=True)
                self.index = tantivy.Index(SCHEMA, path=str(path), reuse=True)
            else:
                self.index = tantivy.Index.open(str(path))
            fields = sorted(field.get("name") for field in
                            json.loads((path / "meta.json").read_text(encoding="utf-8")).get("schema", []))
        except (OSError, ValueError, AttributeError) as exc:
            raise IndexCorruptError(f"the lexical index in {path} cannot be opened ({exc}); delete the folder "
                                    "and restart to rebuild it from the store") from exc
        if fields != sorted(_FIELDS):
            raise IndexMismatchError(f"{path} is not a qa lexical index of this version (fields {fields}); delete "
                                     "the folder and restart to rebuild it from the store")
        self.index.config_reader(reload_policy="manual")
        self.writer: tantivy.IndexWriter | None = None
        self.snapshot = _Snapshot(self.index.searcher())

    def write(self) -> tantivy.IndexWriter:
        if self.writer is None:
            self.writer = self.index.writer(heap_size=WRITER_HEAP_BYTES, num_threads=1)
        return self.writer

    def commit(self) -> None:
        """Make the writer's changes durable and visible to the next searches."""
        assert self.writer is not None
        self.writer.commit()
        self.index.reload()
        self.snapshot = _Snapshot(self.index.searcher())

    def close(self) -> None:
        """Drop the writer (uncommitted changes are lost; merges under way are abandoned)."""
        self.writer = None


class TantivyLexicalIndex(LexicalIndex):
    """BM25 over passage tokens in tantivy indexes under ``folder`` (one per collection and language)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._parts: dict[tuple[str, str], _Part] = {}
        self._writing: OrderedDict[int, _Part] = OrderedDict()  # parts with an open writer, least recent first
        self._write_lock = threading.RLock()  # add/remove/drop/reset: one writer at a time
        self._open_lock = threading.Lock()  # opening, dropping parts (short)
        self._state_lock = threading.Lock()  # state.json
        self._empty_trash()
        self._durable = self._read_state()
        self._applied = self._durable

    # --- state -----------------------------------------------------------------------------------
    @property
    def applied_seq(self) -> int:
        return self._applied

    @property
    def durable_seq(self) -> int:
        return self._durable

    def _read_state(self) -> int:
        path = self.folder / STATE_FILE
        if not path.exists():
            return 0
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise IndexCorruptError(f"{path} cannot be read ({exc}); delete {self.folder} and restart to rebuild "
                                    "the lexical index from the store") from exc
        if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("seq"), int):
            raise IndexMismatchError(f"{path} is not a {FORMAT} state file")
        return state["seq"]

    def mark_applied(self, seq: int) -> None:
        self._applied = seq

    def checkpoint(self) -> None:
        # Every change up to applied_seq is committed already (add/remove commit before returning):
        # recording the number is all that is left.
        with self._state_lock:
            seq = self._applied
            atomic_write_json(self.folder / STATE_FILE, {"format": FORMAT, "seq": seq})
            self._durable = seq

    # --- parts -----------------------------------------------------------------------------------
    def _path(self, collection: str, lang: str) -> Path:
        check_collection_name(collection)
        if not isinstance(lang, str) or not _LANG.fullmatch(lang):
            raise ValueError(f"{lang!r} is not a language code (lower-case letters, e.g. 'en', 'zh')")
        return self.folder / collection / lang

    def _part(self, collection: str, lang: str, create: bool = False) -> _Part | None:
        part = self._parts.get((collection, lang))
        if part is not None:
            return part
        path = self._path(collection, lang)
        with self._open_lock:
            part = self._parts.get((collection, lang))
            if part is None and (create or (path / "meta.json").exists()):
                part = self._parts[(collection, lang)] = _Part(path, create)
            return part

    def _writer(self, part: _Part) -> tantivy.IndexWriter:
        self._writing[id(part)] = part
        self._writing.move_to_end(id(part))
        while len(self._writing) > MAX_OPEN_WRITERS:
            self._writing.popitem(last=False)[1].close()
        return part.write()

    def _close(self, part: _Part) -> None:
        self._writing.pop(id(part), None)
        part.close()

    def _langs(self, collection: str) -> list[str]:
        folder = self.folder / check_collection_name(collection)
        try:
            on_disk = [p.name for p in folder.iterdir() if (p / "meta.json").exists()]
        except (FileNotFoundError, NotADirectoryError):  # no such collection (or dropped just now)
            on_disk = []
        return sorted(set(on_disk) | {lang for coll, lang in list(self._parts) if coll == collection})

    def _collections(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_dir() and not p.name.startswith("."))

    # --- writes ----------------------------------------------------------------------------------
    def add(self, entries: Sequence[IndexEntry]) -> None:
        self.apply({}, entries)

    def remove(self, collection: str, rowids: Sequence[int]) -> None:
        self.apply({collection: rowids}, ())

    def apply(self, removed: Mapping[str, Sequence[int]], entries: Sequence[IndexEntry]) -> None:
        """Removals, then additions, with one commit per touched (collection, language) index."""
        with self._write_lock:
            touched: dict[int, _Part] = {}
            for collection, rowids in removed.items():
                for part in self._stage_remove(collection, rowids):
                    touched[id(part)] = part
            for part in self._stage_add(entries):
                touched[id(part)] = part
            for part in touched.values():
                part.commit()

    def _stage_add(self, entries: Sequence[IndexEntry]) -> list[_Part]:
        groups: dict[tuple[str, str], dict[int, IndexEntry]] = {}
        for entry in entries:  # the last entry of a rowid wins, as if added one after the other
            groups.setdefault((entry.collection, entry.lang), {})[entry.rowid] = entry
        changed = []
        for (collection, lang), by_rowid in groups.items():
            part = self._part(collection, lang, create=True)
            present = part.snapshot.present(list(by_rowid))
            staged = False
            for rowid, entry in by_rowid.items():
                digest = entry_hash(entry)
                if present.get(rowid) == digest:
                    continue  # a replayed change: already indexed as it is
                writer = self._writer(part)
                if rowid in present:
                    writer.delete_documents_by_term("rowid", rowid)
                writer.add_document(_document(entry, digest))
                staged = True
            if staged:
                changed.append(part)
        return changed

    def _stage_remove(self, collection: str, rowids: Sequence[int]) -> list[_Part]:
        rowids = list(dict.fromkeys(int(r) for r in rowids))
        changed = []
        if not rowids:
            return changed
        for lang in self._langs(collection):
            part = self._part(collection, lang)
            present = part.snapshot.present(rowids) if part is not None else {}
            if not present:
                continue
            writer = self._writer(part)
            for rowid in present:
                writer.delete_documents_by_term("rowid", rowid)
            changed.append(part)
        return changed

    def drop_collection(self, collection: str) -> None:
        folder = self.folder / check_collection_name(collection)
        with self._write_lock:
            with self._open_lock:
                for key in [key for key in self._parts if key[0] == collection]:
                    self._close(self._parts.pop(key))
                trash = self._to_trash(folder)
            self._delete(trash)

    def reset(self) -> None:
        with self._write_lock, self._state_lock:
            # Sequence 0 first: a crash before the folders go leaves an index that replays (or is rebuilt)
            # from the start, never an emptied index that claims a later sequence number.
            atomic_write_json(self.folder / STATE_FILE, {"format": FORMAT, "seq": 0})
            self._applied = self._durable = 0
            with self._open_lock:
                for part in self._parts.values():
                    self._close(part)
                self._parts.clear()
                trash = [self._to_trash(self.folder / name) for name in self._collections()]
            for folder in trash:
                self._delete(folder)

    def _to_trash(self, folder: Path) -> Path | None:
        """Rename ``folder`` out of the way (atomic: after a crash it is either whole or trash)."""
        if not folder.exists():
            return None
        trash = self.folder / f"{TRASH_PREFIX}{folder.name}-{uuid.uuid4().hex}"
        folder.rename(trash)
        return trash

    @staticmethod
    def _delete(trash: Path | None) -> None:
        if trash is not None:
            # A merge abandoned by close() may still be writing into it; what is left goes at the next start.
            shutil.rmtree(trash, ignore_errors=True)

    def _empty_trash(self) -> None:
        for path in self.folder.glob(f"{TRASH_PREFIX}*"):
            self._delete(path)

    # --- reads -----------------------------------------------------------------------------------
    def search(self, tokens: Sequence[str], lang: str, k: int, flt: SearchFilter) -> list[IndexHit]:
        if k <= 0 or not tokens or flt.matches_nothing or (flt.lang is not None and flt.lang != lang):
            return []
        part = self._part(flt.collection, lang)
        if part is None:
            return []
        snapshot = part.snapshot
        query = Query.boolean_query([
            (Occur.Should, _term(token) if count == 1 else Query.boost_query(_term(token), float(count)))
            for token, count in Counter(tokens).items()
        ])
        filters = []
        if flt.document_ids is not None:
            filters.append(Query.term_set_query(SCHEMA, "document_id", list(flt.document_ids)))
        if flt.sources is not None:
            filters.append(Query.term_set_query(SCHEMA, "source", list(flt.sources)))
        if flt.published_from is not None or flt.published_to is not None:
            low, high = published_bounds(flt.published_from, flt.published_to)
            first, last = published_key_range(low, high)
            dated = Query.range_query(SCHEMA, "published_key", FieldType.Integer, first, last)
            odd = snapshot.odd_published_between(low, high)
            filters.append(Query.boolean_query([(Occur.Should, dated),
                                                (Occur.Should, Query.term_set_query(SCHEMA, "published", odd))])
                           if odd else dated)
        if filters:  # a filter scores 0, so scores are the BM25 query's alone
            query = Query.boolean_query([(Occur.Must, query)]
                                        + [(Occur.Must, Query.const_score_query(f, 0.0)) for f in filters])
        searcher = snapshot.searcher
        k = min(k, searcher.num_docs)
        if k == 0:
            return []
        hits = searcher.search(query, k, count=False).hits
        rowids = searcher.fast_field_values("rowid", [address for _, address in hits])
        return [IndexHit(rowid=int(rowid), score=float(score) / (1.0 + K1), lang=lang)
                for (score, _), rowid in zip(hits, rowids) if score > 0]

    def term_stats(self, collection: str, lang: str, tokens: Sequence[str]) -> TermStats:
        """``documents``: passages of ``lang`` in ``collection``; ``df`` as tantivy's BM25 sees it (a
        removed passage still counts until its segment is merged; never above ``documents``)."""
        part = self._part(collection, lang)
        if part is None:
            return TermStats(documents=0, df=tuple(0 for _ in tokens))
        searcher = part.snapshot.searcher
        documents = searcher.num_docs
        return TermStats(documents=documents,
                         df=tuple(min(searcher.doc_freq("tokens", t), documents) for t in tokens))

    def count(self, collection: str | None = None) -> int:
        collections: Iterable[str] = self._collections() if collection is None else [collection]
        total = 0
        for name in collections:
            for lang in self._langs(name):
                part = self._part(name, lang)
                total += part.snapshot.searcher.num_docs if part is not None else 0
        return total

    def close(self) -> None:
        with self._write_lock, self._open_lock:
            for part in self._parts.values():
                self._close(part)
            self._parts.clear()


def _term(token: str) -> Query:
    return Query.term_query(SCHEMA, "tokens", token)
