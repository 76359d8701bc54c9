"""Trackway ingest benchmark: ``trackway serve`` against two reference apps, under wrk.

One command (``make bench``) runs, one after the other on this machine, each with a fresh database:

* ``ceiling``: ``bench/ceiling_app.py``, FastAPI validating the Tracardi payload, storing nothing;
* ``naive``: ``bench/naive_app.py``, one PostgreSQL transaction per request;
* ``pg-tracardi``: Trackway on PostgreSQL, 1 worker, the same Tracardi traffic as the two above;
* ``pg-tracify``, ``pg-tracktor``, ``pg-insend``: the same server, each with one dialect's traffic
  over 3,000 known people (preloaded, unmeasured, before the load): Tracify batches of 50 events
  naming 10 people, Tracktor ``GET /track``, InSend ``POST /watch/event`` (``view_product``);
* ``pg-segment``: the same server, Segment ``/v1/batch`` requests of 20 calls naming 5 users
  (Basic auth, as the server SDKs send them), beside the Tracardi run (issue 18);
* ``tracify-500``: single 500-event Tracify batches, one at a time, latency per batch;
* ``pg``, ``pg-2w``, ``sqlite``: Trackway with the mixed traffic (Tracardi plus Tracify batches and
  Tracktor GETs) on PostgreSQL with 1 and 2 workers, and on SQLite with 1 worker.

The load is wrk with ``bench/traffic.lua``. It prints one table row per run, the ratios
Trackway/ceiling and Trackway/naive, the targets of issue #13 (each dialect's run against
``pg-tracardi``), the load generator's own CPU cost, writes ``bench/results/latest.json``, and
checks after every run that the database holds exactly the events that were acknowledged with a
2xx. Exits non-zero when a run failed or a check did not hold (a missed target does not).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import harness
import people
from harness import fmt

BENCH_DATABASE = "trackway_bench"  # dropped and recreated by every PostgreSQL run; never the tests'


#: The sources each traffic needs. "mixed": Tracardi plus Tracify batches and Tracktor GETs;
#: "tracify", "tracktor", "insend": that dialect only, over the known people; "tracify-500": one
#: 500-event Tracify batch at a time (people.sequential_batches, not wrk).
TRAFFIC_SOURCES = {
    "tracardi": ("tracardi",),
    "mixed": ("tracardi", "tracify", "tracktor"),
    "tracify": ("tracify",),
    "tracktor": ("tracktor",),
    "insend": ("insend",),
    "tracify-500": ("tracify",),
    "segment": ("segment",),
}
#: pg-segment: ``/v1/batch`` requests of this many calls naming this many users (issue 18).
SEGMENT_EVENTS, SEGMENT_PEOPLE = 20, 5
#: Traffics over the known people, preloaded before the measured load.
KNOWN_PEOPLE = frozenset({"tracify", "tracktor", "insend", "tracify-500"})
#: People per Tracify batch of the preload pass (one pageview each).
PRELOAD_BATCH = 50
#: The preload pass stops sending after this long even if it has not named everyone.
PRELOAD_LIMIT_S = 60.0
#: tracify-500 sends no further batch once its measured ones have taken this long.
BATCH_LIMIT_S = 120.0


@dataclass(frozen=True)
class RunSpec:
    name: str
    target: str  # "trackway", "ceiling" or "naive"
    db: str | None  # "postgresql", "sqlite" or None
    workers: int
    traffic: str  # a key of TRAFFIC_SOURCES

    @property
    def mixed(self) -> bool:
        return self.traffic == "mixed"


RUNS = {
    spec.name: spec
    for spec in (
        RunSpec("ceiling", "ceiling", None, 1, "tracardi"),
        RunSpec("naive", "naive", "postgresql", 1, "tracardi"),
        RunSpec("pg-tracardi", "trackway", "postgresql", 1, "tracardi"),
        RunSpec("pg-segment", "trackway", "postgresql", 1, "segment"),
        RunSpec("pg-tracify", "trackway", "postgresql", 1, "tracify"),
        RunSpec("pg-tracktor", "trackway", "postgresql", 1, "tracktor"),
        RunSpec("pg-insend", "trackway", "postgresql", 1, "insend"),
        RunSpec("tracify-500", "trackway", "postgresql", 1, "tracify-500"),
        RunSpec("pg", "trackway", "postgresql", 1, "mixed"),
        RunSpec("pg-2w", "trackway", "postgresql", 2, "mixed"),
        RunSpec("sqlite", "trackway", "sqlite", 1, "mixed"),
        RunSpec("sqlite-tracardi", "trackway", "sqlite", 1, "tracardi"),
    )
}


@dataclass
class RunResult:
    """One row of the table."""

    name: str
    target: str
    db: str | None
    workers: int
    traffic: str
    concurrency: int
    wrk_threads: int
    duration_s: float
    elapsed_s: float = 0.0
    responses: int = 0
    responses_2xx: int = 0
    non_2xx: int = 0
    errors: int = 0
    timeouts: int = 0
    #: Held connections the server closed while waiting for the drain: not errors (wrk's read
    #: errors less these are the ``errors``).
    idle_closes: int = 0
    acked_events: int = 0
    acked_by_dialect: dict[str, int] = field(default_factory=dict)
    db_events: dict[str, int] | None = None
    requests_per_s: float = 0.0
    events_per_s: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    #: The load generator: its CPU per response (µs) and its share of the whole machine (%).
    generator_cpu_s: float = 0.0
    generator_us_per_request: float | None = None
    generator_machine_pct: float | None = None
    #: CPU over the load window in % of one core (200 % is all of a 2-core machine).
    server_cpu_pct: float | None = None
    #: CPU of the server (all its processes) per 2xx response, in ms: its cost per request.
    server_cpu_ms_per_request: float | None = None
    postgres_cpu_pct: float | None = None
    host_cpu_pct: float | None = None
    #: Group commit, from the server's /metrics (one worker): batches per transaction, ms each.
    group_batches: float | None = None
    group_txn_ms: float | None = None
    status: dict[str, int] = field(default_factory=dict)
    mix: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    drained: bool = False
    #: The end of the server's log when it logged an error (its log level is "warning").
    server_log_tail: str = ""
    #: The unmeasured preload pass of the known-people runs (and tracify-500's warm-up batches):
    #: people, requests, 2xx, seconds, events acknowledged per dialect. Its events are stored
    #: too, so the database check adds them.
    preload: dict[str, Any] = field(default_factory=dict)
    preload_acked: dict[str, int] = field(default_factory=dict)
    ok: bool = False
    check: str = "not run"


# --- one run ------------------------------------------------------------------------------------


def traffic_for(
    spec: RunSpec, args: argparse.Namespace, sources: dict[str, dict[str, Any]], people_file: Path | None
) -> dict[str, Any]:
    traffic: dict[str, Any] = {
        "tracardi_source": harness.SOURCE_IDS["tracardi"],
        "seed": args.seed,
        "threads": args.wrk_threads,
    }
    if spec.mixed:
        traffic.update(
            tracify_source=sources["tracify"]["id"],
            tracify_key=sources["tracify"]["secret"],
            tracify_share=args.tracify_share,
            tracktor_source=sources["tracktor"]["id"],
            tracktor_share=args.tracktor_share,
        )
    if "tracify" in sources and not spec.mixed:
        traffic.update(
            tracify_source=sources["tracify"]["id"],
            tracify_key=sources["tracify"]["secret"],
            tracify_share=1,
            tracify_people=args.tracify_people,
            tracify_events=args.tracify_events,
            tracify_purchase_share=people.PURCHASE_SHARE,
        )
    if "tracktor" in sources and not spec.mixed:
        traffic.update(tracktor_source=sources["tracktor"]["id"], tracktor_share=1)
    if "insend" in sources:
        traffic.update(insend_source=sources["insend"]["id"], insend_share=1)
    if "segment" in sources:
        traffic.update(
            segment_source=sources["segment"]["id"],
            segment_share=1,
            segment_events=SEGMENT_EVENTS,
            segment_people=SEGMENT_PEOPLE,
            segment_pool=args.people,
        )
    if people_file is not None:
        traffic["people_file"] = str(people_file)
    return traffic


def preload_people(
    spec: RunSpec, args: argparse.Namespace, server: harness.Server, traffic: dict[str, Any]
) -> harness.Load:
    """Name every known person once through the API (wrk, not measured), so that the people of
    the measured load are all known.

    Tracify: batches of ``PRELOAD_BATCH`` people with one pageview each; Tracktor and InSend: one
    request a person. Never more connections than requests: the spare ones would only idle.
    """
    dialect = "tracify" if spec.traffic.startswith("tracify") else spec.traffic
    requests = math.ceil(args.people / PRELOAD_BATCH) if dialect == "tracify" else args.people
    connections = max(
        args.wrk_threads, min(args.concurrency, requests) // args.wrk_threads * args.wrk_threads
    )
    return harness.run_wrk(
        server.base,
        duration=PRELOAD_LIMIT_S,
        connections=connections,
        threads=args.wrk_threads,
        server_pid=server.pid,
        traffic={**traffic, "preload": dialect, "preload_batch": PRELOAD_BATCH},
        max_requests=requests,
    )


def fill(result: RunResult, load: harness.Load) -> None:
    raw = load.raw
    result.elapsed_s = load.elapsed_s
    result.responses, result.responses_2xx, result.non_2xx = load.responses, load.ok, load.non_2xx
    result.errors = load.errors
    result.timeouts = int(raw["errors"]["timeout"])
    result.idle_closes = load.idle_closes
    result.acked_by_dialect = load.events_by_dialect
    result.acked_events = load.events
    if result.elapsed_s > 0:
        result.requests_per_s = load.ok / result.elapsed_s
        result.events_per_s = load.events / result.elapsed_s
    latency = raw["latency_ms"]
    result.p50_ms, result.p90_ms, result.p99_ms, result.max_ms = (
        latency["p50"],
        latency["p90"],
        latency["p99"],
        latency["max"],
    )
    result.generator_cpu_s = load.wrk_cpu_s
    if load.responses:
        result.generator_us_per_request = 1e6 * load.wrk_cpu_s / load.responses
    if load.window_s > 0:
        cores = os.cpu_count() or 1
        result.generator_machine_pct = 100 * load.wrk_cpu_s / load.window_s / cores
        result.server_cpu_pct = 100 * load.server_cpu_s / load.window_s
        result.postgres_cpu_pct = 100 * load.postgres_cpu_s / load.window_s
        result.host_cpu_pct = 100 * load.host_busy_s / load.window_s
    if load.ok:
        result.server_cpu_ms_per_request = 1000 * load.server_cpu_s / load.ok
    result.status = dict(raw["status"])
    result.mix = {
        key: int(raw[key])
        for key in (
            "returning",
            "new_session",
            "new_visitor",
            "tracify_sent",
            "tracktor_sent",
            "insend_sent",
            "segment_sent",
        )
        if int(raw.get(key, 0))
    }
    result.samples = list(raw["samples"])
    if load.stderr:
        result.samples.append(f"wrk stderr: {load.stderr[-500:]}")
    result.drained = load.drained


def check(result: RunResult, spec: RunSpec) -> None:
    if spec.target == "ceiling":
        result.ok, result.check = True, "n/a (stores nothing)"
        return
    assert result.db_events is not None
    acked = {
        dialect: result.acked_by_dialect.get(dialect, 0) + result.preload_acked.get(dialect, 0)
        for dialect in harness.DIALECTS
    }
    expected = {
        "trackway": {harness.SOURCE_IDS[d]: n for d, n in acked.items() if n},
        "naive": {"naive_events": result.acked_events},
    }[spec.target]
    found = {key: n for key, n in result.db_events.items() if n}
    if found == expected:
        result.ok = True
        result.check = f"OK: the database holds exactly the {sum(expected.values())} acknowledged events"
        preloaded = sum(result.preload_acked.values())
        if preloaded:
            result.check += f" ({preloaded} of them before the measured load)"
    else:
        result.check = f"MISMATCH: database {found}, acknowledged by 2xx {expected}"
        if not result.drained:
            result.check += " (wrk did not drain: requests were cut off without an answer)"


@contextmanager
def profiled(spec: RunSpec, args: argparse.Namespace, pid: int) -> Iterator[None]:
    """With ``--profile DIR``, py-spy samples a 1-worker server over the load; its summary is printed."""
    if args.profile is None or spec.workers != 1:
        yield
        return
    args.profile.mkdir(parents=True, exist_ok=True)
    out = args.profile / f"{spec.name}.txt"
    with harness.py_spy(pid, out, args.duration):
        yield
    summary = harness.summarize_profile(out)
    (args.profile / f"{spec.name}-summary.txt").write_text("\n".join(summary) + "\n")
    print("  profile (py-spy, " + str(out) + "):\n    " + "\n    ".join(summary[:16]), flush=True)


def bench_one(spec: RunSpec, args: argparse.Namespace) -> RunResult:
    result = RunResult(
        name=spec.name,
        target=spec.target,
        db=spec.db,
        workers=spec.workers,
        traffic=spec.traffic,
        concurrency=1 if spec.traffic == "tracify-500" else args.concurrency,
        wrk_threads=args.wrk_threads,
        duration_s=args.duration,
    )
    if spec.traffic == "tracify-500":
        load_text = f"{args.batch_count} batches of {args.batch_events} events, one at a time"
    else:
        load_text = f"{args.concurrency} connections, {args.duration:g} s"
    print(
        f"== {spec.name}: {spec.target}, {spec.db or 'no database'}, {spec.workers} worker(s), "
        f"{result.traffic} traffic, {load_text}",
        flush=True,
    )
    admin_url = args.pg_url
    try:
        with tempfile.TemporaryDirectory(prefix="trackway-bench-") as tmp:
            tmp_dir = Path(tmp)
            sqlite_path = tmp_dir / "bench.db"
            port = harness.free_port()
            sources: dict[str, dict[str, Any]] = {}
            people_file: Path | None = None
            pool: list[people.Person] = []
            if spec.traffic in KNOWN_PEOPLE:
                pool = people.make_people(args.people, args.seed)
                people_file = tmp_dir / "people.txt"
                people.write_people(people_file, pool)
            if spec.db == "postgresql":
                asyncio.run(harness.pg_recreate(admin_url, BENCH_DATABASE))
            env: dict[str, str]
            if spec.target == "trackway":
                database_url = (
                    harness.pg_url(admin_url, BENCH_DATABASE, "postgresql+asyncpg")
                    if spec.db == "postgresql"
                    else f"sqlite+aiosqlite:///{sqlite_path}"
                )
                env = harness.trackway_env(database_url, secrets.token_urlsafe(24))
                for dialect in TRAFFIC_SOURCES[spec.traffic]:
                    sources[dialect] = harness.create_source(env, dialect, args.rate_limit)
                command, ready = harness.trackway_command(port, spec.workers), "/readyz"
            else:
                env = {**os.environ, "BENCH_NAIVE_DSN": harness.pg_url(admin_url, BENCH_DATABASE)}
                command, ready = harness.reference_app_command(f"{spec.target}_app", port), "/healthz"
            traffic = traffic_for(spec, args, sources, people_file)
            with harness.running_server(command, env, port, ready, tmp_dir / "server.log") as server:
                if people_file is not None:
                    preloaded = preload_people(spec, args, server, traffic)
                    result.preload_acked = {d: n for d, n in preloaded.events_by_dialect.items() if n}
                    result.preload = {
                        "people": args.people,
                        "requests": preloaded.responses,
                        "ok": preloaded.ok,
                        "seconds": round(preloaded.elapsed_s, 2),
                        "events": preloaded.events,
                        "drained": preloaded.drained,
                    }
                    print(
                        f"  preload (not measured): {args.people} people named in {preloaded.responses} "
                        f"requests ({preloaded.ok} 2xx, {preloaded.events} events) in "
                        f"{preloaded.elapsed_s:.1f} s",
                        flush=True,
                    )
                    if preloaded.ok != preloaded.responses or not preloaded.drained:
                        print(f"  preload status {dict(preloaded.raw['status'])}: {preloaded.raw['samples']}")
                with profiled(spec, args, server.pid):
                    if spec.traffic == "tracify-500":
                        sequential = people.sequential_batches(
                            server.base,
                            api_key=sources["tracify"]["secret"],
                            source_id=sources["tracify"]["id"],
                            pool=pool,
                            server_pid=server.pid,
                            count=args.batch_count,
                            warmup=args.batch_warmup,
                            n_events=args.batch_events,
                            n_people=args.batch_events // len(people.TRACIFY_STEPS),
                            seed=args.seed,
                            limit_s=BATCH_LIMIT_S,
                        )
                    else:
                        load = harness.run_wrk(
                            server.base,
                            duration=args.duration,
                            connections=args.concurrency,
                            threads=args.wrk_threads,
                            server_pid=server.pid,
                            traffic=traffic,
                            max_requests=args.max_requests,
                        )
                if spec.target == "trackway":
                    groups = harness.group_commit_stats(server.base)
                    if groups is not None:
                        result.group_batches, result.group_txn_ms = groups
            if spec.traffic == "tracify-500":
                fill_sequential(result, sequential)
            else:
                fill(result, load)
            log_text = (tmp_dir / "server.log").read_text(errors="replace")
            if "Traceback" in log_text or "ERROR" in log_text:
                result.server_log_tail = log_text[-3000:]
            # The server has stopped: everything it acknowledged has been committed.
            if spec.target == "trackway" and spec.db == "sqlite":
                with sqlite3.connect(sqlite_path) as conn:
                    rows = conn.execute("SELECT source_id, count(*) FROM events GROUP BY source_id")
                    result.db_events = {str(k): int(n) for k, n in rows}
            elif spec.target == "trackway":
                sql = "SELECT source_id, count(*) FROM events GROUP BY source_id"
                result.db_events = asyncio.run(
                    harness.pg_fetch_counts(harness.pg_url(admin_url, BENCH_DATABASE), sql)
                )
            elif spec.target == "naive":
                sql = "SELECT 'naive_events', count(*) FROM naive_events"
                result.db_events = asyncio.run(
                    harness.pg_fetch_counts(harness.pg_url(admin_url, BENCH_DATABASE), sql)
                )
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, asyncpg.PostgresError) as exc:
        result.check = f"FAILED: {type(exc).__name__}: {exc}"
        print(f"  {result.check}", flush=True)
        return result
    check(result, spec)
    print(
        f"  {fmt(result.requests_per_s)} req/s, {fmt(result.events_per_s)} events/s, "
        f"p50 {fmt(result.p50_ms, 1)} ms, p99 {fmt(result.p99_ms, 1)} ms; {result.check}",
        flush=True,
    )
    if result.non_2xx or result.errors or result.samples:
        print(f"  status {result.status}, {result.errors} socket errors; samples:", flush=True)
        for sample in result.samples[:5]:
            print(f"    {sample}", flush=True)
    if result.server_log_tail:
        print("  the server logged errors; the end of its log (also in the results file):", flush=True)
        print("    " + "\n    ".join(result.server_log_tail.splitlines()[-15:]), flush=True)
    return result


def fill_sequential(result: RunResult, sequential: people.Sequential) -> None:
    """tracify-500's row: the client's own timing of each batch (no wrk, one connection)."""
    result.elapsed_s = sequential.elapsed_s
    result.responses = len(sequential.latencies_ms)
    result.responses_2xx = sequential.ok
    result.non_2xx = result.responses - sequential.ok
    result.errors = sequential.errors
    result.acked_by_dialect = {"tracify": sequential.accepted}
    result.acked_events = sequential.accepted
    if sequential.warmup_accepted:
        result.preload_acked["tracify"] = result.preload_acked.get("tracify", 0) + sequential.warmup_accepted
        result.preload["warmup_batches_events"] = sequential.warmup_accepted
    if result.elapsed_s > 0:
        result.requests_per_s = sequential.ok / result.elapsed_s
        result.events_per_s = sequential.accepted / result.elapsed_s
    result.p50_ms = sequential.p50
    result.p90_ms = sequential.percentile(90)
    result.p99_ms = sequential.percentile(99)
    result.max_ms = max(sequential.latencies_ms) if sequential.latencies_ms else None
    if sequential.cpu is not None:
        start, end = sequential.cpu
        window = end.at - start.at
        if window > 0:
            result.server_cpu_pct = 100 * (end.server_s - start.server_s) / window
            result.postgres_cpu_pct = 100 * (end.postgres_s - start.postgres_s) / window
            result.host_cpu_pct = 100 * (end.host_busy_s - start.host_busy_s) / window
        if sequential.ok:
            result.server_cpu_ms_per_request = 1000 * (end.server_s - start.server_s) / sequential.ok
    result.status = dict(sequential.statuses)
    result.mix = {"tracify_sent": result.responses, "body_bytes": sequential.body_bytes}
    result.samples = list(sequential.samples)
    if sequential.stopped_early:
        result.samples.append(
            f"stopped after {result.responses} batches: the {BATCH_LIMIT_S:g} s limit of tracify-500"
        )
    result.drained = sequential.errors == 0


# --- report -------------------------------------------------------------------------------------


COLUMNS = (
    "run", "db", "workers", "traffic", "req/s", "events/s", "p50 ms", "p99 ms", "non-2xx", "errors",
    "gen µs/req", "gen % machine", "server ms/req", "server CPU", "pg CPU", "host CPU", "batches/txn",
    "txn ms", "check",
)  # fmt: skip


def table(results: list[RunResult]) -> str:
    out = harness.Table(COLUMNS, left=frozenset({0, 1, 3, len(COLUMNS) - 1}))
    for r in results:
        out.add(
            r.name,
            r.db or "-",
            str(r.workers),
            r.traffic,
            fmt(r.requests_per_s),
            fmt(r.events_per_s),
            fmt(r.p50_ms, 1),
            fmt(r.p99_ms, 1),
            str(r.non_2xx),
            str(r.errors + r.timeouts),
            fmt(r.generator_us_per_request),
            fmt(r.generator_machine_pct, 1, "%"),
            fmt(r.server_cpu_ms_per_request, 2),
            fmt(r.server_cpu_pct, 0, "%"),
            fmt(r.postgres_cpu_pct if r.db == "postgresql" else None, 0, "%"),
            fmt(r.host_cpu_pct, 0, "%"),
            fmt(r.group_batches, 1),
            fmt(r.group_txn_ms, 1),
            "OK" if r.ok else r.check.split(":")[0],
        )
    return out.render()


def ratios(results: list[RunResult]) -> dict[str, float]:
    """Trackway's req/s (1 worker) over the ceiling's and the naive writer's."""
    by_name = {r.name: r for r in results if r.ok and r.requests_per_s > 0}
    found: dict[str, float] = {}
    for trackway in ("pg-tracardi", "pg"):
        for reference in ("ceiling", "naive"):
            if trackway in by_name and reference in by_name:
                found[f"{trackway}/{reference}"] = (
                    by_name[trackway].requests_per_s / by_name[reference].requests_per_s
                )
    return found


