"""Handing memory freed after a large forward pass back to the operating system.

A batched forward pass allocates activations of tens of megabytes; glibc keeps the freed pages in
its heap, fragmented, so the resident size of a server creeps up with every new batch shape and
stays there. ``malloc_trim(0)`` returns the free pages (a few milliseconds), so the model thread
calls it after each batch of more than one text (docs/performance.md has the effect on peak memory).
Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return the heap's free pages to the operating system; False where that is not possible."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
