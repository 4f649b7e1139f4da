"""Passage store: documents, passages and their vectors, in one SQLite file."""

from qa.store.sqlite import PassageStore, StoredPassage

__all__ = ["PassageStore", "StoredPassage"]