@dataclass(frozen=True)
class Target:
    """One of issue #13's targets, as measured in this invocation."""

    name: str
    value: float
    goal: str  # e.g. ">= 0.80"
    met: bool
    note: str = ""

    def line(self) -> str:
        verdict = "met" if self.met else "MISSED"
        note = f" ({self.note})" if self.note else ""
        return f"  {self.name}: {self.value:,.2f}{note}, target {self.goal}: {verdict}"


#: Issue #13: each run's figure over pg-tracardi's (same invocation, back to back).
RATIO_TARGETS = (
    # (run, what, minimum ratio)
    ("pg-tracify", "events/s", 1.0),
    ("pg-segment", "events/s", 1.0),  # issue 18
    ("pg-tracktor", "req/s", 0.8),
    ("pg-insend", "req/s", 0.8),
    ("pg", "req/s", 0.8),
)
SQLITE_MIXED_MIN_REQ_S = 1500.0
P99_MAX_MS = 50.0
TARGET_CONCURRENCY = 64
BATCH_P50_MAX_MS = 150.0


def targets(results: list[RunResult]) -> list[Target]:
    """Issue #13's targets that this invocation's runs can judge (a run missing or failed: none)."""
    by_name = {r.name: r for r in results if r.ok and r.responses_2xx}
    found: list[Target] = []
    base = by_name.get("pg-tracardi")
    for name, what, minimum in RATIO_TARGETS:
        run = by_name.get(name)
        if base is None or run is None:
            continue
        if what == "events/s":
            ratio, detail = (
                run.events_per_s / base.events_per_s,
                f"{run.events_per_s:,.0f} / {base.events_per_s:,.0f}",
            )
        else:
            ratio, detail = (
                run.requests_per_s / base.requests_per_s,
                f"{run.requests_per_s:,.0f} / {base.requests_per_s:,.0f}",
            )
        found.append(
            Target(f"{name} / pg-tracardi, {what}", ratio, f">= {minimum:.2f}", ratio >= minimum, detail)
        )
    sqlite = by_name.get("sqlite")
    if sqlite is not None:
        found.append(
            Target("sqlite (mixed), req/s", sqlite.requests_per_s, f">= {SQLITE_MIXED_MIN_REQ_S:,.0f}",
                   sqlite.requests_per_s >= SQLITE_MIXED_MIN_REQ_S)
        )  # fmt: skip
    for run in results:
        if run.name not in by_name or run.target != "trackway" or run.traffic == "tracify-500":
            continue
        if run.p99_ms is None:
            continue
        note = "" if run.concurrency == TARGET_CONCURRENCY else f"at {run.concurrency} connections, not 64"
        found.append(
            Target(f"{run.name} p99 ms", run.p99_ms, f"< {P99_MAX_MS:g}", run.p99_ms < P99_MAX_MS, note)
        )
    batch = by_name.get("tracify-500")
    if batch is not None and batch.p50_ms is not None:
        note = f"p99 {fmt(batch.p99_ms, 1)}, max {fmt(batch.max_ms, 1)} ms over {batch.responses} batches"
        found.append(
            Target(
                "tracify-500 p50 ms",
                batch.p50_ms,
                f"< {BATCH_P50_MAX_MS:g}",
                batch.p50_ms < BATCH_P50_MAX_MS,
                note,
            )
        )
    return found


