"""Issue #13: one answer with or without group commit, on SQLite and on PostgreSQL.

Seeded random sequences of requests in all four dialects (``generator.py``) are played
against each configuration (``harness.py``), and what the read API shows afterwards
(``player.py``'s canonical snapshot) must be the same everywhere.

Environment:

- ``TRACKWAY_DIFF_SEQUENCES``: how many sequences (default 100, in chunks of 20 per test);
- ``TRACKWAY_DIFF_FIRST_SEED``: the first seed (default 0);
- ``TRACKWAY_DIFF_LENGTH``: steps per sequence (default 12);
- ``TRACKWAY_DIFF_FALLBACK=1``: also play each sequence under group commit whose multi-batch
  transactions fail once (the one-by-one fallback), on both databases;
- ``TRACKWAY_DIFF_ALL=1``: turn every generator feature on, any known divergence included
  (``KNOWN_DIVERGENCES``, empty today);
- ``TRACKWAY_DIFF_ENABLE=merged-hint,...``: turn on only the named ones of them;
- ``TRACKWAY_DIFF_SHRINK=1``: on a divergence, drop steps while it persists and report the
  minimal sequence.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
from pathlib import Path

import pytest

from tests.differential.generator import generate
from tests.differential.harness import Config, Divergence, Running, compare, compare_all, running, shrink

SEQUENCES = int(os.environ.get("TRACKWAY_DIFF_SEQUENCES", "100"))
FIRST_SEED = int(os.environ.get("TRACKWAY_DIFF_FIRST_SEED", "0"))
LENGTH = int(os.environ.get("TRACKWAY_DIFF_LENGTH", "12"))
CHUNK = 20

#: Generator features switched off in the default run because the core answers differently
#: with and without group commit; add one (with the issue's words) only while a fix is under
#: way. The four classes this test found (a merged hint with a new session, a group's latest
#: time stamped on everyone in it, a burst of first hits keeping the first time, duplicates
#: counted in a new session) are gone with the one write path; ``test_known_divergences.py``
#: and ``test_merged_hint.py`` keep each as a small test. The generator still knows them by
#: name: "merged-hint", "several-people", "new-visitor-burst", "resend-elsewhere".
KNOWN_DIVERGENCES: dict[str, str] = {}
FEATURES = {"merged-hint", "several-people", "new-visitor-burst", "resend-elsewhere"}

ENABLED = set(filter(None, os.environ.get("TRACKWAY_DIFF_ENABLE", "").split(",")))
assert ENABLED <= FEATURES, f"unknown features: {ENABLED - FEATURES}"
DISABLED = (
    frozenset() if os.environ.get("TRACKWAY_DIFF_ALL") == "1" else frozenset(KNOWN_DIVERGENCES) - ENABLED
)

PATHS = ["per-batch", "group"]
if os.environ.get("TRACKWAY_DIFF_FALLBACK") == "1":
    PATHS.append("fallback")
CONFIGS = [Config(database, path) for database in ("sqlite", "postgresql") for path in PATHS]


@contextlib.asynccontextmanager
async def all_configs(sqlite_template: Path, pg_urls: list[str], tmp_path: Path):  # type: ignore[no-untyped-def]
    async with contextlib.AsyncExitStack() as stack:
        runs: list[Running] = []
        free_pg = iter(pg_urls)
        for config in CONFIGS:
            if config.database == "sqlite":
                path = tmp_path / f"{config.path}.db"
                shutil.copy(sqlite_template, path)
                url = f"sqlite+aiosqlite:///{path}"
            else:
                url = next(free_pg)
            runs.append(await stack.enter_async_context(running(config, url)))
        yield runs


async def minimal(runs: list[Running], divergence: Divergence) -> str:
    async def still_fails(candidate):  # type: ignore[no-untyped-def]
        return await compare(runs, candidate) is not None

    smaller = await shrink(divergence.sequence, still_fails)
    found = await compare(runs, smaller)
    return f"MINIMAL:\n{found.report() if found else smaller.describe()}"


@pytest.mark.parametrize("chunk", range(math.ceil(SEQUENCES / CHUNK)))
async def test_every_configuration_shows_the_same(
    chunk: int, sqlite_template: Path, pg_urls: list[str], tmp_path: Path
) -> None:
    seeds = range(FIRST_SEED + chunk * CHUNK, FIRST_SEED + min(SEQUENCES, (chunk + 1) * CHUNK))
    failures: list[Divergence] = []
    async with all_configs(sqlite_template, pg_urls, tmp_path) as runs:
        for seed in seeds:
            failures.extend(await compare_all(runs, generate(seed, LENGTH, DISABLED)))
        if failures and os.environ.get("TRACKWAY_DIFF_SHRINK") == "1":
            pytest.fail(await minimal(runs, failures[0]), pytrace=False)
    if failures:
        others = ", ".join(f"{d.seed} ({d.other} at {d.path})" for d in failures[1:])
        if DISABLED:
            others += f"\n(generator features off: {', '.join(sorted(DISABLED))})"
        pytest.fail(f"{failures[0].report()}\nother diverging seeds: {others or 'none'}", pytrace=False)
