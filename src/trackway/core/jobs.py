"""``PeriodicJob``: a background pass every few seconds, in every process, claimed in the database.

The cart outcome, erasure, event retention and quarantine retention jobs keep no state in
a process: each transaction of a pass claims its work with row locks, so any number of
processes may run them and a restart loses nothing. This only schedules the passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class PeriodicJob:
    """``run_pass()`` every ``interval`` seconds until closed (``0``: never); ``wake()`` runs
    one now. A failed pass is logged by its exception's class (a database error's text may
    quote values) and tried again at the next tick."""

    def __init__(self, name: str, run_pass: Callable[[], Awaitable[object]], interval: float) -> None:
        self._name = name
        self._run_pass = run_pass
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()

    def start(self) -> None:
        if self._interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"trackway-{self._name}")

    def wake(self) -> None:
        """Run a pass soon, not at the next tick (a new erasure was asked for)."""
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                await self._run_pass()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database away, a bug: the next pass tries again
                log.warning("%s pass failed: %s", self._name, type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._interval)

    async def close(self) -> None:
        """Stop between transactions or mid-pass: an interrupted transaction commits nothing."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
