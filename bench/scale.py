"""``make bench-scale``: does Trackway keep its ingest rate and read latency on a big database?

1. ``empty``: Trackway on a fresh PostgreSQL database (1 worker), the Tracardi traffic of
   ``make bench`` (``pg-tracardi``), ``--duration`` seconds: the reference ingest rate.
2. Preloads ``trackway_scale`` with ``--events`` events over ``--profiles`` profiles
   (``bench/preload.py``), and checks that its indexes and constraints match the migrated schema.
3. ``scale``: the same load on it; returning visitors are drawn from the preloaded visits, so
   lookups and updates land on old rows too. The ingest rate must stay within ``--min-ratio``
   (85 %) of the empty figure.
4. ``read``: ``GET /api/profiles/{id}/events?limit=100`` once for each of ``--read-profiles``
   random preloaded profiles, ``--read-concurrency`` at a time; target p99 < ``--read-p99-ms`` (20).
5. EXPLAIN (ANALYZE, BUFFERS) of the read query for the sampled profile with the most events and
   for a median one, to show which index serves it (this script never changes the schema).
6. ``queries``: the read side's questions (``bench/queries.py``): a 4-step funnel, a daily metric of
   each type and a segment over 30 days (p50 < 1 s, p99 < 2 s), people by a trait and events by
   type and day (p99 < 100 ms), one at a time, ``--query-reps`` times each.

``--only queries`` runs step 6 alone on the preloaded database (preloading it if needed).

Both ingest runs check that the database gained exactly the acknowledged events. Prints a summary,
writes ``bench/results/scale-latest.json``, exits non-zero when a check failed or a target was missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import harness
import preload
import queries
from harness import fmt

EMPTY_DATABASE = "trackway_bench"
SCALE_DATABASE = "trackway_scale"
VISITORS_SAMPLE = 20_000
WARMUP_READS = 20

#: What ``GET /api/profiles/{id}/events`` runs (``trackway.db.queries``): the canonical id, then a page.
CANONICAL_SQL = "SELECT profiles.merged_into FROM profiles WHERE profiles.id = $1"
EVENTS_SQL = (
    "SELECT events.id, events.source_id, events.profile_id, events.session_id, events.type, events.time, "
    "events.received_at, events.properties, events.context, events.dedup_key FROM events "
    "WHERE events.profile_id = $1 ORDER BY events.time, events.id LIMIT $2"
)


@dataclass
class IngestResult:
    name: str
    database: str
    #: Who the returning visitors are: "learned" from responses during the run (like the empty run),
    #: or "history": drawn from the preloaded visits, so lookups and updates hit old rows.
    visitors: str = "learned"
    events_before: int = 0
    events_after: int = 0
    elapsed_s: float = 0.0
    responses_2xx: int = 0
    non_2xx: int = 0
    errors: int = 0
    acked_events: int = 0
    requests_per_s: float = 0.0
    events_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    generator_us_per_request: float | None = None
    server_cpu_pct: float | None = None
    postgres_cpu_pct: float | None = None
    host_cpu_pct: float | None = None
    #: PostgreSQL's side, per 2xx request: WAL written (KB) and full-page images in it (the whole
    #: cluster, from pg_stat_wal), and blocks each table and index had to read from outside shared
    #: buffers (pg_statio_user_tables/indexes; the busiest relations).
    wal_kb_per_request: float | None = None
    wal_fpi_per_request: float | None = None
    block_reads_per_request: dict[str, float] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    ok: bool = False
    check: str = "not run"


@dataclass
class ReadResult:
    """One pass of reads: each sampled profile's first page of events, once."""

    profiles: int = 0
    concurrency: int = 0
    reads_ok: int = 0
    non_2xx: int = 0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    #: CPU per read of the server process and of PostgreSQL: where the time goes.
    server_cpu_ms_per_read: float | None = None
    postgres_cpu_ms_per_read: float | None = None
    events_per_profile: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)


