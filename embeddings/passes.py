"""Which texts go through the model together: forward passes planned from token lengths.

A forward pass costs about a fixed amount per call plus the padded tokens it holds (every text padded
to the longest of its pass). On a 2-core CPU, throughput per token hardly grows beyond a handful of
texts per pass (EmbeddingGemma on OpenVINO: within 10 % from 4 to 32 texts of 64 tokens), while
padding is pure waste, and a pass of one short sentence pays the fixed cost for a few tokens (a lone
16-token text runs at less than half the tokens/s of 32 of them). :func:`plan_passes` therefore
splits texts sorted by token length into the passes of least total cost, ``passes × overhead +
padded tokens``, under a cap on padded tokens per pass (memory) and on texts per pass.

A pass is padded to a **bucket length** (:func:`bucket_length`: a multiple of 8 tokens, of more for long
texts, at most 1/8 more than the text), not to its longest text's exact length: the CPU runtime prepares
its kernels for each input shape the first time it meets it (EmbeddingGemma on OpenVINO: about 40 ms on a
~90 ms question), so with exact lengths nearly every question of a new length paid that; with buckets
there are few shapes, and start-up runs the question shapes once (the first question is then as fast as
the hundredth).

The fixed cost, :data:`PASS_OVERHEAD_TOKENS`, was measured with EmbeddingGemma on OpenVINO on a 2-core
AMD EPYC with AVX-512 and AVX512-BF16 (a lone pass: ~30 ms on top of ~1.2 ms per token): about the
cost of 32 tokens. The plan is not sensitive to it: half or twice as much changes the padded tokens by a
few per cent.
"""

from __future__ import annotations

from collections.abc import Sequence

PASS_OVERHEAD_TOKENS = 32  # the fixed cost of one forward pass, in tokens' worth of compute
LONGEST_INPUT = 512  # tokens: a pass holds at most ``batch_size`` texts of this length (see pass_token_budget)
MAX_PASS_TEXTS = 64  # texts in one pass, however short


def bucket_length(tokens: int) -> int:
    """``tokens`` rounded up to its bucket: a multiple of 8 up to 128 tokens, then of an eighth of the
    power of two below it (16 from 128, 32 from 256, ...), so padding adds at most 1/8 (questions: under
    8 tokens)."""
    tokens = max(1, int(tokens))
    step = max(8, (1 << (tokens.bit_length() - 1)) // 8)
    return -(-tokens // step) * step


QUESTION_BUCKETS = tuple(range(8, 72, 8))  # the padded lengths of questions (up to 64 tokens, prompt included)


def pass_token_budget(batch_size: int) -> int:
    """Padded tokens one forward pass may hold: ``batch_size`` texts of the longest input."""
    return max(1, batch_size) * LONGEST_INPUT


def plan_passes(lengths: Sequence[int], *, max_tokens: int, max_texts: int = MAX_PASS_TEXTS,
                overhead: int = PASS_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indexes into ``lengths`` (token counts), grouped into forward passes, longest texts first.

    Minimises ``len(passes) * overhead + sum(len(pass) * padded length of the pass)`` (the bucket of its
    longest text) over the partitions of the
    texts sorted by length (an optimal partition of a sorted list is contiguous, so a dynamic programme
    over the sorted order finds it), with at most ``max_texts`` texts and ``max_tokens`` padded tokens
    per pass (a text longer than ``max_tokens`` goes alone).
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    n = len(order)
    if n == 0:
        return []
    sizes = [bucket_length(lengths[i]) for i in order]  # what a pass led by that text is padded to
    best = [0.0] * (n + 1)  # best[i]: least cost of the texts order[i:]
    cut = [n] * (n + 1)  # the first pass of that plan is order[i:cut[i]]
    for i in range(n - 1, -1, -1):
        longest = sizes[i]
        most = max(1, min(max_texts, max_tokens // longest, n - i))
        best[i] = float("inf")
        for k in range(1, most + 1):
            cost = overhead + k * longest + best[i + k]
            if cost < best[i]:
                best[i], cut[i] = cost, i + k
    passes, i = [], 0
    while i < n:
        passes.append(order[i:cut[i]])
        i = cut[i]
    return passes


def padded_tokens(lengths: Sequence[int], passes: Sequence[Sequence[int]]) -> int:
    """Tokens the model computes for ``passes`` (each text padded to the bucket of the longest of its pass)."""
    return sum(len(p) * bucket_length(max(lengths[i] for i in p)) for p in passes if p)
