"""Apps under each configuration, one sequence played on each, snapshots compared.

A configuration is a database (SQLite, PostgreSQL) and a write path: ``per-batch``
(``TRACKWAY_GROUP_COMMIT=false``: one transaction per request), ``group`` (group commit,
the default: plain Tracardi batches take the bulk path) or ``fallback`` (group commit whose
every transaction of more than one batch fails once, so its batches are written one by one,
as after a real failure). Each app is built once and its database emptied between sequences.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from tests.conftest import ADMIN_TOKEN
from tests.differential.generator import Sequence
from tests.differential.player import all_differences, ensure_sources, first_difference, play, reset, snapshot
from trackway.app import create_app
from trackway.core.group_commit import GroupCommitWriter, Pending
from trackway.settings import Settings


@dataclass(frozen=True)
class Config:
    database: str  # "sqlite" or "postgresql"
    path: str  # "per-batch", "group" or "fallback"

    @property
    def name(self) -> str:
        return f"{self.database}/{self.path}"


@dataclass
class Running:
    config: Config
    app: FastAPI
    client: httpx.AsyncClient


_original_write = GroupCommitWriter._write


async def _write_failing_groups(self: GroupCommitWriter, group: list[Pending]) -> None:
    """``GroupCommitWriter._write`` as if the transaction of every group of more than one request
    failed (a rolled-back transaction leaves nothing) when the writer is marked
    ``diff_fail_groups``: the writer's real failure path then writes them one by one."""
    if getattr(self, "diff_fail_groups", False) and len(group) > 1:
        self.diff_failed_groups = getattr(self, "diff_failed_groups", 0) + 1  # type: ignore[attr-defined]
        await self._one_by_one(group)
        return
    await _original_write(self, group)


_hooked = 0


@contextlib.contextmanager
def fallback_hook() -> Iterator[None]:
    """``GroupCommitWriter._write`` replaced while a ``fallback`` app runs (harmless for the
    writers not marked ``diff_fail_groups``), and put back after the last one."""
    global _hooked
    if _hooked == 0:
        GroupCommitWriter._write = _write_failing_groups  # type: ignore[method-assign]
    _hooked += 1
    try:
        yield
    finally:
        _hooked -= 1
        if _hooked == 0:
            GroupCommitWriter._write = _original_write  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def running(config: Config, database_url: str) -> AsyncIterator[Running]:
    settings = Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        source_cache_seconds=0,
        db_pool_size=20,
        # A deployment knob, not a write-path rule: off, each of a snapshot's many small reads
        # saves the three round trips of checking its pooled connection.
        db_pool_pre_ping=False,
        group_commit=config.path != "per-batch",
    )
    app = create_app(settings)
    hook = fallback_hook() if config.path == "fallback" else contextlib.nullcontext()
    with hook:
        async with app.router.lifespan_context(app):
            if config.path == "fallback":
                app.state.services.writer.diff_fail_groups = True
            await ensure_sources(app)
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                yield Running(config, app, client)


async def play_and_snapshot(run: Running, sequence: Sequence) -> dict[str, Any]:
    await reset(run.app)
    log = await play(run.client, sequence)
    return await snapshot(run.client, run.app, sequence, log)


@dataclass
class Divergence:
    seed: int
    reference: str
    other: str
    path: str
    ours: Any
    theirs: Any
    sequence: Sequence
    differences: list[str]

    def report(self) -> str:
        return "\n".join(
            [
                f"seed {self.seed}: {self.reference} and {self.other} differ first at {self.path}",
                f"  {self.reference}: {json.dumps(self.ours, sort_keys=True, default=str)[:1500]}",
                f"  {self.other}: {json.dumps(self.theirs, sort_keys=True, default=str)[:1500]}",
                f"  all differing paths ({len(self.differences)}):",
                *(f"    {line}" for line in self.differences[:40]),
                self.sequence.describe(),
            ]
        )


async def compare(runs: list[Running], sequence: Sequence) -> Divergence | None:
    """Play ``sequence`` under every configuration; the first that differs from the first one."""
    found = await compare_all(runs, sequence)
    return found[0] if found else None


async def compare_all(runs: list[Running], sequence: Sequence) -> list[Divergence]:
    """Play ``sequence`` under every configuration; every one that differs from the first one."""
    divergences = []
    # The configurations play at once, each on its own database: their waits on disk overlap.
    snaps = await asyncio.gather(*(play_and_snapshot(run, sequence) for run in runs))
    reference = snaps[0]
    for run, snap in zip(runs[1:], snaps[1:], strict=True):
        found = first_difference(reference, snap)
        if found is not None:
            path, ours, theirs = found
            divergences.append(
                Divergence(
                    sequence.seed,
                    runs[0].config.name,
                    run.config.name,
                    path,
                    ours,
                    theirs,
                    sequence,
                    all_differences(reference, snap),
                )
            )
    return divergences


async def shrink(sequence: Sequence, still_fails: Callable[[Sequence], Awaitable[bool]]) -> Sequence:
    """Drop steps one at a time while the sequence still diverges (a minimal reproduction)."""
    current = sequence
    changed = True
    while changed:
        changed = False
        for step in reversed(current.steps):
            candidate = current.without({step.id})
            if candidate is None or not candidate.steps:
                continue
            if await still_fails(candidate):
                current = candidate
                changed = True
    return current
