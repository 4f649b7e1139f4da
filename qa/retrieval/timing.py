"""Where one search spends its time: milliseconds per named stage (``explain``'s ``timings_ms``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


class StageTimes:
    """Wall-clock milliseconds per stage; a stage entered twice adds up. Cheap enough to run on every
    search (two ``perf_counter`` calls per stage); shown only when asked for."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - started) * 1000.0

    def rounded(self) -> dict[str, float]:
        return {name: round(ms, 3) for name, ms in self.ms.items()}