def generator_summary(results: list[RunResult]) -> dict[str, Any]:
    measured = [r for r in results if r.generator_us_per_request is not None]
    if not measured:
        return {}
    summary: dict[str, Any] = {
        "us_per_request_max": max(r.generator_us_per_request or 0 for r in measured),
        "machine_pct_max": max(r.generator_machine_pct or 0 for r in measured),
    }
    ceiling = next((r for r in measured if r.name == "ceiling" and r.ok), None)
    trackway = [
        r.requests_per_s
        for r in measured
        if r.target == "trackway" and r.workers == 1 and r.ok and r.traffic in ("tracardi", "mixed")
    ]
    if ceiling is not None:
        summary["ceiling_req_per_s"] = ceiling.requests_per_s
        summary["ceiling_generator_us_per_request"] = ceiling.generator_us_per_request
        if trackway:
            summary["ceiling_over_best_trackway_1w"] = ceiling.requests_per_s / max(trackway)
    return summary


def report_lines(results: list[RunResult]) -> list[str]:
    lines = [table(results), ""]
    for name, value in ratios(results).items():
        trackway, reference = name.split("/")
        lines.append(f"Trackway {trackway} / {reference} (req/s, 1 worker): {value:.2f}")
    found = targets(results)
    if found:
        lines.append("Targets (issue #13; ratios of runs made back to back in this invocation):")
        lines.extend(target.line() for target in found)
    preloaded = [r for r in results if r.preload]
    if preloaded:
        lines.append(
            "Known people preloaded before the measured load (not measured; their events are in the check): "
            + "; ".join(
                f"{r.name} {r.preload['people']:,} people in {r.preload['requests']:,} requests, "
                f"{r.preload['seconds']:.1f} s"
                for r in preloaded
            )
        )
    gen = generator_summary(results)
    if gen:
        lines.append(
            f"Load generator (wrk, {results[0].wrk_threads} thread(s)): at most "
            f"{gen['us_per_request_max']:.0f} µs CPU per request and {gen['machine_pct_max']:.1f} % of the "
            f"machine in any run."
        )
        if "ceiling_over_best_trackway_1w" in gen:
            headroom = gen["ceiling_over_best_trackway_1w"]
            verdict = (
                "the generator is not what limits Trackway"
                if headroom >= 2
                else "too close to Trackway's to rule the generator out: add --wrk-threads"
            )
            lines.append(
                f"It drove the ceiling app at {gen['ceiling_req_per_s']:,.0f} req/s over "
                f"{results[0].concurrency} connections, {headroom:.1f}x the best 1-worker Trackway figure: "
                f"{verdict}."
            )
    return lines


