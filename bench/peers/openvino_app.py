"""The strongest hand-written peer ``qa bench --peers`` compares qa with: the search app of
``search_app.py`` (FastAPI + FAISS), with EmbeddingGemma run on sentence-transformers' own OpenVINO backend
(``backend="openvino"``, optimum-intel), which is what a careful user picks to serve the model fast on a
CPU. Runs in its own virtualenv (``~/.cache/qa/peers/openvino/venv``, made by ``qa bench --peers``):
optimum-intel's EmbeddingGemma export needs transformers 5.0, older than the service's.

Two things the stock backend gets wrong, fixed here as a careful user has to:

* optimum-intel exports EmbeddingGemma with a ``position_ids`` input and never feeds it: OpenVINO then
  reuses whatever tensor that input last held, and the vectors come out wrong without an error (cosine
  0.44-0.93 to fp32). :func:`feed_position_ids` feeds ``0..n-1`` for every row, as the torch model does.
* the model has one OpenVINO inference request: concurrent ``encode`` calls from FastAPI's thread pool
  would race on it, so every call holds :data:`encode_lock`.

Export once (minutes; ``SOURCE`` is the sentence-transformers folder, ``TARGET`` gets the same folder
with ``openvino/openvino_model.xml``):

    python openvino_app.py export SOURCE TARGET

Serve: ``OPENVINO_MODEL_PATH=TARGET uvicorn openvino_app:app --app-dir bench/peers``
"""

import os
import shutil
import sys
import threading
from pathlib import Path

import numpy as np

XML = Path("openvino") / "openvino_model.xml"


def feed_position_ids(model) -> None:
    """Make ``model`` (a SentenceTransformer on the OpenVINO backend) feed ``position_ids``."""
    ov_model = model[0].model
    if "position_ids" not in ov_model.input_names:
        return
    inference = ov_model._inference

    def with_positions(inputs: dict):
        ids = inputs["input_ids"]
        inputs = {**inputs, "position_ids": np.broadcast_to(np.arange(ids.shape[1], dtype=np.int64), ids.shape).copy()}
        return inference(inputs)

    ov_model._inference = with_positions


def load(folder: str):
    from sentence_transformers import SentenceTransformer

    if not (Path(folder) / XML).is_file():
        raise SystemExit(f"{folder} holds no {XML}: run `python openvino_app.py export SOURCE {folder}` first")
    model = SentenceTransformer(folder, backend="openvino", device="cpu", local_files_only=True)
    feed_position_ids(model)
    return model


def export(source: str, target: str) -> None:
    """Export ``source`` to OpenVINO with sentence-transformers' backend and save it as ``target`` (atomically)."""
    from sentence_transformers import SentenceTransformer

    scratch = Path(f"{target}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    model = SentenceTransformer(source, backend="openvino", device="cpu", local_files_only=True)
    model.save_pretrained(str(scratch))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(scratch, target)


if __name__ == "__main__" and sys.argv[1:2] == ["export"]:
    export(*sys.argv[2:4])
    sys.exit(0)

from search_app import search_app  # noqa: E402 — the app is only built when served

model = load(os.environ["OPENVINO_MODEL_PATH"])
encode_lock = threading.Lock()  # the model's one OpenVINO inference request


def encode(texts: list[str], prompt_name: str) -> np.ndarray:
    with encode_lock:
        return model.encode(texts, prompt_name=prompt_name, normalize_embeddings=True)


app = search_app(encode, model.get_sentence_embedding_dimension())
