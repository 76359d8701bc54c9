"""Per-source rate limits: a token bucket per source, in this process.

A source with ``rate_limit_per_second`` set gets a bucket holding up to ``rate_limit_burst``
tokens, refilled at that rate; each request takes one, and a request that finds none is a
429 with ``Retry-After`` (``RateLimited``). The buckets live beside the source cache
(``SourceDirectory``), which hands them the source it just looked up: a request costs a
clock read, a dictionary lookup and a few float operations, and nothing at all for a
source without a limit.

Per process: with ``--workers N`` (or N servers behind a balancer) a source may send up to
N times its limit in all. Counting in the database would cost every request a round trip;
this limit protects a process from one noisy source, it is not a quota.
"""

from __future__ import annotations

import math
import time
from typing import Final

from trackway.errors import RateLimited

#: Most sources a process keeps buckets for (a bucket is a few dozen bytes).
MAX_BUCKETS: Final = 100_000


class _Bucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = now


def default_burst(rate: float) -> int:
    """One second's worth of requests, at least one."""
    return max(1, math.ceil(rate))


class TokenBuckets:
    """The buckets of one process, by source id."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock

    def take(self, source_id: str, rate: float, burst: int | None) -> None:
        """Take a token from the source's bucket, or raise ``RateLimited`` saying when to retry."""
        now: float = self._clock()  # type: ignore[operator]
        size = burst if burst is not None else default_burst(rate)
        bucket = self._buckets.get(source_id)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._buckets.clear()
            bucket = self._buckets[source_id] = _Bucket(rate, size, now)
        elif bucket.rate != rate or bucket.burst != size:  # the source's limit was changed
            bucket.rate, bucket.burst = rate, size
            bucket.tokens = min(bucket.tokens, float(size))
        tokens = min(float(size), bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if tokens >= 1.0:
            bucket.tokens = tokens - 1.0
            return
        bucket.tokens = tokens
        raise RateLimited(rate=rate, burst=size, retry_after=(1.0 - tokens) / rate)
