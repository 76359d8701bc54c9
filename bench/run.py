"""Trackway ingest benchmark: ``POST /track`` (Tracardi dialect) against a real ``trackway serve``.

For each database (PostgreSQL, then SQLite by default) it makes a fresh database, creates a source
with the CLI, starts the server on a free port, drives it with ``bench/load.py`` in separate
processes, stops the server, then checks that the ``events`` table holds exactly the events the
server acknowledged. Prints one table row per run and writes ``bench/results/latest.json``.
Exits non-zero when a run failed or a check did not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

BENCH_DIR = Path(__file__).resolve().parent
LOAD_SCRIPT = BENCH_DIR / "load.py"
RESULTS_DIR = BENCH_DIR / "results"
BIN = Path(sys.executable).parent
TRACKWAY = BIN / "trackway"

HOST = "127.0.0.1"
#: The benchmark's own PostgreSQL database, dropped and recreated on every run. Never the test suite's.
PG_DATABASE = "trackway_bench"
SOURCE_ID = "bench-src"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
REQUEST_TIMEOUT_S = 10.0
#: Load processes start together this long after they are launched (imports take a moment).
START_DELAY_S = 1.5


@dataclass
class RunResult:
    """One row of the table: one database, one server configuration."""

    db: str
    workers: int
    concurrency: int
    load_procs: int
    duration_s: float
    elapsed_s: float = 0.0
    requests: int = 0
    responses_2xx: int = 0
    non_2xx: int = 0
    errors: int = 0
    acked_events: int = 0
    db_events: int | None = None
    duplicates: int = 0
    profile_switches: int = 0
    requests_per_s: float = 0.0
    events_per_s: float = 0.0
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    #: CPU time over the load window, in % of one core (200 % is all of a 2-core machine):
    #: the load processes (all, and the busiest one), the server with its workers, every
    #: ``postgres`` process on the machine, and the whole machine.
    client_cpu_pct: float = 0.0
    client_cpu_pct_max_proc: float = 0.0
    server_cpu_pct: float | None = None
    postgres_cpu_pct: float | None = None
    host_cpu_pct: float | None = None
    status: dict[str, int] = field(default_factory=dict)
    error_kinds: dict[str, int] = field(default_factory=dict)
    mix: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    ok: bool = False
    check: str = "not run"


# --- databases -------------------------------------------------------------------------------


def pg_url(admin_url: str, database: str, driver: str = "postgresql") -> str:
    """``admin_url`` pointed at ``database``, with the URL scheme ``driver``."""
    parts = urlsplit(admin_url)
    return urlunsplit((driver, parts.netloc, f"/{database}", parts.query, ""))


async def pg_recreate(admin_url: str) -> None:
    assert PG_DATABASE != "test"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    finally:
        await conn.close()


async def pg_count_events(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


def sqlite_count_events(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


# --- CPU accounting (Linux /proc; None elsewhere) ----------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds at one moment, read from /proc (all fields None off Linux)."""

    at: float
    server_s: float | None
    postgres_s: float | None
    host_busy_s: float | None

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        at = time.monotonic()
        if not Path("/proc/stat").is_file():
            return cls(at, None, None, None)
        children: dict[int, list[int]] = {}
        ticks: dict[int, int] = {}
        postgres = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                raw = Path(entry, "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            pid, name = int(entry.name), raw[raw.index("(") + 1 : raw.rindex(")")]
            # After "(name) ": state(0) ppid(1) ... utime(11) stime(12).
            fields = raw[raw.rindex(")") + 2 :].split()
            children.setdefault(int(fields[1]), []).append(pid)
            ticks[pid] = int(fields[11]) + int(fields[12])
            if name == "postgres":
                postgres += ticks[pid]
        server, todo = 0, [server_pid]  # the server and its descendants (uvicorn's workers)
        while todo:
            pid = todo.pop()
            server += ticks.get(pid, 0)
            todo.extend(children.get(pid, []))
        # First line of /proc/stat: user nice system idle iowait irq softirq steal (all cores).
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = sum(values) - values[3] - values[4]
        return cls(at, server / CLOCK_TICKS, postgres / CLOCK_TICKS, busy / CLOCK_TICKS)

    def pct_of_core_since(self, earlier: CpuSnapshot, name: str) -> float | None:
        """CPU used by ``name`` between the two snapshots, in % of one core."""
        now, then = getattr(self, name), getattr(earlier, name)
        if now is None or then is None or self.at <= earlier.at:
            return None
        return 100 * (now - then) / (self.at - earlier.at)


# --- the server --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRACKWAY_DATABASE_URL": database_url,
        "TRACKWAY_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "TRACKWAY_LOG_LEVEL": "warning",
    }


