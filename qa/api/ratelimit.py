"""Per-key rate limits: at most N requests in any second and M in any minute, per API key.

The generic cell rate algorithm (GCRA, a token bucket kept as one timestamp): each (key, window) has
a theoretical arrival time; a request is admitted when it is no further ahead of now than the window
allows (``limit`` requests at once, then one per ``window / limit``), and a refusal says exactly when the
next request would be admitted (``Retry-After``). Two floats per key and window, no thread, no timer.

Why not pyrate-limiter (MIT, installed for schemathesis): its in-memory bucket keeps one entry per
request in the window (600 per key for 600/min), starts a background leak thread, and answers a bool,
so ``Retry-After`` needs a second query; the twenty lines here give the wait directly and cost under a
microsecond. Limits are kept per server process: each replica counts its own requests.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._tat: dict[tuple[str, float], float] = {}  # (key id, window) -> theoretical arrival time

    def admit(self, key: str, limits: Sequence[tuple[float, float]]) -> float:
        """Count one request of ``key`` against ``limits`` (``(requests, window seconds)``, 0 requests: no
        limit). Returns 0.0 when admitted, else the seconds until it would be (nothing is counted then)."""
        now = self._clock()
        wait, updates = 0.0, []
        for count, window in limits:
            if count <= 0:
                continue
            interval = window / count
            tat = max(self._tat.get((key, window), now), now)
            ahead = tat + interval - now  # how far ahead of now the bucket would be after this request
            if ahead > window + 1e-9:  # (3 x 1/3 is a hair above 1.0 in floating point)
                wait = max(wait, ahead - window)
            updates.append(((key, window), tat + interval))
        if wait > 0:
            return wait
        self._tat.update(updates)
        return 0.0
