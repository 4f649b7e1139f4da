"""Text embeddings for the QA service: one interface, two backends, a cache, and the model fetcher.

``create_embedder(settings)`` is the only constructor the service needs; backends are imported
lazily, so importing this package does not import torch.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING

from .base import Embedder
from .batching import MicroBatchingEmbedder
from .cache import CachedEmbedder, EmbeddingCache
from .fetch import ModelVerificationError, fetch_embeddinggemma, installed_embeddinggemma, verify_model_folder
from .passes import pass_token_budget

if TYPE_CHECKING:
    from qa.settings import Settings

__all__ = [
    "CachedEmbedder",
    "Embedder",
    "EmbeddingCache",
    "ModelNotInstalledError",
    "MicroBatchingEmbedder",
    "ModelVerificationError",
    "create_embedder",
    "embedder_for_mode",
    "fetch_embeddinggemma",
    "load_in_background",
    "verify_model_folder",
]


class ModelNotInstalledError(RuntimeError):
    """The configured model folder does not exist."""


def _model_folder(settings: Settings) -> Path:
    """The sentence-transformers folder to load: ``model_path``, else the verified EmbeddingGemma."""
    if settings.model_path is not None:
        folder = Path(settings.model_path).expanduser()
        if not (folder / "modules.json").is_file() and not (folder / "config.json").is_file():
            raise ModelNotInstalledError(f"QA_MODEL_PATH={folder} is not a sentence-transformers model folder")
        return folder
    folder = installed_embeddinggemma(settings.models_dir)
    if not folder.is_dir():
        raise ModelNotInstalledError(
            f"EmbeddingGemma-300m is not installed in {folder}; run `qa models fetch` "
            "(or set QA_EMBEDDER=use-m for the light model)"
        )
    verify_model_folder(folder)
    return folder


def embedder_for_mode(folder: Path, quantize: str, *, dim: int | None = None, batch_size: int = 8,
                      threads: int = 2, contextual_spans: bool = False) -> Embedder:
    """The sentence-transformers model in ``folder`` run the way ``quantize`` says (see
    :mod:`embeddings.quantize`): compiled with OpenVINO, or by torch in fp32, bf16 or int8; ``auto``: the
    mode measured fastest on this CPU (:mod:`embeddings.auto_mode`), never OpenVINO for ``contextual_spans``,
    which pools torch's token embeddings."""
    from .quantize import resolve_mode

    mode = resolve_mode(quantize, openvino=not contextual_spans, folder=folder, threads=threads)
    if mode == "openvino":
        if contextual_spans:
            raise ValueError("QA_SENTENCE_VECTORS=contextual pools torch's token embeddings, which the OpenVINO "
                             "model does not expose: use QA_QUANTIZE=auto (or bf16, int8, none) with it")
        from .openvino import OpenVinoEmbedder

        return OpenVinoEmbedder(folder, dim=dim, batch_size=batch_size, threads=threads)
    from .sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(folder, dim=dim, batch_size=batch_size, threads=threads, quantize=mode,
                                       contextual_spans=contextual_spans)


def create_embedder(settings: Settings | None = None) -> Embedder:
    """The embedder ``settings.embedder`` names (run as ``settings.quantize`` says), wrapped in the
    micro-batcher of questions and passages (``settings.micro_batching``) and then in the passage/question cache.

    Raises :class:`ModelNotInstalledError` when the model folder is absent and
    :class:`ModelVerificationError` when the installed EmbeddingGemma does not match its checksums.
    """
    if settings is None:
        from qa.settings import get_settings

        settings = get_settings()
    if settings.embedder == "use-m":
        if settings.embedding_dim not in (None, 512):
            raise ValueError(f"USE-m vectors are 512-d and cannot be truncated (embedding_dim={settings.embedding_dim})")
        from .use_m import UseMEmbedder

        inner: Embedder = UseMEmbedder()
    elif settings.embedder == "sentence-transformers":
        inner = embedder_for_mode(_model_folder(settings), settings.quantize, dim=settings.embedding_dim,
                                  batch_size=settings.embed_batch_size, threads=settings.torch_threads,
                                  contextual_spans=settings.sentence_vectors == "contextual")
    else:
        raise ValueError(f"unknown embedder {settings.embedder!r}")
    if settings.micro_batching:
        # Inside the cache: cached questions return at once and never wait for a batch.
        inner = MicroBatchingEmbedder(inner, max_wait_ms=settings.micro_batch_wait_ms,
                                      max_batch=settings.micro_batch_max,
                                      pass_tokens=pass_token_budget(settings.embed_batch_size))
    return CachedEmbedder(inner, EmbeddingCache(settings.embedding_cache_path), batch_size=settings.embed_batch_size)


def load_in_background(settings: Settings) -> Future[Embedder]:
    """:func:`create_embedder` and the model's :meth:`~embeddings.base.Embedder.warm_up`, started now in a
    thread of their own (``qa serve``: OpenVINO imports the compiled model and runs its first passes outside
    Python's lock, while the web application's modules are imported); the warmed-up embedder, or the
    error, comes from the returned future."""
    future: Future[Embedder] = Future()

    def load() -> None:
        try:
            embedder = create_embedder(settings)
            embedder.warm_up()
            future.set_result(embedder)
        except BaseException as exc:  # noqa: BLE001 - delivered to whoever waits for the model
            future.set_exception(exc)

    threading.Thread(target=load, name="qa-model-loader", daemon=True).start()
    return future
