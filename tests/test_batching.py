"""Micro-batching of question and passage encoding (real USE-m model), forward passes planned by token length,
and the int8, bf16 and OpenVINO EmbeddingGemma (slow)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest

from embeddings import CachedEmbedder, MicroBatchingEmbedder, create_embedder
from embeddings.passes import bucket_length
from conftest import EVAL_DIR
from embeddings.use_m import UseMEmbedder
from qa.settings import Settings

QUESTIONS = [
    "What is the capital of France?",
    "法国的首都是哪里？",
    "How many points did the Panthers defense give up?",
    "黑豹队的防守丢了多少分？",
    "Who wrote the theory of relativity?",
    "相对论是谁提出的？",
    "When did the Ming dynasty end?",
    "明朝是哪一年灭亡的？",
    "What does photosynthesis produce?",
    "光合作用产生什么？",
    "Which river is the longest in China?",
    "中国最长的河流是哪一条？",
    "How tall is Mount Everest?",
    "珠穆朗玛峰有多高？",
    "Where was the 2008 Olympics held?",
    "2008年奥运会在哪里举行？",
]


class RecordingUseM(UseMEmbedder):
    """The real USE-m model, recording the size of every forward call; ``slow_s`` makes each call
    take at least that long (so concurrent callers pile up), ``fail_next`` makes the next call raise."""

    def __init__(self, slow_s: float = 0.0):
        super().__init__()
        self.slow_s = slow_s
        self.batch_sizes: list[int] = []
        self.passes: list[list[str]] = []  # the texts of every encode_passages call
        self.fail_next = False
        self.entered = threading.Event()
        self._record = threading.Lock()
        self.threads: set[str] = set()  # names of the threads that ran forward passes

    def encode_passages(self, texts, titles=None):
        self._forward(self.passes, list(texts))
        return super().encode_passages(texts, titles)

    def encode_queries(self, texts):
        self._forward(self.batch_sizes, len(texts))
        return super().encode_queries(texts)

    def _forward(self, record: list, entry) -> None:
        """Record a forward call, take ``slow_s`` over it, and raise if ``fail_next`` says so."""
        with self._record:
            record.append(entry)
            self.threads.add(threading.current_thread().name)
            fail, self.fail_next = self.fail_next, False
        self.entered.set()
        if self.slow_s:
            time.sleep(self.slow_s)
        if fail:
            raise RuntimeError("inner encoder failed")


@pytest.fixture(scope="module")
def model() -> RecordingUseM:
    """One real USE-m (loading takes seconds), shared by the tests; ``inner`` resets its knobs."""
    return RecordingUseM()


@pytest.fixture
def inner(model: RecordingUseM) -> RecordingUseM:
    model.slow_s, model.fail_next = 0.0, False
    model.batch_sizes.clear()
    model.passes.clear()
    model.threads.clear()
    model.entered.clear()
    return model


@pytest.fixture(scope="module")
def reference(model: RecordingUseM) -> np.ndarray:
    """Each question encoded alone by the plain model."""
    return np.vstack([UseMEmbedder.encode_queries(model, [q]) for q in QUESTIONS])


def _concurrently(fn, items, threads=16):
    barrier = threading.Barrier(threads)

    def call(item):
        barrier.wait()
        return fn(item)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(call, items))


def test_concurrent_callers_get_their_own_rows(inner, reference):
    inner.slow_s = 0.05
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=32)
    try:
        results = _concurrently(lambda q: batcher.encode_queries([q]), QUESTIONS)
        for question, got, want in zip(QUESTIONS, results, reference):
            assert got.shape == (1, 512) and got.dtype == np.float32, question
            assert np.allclose(got[0], want, atol=1e-5), question
        # 16 calls, far fewer forward passes: batches really formed, and every text encoded once.
        assert sum(inner.batch_sizes) == len(QUESTIONS)
        assert len(inner.batch_sizes) < len(QUESTIONS) // 2
        assert max(inner.batch_sizes) > 1
        assert batcher.stats.batches >= 1 and batcher.stats.largest_batch == max(inner.batch_sizes)
    finally:
        batcher.close()


def test_multi_text_calls_and_duplicates_are_split_back(inner, reference):
    inner.slow_s = 0.05
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=20, max_batch=32)
    calls = [[QUESTIONS[i], QUESTIONS[(i + 1) % 16], QUESTIONS[i]] for i in range(16)]
    try:
        results = _concurrently(batcher.encode_queries, calls)
        for i, got in enumerate(results):
            assert got.shape == (3, 512)
            assert np.allclose(got, reference[[i, (i + 1) % 16, i]], atol=1e-5)
        assert sum(inner.batch_sizes) < 3 * 16  # duplicates (within and across callers) encoded once per batch
        assert all(size <= 32 for size in inner.batch_sizes)
        assert max(inner.batch_sizes) > 3
    finally:
        batcher.close()


def test_max_batch_caps_each_forward_pass(inner):
    inner.slow_s = 0.05
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=50, max_batch=4)
    try:
        _concurrently(lambda q: batcher.encode_queries([q]), QUESTIONS)
        assert all(size <= 4 for size in inner.batch_sizes)
        assert sum(inner.batch_sizes) == len(QUESTIONS)
    finally:
        batcher.close()


def test_an_error_reaches_every_caller_of_its_batch_and_the_next_call_works(inner, reference):
    inner.slow_s = 0.2
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=32)
    try:
        # A first call occupies the model; eight more queue behind it and form one batch, which fails.
        first = threading.Thread(target=batcher.encode_queries, args=([QUESTIONS[0]],))
        first.start()
        assert inner.entered.wait(5)
        with inner._record:
            inner.fail_next = True
        outcomes: list[object] = [None] * 8

        def call(i: int) -> None:
            try:
                outcomes[i] = batcher.encode_queries([QUESTIONS[i + 1]])
            except RuntimeError as exc:
                outcomes[i] = exc

        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        first.join(10)
        assert not any(t.is_alive() for t in threads) and not first.is_alive()
        assert inner.batch_sizes[:2] == [1, 8]
        assert all(isinstance(o, RuntimeError) and "inner encoder failed" in str(o) for o in outcomes)
        # The worker survives: queued and direct calls work again.
        inner.slow_s = 0.0
        again = _concurrently(lambda q: batcher.encode_queries([q]), QUESTIONS[:8], threads=8)
        for got, want in zip(again, reference[:8]):
            assert np.allclose(got[0], want, atol=1e-5)
    finally:
        batcher.close()


def test_an_error_on_the_direct_path_reaches_its_caller_only(inner):
    batcher = MicroBatchingEmbedder(inner)
    try:
        inner.fail_next = True
        with pytest.raises(RuntimeError, match="inner encoder failed"):
            batcher.encode_queries(["one question"])
        assert batcher.encode_queries(["one question"]).shape == (1, 512)
    finally:
        batcher.close()


def test_single_client_pays_almost_nothing(inner, reference):
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=50, max_batch=32)  # any wait would show
    try:
        for q in QUESTIONS[:4]:  # warm up both paths
            inner.encode_queries([q])
            batcher.encode_queries([q])
        direct, batched = [], []
        for _ in range(5):
            for q in QUESTIONS:
                t = time.perf_counter()
                inner.encode_queries([q])
                direct.append(time.perf_counter() - t)
                t = time.perf_counter()
                batcher.encode_queries([q])
                batched.append(time.perf_counter() - t)
        # A lone caller never waits max_wait_ms: the worker encodes it at once.
        assert batcher.stats.batches == 0 and batcher.stats.direct == batcher.stats.calls
        # Timings on a shared machine are noisy: the best call shows the cost, the median shows no waits.
        best = min(batched) - min(direct)
        typical = float(np.median(batched) - np.median(direct))
        assert best < 0.001 and typical < 0.01, f"overhead: best {best * 1000:.2f} ms, median {typical * 1000:.2f} ms"
    finally:
        batcher.close()


def test_every_forward_pass_runs_on_the_one_worker_thread(inner, reference):
    batcher = MicroBatchingEmbedder(inner, max_wait_ms=5, max_batch=8)
    try:
        batcher.encode_queries([QUESTIONS[0]])  # alone
        got = _concurrently(lambda q: batcher.encode_queries([q]), QUESTIONS, threads=8)  # batched
        batcher.encode_passages(["a passage", "another passage"])
        batcher.encode_queries(QUESTIONS[:8])  # a big call
        assert inner.threads == {"qa-micro-batcher"}, inner.threads
        for row, want in zip(got, reference):
            assert np.allclose(row[0], want, atol=1e-5)
    finally:
        batcher.close()


def test_lone_passages_and_big_calls_go_straight_through(inner):
    batcher = MicroBatchingEmbedder(inner, max_batch=4)
    try:
        assert batcher.encode_passages(QUESTIONS[:3]).shape == (3, 512)
        assert batcher.encode_queries(QUESTIONS[:6]).shape == (6, 512)
        assert batcher.encode_queries([]).shape == (0, 512)
        assert batcher.encode_passages([]).shape == (0, 512)
        assert inner.batch_sizes == [6] and batcher.stats.batches == 0
        assert batcher.stats.passage_rounds == 1 and batcher.stats.largest_round == 1
        assert batcher.model_id == "use-m-v3" and batcher.dimension == 512
    finally:
        batcher.close()


# A document's passages: one paragraph and its sentences (short and long, Chinese and English).
DOCUMENTS = [
    [f"Paragraph {d}: " + " ".join(QUESTIONS[(d + k) % 16] for k in range(d % 5 + 1))]
    + [QUESTIONS[(d + k) % 16] for k in range(d % 5 + 1)]
    for d in range(8)
]


@contextmanager
def _batching(inner: RecordingUseM, **kw) -> Iterator[MicroBatchingEmbedder]:
    batcher = MicroBatchingEmbedder(inner, **kw)
    try:
        yield batcher
    finally:
        batcher.close()


def _occupied(batcher: MicroBatchingEmbedder, inner: RecordingUseM) -> threading.Thread:
    """A passage call that holds the model (for ``inner.slow_s``) while the test queues more behind it."""
    first = threading.Thread(target=batcher.encode_passages, args=(["occupies the model"],))
    first.start()
    assert inner.entered.wait(5)
    return first


def test_concurrent_passage_callers_share_rounds_and_get_their_own_rows(inner):
    reference = [UseMEmbedder.encode_passages(inner, doc, [f"title {d}"] * len(doc)) for d, doc in enumerate(DOCUMENTS)]
    inner.slow_s = 0.05  # each forward pass takes a while: the callers that arrive meanwhile wait together
    with _batching(inner, max_wait_ms=5) as batcher:
        got = _concurrently(lambda d: batcher.encode_passages(DOCUMENTS[d], [f"title {d}"] * len(DOCUMENTS[d])),
                            range(8), threads=8)
        for d, (rows, want) in enumerate(zip(got, reference)):
            assert rows.shape == (len(DOCUMENTS[d]), 512) and rows.dtype == np.float32
            assert np.allclose(rows, want, atol=1e-5), d
        stats = batcher.stats
        assert stats.passage_requests == 8
        assert stats.passage_rounds < 8 and stats.largest_round > 1  # callers really were taken together
        # Identical (title, text) pairs are encoded once; the same text under another title is not the same.
        assert sum(len(p) for p in inner.passes) == stats.passage_texts == sum(len(set(doc)) for doc in DOCUMENTS)
        assert stats.passage_passes == len(inner.passes)


def test_a_round_sorts_the_texts_of_all_callers_by_length(inner):
    """Eight callers with one long and one short text each: the round pads far less than their own passes
    would, because the long texts go together and the short ones together."""
    long_text = " ".join(QUESTIONS)  # about 200 tokens
    inner.slow_s = 0.2
    with _batching(inner, max_wait_ms=5) as batcher:
        first = _occupied(batcher, inner)
        _concurrently(lambda i: batcher.encode_passages([f"{long_text} {i}", QUESTIONS[i]]), range(8), threads=8)
        first.join(10)
        assert batcher.stats.largest_round == 8
        round_passes = inner.passes[1:]
        for texts in round_passes:  # no pass mixes a long text with a short one
            lengths = [inner.count_tokens(t) for t in texts]
            assert max(lengths) <= 2 * min(lengths), texts
        assert max(len(p) for p in round_passes) > 2  # and the passes are wider than one caller's two texts


def test_questions_take_turns_with_the_passes_of_a_round(inner):
    inner.slow_s = 0.1
    # 24 texts of very different lengths: a round of several passes.
    texts = [" ".join(QUESTIONS[: 1 + i % 16]) + f" {i}" for i in range(24)]
    with _batching(inner, max_wait_ms=1) as batcher:
        upload = threading.Thread(target=batcher.encode_passages, args=(texts,))
        upload.start()
        assert inner.entered.wait(5)
        t0 = time.perf_counter()
        batcher.encode_queries(["a question asked while the upload runs"])
        waited = time.perf_counter() - t0
        upload.join(30)
        assert batcher.stats.passage_passes > 2
        # The question waited for the pass in flight, not for the whole round.
        assert waited < (batcher.stats.passage_passes - 1) * inner.slow_s, waited


def test_an_error_in_a_round_reaches_its_callers_and_the_next_round_works(inner):
    inner.slow_s = 0.2
    with _batching(inner, max_wait_ms=5) as batcher:
        first = _occupied(batcher, inner)
        with inner._record:
            inner.fail_next = True  # the round of the four callers below fails
        outcomes = _concurrently(lambda i: _outcome(batcher.encode_passages, [QUESTIONS[i]]), range(4), threads=4)
        first.join(10)
        assert all(isinstance(o, RuntimeError) and "inner encoder failed" in str(o) for o in outcomes), outcomes
        inner.slow_s = 0.0
        assert batcher.encode_passages(QUESTIONS[:2]).shape == (2, 512)


def _outcome(fn, *args):
    try:
        return fn(*args)
    except RuntimeError as exc:
        return exc


def test_plan_passes_pads_little_and_respects_its_caps():
    from embeddings.passes import bucket_length, padded_tokens, plan_passes

    rng = np.random.default_rng(7)
    lengths = [int(x) for x in rng.integers(8, 400, size=300)]
    passes = plan_passes(lengths, max_tokens=4096, max_texts=64)
    assert sorted(i for p in passes for i in p) == list(range(300))  # every text once
    assert all(len(p) <= 64 and len(p) * max(lengths[i] for i in p) <= 4096 for p in passes)
    # Against fixed batches of 8 in the order given, and of 8 sorted by length.
    in_order = [list(range(i, min(i + 8, 300))) for i in range(0, 300, 8)]
    by_length = sorted(range(300), key=lambda i: -lengths[i])
    sorted_eights = [by_length[i:i + 8] for i in range(0, 300, 8)]
    planned = padded_tokens(lengths, passes)
    assert planned < 1.05 * sum(bucket_length(n) for n in lengths)  # within 5 % of the tokens padded to buckets
    assert sum(bucket_length(n) for n in lengths) < 1.125 * sum(lengths)
    assert planned < padded_tokens(lengths, sorted_eights) < padded_tokens(lengths, in_order)
    # Short texts go many to a pass (the fixed cost of a pass is paid once), a text over the cap alone.
    assert len(plan_passes([12] * 64, max_tokens=4096)) == 1
    assert plan_passes([5000, 10], max_tokens=4096) == [[0], [1]]
    assert plan_passes([], max_tokens=4096) == []


def test_bucket_lengths_pad_little_and_make_few_shapes():
    from embeddings.passes import bucket_length

    assert [bucket_length(n) for n in (1, 8, 9, 17, 64, 65, 127, 128, 129, 300, 2048)] == \
        [8, 8, 16, 24, 64, 72, 128, 128, 144, 320, 2048]
    assert all(n <= bucket_length(n) <= max(n + 7, n * 1.125) for n in range(1, 5000))
    assert len({bucket_length(n) for n in range(1, 513)}) <= 40  # shapes the CPU runtime prepares kernels for


def test_closed_batcher_refuses_calls(inner):
    batcher = MicroBatchingEmbedder(inner)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.encode_queries(["a question"])


def test_factory_puts_the_batcher_inside_the_cache(tmp_path):
    embedder = create_embedder(Settings(embedder="use-m", cache_dir=tmp_path))
    assert isinstance(embedder, CachedEmbedder) and isinstance(embedder.inner, MicroBatchingEmbedder)
    assert embedder.model_id == "use-m-v3"
    plain = create_embedder(Settings(embedder="use-m", cache_dir=tmp_path, micro_batching=False))
    assert isinstance(plain.inner, UseMEmbedder)
    # Cached questions never reach the batcher.
    embedder.encode_queries(["a question"])
    calls = embedder.inner.stats.calls
    embedder.encode_queries(["a question"])
    assert embedder.inner.stats.calls == calls


# --------------------------------------------------------------------------- int8 and bf16 EmbeddingGemma (real)


@pytest.mark.slow
@pytest.mark.parametrize("mode, min_cosine", [("int8", 0.95), ("bf16", 0.998), ("openvino", 0.999)])
def test_reduced_precision_embeddinggemma_has_its_own_id_and_close_vectors(mode, min_cosine):
    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    from embeddings import embedder_for_mode

    fp32 = embedder_for_mode(folder, "none")
    reduced = embedder_for_mode(folder, mode)
    assert reduced.model_id == fp32.model_id + "/" + mode and reduced.dimension == fp32.dimension
    sentences = QUESTIONS[:4] + ["黑豹队的防守只丢了308分，在联赛中排名第六。",
                                 "Photosynthesis converts light energy into chemical energy stored in glucose."]
    for verb in ("encode_queries", "encode_passages"):
        a, b = getattr(fp32, verb)(sentences), getattr(reduced, verb)(sentences)
        assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        cosines = (a * b).sum(axis=1)
        assert cosines.min() > min_cosine, (verb, cosines)


@pytest.mark.slow
def test_openvino_warm_up_runs_every_shape_a_lone_question_takes():
    """The first question is as fast as the hundredth: the CPU runtime prepares its kernels per input shape, and
    after the warm-up no question (XQuAD's, both languages, prompt included) brings a shape it has not run."""
    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    import json

    from embeddings.openvino import OpenVinoEmbedder

    model = OpenVinoEmbedder(folder, batch_size=8)
    shapes: list[tuple[int, int]] = []
    infer = model._infer_ids
    model._infer_ids = lambda ids, mask: shapes.append(ids.shape) or infer(ids, mask)
    model.warm_up()
    warmed = set(shapes)
    eval_file = EVAL_DIR / "xquad" / "questions.jsonl"
    questions = QUESTIONS + ([json.loads(line)["question"] for line in eval_file.open(encoding="utf-8")][::20]
                             if eval_file.is_file() else [])
    shapes.clear()
    for question in questions:
        model.encode_queries([question])
    assert len(shapes) == len(questions) and set(shapes) <= warmed, sorted(set(shapes) - warmed)


def test_openvino_gives_a_padded_text_the_vector_it_gets_alone():
    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    from embeddings.openvino import OpenVinoEmbedder

    model = OpenVinoEmbedder(folder, batch_size=8)
    texts = ["短句。", "A short one.",
             "黑豹队的防守只丢了308分，在联赛中排名第六，同时也以24次拦截领先全联盟，并且四次入选职业碗。" * 4,
             "Photosynthesis converts light energy into chemical energy stored in glucose. " * 6]
    rows = model._tokenizer.rows(texts)
    together = model._infer_ids(*model._tokenizer.pad(rows))  # one padded batch: the short texts carry long padding
    for text, ids, row in zip(texts, rows, together):
        alone = model._infer_ids(*model._tokenizer.pad([ids], width=len(ids)))[0]  # exactly its length, no padding
        assert np.isfinite(row).all() and float(row @ alone) > 0.9999, text[:20]
    # Padding to a bucket length (what every pass gets) changes nothing either.
    bucketed = model._infer_ids(*model._tokenizer.pad([rows[1]]))[0]
    assert model._tokenizer.pad([rows[1]])[0].shape[1] == bucket_length(len(rows[1])) > len(rows[1])
    assert float(bucketed @ model._infer_ids(*model._tokenizer.pad([rows[1]], width=len(rows[1])))[0]) > 0.9999


@pytest.mark.slow
def test_bf16_weights_are_a_converted_copy_next_to_the_verified_folder():
    import json

    import torch
    from safetensors import safe_open

    from embeddings.fetch import folder_digests
    from embeddings.quantize import bf16_folder, native_bf16, openvino_available, resolve_mode

    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    digest = folder_digests(folder, ["model.safetensors"])["model.safetensors"]
    derived = bf16_folder(folder, digest)
    assert derived.parent == folder.parent and derived.name == f"embeddinggemma-300m@{digest[:8]}.bf16"
    assert json.loads((derived / ".derived.json").read_text())["source_sha256"] == digest
    with safe_open(str(derived / "model.safetensors"), framework="pt") as weights, \
            safe_open(str(folder / "model.safetensors"), framework="pt") as source:
        assert set(weights.keys()) == set(source.keys())
        name = next(iter(weights.keys()))
        assert weights.get_tensor(name).dtype == torch.bfloat16
        assert torch.equal(weights.get_tensor(name), source.get_tensor(name).to(torch.bfloat16))
    assert (derived / "tokenizer.json").resolve() == (folder / "tokenizer.json").resolve()
    torch_choice = "bf16" if native_bf16() else "int8"
    assert resolve_mode("auto") == ("openvino" if openvino_available() else torch_choice)
    assert resolve_mode("auto", openvino=False) == torch_choice
    with pytest.raises(ValueError, match="unknown quantisation"):
        resolve_mode("fp8")


@pytest.mark.slow
def test_openvino_tokenizer_gives_the_ids_of_the_models_own_tokenizer():
    """sentencepiece on tokenizer.model stands in for tokenizer.json at run time: same ids, same padding."""
    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    from transformers import AutoTokenizer

    from embeddings.openvino import SentencePieceTokenizer

    reference = AutoTokenizer.from_pretrained(str(folder))
    ours = SentencePieceTokenizer(folder, max_length=64)
    texts = QUESTIONS + ["上海在人工智能方面有什么目标？", "徐匯區委書記說了什麼？", "G60科创走廊 1+N+1",
                         "  two  spaces\tand a tab\n\nand lines ", "emoji 😀🤖 and ½ ﬁ Ångström", "x" * 300,
                         "task: search result | query: 黑豹队的防守只丢了308分"]
    ids, mask = ours.batch(texts)
    expected = reference(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    assert ids.tolist() == expected["input_ids"].tolist()
    assert mask.tolist() == expected["attention_mask"].tolist()
    assert ours.count(texts[0]) == len(reference(texts[0], add_special_tokens=False)["input_ids"])


@pytest.mark.slow
def test_openvino_backend_runs_without_torch():
    """The OpenVINO model is the whole model: a process serving it never imports torch or transformers."""
    import subprocess
    import sys

    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    code = ("import sys; from embeddings.openvino import OpenVinoEmbedder; "
            f"e = OpenVinoEmbedder({str(folder)!r}); v = e.encode_queries(['上海的目标是什么？']); "
            "assert v.shape == (1, 768), v.shape; "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_contextual_sentence_vectors_refuse_openvino(tmp_path):
    from embeddings import embedder_for_mode

    with pytest.raises(ValueError, match="QA_SENTENCE_VECTORS=contextual"):
        embedder_for_mode(tmp_path, "openvino", contextual_spans=True)
