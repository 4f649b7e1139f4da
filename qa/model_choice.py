"""Which way of running the model a data folder needs (kept light: ``qa serve`` asks before its imports)."""

from __future__ import annotations

from pathlib import Path

from embeddings.fetch import installed_embeddinggemma
from embeddings.quantize import REDUCED_MODES
from qa.settings import Settings
from qa.store import create_store


def settled_quantize(settings: Settings) -> Settings:
    """``settings`` with ``QA_QUANTIZE=auto`` replaced by the mode the data folder's passages were embedded
    with, where it holds some: ``auto`` measures the fastest mode on this CPU (:mod:`embeddings.auto_mode`),
    and a folder filled under another choice (before the measurement, or on another kind of CPU) keeps
    being searched with the vectors it was made with instead of refusing to open. Unchanged otherwise."""
    if settings.quantize != "auto" or settings.embedder != "sentence-transformers":
        return settings
    if not settings.distributed and not (Path(settings.data_dir) / "store.sqlite").is_file():
        return settings
    try:
        store = create_store(settings)
        try:
            stored = store.get_meta("model_id")
        finally:
            store.close()
    except Exception:  # noqa: BLE001 - opening the store again below reports what is wrong with it
        return settings
    folder = Path(settings.model_path) if settings.model_path else installed_embeddinggemma(settings.models_dir)
    if not stored or not stored.startswith(f"{folder.name}@"):
        return settings
    mode = next((part for part in stored.split("/")[1:] if part in REDUCED_MODES), "none")
    return settings.model_copy(update={"quantize": mode})
