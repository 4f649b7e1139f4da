"""QA_QUANTIZE=auto: measured on this CPU once, remembered per kind of CPU; a filled data folder keeps its mode."""

from __future__ import annotations

import json

import pytest

from embeddings import auto_mode
from embeddings.cpu import cpu_signature
from embeddings.fetch import folder_digests
from embeddings.quantize import QUANTIZE_MODES, resolve_mode
from qa.model_choice import settled_quantize
from qa.settings import Settings
from qa.store.sqlite import SqlitePassageStore


@pytest.fixture
def model_folder(tmp_path):
    """The installed EmbeddingGemma and its OpenVINO model, linked into a folder of the test's own, so the
    measured choice is kept there and not beside the real model."""
    folder = Settings().models_dir / "embeddinggemma-300m"
    if not folder.is_dir():
        pytest.skip(f"EmbeddingGemma is not installed in {folder} (run `qa models fetch`)")
    digest = folder_digests(folder, ["model.safetensors"])["model.safetensors"]
    ir = folder.parent / f"{folder.name}@{digest[:8]}.openvino"
    if not ir.is_dir():
        pytest.skip(f"no OpenVINO model in {ir} (run `qa models fetch`)")
    (tmp_path / folder.name).symlink_to(folder, target_is_directory=True)
    (tmp_path / ir.name).symlink_to(ir, target_is_directory=True)
    return tmp_path / folder.name


@pytest.mark.slow
def test_auto_measures_the_modes_once_and_remembers_the_choice_for_this_cpu(model_folder, monkeypatch):
    # fp32 (the reference for the vectors) and OpenVINO: two real measurements, each in its own process
    monkeypatch.setattr(auto_mode, "candidates", lambda openvino=True: ["none", "openvino"])
    chosen = resolve_mode("auto", folder=model_folder)
    assert chosen in ("none", "openvino") and chosen in QUANTIZE_MODES
    kept = json.loads(auto_mode.cache_file(model_folder).read_text(encoding="utf-8"))
    [(key, result)] = kept.items()
    assert key.startswith(cpu_signature() + "|") and result["mode"] == chosen
    for mode in ("none", "openvino"):
        figures = result["modes"][mode]
        assert figures["seconds"] > 0 and figures["questions_s"] > 0 and figures["passages_s"] > 0, figures
    assert result["modes"]["openvino"]["min_cosine_to_fp32"] >= auto_mode.MIN_COSINE
    # The choice is remembered: resolving again measures nothing.
    monkeypatch.setattr(auto_mode, "_measure_in_child", lambda *a: pytest.fail("measured again"))
    assert resolve_mode("auto", folder=model_folder) == chosen
    # Another kind of CPU (another signature) would measure for itself.
    monkeypatch.setattr(auto_mode, "cpu_signature", lambda: "another-cpu")
    with pytest.raises(pytest.fail.Exception, match="measured again"):
        resolve_mode("auto", folder=model_folder)


def test_a_mode_not_clearly_faster_than_the_assumed_one_or_far_from_fp32_is_not_chosen():
    figures = {"none": {"seconds": 3.0}, "openvino": {"seconds": 1.0, "min_cosine_to_fp32": 0.9999},
               "int8": {"seconds": 0.9, "min_cosine_to_fp32": 0.99}, "bf16": {"error": "exit 1"}}
    assert auto_mode.choose(figures, assumed="openvino") == "openvino"  # int8 only 10 % faster
    figures["int8"]["seconds"] = 0.5
    assert auto_mode.choose(figures, assumed="openvino") == "int8"  # clearly faster
    figures["int8"]["min_cosine_to_fp32"] = 0.9
    assert auto_mode.choose(figures, assumed="openvino") == "openvino"  # its vectors are not fp32's
    assert auto_mode.choose(figures, assumed="bf16") == "openvino"  # the assumed mode failed: the fastest usable
    assert auto_mode.choose({"bf16": {"error": "exit 1"}}, assumed="openvino") is None


@pytest.mark.parametrize(("stored", "expected"), [
    ("embeddinggemma-300m@cbf5a783/openvino", "openvino"),
    ("embeddinggemma-300m@cbf5a783/d512/bf16", "bf16"),
    ("embeddinggemma-300m@cbf5a783", "none"),
    ("use-m-v3", "auto"),  # another model: auto as configured (opening the folder says what is wrong)
])
def test_a_filled_data_folder_keeps_the_mode_its_passages_were_embedded_with(tmp_path, stored, expected):
    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")
    assert settled_quantize(settings).quantize == "auto"  # no data folder yet: measured
    store = SqlitePassageStore(settings.data_dir / "store.sqlite")
    store.set_meta("model_id", stored)
    store.close()
    assert settled_quantize(settings).quantize == expected
    assert settled_quantize(settings.model_copy(update={"quantize": "int8"})).quantize == "int8"  # explicit: kept
