"""What this CPU is, for the things that depend on it: compiled models and measured choices are kept per CPU.

A model compiled for one CPU (OpenVINO picks kernels by instruction set: AVX2, AVX-512, AMX) must not be
loaded on another, and a choice measured on one (``QA_QUANTIZE=auto``) says nothing about another; a
cache folder copied between machines, or baked into an image, would otherwise carry them over.
"""

from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def cpu_description() -> tuple[str, frozenset[str]]:
    """The CPU's model name and its feature flags (``/proc/cpuinfo``; elsewhere the platform's name only)."""
    model, flags = platform.processor() or platform.machine(), frozenset()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key in ("flags", "Features"):  # x86, ARM
                flags = frozenset(value.split())
            if flags and key == "":  # the end of the first processor's block
                break
    except OSError:
        pass
    return model, flags


@lru_cache(maxsize=1)
def cpu_signature() -> str:
    """12 hex digits naming this CPU's model and feature flags (the same on every machine of that kind)."""
    model, flags = cpu_description()
    text = f"{platform.machine()}|{model}|{' '.join(sorted(flags))}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]
