"""EmbeddingGemma compiled with OpenVINO for the CPU (``QA_QUANTIZE=openvino``, and ``auto``'s choice).

The whole sentence-transformers model (transformer, mean pooling, the two Dense heads, normalisation)
is exported once with ``torch.export`` (dynamic batch size and sequence length) and converted to
OpenVINO IR in a child process, then kept in a sibling folder (``<name>@<sha8>.openvino``:
``model.xml``/``model.bin`` and a ``.derived.json`` naming the source's sha256 and the converter's
version; see :func:`embeddings.quantize.derived_folder`). The IR maps token ids and their padding
mask straight to the normalised sentence vector.

At run time nothing else is loaded: the text is tokenized by ``sentencepiece`` from the model's own
``tokenizer.model`` (the same ids as the model's ``tokenizer.json``, in a fraction of the memory), and
neither torch nor transformers is imported. On a CPU with AMX or AVX512-BF16 OpenVINO runs the
matmuls in bf16 by itself; its fused kernels make a lone short question much cheaper than torch's
eager forward pass (docs/performance.md).

The compiled model is cached too (OpenVINO's ``CACHE_DIR``, one folder per kind of CPU and OpenVINO
version, see :func:`compiled_cache`; about 400 MB): a start on a warm cache imports it in well under a
second instead of compiling it for several.

Two details of the export:

- The attention masks are built in the exported wrapper as finite additive masks: with transformers'
  boolean masks OpenVINO's attention gave NaN for heavily padded rows.
- The token-embedding table (262,144 × 768, two thirds of the weights) is stored in int8 with one
  scale and zero point per row (NNCF's weight compression, applied to that table only): it is read a
  row per token, never multiplied, so int8 costs no speed and halves the memory the table takes once
  its pages have been read. The matmul weights stay fp16 on disk and bf16 or fp32 in the CPU plugin,
  where int8 would slow the forward pass. Vectors are at cosine >= 0.999 of fp32 (tests/test_batching.py).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import LocalModelEmbedder, Titles, titled_prompt
from .cpu import cpu_signature
from .fetch import folder_digests
from .passes import QUESTION_BUCKETS, bucket_length, pass_token_budget, plan_passes

_XML = "model.xml"


def openvino_folder(folder: Path, digest: str) -> Path:
    """The OpenVINO IR of ``folder``'s model (sha256 of its weights: ``digest``), converted on first use."""
    from .quantize import derived_folder

    # version 2: finite additive attention masks (version 1 gave NaN in heavily padded batches);
    # version 3: pooling, Dense heads and normalisation inside the IR, the token-embedding table in int8
    return derived_folder(folder, digest, "openvino", "embeddings.openvino:convert", version=3)


def compiled_cache(ir: Path, version: str) -> Path | None:
    """Where OpenVINO keeps the model compiled for this CPU (``CACHE_DIR``): ``compiled/<cpu>-<version>`` in
    the IR's folder, so a copy of the folder on another kind of CPU, or another OpenVINO, compiles its own.
    Compiling takes seconds (kernels chosen, weights repacked); importing the cached result, a fraction of
    that. ``None`` where the folder cannot be written (then every start compiles)."""
    folder = ir / "compiled" / f"{cpu_signature()}-{re.sub(r'[^A-Za-z0-9.]+', '_', version)[:40]}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