def create_source(env: dict[str, str]) -> str:
    """``trackway sources create`` (migrates the database first); returns the source id."""
    done = subprocess.run(
        [str(TRACKWAY), "sources", "create", "--dialect", "tracardi", "--name", "bench", "--id", SOURCE_ID],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"trackway sources create failed ({done.returncode}):\n{done.stderr}")
    return str(json.loads(done.stdout)["id"])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def running_server(env: dict[str, str], workers: int, log_path: Path) -> Iterator[tuple[str, int]]:
    """``trackway serve`` on a free port until the block ends; yields (base URL, pid)."""
    port = free_port()
    base = f"http://{HOST}:{port}"
    with log_path.open("wb") as log:
        # Its own process group, so that a hung server and its workers can be killed together.
        process = subprocess.Popen(
            [str(TRACKWAY), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            wait_ready(process, base, log_path)
            yield base, process.pid
        finally:
            stop_server(process)


def wait_ready(process: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"trackway serve exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                if client.get(f"{base}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    raise RuntimeError(f"trackway serve not ready within {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")


def stop_server(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful: in-flight requests finish); SIGKILL to its process group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"  server did not stop within {STOP_TIMEOUT_S:.0f} s: killing it", file=sys.stderr)
        # Not reaped yet, so its pid, which is also its group's id, is still ours: workers included.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


# --- the load ---------------------------------------------------------------------------------


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return None
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def run_load(base: str, source_id: str, args: argparse.Namespace, server_pid: int, result: RunResult) -> None:
    """Launch the load processes, wait for them, fill ``result`` with what they measured."""
    start_at = time.time() + START_DELAY_S
    shares = [c for c in split(args.concurrency, args.load_procs) if c > 0]
    caps = split(args.max_requests, len(shares))
    procs: list[subprocess.Popen[str]] = []
    try:
        for index, (concurrency, cap) in enumerate(zip(shares, caps, strict=True)):
            command = [
                sys.executable, str(LOAD_SCRIPT), "--url", base, "--source", source_id,
                "--concurrency", str(concurrency), "--duration", str(args.duration),
                "--max-requests", str(cap), "--timeout", str(REQUEST_TIMEOUT_S),
                "--start-at", f"{start_at:.6f}", "--seed", str(index + 1),
            ]  # fmt: skip
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(max(0.0, start_at - time.time()))
        cpu_start = CpuSnapshot.take(server_pid)
        outputs: list[dict[str, Any]] = []
        hard_deadline = time.monotonic() + args.duration + REQUEST_TIMEOUT_S + 60
        for proc in procs:
            try:
                stdout, stderr = proc.communicate(timeout=max(1.0, hard_deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                raise RuntimeError("a load process did not stop in time") from exc
            if proc.returncode != 0:
                raise RuntimeError(f"load process exited with {proc.returncode}:\n{stderr[-3000:]}")
            outputs.append(json.loads(stdout))
        cpu_end = CpuSnapshot.take(server_pid)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    result.server_cpu_pct = cpu_end.pct_of_core_since(cpu_start, "server_s")
    result.postgres_cpu_pct = cpu_end.pct_of_core_since(cpu_start, "postgres_s")
    result.host_cpu_pct = cpu_end.pct_of_core_since(cpu_start, "host_busy_s")

    status: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    mix: Counter[str] = Counter()
    latencies: list[float] = []
    for out in outputs:
        status.update(out["status"])
        errors.update(out["errors"])
        mix.update(out["kinds"])
        latencies.extend(out["latencies_ms"])
        result.samples.extend(out["samples"])
    latencies.sort()
    # The processes start together: the run lasts as long as the slowest of them.
    result.elapsed_s = max(out["elapsed_s"] for out in outputs)
    result.requests = sum(out["requests"] for out in outputs)
    result.acked_events = sum(out["acked_events"] for out in outputs)
    result.duplicates = sum(out["duplicates"] for out in outputs)
    result.profile_switches = sum(out["profile_switches"] for out in outputs)
    result.responses_2xx = sum(n for code, n in status.items() if code.startswith("2"))
    result.non_2xx = sum(status.values()) - result.responses_2xx
    result.errors = sum(errors.values())
    result.status, result.error_kinds, result.mix = dict(status), dict(errors), dict(mix)
    result.requests_per_s = result.responses_2xx / result.elapsed_s
    result.events_per_s = result.acked_events / result.elapsed_s
    result.p50_ms, result.p90_ms = percentile(latencies, 50), percentile(latencies, 90)
    result.p99_ms, result.max_ms = percentile(latencies, 99), (latencies[-1] if latencies else None)
    cpu = [100 * out["cpu_s"] / result.elapsed_s for out in outputs]
    result.client_cpu_pct, result.client_cpu_pct_max_proc = sum(cpu), max(cpu)


# --- one run per database ----------------------------------------------------------------------


def bench_one(db: str, args: argparse.Namespace) -> RunResult:
    result = RunResult(
        db=db,
        workers=args.workers,
        concurrency=args.concurrency,
        load_procs=args.load_procs,
        duration_s=args.duration,
    )
    print(
        f"== {db}: {args.workers} worker(s), {args.concurrency} connections, {args.duration:g} s", flush=True
    )
    with tempfile.TemporaryDirectory(prefix="trackway-bench-") as tmp:
        tmp_dir = Path(tmp)
        sqlite_path = tmp_dir / "bench.db"
        if db == "postgresql":
            database_url = pg_url(args.pg_url, PG_DATABASE, "postgresql+asyncpg")
        else:
            database_url = f"sqlite+aiosqlite:///{sqlite_path}"
        env = server_env(database_url)
        try:
            if db == "postgresql":
                asyncio.run(pg_recreate(args.pg_url))
            source_id = create_source(env)
            with running_server(env, args.workers, tmp_dir / "server.log") as (base, pid):
                run_load(base, source_id, args, pid, result)
            # The server is stopped: every acknowledged transaction has been committed.
            if db == "postgresql":
                result.db_events = asyncio.run(pg_count_events(pg_url(args.pg_url, PG_DATABASE)))
            else:
                result.db_events = sqlite_count_events(sqlite_path)
        except Exception as exc:
            result.check = f"FAILED: {type(exc).__name__}: {exc}"
            print(f"  {result.check}", flush=True)
            return result
    if result.db_events == result.acked_events:
        result.ok = True
        result.check = f"OK: db holds exactly the {result.acked_events} acknowledged events"
    else:
        result.check = (
            f"MISMATCH: db holds {result.db_events} events, "
            f"{result.acked_events} were acknowledged by 2xx responses"
        )
    print(f"  {result.check}", flush=True)
    if result.duplicates or result.profile_switches:
        print(
            f"  note: {result.duplicates} events answered as duplicates, "
            f"{result.profile_switches} known visitors answered with another profile id",
            flush=True,
        )
    if result.non_2xx or result.errors:
        print(f"  non-2xx {result.status}, errors {result.error_kinds}; samples:", flush=True)
        for sample in result.samples[:5]:
            print(f"    {sample}", flush=True)
    return result


# --- report ------------------------------------------------------------------------------------


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def table(results: list[RunResult]) -> str:
    header = (
        "db", "workers", "conns", "req/s", "events/s", "p50 ms", "p99 ms", "non-2xx", "errors",
        "client CPU", "server CPU", "pg CPU", "host CPU", "check",
    )  # fmt: skip
    rows = [
        (
            r.db,
            str(r.workers),
            str(r.concurrency),
            f"{r.requests_per_s:.0f}",
            f"{r.events_per_s:.0f}",
            _ms(r.p50_ms),
            _ms(r.p99_ms),
            str(r.non_2xx),
            str(r.errors),
            _pct(r.client_cpu_pct),
            _pct(r.server_cpu_pct),
            _pct(r.postgres_cpu_pct if r.db == "postgresql" else None),
            _pct(r.host_cpu_pct),
            "OK" if r.ok else r.check.split(":")[0],
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    left = {0, len(header) - 1}

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i in left else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(row) for row in rows)])


def write_json(results: list[RunResult], args: argparse.Namespace) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / "latest.json"
    report = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "config": {
            "duration_s": args.duration,
            "concurrency": args.concurrency,
            "workers": args.workers,
            "load_procs": args.load_procs,
            "max_requests": args.max_requests,
            "db": args.db,
        },
        "runs": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load per run (15)")
    parser.add_argument("--concurrency", type=int, default=64, help="concurrent connections in all (64)")
    parser.add_argument("--workers", type=int, default=1, help="trackway serve --workers (1)")
    parser.add_argument(
        "--db", choices=("postgresql", "sqlite", "both"), default="both", help="database(s) to run (both)"
    )
    parser.add_argument("--load-procs", type=int, default=1, help="load generator processes (1)")
    parser.add_argument(
        "--max-requests", type=int, default=500_000, help="hard cap on requests per run (500000)"
    )
    parser.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help=f"PostgreSQL admin URL; the bench uses its own database {PG_DATABASE!r} there",
    )
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.concurrency < 1 or args.workers < 1 or args.load_procs < 1:
        parser.error("--duration, --concurrency, --workers and --load-procs must be positive")
    if args.load_procs > args.concurrency:
        parser.error("--load-procs cannot exceed --concurrency")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    databases = ["postgresql", "sqlite"] if args.db == "both" else [args.db]
    results = [bench_one(db, args) for db in databases]
    print()
    print(table(results))
    print(f"\nresults: {write_json(results, args).relative_to(BENCH_DIR.parent)}")
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"{r.db}: {r.check}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
