"""``python -m bench.batching``: concurrent question encoding straight through the model against
through :class:`embeddings.batching.MicroBatchingEmbedder`: questions/s and per-call latency.

    python -m bench.batching [--clients 1,4,16] [--quantize MODE] [--embedder use-m] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeddings.base import Embedder
from embeddings.batching import MicroBatchingEmbedder

from bench.quantize import xquad_sample


def measure(inner: Embedder, questions: Sequence[str], clients: int, *, max_wait_ms: float = 5.0,
            max_batch: int = 32, rounds: int = 2) -> dict[str, dict[str, float]]:
    """``clients`` threads each encoding questions one at a time (``rounds`` passes over ``questions``,
    split between the threads), straight through ``inner`` and through a micro-batcher: questions/s
    and per-call latency (p50, p95)."""
    out = {}
    for label in ("direct", "micro-batched"):
        embedder: Embedder = inner
        batcher = None
        if label == "micro-batched":
            embedder = batcher = MicroBatchingEmbedder(inner, max_wait_ms=max_wait_ms, max_batch=max_batch)
        work = [q for _ in range(rounds) for q in questions]
        shares = [work[i::clients] for i in range(clients)]
        latencies: list[float] = []
        lock = threading.Lock()
        barrier = threading.Barrier(clients + 1)

        def client(share: list[str]) -> None:
            mine = []
            barrier.wait()
            for q in share:
                started = time.perf_counter()
                embedder.encode_queries([q])
                mine.append(time.perf_counter() - started)
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=client, args=(share,)) for share in shares]
        for t in threads:
            t.start()
        barrier.wait()
        started = time.perf_counter()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        lat = np.sort(np.asarray(latencies))
        out[label] = {"questions_per_s": round(len(work) / elapsed, 2),
                      "p50_ms": round(float(lat[len(lat) // 2]) * 1000, 1),
                      "p95_ms": round(float(lat[min(len(lat) - 1, int(len(lat) * 0.95))]) * 1000, 1)}
        if batcher is not None:
            s = batcher.stats
            out[label]["mean_batch"] = round(s.batched_texts / max(s.batches, 1), 2)
            out[label]["direct_calls"] = s.direct
            batcher.close()
    return out


def main(argv: list[str] | None = None) -> None:
    from qa.settings import Settings

    parser = argparse.ArgumentParser(prog="python -m bench.batching",
                                     description="Concurrent question encoding: direct vs micro-batched")
    parser.add_argument("--clients", default="1,4,16")
    parser.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--quantize", default=None, help="auto | openvino | bf16 | int8 | none (default: the QA settings)")
    parser.add_argument("--embedder", default=None, help="sentence-transformers | use-m (default: the QA settings)")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args(argv)
    settings = Settings()
    if (args.embedder or settings.embedder) == "use-m":
        from embeddings.use_m import UseMEmbedder

        inner: Embedder = UseMEmbedder()
    else:
        from embeddings import _model_folder, embedder_for_mode

        inner = embedder_for_mode(_model_folder(settings), args.quantize or settings.quantize,
                                  batch_size=settings.embed_batch_size, threads=settings.torch_threads)
    _, questions = xquad_sample(args.eval_dir, 0, args.questions)
    inner.encode_queries(questions[:4])  # warm-up
    result = {"model_id": inner.model_id, "max_wait_ms": settings.micro_batch_wait_ms,
              "max_batch": settings.micro_batch_max, "questions": len(questions) * args.rounds, "clients": {}}
    for clients in [int(c) for c in args.clients.split(",") if c.strip()]:
        result["clients"][clients] = measure(inner, questions, clients, max_wait_ms=settings.micro_batch_wait_ms,
                                             max_batch=settings.micro_batch_max, rounds=args.rounds)
        print(clients, json.dumps(result["clients"][clients]), flush=True)
    if args.output:
        args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
