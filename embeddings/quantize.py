"""Reduced-precision inference for a sentence-transformers model on the CPU: bf16 or int8.

``bf16``: every weight in bfloat16, matmuls on the CPU's native bf16 units (AVX512-BF16 / AMX), the
pooling and Dense heads in fp32. The bf16 weights are converted once from the verified fp32 file into
a sibling folder (``<name>@<sha8>.bf16``, in a child process, so a server never holds both copies) and
loaded from there: resident memory is about half of fp32's. On CPUs without native bf16 the same
arithmetic is emulated and slow, so ``auto`` (the default) picks bf16 only where it is native and int8
elsewhere. Vectors are at cosine >= 0.998 of fp32.

``int8``: the transformer's attention projections (q, k, v, o) and the MLP's gate and up projections are
replaced by dynamically quantised ``Linear`` layers: weights int8 with one scale per output channel,
activations quantised on the fly per batch, int8 matmuls through FBGEMM/oneDNN. Built locally from
the verified fp32 weights at load time: nothing extra is downloaded or stored.

Kept in fp32 by int8: the MLP ``down_proj`` of every layer (its input, after the gated GELU, carries
outliers that a single per-tensor activation scale cannot hold; quantising it costs 0.03-0.08 of
cosine against fp32 on short sentences, spread over all 24 layers), the Dense heads after pooling
(tiny), embeddings and norms. With that the vectors stay at cosine ~0.99 of fp32.

``openvino`` (:mod:`embeddings.openvino`, its own backend) runs the whole model compiled with OpenVINO,
without torch at run time; ``auto`` picks it wherever OpenVINO runs. The modes above are torch's
(:data:`TORCH_MODES`), for ``QA_SENTENCE_VECTORS=contextual`` (which pools torch's token embeddings)
and for comparison.

The vectors differ slightly from fp32, so the model id gets a ``/<mode>`` suffix and caches and
indexes never mix them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)

Quantize = Literal["auto", "none", "int8", "bf16", "openvino"]
REDUCED_MODES: tuple[str, ...] = ("int8", "bf16", "openvino")  # each gets "/<mode>" in the model id
QUANTIZE_MODES: tuple[str, ...] = ("none", *REDUCED_MODES)
TORCH_MODES: tuple[str, ...] = ("none", "int8", "bf16")  # run by torch (SentenceTransformerEmbedder)


def model_id_suffix(mode: str) -> str:
    """What ``mode`` adds to a model id (``""`` for fp32)."""
    check_mode(mode)
    return "" if mode == "none" else f"/{mode}"


def check_mode(mode: str) -> str:
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"unknown quantisation {mode!r}: use one of auto, {', '.join(QUANTIZE_MODES)}")
    return mode


def native_bf16() -> bool:
    """Whether this CPU does bf16 matmuls natively (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


def openvino_available() -> bool:
    """Whether OpenVINO's CPU plugin can run here (the package imports on an x86-64 or ARM64 CPU)."""
    import importlib.util
    import platform

    return (platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64")
            and importlib.util.find_spec("openvino") is not None)


def resolve_mode(mode: str, *, openvino: bool = True, folder: Path | None = None, threads: int = 2) -> str:
    """``auto`` → the mode measured fastest on this CPU for the model in ``folder`` (see
    :mod:`embeddings.auto_mode`; ``openvino=False`` leaves OpenVINO out); without a folder, or where
    nothing could be measured, ``openvino`` where it runs (and is allowed), else ``bf16`` where the CPU has
    native bf16, else ``int8``. Other modes are checked and kept."""
    if mode == "auto":
        if folder is not None:
            from .auto_mode import measured_mode

            measured = measured_mode(folder, openvino=openvino, threads=threads)
            if measured is not None:
                return measured
        return assumed_mode(openvino)
    return check_mode(mode)


def assumed_mode(openvino: bool = True) -> str:
    """What ``auto`` means without a measurement: ``openvino`` where it runs (and is allowed), else ``bf16``
    where the CPU has native bf16, else ``int8``."""
    if openvino and openvino_available():
        return "openvino"
    return "bf16" if native_bf16() else "int8"


# --------------------------------------------------------------------------- bf16 weights

_WEIGHTS = "model.safetensors"
_DERIVED_MARKER = ".derived.json"


def derived_folder(folder: Path, digest: str, kind: str, converter: str, version: int = 1) -> Path:
    """``<folder>@<sha8>.<kind>`` next to ``folder``: what ``converter`` (``"module:function"``, called as
    ``function(source, target)``) makes from ``folder``, whose weights have sha256 ``digest``; made on
    first use and again whenever ``digest`` or the converter's ``version`` changes.

    The conversion runs in a child process (it holds the fp32 weights and the result at once) and
    writes a temporary folder that is renamed into place, so a crash leaves nothing half-written.
    Raises ``OSError`` when it fails or the folder cannot be written.
    """
    folder = Path(folder)
    target = folder.parent / f"{folder.name}@{digest[:8]}.{kind}"
    if _derived_from(target) == (digest, version):
        return target
    log.info("converting %s to %s in %s (once)", folder.name, kind, target)
    scratch = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    module, _, function = converter.partition(":")
    try:
        done = subprocess.run([sys.executable, "-c", f"import sys; from {module} import {function}; "
                               f"{function}(*sys.argv[1:])", str(folder), str(scratch)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise OSError(f"{kind} conversion of {folder} failed: {done.stderr.strip()[-800:]}")
        (scratch / _DERIVED_MARKER).write_text(
            json.dumps({"source": str(folder.resolve()), "source_sha256": digest, "version": version}) + "\n",
            encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def bf16_folder(folder: Path, digest: str) -> Path:
    """A model folder like ``folder`` whose transformer weights are bf16 (see :func:`derived_folder`)."""
    return derived_folder(folder, digest, "bf16", "embeddings.quantize:convert_bf16")


def _derived_from(target: Path) -> tuple[str, int] | None:
    """(source sha256, converter version) recorded in ``target``'s marker."""
    try:
        marker = json.loads((target / _DERIVED_MARKER).read_text(encoding="utf-8"))
        return marker.get("source_sha256"), int(marker.get("version", 1))
    except (OSError, ValueError, TypeError):
        return None


def convert_bf16(source: str, target: str) -> None:
    """Write ``target``: ``source``'s weights in bf16, every other file linked to ``source``'s."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, dst = Path(source).resolve(), Path(target)
    for entry in src.iterdir():
        if entry.name not in (_WEIGHTS, ".verified"):
            (dst / entry.name).symlink_to(entry)
    with safe_open(str(src / _WEIGHTS), framework="pt") as weights:
        tensors = {name: weights.get_tensor(name).to(torch.bfloat16).contiguous() for name in weights.keys()}
    save_file(tensors, str(dst / _WEIGHTS), metadata={"format": "pt"})


def keep_heads_fp32(model) -> None:
    """Run everything after ``model``'s transformer (pooling, Dense heads, normalisation) in fp32: the
    token embeddings leave the bf16 transformer as fp32."""
    import torch

    modules = list(model)
    for module in modules[1:]:
        module.float()

    def to_fp32(_module, _inputs, features):
        tokens = features.get("token_embeddings")
        if tokens is not None and tokens.dtype != torch.float32:
            features["token_embeddings"] = tokens.float()
        return features

    modules[0].register_forward_hook(to_fp32)


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
