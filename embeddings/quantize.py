"""int8 inference for a sentence-transformers model on the CPU (dynamic quantisation).

The transformer's attention projections (q, k, v, o) and the MLP's gate and up projections are
replaced by dynamically quantised ``Linear`` layers: weights int8 with one scale per output channel,
activations quantised on the fly per batch, int8 matmuls through FBGEMM/oneDNN. Built locally from
the verified fp32 weights at load time: nothing extra is downloaded or stored.

Kept in fp32: the MLP ``down_proj`` of every layer (its input, after the gated GELU, carries
outliers that a single per-tensor activation scale cannot hold; quantising it costs 0.03-0.08 of
cosine against fp32 on short sentences, spread over all 24 layers), the Dense heads after pooling
(tiny), embeddings and norms. With that the vectors stay at cosine ~0.99 of fp32.

The vectors differ slightly from fp32, so the model id gets a ``/int8`` suffix and caches and
indexes never mix the two.
"""

from __future__ import annotations

import warnings
from typing import Literal

Quantize = Literal["none", "int8"]
QUANTIZE_MODES: tuple[str, ...] = ("none", "int8")


def model_id_suffix(mode: str) -> str:
    """What ``mode`` adds to a model id (``""`` for fp32)."""
    check_mode(mode)
    return "" if mode == "none" else f"/{mode}"


def check_mode(mode: str) -> str:
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantisation {mode!r}: use one of {', '.join(QUANTIZE_MODES)}")
    return mode


# Linear layers left in fp32 (matched on the module's name).
FP32_LAYERS: tuple[str, ...] = ("down_proj",)


def int8_layer_names(model) -> list[str]:
    """The names of the Linear layers of ``model``'s transformer that :func:`quantize_int8` converts."""
    import torch

    return [name for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and ".layers." in f".{name}"
            and not any(skip in name for skip in FP32_LAYERS)]


def quantize_int8(model):
    """``model`` (a torch module, in eval mode) with its transformer Linear layers (see the module
    docstring) dynamically quantised to int8, in place."""
    import torch

    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "onednn", "qnnpack"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    names = int8_layer_names(model)
    if not names:
        raise ValueError("no transformer Linear layers to quantise (is this a transformer model?)")
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, but still ships and works in torch 2.x.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(model, {name: per_channel_dynamic_qconfig for name in names},
                                dtype=torch.qint8, inplace=True)


# --------------------------------------------------------------------------- measurement


def _xquad_sample(eval_dir, n_passages: int, n_questions: int) -> tuple[list[str], list[str]]:
    """The first ``n_passages`` XQuAD paragraphs and ``n_questions`` questions, half Chinese, half English."""
    import json
    from pathlib import Path

    def read(name: str) -> list[dict]:
        with open(Path(eval_dir) / "xquad" / name, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    passages, questions = read("passages.jsonl"), read("questions.jsonl")
    pick = lambda rows, key, n: [r[key] for lang in ("zh", "en") for r in [x for x in rows if x["lang"] == lang][: n // 2]]
    return pick(passages, "text", n_passages), pick(questions, "question", n_questions)


def compare(folder, eval_dir, *, threads: int = 2, batch_size: int = 8, repeats: int = 3,
            n_passages: int = 20, n_questions: int = 32) -> dict:
    """fp32 against int8 on the same texts: passages/s, questions/s (one batch; one at a time) and the
    cosine of the two models' vectors. Runs alternate between the models; each figure is the best of
    ``repeats`` (the least disturbed by other work on a shared machine), the median is kept too."""
    import statistics
    import time

    import numpy as np

    from .sentence_transformers import SentenceTransformerEmbedder

    passages, questions = _xquad_sample(eval_dir, n_passages, n_questions)
    models = {mode: SentenceTransformerEmbedder(folder, batch_size=batch_size, threads=threads, quantize=mode)
              for mode in QUANTIZE_MODES}
    jobs = {
        "passages_per_s": (lambda m: m.encode_passages(passages), len(passages)),
        "questions_per_s_batched": (lambda m: m.encode_queries(questions), len(questions)),
        "questions_per_s_single": (lambda m: [m.encode_queries([q]) for q in questions], len(questions)),
    }
    for m in models.values():  # warm-up
        m.encode_passages(passages[:2]), m.encode_queries(questions[:2])
    seconds: dict[str, dict[str, list[float]]] = {mode: {job: [] for job in jobs} for mode in models}
    for _ in range(repeats):
        for job, (fn, _n) in jobs.items():
            for mode, m in models.items():
                started = time.perf_counter()
                fn(m)
                seconds[mode][job].append(time.perf_counter() - started)
    out: dict = {"threads": threads, "batch_size": batch_size, "repeats": repeats,
                 "passages": len(passages), "questions": len(questions), "models": {}}
    for mode, m in models.items():
        out["models"][mode] = {"model_id": m.model_id, **{
            job: {"best": round(n / min(seconds[mode][job]), 2), "median": round(n / statistics.median(seconds[mode][job]), 2)}
            for job, (_fn, n) in jobs.items()}}
    for name, texts, verb in (("passages", passages, "encode_passages"), ("questions", questions, "encode_queries")):
        a, b = (getattr(models[mode], verb)(texts) for mode in QUANTIZE_MODES)
        cos = (a * b).sum(axis=1)
        out[f"cosine_{name}"] = {"mean": round(float(cos.mean()), 4), "min": round(float(cos.min()), 4)}
    single = np.vstack([models["int8"].encode_queries([q]) for q in questions])
    cos = (single * models["int8"].encode_queries(questions)).sum(axis=1)
    out["int8_single_vs_batched_cosine_min"] = round(float(cos.min()), 5)
    return out


def _main() -> None:
    """``python -m embeddings.quantize [--eval-dir ../shared/eval] [--threads 2]``: fp32 vs int8."""
    import argparse
    import json
    import os
    from pathlib import Path

    from . import installed_embeddinggemma

    parser = argparse.ArgumentParser(description="EmbeddingGemma fp32 vs int8: speed and agreement")
    parser.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--models-dir", type=Path, help="default: the models folder of the QA settings")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("QA_TORCH_THREADS", 2)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    if args.models_dir is None:
        from qa.settings import Settings

        args.models_dir = Settings().models_dir
    result = compare(installed_embeddinggemma(args.models_dir), args.eval_dir, threads=args.threads,
                     repeats=args.repeats)
    text = json.dumps(result, indent=2, ensure_ascii=False)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    _main()
