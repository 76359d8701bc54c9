"""Trackway ingest benchmark: ``trackway serve`` against two reference apps, under wrk.

One command (``make bench``) runs, one after the other on this machine, each with a fresh database:

* ``ceiling``: ``bench/ceiling_app.py``, FastAPI validating the Tracardi payload, storing nothing;
* ``naive``: ``bench/naive_app.py``, one PostgreSQL transaction per request;
* ``pg-tracardi``: Trackway on PostgreSQL, 1 worker, the same Tracardi traffic as the two above;
* ``pg``, ``pg-2w``, ``sqlite``: Trackway with the mixed traffic (Tracardi plus Tracify batches and
  Tracktor GETs) on PostgreSQL with 1 and 2 workers, and on SQLite with 1 worker.

The load is wrk with ``bench/traffic.lua``. It prints one table row per run, the ratios
Trackway/ceiling and Trackway/naive, the load generator's own CPU cost, writes
``bench/results/latest.json``, and checks after every run that the database holds exactly the
events that were acknowledged with a 2xx. Exits non-zero when a run failed or a check did not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from harness import fmt

BENCH_DATABASE = "trackway_bench"  # dropped and recreated by every PostgreSQL run; never the tests'


@dataclass(frozen=True)
class RunSpec:
    name: str
    target: str  # "trackway", "ceiling" or "naive"
    db: str | None  # "postgresql", "sqlite" or None
    workers: int
    mixed: bool  # Tracardi plus Tracify and Tracktor, else Tracardi only


RUNS = {
    spec.name: spec
    for spec in (
        RunSpec("ceiling", "ceiling", None, 1, mixed=False),
        RunSpec("naive", "naive", "postgresql", 1, mixed=False),
        RunSpec("pg-tracardi", "trackway", "postgresql", 1, mixed=False),
        RunSpec("pg", "trackway", "postgresql", 1, mixed=True),
        RunSpec("pg-2w", "trackway", "postgresql", 2, mixed=True),
        RunSpec("sqlite", "trackway", "sqlite", 1, mixed=True),
        RunSpec("sqlite-tracardi", "trackway", "sqlite", 1, mixed=False),
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
    ok: bool = False
    check: str = "not run"


# --- one run ------------------------------------------------------------------------------------


def traffic_for(
    spec: RunSpec, args: argparse.Namespace, sources: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    traffic: dict[str, Any] = {"tracardi_source": harness.SOURCE_IDS["tracardi"], "seed": args.seed}
    if spec.mixed:
        traffic.update(
            tracify_source=sources["tracify"]["id"],
            tracify_key=sources["tracify"]["secret"],
            tracify_share=args.tracify_share,
            tracktor_source=sources["tracktor"]["id"],
            tracktor_share=args.tracktor_share,
        )
    return traffic


def fill(result: RunResult, load: harness.Load) -> None:
    raw = load.raw
    result.elapsed_s = load.elapsed_s
    result.responses, result.responses_2xx, result.non_2xx = load.responses, load.ok, load.non_2xx
    result.errors = load.errors
    result.timeouts = int(raw["errors"]["timeout"])
    result.acked_by_dialect = {
        "tracardi": int(raw["tracardi_events"]),
        "tracify": int(raw["tracify_events"]),
        "tracktor": int(raw["tracktor_events"]),
    }
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
        for key in ("returning", "new_session", "new_visitor", "tracify_sent", "tracktor_sent")
        if int(raw[key])
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
    expected = {
        "trackway": {harness.SOURCE_IDS[d]: n for d, n in result.acked_by_dialect.items() if n},
        "naive": {"naive_events": result.acked_events},
    }[spec.target]
    found = {key: n for key, n in result.db_events.items() if n}
    if found == expected:
        result.ok = True
        result.check = f"OK: the database holds exactly the {result.acked_events} acknowledged events"
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
        traffic="mixed" if spec.mixed else "tracardi",
        concurrency=args.concurrency,
        wrk_threads=args.wrk_threads,
        duration_s=args.duration,
    )
    print(
        f"== {spec.name}: {spec.target}, {spec.db or 'no database'}, {spec.workers} worker(s), "
        f"{result.traffic} traffic, {args.concurrency} connections, {args.duration:g} s",
        flush=True,
    )
    admin_url = args.pg_url
    try:
        with tempfile.TemporaryDirectory(prefix="trackway-bench-") as tmp:
            tmp_dir = Path(tmp)
            sqlite_path = tmp_dir / "bench.db"
            port = harness.free_port()
            sources: dict[str, dict[str, Any]] = {}
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
                for dialect in ("tracardi", "tracify", "tracktor") if spec.mixed else ("tracardi",):
                    sources[dialect] = harness.create_source(env, dialect)
                command, ready = harness.trackway_command(port, spec.workers), "/readyz"
            else:
                env = {**os.environ, "BENCH_NAIVE_DSN": harness.pg_url(admin_url, BENCH_DATABASE)}
                command, ready = harness.reference_app_command(f"{spec.target}_app", port), "/healthz"
            with (
                harness.running_server(command, env, port, ready, tmp_dir / "server.log") as server,
                profiled(spec, args, server.pid),
            ):
                load = harness.run_wrk(
                    server.base,
                    duration=args.duration,
                    connections=args.concurrency,
                    threads=args.wrk_threads,
                    server_pid=server.pid,
                    traffic=traffic_for(spec, args, sources),
                    max_requests=args.max_requests,
                )
                if spec.target == "trackway":
                    groups = harness.group_commit_stats(server.base)
                    if groups is not None:
                        result.group_batches, result.group_txn_ms = groups
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


def generator_summary(results: list[RunResult]) -> dict[str, Any]:
    measured = [r for r in results if r.generator_us_per_request is not None]
    if not measured:
        return {}
    summary: dict[str, Any] = {
        "us_per_request_max": max(r.generator_us_per_request or 0 for r in measured),
        "machine_pct_max": max(r.generator_machine_pct or 0 for r in measured),
    }
    ceiling = next((r for r in measured if r.name == "ceiling" and r.ok), None)
    trackway = [r.requests_per_s for r in measured if r.target == "trackway" and r.workers == 1 and r.ok]
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
        },
        "runs": [asdict(r) for r in results],
        "ratios_req_per_s": ratios(results),
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
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic (1)")
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
