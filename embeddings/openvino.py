"""EmbeddingGemma's transformer compiled with OpenVINO for the CPU (``QA_QUANTIZE=openvino``).

The verified fp32 transformer is exported once with ``torch.export`` (dynamic batch size and sequence
length) and converted to OpenVINO IR in a child process, then kept in a sibling folder
(``<name>@<sha8>.openvino``: ``model.xml``/``model.bin`` and a ``.derived.json`` naming the source's
sha256 and the converter's version; see :func:`embeddings.quantize.derived_folder`). At run time the compiled model gives
the token embeddings; tokenizer, prompts, mean pooling, the Dense heads and normalisation stay the
sentence-transformers modules, in fp32. On a CPU with AMX or AVX512-BF16 OpenVINO runs the matmuls in
bf16 by itself; its fused kernels make a lone short question much cheaper than torch's eager
forward pass (docs/performance.md). The attention masks are built in the exported wrapper as finite
additive masks: with transformers' boolean masks OpenVINO's attention gave NaN for heavily padded rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_XML = "model.xml"


def openvino_folder(folder: Path, digest: str) -> Path:
    """The OpenVINO IR of ``folder``'s transformer (sha256 of its weights: ``digest``), converted on first use."""
    from .quantize import derived_folder

    # version 2: finite additive attention masks (version 1 gave NaN in heavily padded batches)
    return derived_folder(folder, digest, "openvino", "embeddings.openvino:convert", version=2)


def convert(source: str, target: str) -> None:
    """Export ``source``'s transformer (fp32) and write it to ``target`` as OpenVINO IR."""
    import openvino as ov
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(source, device="cpu", local_files_only=True)
    transformer = model[0].auto_model.eval()

    window = int(getattr(transformer.config, "sliding_window", None) or 1 << 30)

    class TokenEmbeddings(torch.nn.Module):
        """input ids and padding mask → token embeddings, with the attention masks built here as finite
        additive masks (bidirectional; local layers see keys within the sliding window): OpenVINO's
        attention returned NaN for heavily padded rows with the boolean masks transformers builds."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask):
            blocked = -1e9
            keys = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * blocked  # (B, 1, 1, S)
            pos = torch.arange(input_ids.shape[1], device=input_ids.device)
            near = (pos[None, :] - pos[:, None]).abs() < window
            local = keys + torch.where(near, 0.0, blocked)[None, None]
            full = keys.expand(-1, -1, input_ids.shape[1], -1)
            masks = {"full_attention": full, "sliding_attention": local}
            return self.inner(input_ids=input_ids, attention_mask=masks).last_hidden_state

    # Two texts of different lengths, padded: a batch of one would be specialised to batch size 1.
    sample = model.tokenizer(["a sample sentence", "a second, longer sample sentence for the export of the model"],
                             padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=max(3, int(model.max_seq_length)))
    dims = {0: batch, 1: seq}
    with torch.no_grad():
        exported = torch.export.export(TokenEmbeddings(transformer).eval(),
                                       (sample["input_ids"], sample["attention_mask"]),
                                       dynamic_shapes={"input_ids": dims, "attention_mask": dims})
        ir = ov.convert_model(exported)
    ov.save_model(ir, str(Path(target) / _XML), compress_to_fp16=True)  # half the file; the CPU runs bf16 or fp32


class OpenVinoTokenEmbeddings:
    """The compiled IR: ``(input_ids, attention_mask)`` int64 arrays → token embeddings (float32)."""

    def __init__(self, folder: Path, threads: int):
        import openvino as ov

        core = ov.Core()
        self._compiled = core.compile_model(str(Path(folder) / _XML), "CPU",
                                            {"INFERENCE_NUM_THREADS": max(1, threads), "PERFORMANCE_HINT": "LATENCY"})
        self._request = self._compiled.create_infer_request()  # callers serialise (the embedder's lock)

    def __call__(self, input_ids, attention_mask):
        out = self._request.infer({0: np.asarray(input_ids, dtype=np.int64), 1: np.asarray(attention_mask, dtype=np.int64)})
        return np.asarray(out[self._compiled.output(0)], dtype=np.float32)
