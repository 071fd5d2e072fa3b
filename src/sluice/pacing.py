"""Pacing: a waiting token bucket, shared by the REST source's rate limit (requests per second) and the Faker
producer's rate (records per second, taken a chunk at a time).

>>> clock = FakeClock()
>>> bucket = TokenBucket(100.0, burst=10, clock=clock.now, sleep=clock.sleep)
>>> for _ in range(10):
...     _ = bucket.acquire(10)
>>> round(clock.t, 3)  # 100 tokens at 100 per second, a first burst of 10 free
0.9
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """At most ``rate`` tokens per second on average, bursts of up to ``burst`` (default: max(1, rate)).

    The classic token bucket: tokens accrue at ``rate`` per second up to ``burst``; :meth:`acquire` takes one,
    sleeping first until one is there. Thread-safe. ``clock`` and ``sleep`` are injectable for tests. (The
    ``limits`` library, used by the data API, answers "allowed or not" per window and never waits, which a
    client pacing its own requests would have to wrap in a polling loop; this is the waiting form.)
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 requests per second")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.clock, self.sleep = clock, sleep
        self.tokens = self.burst
        self.at = clock()
        self.lock = threading.Lock()

    def acquire(self, n: int = 1) -> float:
        """Take ``n`` tokens, waiting for them; returns the seconds waited."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            wait = 0.0 if self.tokens >= n else (n - self.tokens) / self.rate
            self.tokens -= n  # may go below 0: the wait pays for it, and later callers queue behind
            if wait > 0:
                self.sleep(wait)
            return wait


class FakeClock:
    """A clock that moves only when slept on, for tests and examples of :class:`TokenBucket`."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