def write_json(results: list[RunResult], args: argparse.Namespace, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "kind": "bench",
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": {
            "runs": args.runs,
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "wrk_threads": args.wrk_threads,
            "max_requests": args.max_requests,
            "tracify_share": args.tracify_share,
            "tracktor_share": args.tracktor_share,
            "rate_limit": args.rate_limit,
            "people": args.people,
            "tracify_people": args.tracify_people,
            "tracify_events": args.tracify_events,
            "batch_events": args.batch_events,
            "batch_count": args.batch_count,
            "batch_warmup": args.batch_warmup,
        },
        "runs": [asdict(r) for r in results],
        "ratios_req_per_s": ratios(results),
        "targets": [asdict(t) for t in targets(results)],
        "generator": generator_summary(results),
    }
    path.write_text(json.dumps(report, indent=2) + "\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per run (15)")
    parser.add_argument("--concurrency", type=int, default=64, help="connections (64)")
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (1); divides --concurrency")
    parser.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"comma-separated runs, in order (default all: {','.join(RUNS)})",
    )
    parser.add_argument(
        "--max-requests", type=int, default=1_000_000, help="cap on requests per run (1000000)"
    )
    parser.add_argument("--tracify-share", type=float, default=0.05, help="share of Tracify batches (0.05)")
    parser.add_argument("--tracktor-share", type=float, default=0.05, help="share of Tracktor GETs (0.05)")
    parser.add_argument(
        "--people",
        type=int,
        default=3000,
        help="known people of the pg-tracify/-tracktor/-insend runs (3000)",
    )
    parser.add_argument("--tracify-events", type=int, default=50, help="events per pg-tracify batch (50)")
    parser.add_argument("--tracify-people", type=int, default=10, help="people per pg-tracify batch (10)")
    parser.add_argument("--batch-events", type=int, default=500, help="events per tracify-500 batch (500)")
    parser.add_argument("--batch-count", type=int, default=30, help="measured tracify-500 batches (30)")
    parser.add_argument(
        "--batch-warmup", type=int, default=3, help="unmeasured tracify-500 batches first (3)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic (1)")
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=None,
        metavar="PER_SECOND",
        help="give every Trackway source this rate limit (and as large a burst), so each request\n"
        "passes the limiter without being refused: e.g. 1000000; default: no limit",
    )
    parser.add_argument(
        "--pg-url",
        default=harness.DEFAULT_PG_URL,
        help=f"PostgreSQL admin URL; the bench works in its own database {BENCH_DATABASE!r} there",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=harness.RESULTS_DIR / "latest.json",
        help="results file (results/latest.json)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="sample each 1-worker server with py-spy over its load; stacks and a summary go to DIR",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.runs.split(",") if name not in RUNS]
    if unknown:
        parser.error(f"unknown runs {unknown}; choose from {list(RUNS)}")
    if args.duration <= 0 or args.concurrency < 1 or args.wrk_threads < 1 or args.max_requests < 1:
        parser.error("--duration, --concurrency, --wrk-threads and --max-requests must be positive")
    if args.concurrency % args.wrk_threads:
        parser.error("--concurrency must be a multiple of --wrk-threads")
    if not 0 <= args.tracify_share + args.tracktor_share < 1:
        parser.error("--tracify-share plus --tracktor-share must be in [0, 1)")
    steps = len(people.TRACIFY_STEPS)
    if args.tracify_people < 1 or args.tracify_events % args.tracify_people:
        parser.error("--tracify-events must be a positive multiple of --tracify-people")
    if (
        args.batch_events < steps
        or args.batch_events % steps
        or args.batch_count < 1
        or args.batch_warmup < 0
    ):
        parser.error(f"--batch-events must be a multiple of {steps}; --batch-count at least 1")
    if args.people < max(args.tracify_people, args.batch_events // steps):
        parser.error("--people must be at least the people of one batch")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    harness.ensure_wrk()
    results = [bench_one(RUNS[name], args) for name in args.runs.split(",")]
    print()
    print("\n".join(report_lines(results)))
    write_json(results, args, args.out)
    print(f"\nresults: {args.out}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"{r.name}: {r.check}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
