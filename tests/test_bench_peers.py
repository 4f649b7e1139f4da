"""The OpenVINO peer of `qa bench --peers` (real EmbeddingGemma, real server, its own virtualenv): its
vectors are EmbeddingGemma's, alone and under concurrent requests, or its speed means nothing.

The first run installs the peer's virtualenv and exports the model (minutes, once; both kept under
~/.cache/qa/peers, as `qa bench --peers` keeps them).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from rich.console import Console

from bench.benchmark import (MIN_PEER_COSINE, embed_via, install_peer, make_openvino, model_folder,
                             openvino_export)
from qa.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]

QUESTIONS = ["上海在人工智能方面有什么目标？", "What did the Xuhui district party secretary say?", "浦东", "AI",
             "How will Shanghai build a global centre of science and technology innovation over the next years?"]


def _passages() -> list[str]:
    """Paragraphs of the seed report, short and long (different lengths: the batch is padded)."""
    text = next((ROOT / "seeds").glob("*.txt")).read_text(encoding="utf-8")
    paragraphs = [p.strip() for p in text.split("\n") if len(p.strip()) > 20]
    return paragraphs[:6] + ["Shanghai aims to lead in artificial intelligence.", "短句。"]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory):
    console = Console(stderr=True)
    why = install_peer("openvino", console)
    assert why is None, why
    folder = model_folder(Settings())
    exported = openvino_export(folder, console)
    system = make_openvino(tmp_path_factory.mktemp("openvino-peer"), exported)
    system.server.start()
    http = httpx.Client(trust_env=False)
    try:
        system.server.wait_ready(lambda: system.ready(http), timeout_s=900)
        yield system, http, exported
    finally:
        http.close()
        system.server.stop()


@pytest.fixture(scope="module")
def fp32():
    """EmbeddingGemma in fp32 torch, called exactly as the peers call it: the reference."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_folder(Settings())), device="cpu", local_files_only=True)
    return lambda texts, prompt: model.encode(texts, prompt_name=prompt, normalize_embeddings=True)


def test_the_export_has_the_position_ids_input_the_stock_backend_never_feeds(peer):
    _, _, exported = peer
    xml = (exported / "openvino" / "openvino_model.xml").read_text(encoding="utf-8", errors="replace")
    assert 'name="position_ids"' in xml  # so bench/peers/openvino_app.py's feed_position_ids is what makes it right


def test_openvino_peer_vectors_are_fp32_vectors(peer, fp32):
    system, http, _ = peer
    for texts, prompt in ((_passages(), "document"), (QUESTIONS, "query")):
        got = embed_via(system, http, texts, prompt)
        want = fp32(texts, prompt)
        assert got.shape == want.shape
        cos = (got * want).sum(axis=1)
        assert cos.min() >= MIN_PEER_COSINE, (prompt, cos.round(4).tolist())


def test_openvino_peer_vectors_stay_right_under_concurrent_requests(peer, fp32):
    system, http, _ = peer
    texts = _passages()[:4] + QUESTIONS
    want = fp32(texts, "document")
    jobs = [i for _ in range(3) for i in range(len(texts))]  # 27 single-text requests, 8 at a time

    def one(i: int) -> float:
        with httpx.Client(trust_env=False) as own:
            return float(embed_via(system, own, [texts[i]], "document")[0] @ want[i])

    with ThreadPoolExecutor(8) as pool:
        cos = np.array(list(pool.map(one, jobs)))
    assert cos.min() >= MIN_PEER_COSINE, cos.round(4).tolist()
