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
- ``TRACKWAY_DIFF_ALL=1``: turn every generator feature on, the known divergences included
  (``KNOWN_DIVERGENCES``): expect failures until the core is fixed;
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
#: on its two write paths today (issue #13). Remove one when the core is fixed: the run then
#: plays it again. ``TRACKWAY_DIFF_ALL=1`` plays them all now.
KNOWN_DIVERGENCES: dict[str, str] = {
    "merged-hint": (
        "A Tracardi profile.id naming a merged profile, with a new session.id: the per-batch "
        "path answers the survivor (design step 1, README), the bulk path (group commit, the "
        "default) makes a brand-new profile; also when its group fails and falls back to one by "
        "one, the same batch gets the survivor. Off: hints come only from answers that name "
        "Tracardi-made profiles, which nothing can merge. (test_merged_hint.py: xfail.)"
    ),
    "several-people": (
        "Plain Tracardi batches of several people in one group: the bulk path moves every "
        "touched profile's last_seen_at and every touched session's last_event_at to the "
        "group's latest receive time; the per-batch path to each batch's own. The same for one "
        "visitor whose group holds a saveSession:false batch (it stores no event in the "
        "session, yet its receive time moves the session's clock). Off: concurrent steps never "
        "send requests for different Tracardi people, nor saveSession:false ones, at once."
    ),
    "new-visitor-burst": (
        "Several first requests of one new Tracardi visitor (a new session.id, no live "
        "profile.id) in one group: the bulk path creates the profile with last_seen_at = the "
        "first batch's receive time and never moves it for the group's later batches; the "
        "per-batch path leaves it at the latest. Off: concurrent Tracardi requests without a "
        "live hint name a known session."
    ),
    "resend-elsewhere": (
        "Tracardi event ids sent again in a new session (re-queued after the session rotated), "
        "all of them duplicates: the per-batch path opens the session counting the events it "
        "expected and never corrects the count (event_count 3, no event in it); the bulk path "
        "counts the events it stored (0). Here the per-batch path is the wrong one. Off: "
        "resends keep their session."
    ),
}

ENABLED = set(filter(None, os.environ.get("TRACKWAY_DIFF_ENABLE", "").split(",")))
assert ENABLED <= set(KNOWN_DIVERGENCES), f"unknown features: {ENABLED - set(KNOWN_DIVERGENCES)}"
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