def convert(source: str, target: str) -> None:
    """Export ``source`` (a sentence-transformers folder, fp32) and write it to ``target`` as OpenVINO IR."""
    import openvino as ov
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(source, device="cpu", local_files_only=True).eval()
    transformer = model[0].auto_model
    heads = list(model)[1:]
    window = int(getattr(transformer.config, "sliding_window", None) or 1 << 30)

    class SentenceVectors(torch.nn.Module):
        """input ids and padding mask → the model's normalised sentence vectors, with the attention masks
        built here as finite additive masks (bidirectional; local layers see keys within the sliding
        window): OpenVINO's attention returned NaN for heavily padded rows with transformers' boolean masks."""

        def __init__(self):
            super().__init__()
            self.inner = transformer
            self.heads = torch.nn.ModuleList(heads)

        def forward(self, input_ids, attention_mask):
            blocked = -1e9
            keys = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * blocked  # (B, 1, 1, S)
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            near = (pos[None, :] - pos[:, None]).abs() < window
            local = keys + torch.where(near, 0.0, blocked)[None, None]
            full = keys.expand(-1, -1, input_ids.shape[1], -1)
            masks = {"full_attention": full, "sliding_attention": local}
            tokens = self.inner(input_ids=input_ids, attention_mask=masks).last_hidden_state
            features = {"token_embeddings": tokens, "attention_mask": attention_mask}
            for head in self.heads:  # sentence-transformers' own pooling, Dense and Normalize modules
                features = head(features)
            return features["sentence_embedding"]

    # Two texts of different lengths, padded: a batch of one would be specialised to batch size 1.
    sample = model.tokenizer(["a sample sentence", "a second, longer sample sentence for the export of the model"],
                             padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=max(3, int(model.max_seq_length)))
    dims = {0: batch, 1: seq}
    with torch.no_grad():
        exported = torch.export.export(SentenceVectors().eval(), (sample["input_ids"], sample["attention_mask"]),
                                       dynamic_shapes={"input_ids": dims, "attention_mask": dims})
        ir = ov.convert_model(exported)
    # fp16 on disk (the CPU runs bf16 or fp32), then the token table in int8. NNCF compresses the table
    # of the saved model: on the freshly converted one the fp32 table stayed in the file beside the int8 one.
    plain = Path(target) / "fp16.xml"
    ov.save_model(ir, str(plain), compress_to_fp16=True)
    del ir, exported
    ov.save_model(_int8_token_table(ov.Core().read_model(str(plain))), str(Path(target) / _XML),
                  compress_to_fp16=True)
    plain.unlink()
    plain.with_suffix(".bin").unlink()


def _int8_token_table(ir):
    """``ir`` with its token-embedding table (the one weight read by a Gather, not a MatMul) in int8,
    asymmetric, one scale per row."""
    import nncf

    return nncf.compress_weights(ir, mode=nncf.CompressWeightsMode.INT8_ASYM,
                                 ignored_scope=nncf.IgnoredScope(types=["MatMul"]))


