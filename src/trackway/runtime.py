"""Process-wide tuning of the Python runtime for a collector: the garbage collector.

With group commit, the requests of a whole group (their payloads, batches, futures) are
alive at once, so the objects they allocate outlive the youngest GC generation and keep
triggering collections of the older ones. Measured with ``make bench`` (``pg-tracardi``,
64 clients, 1 worker): with CPython's default thresholds (700, 10, 10) the collector took
about 45 % of the server's CPU, 0.46 ms of 0.46 + 0.26 ms per request (1,335 req/s; with
``gc.disable()`` 1,937 req/s at 0.26 ms). Collecting the youngest generation every
100,000 allocations instead of every 700, and the older ones more rarely, gave the same
figures as no collection at all (1,989 req/s), while reference cycles are still freed.
``gc.freeze()`` after startup alone did not help (1,303 req/s): the cost is the young
objects, not the startup heap.

With the raised thresholds the oldest generation is still collected now and then, and a
full collection walked the whole startup heap (the framework, SQLAlchemy's metadata, the
user-agent rules): 44-63 ms pauses, seen as p99 spikes (115 ms in one ``make bench`` run).
So the objects alive once the app has started are frozen (``gc.freeze()``): collections
no longer walk them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Generation 1 and 2 thresholds to go with a raised generation 0 threshold.
OLDER_GENERATIONS = (50, 1000)


@contextmanager
def gc_thresholds(gen0: int) -> Iterator[None]:
    """Freeze what is alive and raise the collector's thresholds while the block runs
    (``gen0`` 0: leave the collector alone)."""
    if gen0 <= 0:
        yield
        return
    before = gc.get_threshold()
    gc.freeze()  # no collect() first: it costs ~50 ms, and startup leaves little garbage
    gc.set_threshold(gen0, *OLDER_GENERATIONS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