def log(text: str) -> None:
    print(text, flush=True)


async def count_events(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def fill_ingest(result: IngestResult, load: harness.Load) -> None:
    result.elapsed_s = load.elapsed_s
    result.responses_2xx, result.non_2xx, result.errors = load.ok, load.non_2xx, load.errors
    result.acked_events = load.events
    if load.elapsed_s > 0:
        result.requests_per_s = load.ok / load.elapsed_s
        result.events_per_s = load.events / load.elapsed_s
    result.p50_ms, result.p99_ms = load.raw["latency_ms"]["p50"], load.raw["latency_ms"]["p99"]
    if load.responses:
        result.generator_us_per_request = 1e6 * load.wrk_cpu_s / load.responses
    if load.window_s > 0:
        result.server_cpu_pct = 100 * load.server_cpu_s / load.window_s
        result.postgres_cpu_pct = 100 * load.postgres_cpu_s / load.window_s
        result.host_cpu_pct = 100 * load.host_busy_s / load.window_s
    result.samples = list(load.raw["samples"])
    gained = result.events_after - result.events_before
    if gained == result.acked_events:
        result.ok, result.check = True, f"OK: the database gained exactly the {gained} acknowledged events"
    else:
        result.check = (
            f"MISMATCH: the database gained {gained} events, {result.acked_events} were acknowledged"
        )
        if not load.drained:
            result.check += " (wrk did not drain)"


def ingest_summary(r: IngestResult) -> str:
    return f"{fmt(r.requests_per_s)} req/s, p50 {fmt(r.p50_ms, 1)} ms, p99 {fmt(r.p99_ms, 1)} ms; {r.check}"


def read_summary(r: ReadResult) -> str:
    return (
        f"{r.concurrency} at a time: p50 {fmt(r.p50_ms, 1)} ms, p90 {fmt(r.p90_ms, 1)} ms, "
        f"p99 {fmt(r.p99_ms, 1)} ms, max {fmt(r.max_ms, 1)} ms; CPU per read: server "
        f"{fmt(r.server_cpu_ms_per_read, 2)} ms, postgres {fmt(r.postgres_cpu_ms_per_read, 2)} ms"
    )


def ingest_load(server: harness.Server, args: argparse.Namespace, visitors_file: Path | None) -> harness.Load:
    traffic: dict[str, Any] = {"tracardi_source": harness.SOURCE_IDS["tracardi"], "seed": args.seed}
    if visitors_file is not None:
        traffic["visitors_file"] = str(visitors_file)
    return harness.run_wrk(
        server.base,
        duration=args.duration,
        connections=args.concurrency,
        threads=1,
        server_pid=server.pid,
        traffic=traffic,
        max_requests=args.max_requests,
    )


@dataclass(frozen=True)
class IoSnapshot:
    wal_bytes: int
    wal_fpi: int
    block_reads: dict[str, int]


async def io_snapshot(url: str) -> IoSnapshot:
    conn = await asyncpg.connect(url)
    try:
        wal = await conn.fetchrow("SELECT wal_bytes, wal_fpi FROM pg_stat_wal")
        rows = await conn.fetch(
            "SELECT relname AS name, coalesce(heap_blks_read, 0) AS n FROM pg_statio_user_tables "
            "UNION ALL SELECT indexrelname, coalesce(idx_blks_read, 0) FROM pg_statio_user_indexes"
        )
    finally:
        await conn.close()
    return IoSnapshot(int(wal["wal_bytes"]), int(wal["wal_fpi"]), {r["name"]: int(r["n"]) for r in rows})


def fill_io(result: IngestResult, before: IoSnapshot, after: IoSnapshot) -> None:
    if not result.responses_2xx:
        return
    n = result.responses_2xx
    result.wal_kb_per_request = (after.wal_bytes - before.wal_bytes) / 1024 / n
    result.wal_fpi_per_request = (after.wal_fpi - before.wal_fpi) / n
    reads = {name: (count - before.block_reads.get(name, 0)) / n for name, count in after.block_reads.items()}
    busiest = sorted(reads.items(), key=lambda item: -item[1])[:5]
    result.block_reads_per_request = {name: round(value, 2) for name, value in busiest if value > 0}


def io_summary(r: IngestResult) -> str:
    reads = ", ".join(f"{name} {value:g}" for name, value in r.block_reads_per_request.items()) or "none"
    return (
        f"WAL {fmt(r.wal_kb_per_request, 1)} KB/request ({fmt(r.wal_fpi_per_request, 2)} full-page images); "
        f"blocks read from outside shared buffers per request: {reads}"
    )


def ingest_run(
    name: str, database: str, args: argparse.Namespace, tmp: Path, visitors_file: Path | None = None
) -> IngestResult:
    """One server start, one load, one stop; the events and I/O counted around it."""
    result = IngestResult(name, database, visitors="history" if visitors_file else "learned")
    url = harness.pg_url(args.pg_url, database)
    env = harness.trackway_env(harness.pg_url(args.pg_url, database, "postgresql+asyncpg"), "-")
    result.events_before = asyncio.run(count_events(url))
    port = harness.free_port()
    with harness.running_server(
        harness.trackway_command(port, 1), env, port, "/readyz", tmp / f"{name}.log"
    ) as server:
        before = asyncio.run(io_snapshot(url))
        load = ingest_load(server, args, visitors_file)
    # The server has stopped: its commits are all in, and its backends have reported their stats.
    after = asyncio.run(io_snapshot(url))
    result.events_after = asyncio.run(count_events(url))
    fill_ingest(result, load)
    fill_io(result, before, after)
    log(f"  {ingest_summary(result)}")
    log(f"  {io_summary(result)}")
    return result


def migrate_reference(args: argparse.Namespace) -> None:
    """A freshly migrated, empty ``trackway_bench``: the schema the preload must match."""
    asyncio.run(harness.pg_recreate(args.pg_url, EMPTY_DATABASE))
    env = harness.trackway_env(harness.pg_url(args.pg_url, EMPTY_DATABASE, "postgresql+asyncpg"), "-")
    harness.create_source(env, "tracardi")


def run_empty(args: argparse.Namespace, tmp: Path) -> IngestResult:
    log(
        f"== empty: Trackway on a fresh database, 1 worker, {args.concurrency} connections, "
        f"{args.duration:g} s"
    )
    migrate_reference(args)
    return ingest_run("empty", EMPTY_DATABASE, args, tmp)


async def reference_signature(args: argparse.Namespace) -> list[str]:
    """The schema of a freshly migrated database (the empty run's), to compare the preload with."""
    conn = await asyncpg.connect(harness.pg_url(args.pg_url, EMPTY_DATABASE))
    try:
        return await preload.schema_signature(conn)
    finally:
        await conn.close()


async def scale_state(url: str) -> tuple[list[str], int]:
    conn = await asyncpg.connect(url)
    try:
        return await preload.schema_signature(conn), int(await conn.fetchval("SELECT count(*) FROM events"))
    except asyncpg.UndefinedTableError:
        return [], 0
    finally:
        await conn.close()


async def prewarm(url: str) -> tuple[int, float]:
    """Read every table and index of the database once, into the operating system's cache.

    A server that has been running holds its working set in memory; a database copied in
    minutes before does too, but one reused hours later, after other work on the machine,
    reads it from disk: the same read query took 2.6 ms or 10-20 ms at p50 depending on what
    the machine did before. Reading it all first (``pg_prewarm(..., 'read')``, which leaves
    shared buffers alone) makes runs comparable. Returns (bytes read, seconds).
    """
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        started = time.monotonic()
        relations = await conn.fetch(
            """
            SELECT c.oid, pg_relation_size(c.oid) AS size FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i', 't')
            """
        )
        for relation in relations:
            await conn.execute("SELECT pg_prewarm($1::oid::regclass, 'read')", relation["oid"])
        return sum(int(r["size"]) for r in relations), time.monotonic() - started
    finally:
        await conn.close()


def prepare_scale(args: argparse.Namespace) -> dict[str, Any]:
    """Preload ``trackway_scale`` (or, with --reuse, take it as it is when it is big enough),
    then read it into the operating system's cache (``prewarm``)."""
    prepared = _prepare_scale(args)
    size, seconds = asyncio.run(prewarm(harness.pg_url(args.pg_url, SCALE_DATABASE)))
    log(f"  prewarmed: {size / 2**30:.1f} GiB read into the OS cache in {seconds:.0f} s")
    return {**prepared, "prewarm_bytes": size, "prewarm_s": seconds}


def _prepare_scale(args: argparse.Namespace) -> dict[str, Any]:
    url = harness.pg_url(args.pg_url, SCALE_DATABASE)
    reference = asyncio.run(reference_signature(args))
    if args.reuse:
        try:
            signature, events = asyncio.run(scale_state(url))
        except (OSError, asyncpg.PostgresError):
            signature, events = [], 0
        if signature == reference and events >= args.events:
            log(f"== preload: reusing {SCALE_DATABASE} ({events} events)")
            return {"reused": True, "events": events}
        log(
            f"== preload: {SCALE_DATABASE} cannot be reused ({events} events, schema "
            f"{'matches' if signature == reference else 'differs'}): preloading"
        )
    log(f"== preload: {args.events} events over {args.profiles} profiles into {SCALE_DATABASE}")
    asyncio.run(harness.pg_recreate(args.pg_url, SCALE_DATABASE))
    env = harness.trackway_env(harness.pg_url(args.pg_url, SCALE_DATABASE, "postgresql+asyncpg"), "-")
    harness.create_source(env, "tracardi")
    timings = asyncio.run(
        preload.preload(
            url,
            harness.SOURCE_IDS["tracardi"],
            n_profiles=args.profiles,
            n_events=args.events,
            seed=args.seed,
            log=log,
        )
    )
    signature, events = asyncio.run(scale_state(url))
    if signature != reference:
        missing, extra = sorted(set(reference) - set(signature)), sorted(set(signature) - set(reference))
        raise RuntimeError(
            f"preloaded schema differs from the migrated one: missing {missing}, extra {extra}"
        )
    log(f"  done in {timings['total_s']:.0f} s; {events} events; indexes and constraints as migrated")
    return {"reused": False, "events": events, **timings}


async def sample_profiles(url: str, n_visitors: int, n_read: int, seed: int) -> tuple[list[str], list[str]]:
    """("profile_id client_key" of recent visits, profile ids to read), both random."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT setseed($1)", (seed % 1000) / 1000)
        visits = await conn.fetch(
            "SELECT profile_id, client_key FROM sessions TABLESAMPLE SYSTEM (5) ORDER BY random() LIMIT $1",
            n_visitors,
        )
        profiles = await conn.fetch(
            "SELECT id FROM profiles WHERE merged_into IS NULL ORDER BY random() LIMIT $1", n_read
        )
    finally:
        await conn.close()
    return [f"{r['profile_id']} {r['client_key']}" for r in visits], [r["id"] for r in profiles]


async def event_counts(url: str, profile_ids: list[str]) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT profile_id, count(*) FROM events WHERE profile_id = ANY($1::text[]) GROUP BY 1",
            profile_ids,
        )
    finally:
        await conn.close()
    return {r["profile_id"]: int(r["count"]) for r in rows}


async def explain(url: str, profile_id: str, limit: int) -> str:
    conn = await asyncpg.connect(url)
    try:
        parts = []
        for sql, params in ((CANONICAL_SQL, (profile_id,)), (EVENTS_SQL, (profile_id, limit + 1))):
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
            parts.append("\n".join(r[0] for r in rows))
        return "\n\n".join(parts)
    finally:
        await conn.close()


def read_pass(
    server: harness.Server,
    ids: list[str],
    concurrency: int,
    token: str,
    args: argparse.Namespace,
    tmp: Path,
    *,
    quiet: bool = False,
) -> ReadResult:
    read_file = tmp / f"read-{concurrency}-{len(ids)}.txt"
    read_file.write_text("\n".join(ids) + "\n")
    reads = harness.run_wrk(
        server.base,
        duration=300,
        connections=concurrency,
        threads=1,
        server_pid=server.pid,
        traffic={
            "read_file": str(read_file),
            "admin_token": token,
            "threads": 1,
            "read_limit": args.read_limit,
        },
        max_requests=len(ids),
    )
    latency = reads.raw["latency_ms"]
    result = ReadResult(profiles=len(ids), concurrency=concurrency)
    result.reads_ok = int(reads.raw["reads_ok"])
    result.non_2xx = reads.non_2xx + int(reads.raw["unreadable"]) + reads.errors
    result.p50_ms, result.p90_ms, result.p99_ms = latency["p50"], latency["p90"], latency["p99"]
    result.max_ms = latency["max"]
    if reads.responses:
        result.server_cpu_ms_per_read = 1000 * reads.server_cpu_s / reads.responses
        result.postgres_cpu_ms_per_read = 1000 * reads.postgres_cpu_s / reads.responses
    result.samples = list(reads.raw["samples"])
    counts = asyncio.run(event_counts(harness.pg_url(args.pg_url, SCALE_DATABASE), ids))
    sizes = sorted(counts.get(pid, 0) for pid in ids)
    result.events_per_profile = {
        "min": sizes[0],
        "median": sizes[len(sizes) // 2],
        "p99": sizes[max(0, int(len(sizes) * 0.99) - 1)],
        "max": sizes[-1],
    }
    if not quiet:
        log(f"  {read_summary(result)}; {result.reads_ok}/{len(ids)} answered 200 with items")
        log(f"  events per profile read: {result.events_per_profile}")
    return result


def query_pass(args: argparse.Namespace, tmp: Path) -> list[queries.QueryResult]:
    """The read side's questions against a server on the preloaded database, nothing else running."""
    token = secrets.token_urlsafe(24)
    env = harness.trackway_env(harness.pg_url(args.pg_url, SCALE_DATABASE, "postgresql+asyncpg"), token)
    port = harness.free_port()
    log(f"== queries: funnel, the seven metrics, a segment, people and events lists ({args.query_reps} each)")
    with harness.running_server(
        harness.trackway_command(port, 1), env, port, "/readyz", tmp / "queries.log"
    ) as server:
        results = queries.run(server.base, token, reps=args.query_reps)
    for line in queries.summary_lines(results):
        log(f"  {line}")
    return results


def run_scale(
    args: argparse.Namespace, tmp: Path
) -> tuple[list[IngestResult], list[ReadResult], dict[str, str]]:
    url = harness.pg_url(args.pg_url, SCALE_DATABASE)
    wanted = 2 * args.read_profiles + WARMUP_READS
    visitors, sampled = asyncio.run(sample_profiles(url, VISITORS_SAMPLE, wanted, args.seed))
    warmup, read_ids = sampled[:WARMUP_READS], sampled[WARMUP_READS:]
    visitors_file = tmp / "visitors.txt"
    visitors_file.write_text("\n".join(visitors) + "\n")
    log(f"== scale: the same load as the empty run, on {SCALE_DATABASE}")
    ingests = [ingest_run("scale", SCALE_DATABASE, args, tmp)]
    log(f"== scale-history: returning visitors drawn from {len(visitors)} preloaded visits")
    ingests.append(ingest_run("scale-history", SCALE_DATABASE, args, tmp, visitors_file))
    token = secrets.token_urlsafe(24)
    env = harness.trackway_env(harness.pg_url(args.pg_url, SCALE_DATABASE, "postgresql+asyncpg"), token)
    port = harness.free_port()
    with harness.running_server(
        harness.trackway_command(port, 1), env, port, "/readyz", tmp / "read.log"
    ) as server:
        half = len(read_ids) // 2
        log(
            f"== read: GET /api/profiles/{{id}}/events?limit={args.read_limit}, {half} random profiles "
            "per pass (different ones each pass), no other load"
        )
        # A fresh server's first requests open pool connections and fill statement caches: not measured.
        read_pass(server, warmup, 1, token, args, tmp, quiet=True)
        reads = [
            read_pass(server, read_ids[:half], 1, token, args, tmp),
            read_pass(server, read_ids[half:], args.read_concurrency, token, args, tmp),
        ]
    counts = asyncio.run(event_counts(url, read_ids))
    ordered = sorted(read_ids, key=lambda pid: counts.get(pid, 0))
    largest, median = ordered[-1], ordered[len(ordered) // 2]
    plans = {
        f"largest sampled profile ({counts.get(largest, 0)} events)": asyncio.run(
            explain(url, largest, args.read_limit)
        ),
        f"median sampled profile ({counts.get(median, 0)} events)": asyncio.run(
            explain(url, median, args.read_limit)
        ),
    }
    return ingests, reads, plans


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000_000, help="events to preload (10000000)")
    parser.add_argument("--profiles", type=int, default=100_000, help="profiles to preload (100000)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of each ingest run (15)")
    parser.add_argument("--concurrency", type=int, default=64, help="ingest connections (64)")
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="cap on requests per run")
    parser.add_argument(
        "--min-ratio", type=float, default=0.85, help="scale/empty req/s must reach this (0.85)"
    )
    parser.add_argument("--read-profiles", type=int, default=500, help="profiles read per pass (500)")
    parser.add_argument("--read-concurrency", type=int, default=4, help="concurrent reads, second pass (4)")
    parser.add_argument("--read-limit", type=int, default=100, help="events per read (100)")
    parser.add_argument("--read-p99-ms", type=float, default=20.0, help="target p99 of the reads (20)")
    parser.add_argument(
        "--reuse", action="store_true", help=f"reuse {SCALE_DATABASE} if it is already preloaded"
    )
    parser.add_argument("--query-reps", type=int, default=10, help="times each question is asked (10)")
    parser.add_argument(
        "--only", choices=("queries",), help="run one step alone on the preloaded database (queries)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--pg-url", default=harness.DEFAULT_PG_URL, help="PostgreSQL admin URL")
    parser.add_argument("--out", type=Path, default=harness.RESULTS_DIR / "scale-latest.json")
    args = parser.parse_args(argv)
    if min(args.events, args.profiles, args.concurrency, args.read_profiles, args.read_concurrency) < 1:
        parser.error("counts must be positive")
    if args.profiles > args.events:
        parser.error("--profiles cannot exceed --events")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.ensure_wrk()
    started = time.monotonic()
    if args.only == "queries":
        return only_queries(args)
    with tempfile.TemporaryDirectory(prefix="trackway-scale-") as tmp:
        empty = run_empty(args, Path(tmp))
        preloaded = prepare_scale(args)
        scales, reads, plans = run_scale(args, Path(tmp))
        answers = query_pass(args, Path(tmp))
    scale, read = scales[0], reads[-1]
    ratio = scale.requests_per_s / empty.requests_per_s if empty.requests_per_s else 0.0
    history_ratio = scales[1].requests_per_s / empty.requests_per_s if empty.requests_per_s else 0.0
    problems = [f"{r.name}: {r.check}" for r in (empty, *scales) if not r.ok]
    if ratio < args.min_ratio:
        problems.append(
            f"ingest at scale is {ratio:.0%} of the empty figure, under the {args.min_ratio:.0%} target"
        )
    if read.p99_ms is None or read.p99_ms >= args.read_p99_ms:
        problems.append(f"read p99 {fmt(read.p99_ms, 1)} ms is not under the {args.read_p99_ms:g} ms target")
    problems.extend(f"{q.name}: missed" for q in answers if not q.ok)
    for r in reads:
        if r.non_2xx or r.reads_ok != r.profiles:
            problems.append(
                f"reads ({r.concurrency} at a time): {r.reads_ok} of {r.profiles} answered 200 with items"
            )

    table = harness.Table(
        (
            "run",
            "returning visitors",
            "events before",
            "req/s",
            "events/s",
            "p50 ms",
            "p99 ms",
            "non-2xx",
            "server CPU",
            "pg CPU",
            "host CPU",
            "check",
        ),
        left=frozenset({0, 1, 11}),
    )
    for r in (empty, *scales):
        table.add(
            r.name,
            r.visitors,
            f"{r.events_before:,}",
            fmt(r.requests_per_s),
            fmt(r.events_per_s),
            fmt(r.p50_ms, 1),
            fmt(r.p99_ms, 1),
            str(r.non_2xx + r.errors),
            fmt(r.server_cpu_pct, 0, "%"),
            fmt(r.postgres_cpu_pct, 0, "%"),
            fmt(r.host_cpu_pct, 0, "%"),
            "OK" if r.ok else r.check.split(":")[0],
        )
    print()
    print(table.render())
    print(
        f"\ningest at scale / empty (req/s, 1 worker, same load): {ratio:.2f} "
        f"(target >= {args.min_ratio:.2f})"
    )
    print(f"ingest at scale, returning to the history / empty: {history_ratio:.2f}")
    for r in (empty, *scales):
        print(f"{r.name}: {io_summary(r)}")
    for r in reads:
        target = f" (target p99 < {args.read_p99_ms:g} ms)" if r is read else ""
        print(
            f"GET /api/profiles/{{id}}/events?limit={args.read_limit}, {r.profiles} profiles, "
            f"{read_summary(r)}{target}"
        )
    print("\nRead side, one question at a time (issue 15):")
    for line in queries.summary_lines(answers):
        print(f"  {line}")
    for name, plan in plans.items():
        print(f"\nEXPLAIN (ANALYZE, BUFFERS), {name}:\n{plan}")
    report = {
        "kind": "bench-scale",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "wall_s": time.monotonic() - started,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "pg_url"},
        "preload": preloaded,
        "ingest": [asdict(empty), *(asdict(r) for r in scales)],
        "ingest_ratio": ratio,
        "ingest_ratio_history": history_ratio,
        "read": [asdict(r) for r in reads],
        "explain": plans,
        "queries": [{**asdict(q), "ok": q.ok} for q in answers],
        "problems": problems,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nresults: {args.out}")
    for problem in problems:
        print(f"bench-scale: {problem}", file=sys.stderr)
    return 1 if problems else 0


def only_queries(args: argparse.Namespace) -> int:
    """``--only queries``: the read side's questions on the preloaded database, nothing else."""
    args.reuse = True
    migrate_reference(args)
    with tempfile.TemporaryDirectory(prefix="trackway-scale-") as tmp:
        preloaded = prepare_scale(args)
        answers = query_pass(args, Path(tmp))
    out = args.out.with_name("scale-queries-latest.json")
    out.write_text(
        json.dumps(
            {
                "kind": "bench-scale queries",
                "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "preload": preloaded,
                "queries": [{**asdict(q), "ok": q.ok} for q in answers],
            },
            indent=2,
        )
        + "\n"
    )
    print("\n".join(queries.summary_lines(answers)))
    print(f"\nresults: {out}")
    return 0 if all(q.ok for q in answers) else 1


if __name__ == "__main__":
    raise SystemExit(main())
