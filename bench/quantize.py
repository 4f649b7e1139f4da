"""``python -m bench.quantize``: EmbeddingGemma in fp32 against every reduced mode of
:mod:`embeddings.quantize` (int8, bf16, OpenVINO) on the same XQuAD texts: passages/s, questions/s
(one batch; one at a time) and the cosine of each reduced model's vectors to fp32's.

    python -m bench.quantize [--eval-dir ../shared/eval] [--threads 2] [--repeats 3] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from embeddings import embedder_for_mode, installed_embeddinggemma
from embeddings.quantize import QUANTIZE_MODES, REDUCED_MODES


def xquad_sample(eval_dir, n_passages: int, n_questions: int) -> tuple[list[str], list[str]]:
    """The first ``n_passages`` XQuAD paragraphs and ``n_questions`` questions, half Chinese, half English."""

    def read(name: str) -> list[dict]:
        with open(Path(eval_dir) / "xquad" / name, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def pick(rows: list[dict], key: str, n: int) -> list[str]:
        return [r[key] for lang in ("zh", "en") for r in [x for x in rows if x["lang"] == lang][: n // 2]]

    return pick(read("passages.jsonl"), "text", n_passages), pick(read("questions.jsonl"), "question", n_questions)


def compare(folder, eval_dir, *, threads: int = 2, batch_size: int = 8, repeats: int = 3,
            n_passages: int = 20, n_questions: int = 32) -> dict:
    """fp32 and every reduced mode (:data:`REDUCED_MODES`) on the same texts: passages/s, questions/s (one
    batch; one at a time) and the cosine of each reduced model's vectors to fp32's. Runs alternate between the models; each figure is the best of
    ``repeats`` (the least disturbed by other work on a shared machine), the median is kept too."""
    passages, questions = xquad_sample(eval_dir, n_passages, n_questions)
    models = {mode: embedder_for_mode(folder, mode, batch_size=batch_size, threads=threads) for mode in QUANTIZE_MODES}
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
        reference = getattr(models["none"], verb)(texts)
        for mode in REDUCED_MODES:
            cos = (reference * getattr(models[mode], verb)(texts)).sum(axis=1)
            out[f"{mode}_cosine_{name}"] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5)}
    for mode in REDUCED_MODES:
        single = np.vstack([models[mode].encode_queries([q]) for q in questions])
        cos = (single * models[mode].encode_queries(questions)).sum(axis=1)
        out[f"{mode}_single_vs_batched_cosine_min"] = round(float(cos.min()), 5)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.quantize",
                                     description="EmbeddingGemma fp32 vs int8, bf16 and OpenVINO: speed and agreement")
    parser.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--models-dir", type=Path, help="default: the models folder of the QA settings")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("QA_TORCH_THREADS", 2)))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
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
    main()