class SentencePieceTokenizer:
    """The model's ``tokenizer.model`` through ``sentencepiece``: ids with the special tokens the model's
    tokenizer config asks for (EmbeddingGemma: ``<bos>`` … ``<eos>``), right-padded batches."""

    def __init__(self, folder: Path, max_length: int):
        import sentencepiece

        self._sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
        config = _read_json(folder / "tokenizer_config.json")
        self._head = [self._sp.bos_id()] if config.get("add_bos_token", True) else []
        self._tail = [self._sp.eos_id()] if config.get("add_eos_token", False) else []
        self._pad = max(0, self._sp.pad_id())
        self.filler = self._sp.piece_to_id("the")  # an ordinary token, for inputs of a given length
        self.max_length = max_length

    def count(self, text: str) -> int:
        """Tokens of ``text`` alone (no special tokens)."""
        return len(self._sp.encode(text))

    def rows(self, texts: Sequence[str]) -> list[list[int]]:
        """The ids of each text with the special tokens, cut to ``max_length`` tokens in all."""
        room = self.max_length - len(self._head) - len(self._tail)
        return [self._head + ids[:room] + self._tail for ids in self._sp.encode(list(texts))]

    def batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)`` int64 arrays, each text cut to ``max_length`` tokens in all."""
        return self.pad(self.rows(texts))

    def pad(self, rows: Sequence[list[int]], width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` right-padded into ``(input_ids, attention_mask)`` int64 arrays ``width`` wide (default:
        the bucket of the longest row, see :func:`~embeddings.passes.bucket_length`)."""
        longest = max(len(r) for r in rows)
        width = max(longest, width or min(bucket_length(longest), self.max_length))
        ids = np.full((len(rows), width), self._pad, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return ids, mask


class OpenVinoEmbedder(LocalModelEmbedder):
    """EmbeddingGemma (or another sentence-transformers folder of the same shape) as one compiled
    OpenVINO model: ``folder`` is the verified model, the IR is derived from it on first use.

    Questions and passages get the model's ``query`` and ``document`` prompts (passages with their
    title in it, where given). ``dim`` truncates Matryoshka vectors (then re-normalises). ``model_id`` is
    ``<folder name>@<sha8>[/d<dim>]/openvino``, as the torch backend names its modes.
    """

    def __init__(self, folder: Path, *, dim: int | None = None, batch_size: int = 8, threads: int = 2):
        import openvino as ov

        folder = Path(folder).expanduser()
        digest = folder_digests(folder, ["model.safetensors"])["model.safetensors"]
        if digest is None:
            raise FileNotFoundError(f"{folder} holds no model.safetensors (is it a sentence-transformers folder?)")
        max_length = int(_read_json(folder / "sentence_bert_config.json").get("max_seq_length", 512))
        self._tokenizer = SentencePieceTokenizer(folder, max_length)
        prompts = _read_json(folder / "config_sentence_transformers.json").get("prompts") or {}
        self._query_prompt, self._passage_prompt = prompts.get("query", ""), prompts.get("document", "")
        ir = openvino_folder(folder, digest)
        core = ov.Core()
        cache = compiled_cache(ir, ov.get_version())
        if cache is not None:  # a later start imports the compiled model instead of compiling it again
            core.set_property({"CACHE_DIR": str(cache)})
        compiled = core.compile_model(str(ir / _XML), "CPU",
                                      {"INFERENCE_NUM_THREADS": max(1, threads), "PERFORMANCE_HINT": "LATENCY"})
        self._output = compiled.output(0)
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # one inference at a time on the one request
        self._pass_tokens = pass_token_budget(batch_size)  # padded tokens per forward pass
        self._identify(folder.name, digest, int(self._infer(["dimension probe"]).shape[1]), dim, "/openvino")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        # Questions are short: a micro-batch of them goes through in one forward pass.
        return self._encode([self._query_prompt + text for text in texts])

    def encode_passages(self, texts: Sequence[str], titles: Titles = None) -> np.ndarray:
        titles = titles if titles is not None else [None] * len(texts)
        return self._encode([titled_prompt(self._passage_prompt, title) + text for text, title in zip(texts, titles)])

    def count_tokens(self, text: str) -> int:
        return self._tokenizer.count(text)

    def warm_up(self) -> None:
        """Run each shape of a lone question once (every bucket length up to 64 tokens): the CPU runtime
        prepares its kernels per input shape on first use (see :mod:`embeddings.passes`)."""
        for width in QUESTION_BUCKETS:
            self._infer_ids(*self._tokenizer.pad([[self._tokenizer.filler] * width]))

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Normalised vectors of ``texts`` (prompts included), in forward passes planned from their token
        lengths (:func:`~embeddings.passes.plan_passes`: little padding, few passes)."""
        out = np.zeros((len(texts), self._full), dtype=np.float32)
        rows = self._tokenizer.rows(texts)
        for batch in plan_passes([len(r) for r in rows], max_tokens=self._pass_tokens):
            out[batch] = self._infer_ids(*self._tokenizer.pad([rows[i] for i in batch]))
        return self._truncated(out)

    def _infer(self, texts: list[str]) -> np.ndarray:
        return self._infer_ids(*self._tokenizer.batch(texts))

    def _infer_ids(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with self._lock:
            result = self._request.infer({0: ids, 1: mask})
            return np.array(result[self._output], dtype=np.float32)  # a copy: the request reuses its buffer


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
