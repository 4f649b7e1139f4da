"""Embedding backend for a local sentence-transformers folder (EmbeddingGemma-300m by default)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import QUERY_BATCH_SIZE, LocalModelEmbedder, Titles, titled_prompt
from .fetch import folder_digests
from .quantize import TORCH_MODES, bf16_folder, keep_heads_fp32, model_id_suffix, quantize_int8, resolve_mode

log = logging.getLogger(__name__)



def _weights_file(folder: Path) -> str:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return name
    raise FileNotFoundError(f"{folder} holds no model.safetensors (is it a sentence-transformers folder?)")


class SentenceTransformerEmbedder(LocalModelEmbedder):
    """A sentence-transformers model on the CPU, loaded once, never touching the network.

    Questions and passages use the model's ``query`` and ``document`` prompts when it defines them
    (EmbeddingGemma does). ``dim`` truncates Matryoshka embeddings (then re-normalises).
    ``model_id`` is ``<folder name>@<first 8 hex of sha256(model.safetensors)>[/d<dim>]``; the sum
    comes from the folder's ``.verified`` marker (hashed once if the folder has none).
    ``quantize="bf16"`` runs the transformer in bf16 from a converted copy of the weights, ``"int8"``
    its Linear layers in int8, ``"auto"`` bf16 or int8, whichever suits this CPU (see
    :mod:`embeddings.quantize`); the model id gets ``/<mode>``. OpenVINO is a backend of its own
    (:class:`embeddings.openvino.OpenVinoEmbedder`).
    """

    def __init__(self, folder: Path, *, dim: int | None = None, batch_size: int = 8, threads: int = 2,
                 quantize: str = "none", contextual_spans: bool = True):
        folder = Path(folder).expanduser()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # no "Loading weights" bar on stderr at every start-up
        torch.set_num_threads(max(1, threads))
        quantize = resolve_mode(quantize, openvino=False, folder=folder, threads=threads)
        if quantize not in TORCH_MODES:
            raise ValueError(f"quantize={quantize!r} is not a torch mode ({', '.join(TORCH_MODES)}): "
                             "OpenVINO has its own backend, embeddings.openvino.OpenVinoEmbedder")
        weights = _weights_file(folder)
        digest = folder_digests(folder, [weights])[weights]
        from_bf16_copy = quantize == "bf16" and weights == "model.safetensors"
        self._model = self._load(folder, digest if from_bf16_copy else None)
        self._model.eval()
        if quantize == "int8":
            quantize_int8(self._model)
        elif quantize == "bf16":
            if self._model[0].auto_model.dtype != torch.bfloat16:
                self._model[0].auto_model.to(torch.bfloat16)
            keep_heads_fp32(self._model)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        full = get_dim() or int(self._model.encode(["dimension probe"]).shape[1])
        self._identify(folder.name, digest, full, dim, model_id_suffix(quantize))
        self._batch_size = max(1, batch_size)
        prompts = getattr(self._model, "prompts", None) or {}
        self._query_prompt = "query" if "query" in prompts else None
        self._passage_prompt = "document" if "document" in prompts else None
        modules = list(self._model)
        pooling = next((i for i, m in enumerate(modules) if type(m).__name__ == "Pooling"), None)
        # Spans can be pooled from token embeddings when the model is transformer → mean pooling → …
        self._after_pooling = modules[pooling + 1:] if pooling == 1 and getattr(modules[1], "pooling_mode", "mean") == "mean" else None
        self._contextual = contextual_spans and self._after_pooling is not None
        self._lock = threading.Lock()  # one forward pass at a time; torch already uses every thread

    @staticmethod
    def _load(folder: Path, bf16_digest: str | None):
        """The model from ``folder``; with ``bf16_digest`` from its bf16 copy (made on first use), so the
        fp32 weights are never resident."""
        from sentence_transformers import SentenceTransformer

        if bf16_digest is None:
            return SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        import torch

        try:
            folder = bf16_folder(folder, bf16_digest)
        except OSError as exc:
            log.warning("%s; converting to bf16 in memory instead (higher peak memory at start-up)", exc)
        return SentenceTransformer(str(folder), device="cpu", local_files_only=True,
                                   model_kwargs={"dtype": torch.bfloat16})

    @property
    def prompts(self) -> dict[str, str | None]:
        """The prompt names used for questions and passages (``None``: no prompt)."""
        return {"query": self._query_prompt, "passage": self._passage_prompt}

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        # Questions are short: a micro-batch of them goes through in one forward pass.
        return self._encode(texts, self._query_prompt, max(self._batch_size, QUERY_BATCH_SIZE))

    def encode_passages(self, texts: Sequence[str], titles: Titles = None) -> np.ndarray:
        if titles is None or not any(titles):
            return self._encode(texts, self._passage_prompt)
        prompt = self._prompt_text(self._passage_prompt)  # the prompt text itself, with each title in it
        return self._encode([titled_prompt(prompt, title) + text for text, title in zip(texts, titles)], None)

    @property
    def contextual_spans(self) -> bool:
        return self._contextual

    def encode_passages_with_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                                   titles: Titles = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """Passage vectors and, from the same forward pass, one vector per character span of each passage.

        A span's vector is the mean of the passage's contextual token embeddings that overlap it, sent
        through the model's remaining layers (EmbeddingGemma: two Dense layers and normalisation), the
        way the model pools a whole text ("late chunking"). Sentences thus cost nothing beyond their
        passage and keep its context ("it", "the city"). A span the tokenizer truncated away is
        encoded on its own.
        """
        if not self._contextual:
            return super().encode_passages_with_spans(texts, spans, titles)
        import torch

        texts = list(texts)
        prompt = self._prompt_text(self._passage_prompt)
        passages = np.zeros((len(texts), self._full), dtype=np.float32)
        pooled: list = []
        owners: list[tuple[int, int]] = []
        orphans: list[tuple[int, int]] = []
        tokenizer = self._model.tokenizer
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self._batch_size):
                batch = order[start : start + self._batch_size]
                encoded = tokenizer([prompt + texts[i] for i in batch], padding=True, truncation=True,
                                    max_length=self._model.max_seq_length, return_offsets_mapping=True,
                                    return_tensors="pt")
                offsets = encoded.pop("offset_mapping")
                features = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"],
                            "modality": "text"}
                out = self._model.forward(features)
                passages[batch] = out["sentence_embedding"].float().numpy()
                tokens = out["token_embeddings"]
                live = encoded["attention_mask"].bool()
                for row, i in enumerate(batch):
                    begin, end = offsets[row, :, 0] - len(prompt), offsets[row, :, 1] - len(prompt)
                    for k, (s, e) in enumerate(spans[i]):
                        mask = live[row] & (end > s) & (begin < e) & (end > begin)
                        if bool(mask.any()):
                            pooled.append(tokens[row][mask].mean(dim=0))
                            owners.append((i, k))
                        else:
                            orphans.append((i, k))
            span_vectors = [np.zeros((len(s), self._full), dtype=np.float32) for s in spans]
            if pooled:
                features = {"sentence_embedding": torch.stack(pooled)}
                for module in self._after_pooling:
                    features = module(features)
                vectors = features["sentence_embedding"].float().numpy()
                for (i, k), vector in zip(owners, vectors):
                    span_vectors[i][k] = vector
        if orphans:
            vectors = self._encode_full([texts[i][slice(*spans[i][k])] for i, k in orphans], self._passage_prompt)
            for (i, k), vector in zip(orphans, vectors):
                span_vectors[i][k] = vector
        return self._truncated(passages), [self._truncated(block) for block in span_vectors]

    def _prompt_text(self, prompt_name: str | None) -> str:
        """The text the model's prompt ``prompt_name`` puts before a text ("" for none)."""
        return (getattr(self._model, "prompts", None) or {}).get(prompt_name or "", "") or ""

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` alone (no prompt, no special tokens)."""
        return len(self._model.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _encode(self, texts: Sequence[str], prompt_name: str | None, batch_size: int | None = None) -> np.ndarray:
        return self._truncated(self._encode_full(texts, prompt_name, batch_size))

    def _encode_full(self, texts: Sequence[str], prompt_name: str | None, batch_size: int | None = None
                     ) -> np.ndarray:
        """Full-size, normalised vectors (before any Matryoshka truncation)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self._full), dtype=np.float32)
        # sentence-transformers sorts the texts by length before batching and restores the order.
        with self._lock:
            vectors = self._model.encode(
                texts,
                prompt_name=prompt_name,
                batch_size=batch_size or self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)


