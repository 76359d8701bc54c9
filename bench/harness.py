"""What ``run.py`` and ``scale.py`` share: servers, databases, sources, wrk, CPU accounting."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
TRAFFIC_SCRIPT = BENCH_DIR / "traffic.lua"
BIN = Path(sys.executable).parent
TRACKWAY = BIN / "trackway"
UVICORN = BIN / "uvicorn"

HOST = "127.0.0.1"
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 40.0
#: wrk counts a request as timed out after this long (it keeps waiting for the answer, though),
#: and its latency histogram only holds shorter ones. wrk also counts a connection held idle after
#: the deadline for longer than this, so it is above the drain limit: a 64-connection run of
#: 50-event Tracify batches took 10-20 s to drain at 3 batches/s.
REQUEST_TIMEOUT_S = 60.0
#: After the deadline, the connections get this long to finish their last request.
DRAIN_LIMIT_S = 60.0
#: Flags of every reference app: the same as Trackway's uvicorn (one worker, no access log).
UVICORN_FLAGS = ("--workers", "1", "--no-access-log", "--log-level", "warning")

SOURCE_IDS = {
    "tracardi": "bench-web",
    "tracify": "bench-shop",
    "tracktor": "bench-app",
    "insend": "bench-store",
    "segment": "bench-sdk",
}
#: The dialects whose acknowledged events traffic.lua counts ("<dialect>_events" in its summary).
DIALECTS = ("tracardi", "tracify", "tracktor", "insend", "segment")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- PostgreSQL ---------------------------------------------------------------------------------


def pg_url(admin_url: str, database: str, driver: str = "postgresql") -> str:
    """``admin_url`` pointed at ``database``, with the URL scheme ``driver``."""
    parts = urlsplit(admin_url)
    return urlunsplit((driver, parts.netloc, f"/{database}", parts.query, ""))


async def pg_recreate(admin_url: str, database: str) -> None:
    if database in ("test", "postgres") or not database.startswith("trackway_"):
        raise ValueError(f"refusing to drop {database!r}: the bench only drops its own trackway_* databases")
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def pg_fetch_counts(url: str, sql: str) -> dict[str, int]:
    """``sql`` returns (key, count) rows."""
    conn = await asyncpg.connect(url)
    try:
        return {str(key): int(n) for key, n in await conn.fetch(sql)}
    finally:
        await conn.close()


# --- Trackway: environment and sources ----------------------------------------------------------


def trackway_env(database_url: str, admin_token: str) -> dict[str, str]:
    return {
        **os.environ,
        "TRACKWAY_DATABASE_URL": database_url,
        "TRACKWAY_ADMIN_TOKEN": admin_token,
        "TRACKWAY_LOG_LEVEL": "warning",
    }


def create_source(env: Mapping[str, str], dialect: str, rate_limit: float | None = None) -> dict[str, Any]:
    """``trackway sources create`` (it migrates first); the source as the CLI prints it.

    ``rate_limit``: the source's requests per second (and a burst of as many): with a limit
    no run reaches, every request still passes through the token bucket.
    """
    command = [str(TRACKWAY), "sources", "create", "--dialect", dialect, "--id", SOURCE_IDS[dialect]]
    if rate_limit is not None:
        command += ["--rate-limit", f"{rate_limit:g}", "--rate-burst", str(int(rate_limit))]
    done = subprocess.run(
        [*command, "--name", f"bench {dialect}"], env=dict(env), capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"trackway sources create --dialect {dialect} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout))


# --- servers ------------------------------------------------------------------------------------


def group_commit_stats(base: str) -> tuple[float, float] | None:
    """Mean ingest batches per transaction and mean transaction ms, from one worker's /metrics.

    ``None`` when the server has no such metrics (the reference apps). With several
    workers the answer is the one worker that took the scrape's connection.
    """
    try:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in {
            "trackway_commit_batch_size_sum",
            "trackway_commit_batch_size_count",
            "trackway_commit_seconds_sum",
        }:
            values[name] = float(value)
    count = values.get("trackway_commit_batch_size_count", 0.0)
    if not count:
        return None
    return (
        values["trackway_commit_batch_size_sum"] / count,
        values["trackway_commit_seconds_sum"] / count * 1000,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as answer:  # 127.0.0.1 only
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@dataclass(frozen=True)
class Server:
    base: str
    pid: int
    log: Path


@contextmanager
def running_server(
    command: list[str], env: Mapping[str, str], port: int, ready_path: str, log_path: Path
) -> Iterator[Server]:
    """``command`` (listening on ``port``) until the block ends, once ``ready_path`` answers 200."""
    base = f"http://{HOST}:{port}"
    with log_path.open("wb") as log:
        # Its own process group, so that a hung server and its workers can be killed together.
        process = subprocess.Popen(
            command, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            while not _ready(base + ready_path):
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} exited with {process.returncode}:\n{_tail(log_path)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"server not ready within {READY_TIMEOUT_S:.0f} s:\n{_tail(log_path)}")
                time.sleep(0.2)
            yield Server(base, process.pid, log_path)
        finally:
            stop_process(process)


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (graceful: in-flight requests finish); SIGKILL to its process group if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        print(f"  server did not stop within {STOP_TIMEOUT_S:.0f} s: killing it", file=sys.stderr)
        os.killpg(process.pid, signal.SIGKILL)  # not reaped yet: its pid is still its group's id
        process.wait()


def trackway_command(port: int, workers: int) -> list[str]:
    return [str(TRACKWAY), "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]


def reference_app_command(module: str, port: int) -> list[str]:
    return [
        str(UVICORN),
        "--app-dir",
        str(BENCH_DIR),
        f"{module}:app",
        "--host",
        HOST,
        "--port",
        str(port),
        *UVICORN_FLAGS,
    ]


# --- profiling ----------------------------------------------------------------------------------


@contextmanager
def py_spy(pid: int, out: Path, seconds: float) -> Iterator[None]:
    """Sample ``pid`` with py-spy (``--nonblocking``: the server is not paused) while the block runs.

    Writes py-spy's collapsed stacks to ``out``; ``summarize_profile`` reads them. py-spy is a
    PyPI package (``pip install py-spy``) that needs ptrace rights over the server (root here).
    """
    py_spy_bin = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if py_spy_bin is None:
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    command = [
        py_spy_bin, "record", "--pid", str(pid), "--format", "raw", "--rate", "250", "--nonblocking",
        "--duration", str(max(1, int(seconds))), "--output", str(out),
    ]  # fmt: skip
    recorder = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        try:
            recorder.wait(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            recorder.kill()
            recorder.wait()


def summarize_profile(path: Path, top: int = 25) -> list[str]:
    """The functions with the most samples, by self time and by total time, from collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [frame.strip() for frame in stack.split(";") if frame.strip()]
        frames = [frame for frame in frames if not frame.startswith(("process ", "thread "))]
        if not frames:
            continue
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    if not samples:
        return ["(no samples)"]
    lines = [f"{samples} samples; self time:"]
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / samples:5.1f} %  {frame}")
    lines.append("total time (the frame or anything it called):")
    for frame, n in sorted(total.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / samples:5.1f} %  {frame}")
    return lines


# --- CPU accounting (Linux /proc) ---------------------------------------------------------------


def _proc_ticks(pid: int) -> tuple[int, int, str] | None:
    """(ppid, utime + stime in ticks, name) of one process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()  # state(0) ppid(1) ... utime(11) stime(12)
    return int(fields[1]), int(fields[11]) + int(fields[12]), name


def process_cpu_s(pid: int) -> float:
    found = _proc_ticks(pid)
    return 0.0 if found is None else found[1] / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU seconds at one moment: the server's process tree, postgres, the machine."""

    at: float
    server_s: float
    postgres_s: float
    host_busy_s: float

    @classmethod
    def take(cls, server_pid: int) -> CpuSnapshot:
        at = time.monotonic()
        children: dict[int, list[int]] = {}
        ticks: dict[int, int] = {}
        postgres = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            found = _proc_ticks(int(entry.name))
            if found is None:
                continue
            ppid, used, name = found
            children.setdefault(ppid, []).append(int(entry.name))
            ticks[int(entry.name)] = used
            if name == "postgres":
                postgres += used
        server, todo = 0, [server_pid]  # the server and its descendants (uvicorn's workers)
        while todo:
            pid = todo.pop()
            server += ticks.get(pid, 0)
            todo.extend(children.get(pid, []))
        # First line of /proc/stat: user nice system idle iowait irq softirq steal (all cores).
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = sum(values) - values[3] - values[4]
        return cls(at, server / CLOCK_TICKS, postgres / CLOCK_TICKS, busy / CLOCK_TICKS)


# --- the load generator: wrk with bench/traffic.lua ---------------------------------------------


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit(
            "wrk is not installed. Install it with `apt-get install -y wrk` (as root), "
            "or run `make bench`, which does so when it can."
        )
    return found


@dataclass
class Load:
    """What one wrk run measured (counters from traffic.lua, latency from wrk's histogram)."""

    raw: dict[str, Any]
    window_s: float  # wall time between the CPU snapshots (wrk start to drained)
    wrk_cpu_s: float
    server_cpu_s: float
    postgres_cpu_s: float
    host_busy_s: float
    drained: bool
    stderr: str = ""

    @property
    def elapsed_s(self) -> float:
        return float(self.raw.get("elapsed_s") or self.window_s)

    @property
    def ok(self) -> int:
        return int(self.raw["ok"])

    @property
    def responses(self) -> int:
        return int(self.raw["responses"])

    @property
    def events_by_dialect(self) -> dict[str, int]:
        """Events acknowledged by 2xx, per dialect (Tracify: ``accepted``, duplicates left out)."""
        return {dialect: int(self.raw.get(f"{dialect}_events", 0)) for dialect in DIALECTS}

    @property
    def events(self) -> int:
        return sum(self.events_by_dialect.values())

    @property
    def non_2xx(self) -> int:
        return self.responses - self.ok

    @property
    def idle_closes(self) -> int:
        """Held connections the server closed while they waited for the others to drain (uvicorn
        closes a keep-alive connection idle for 5 s): wrk counts each as a read error."""
        return int(self.raw.get("idle_closes", 0))

    @property
    def errors(self) -> int:
        """Socket errors that may have cost a request: read errors less the idle closes."""
        errors = self.raw["errors"]
        reads = max(0, int(errors["read"]) - self.idle_closes)
        return int(errors["connect"]) + reads + int(errors["write"])


def run_wrk(
    base: str,
    *,
    duration: float,
    connections: int,
    threads: int,
    server_pid: int,
    traffic: Mapping[str, str | int | float],
    max_requests: int,
    script: Path = TRAFFIC_SCRIPT,
) -> Load:
    """Drive ``base`` with wrk until the deadline and until every connection has its last answer."""
    if urlsplit(base).hostname != HOST:
        raise ValueError("the bench only loads http://127.0.0.1")
    if connections % threads:
        raise ValueError("connections must be a multiple of wrk threads (wrk drops the remainder)")
    hard_limit = duration + DRAIN_LIMIT_S
    args = {
        "duration": duration,
        "connections": connections // threads,
        "max_requests": math.ceil(max_requests / threads),
        **traffic,
    }
    options = (
        f"-t {threads} -c {connections} -d {math.ceil(hard_limit + 5)}s --timeout {REQUEST_TIMEOUT_S:g}s"
    )
    script_args = [f"{key}={value}" for key, value in args.items()]
    command = [ensure_wrk(), *options.split(), "-s", str(script), base, "--", *script_args]
    drained = threading.Event()
    stderr_lines: list[str] = []
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, text=True)
        cpu_start = CpuSnapshot.take(server_pid)

        def watch_stderr() -> None:
            assert process.stderr is not None
            count = 0
            for line in process.stderr:
                stderr_lines.append(line.rstrip())
                if line.startswith("bench: drained"):
                    count += 1
                    if count >= threads:
                        drained.set()

        watcher = threading.Thread(target=watch_stderr, daemon=True)
        watcher.start()
        try:
            finished = drained.wait(timeout=hard_limit)
            cpu_end = CpuSnapshot.take(server_pid)
            wrk_cpu = process_cpu_s(process.pid)
            if process.poll() is None:
                process.send_signal(signal.SIGINT)  # wrk prints its summary and runs done()
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        watcher.join(timeout=5)
        out.seek(0)
        output = out.read()
    marker = next((line for line in output.splitlines() if line.startswith("BENCH_JSON ")), None)
    if marker is None:
        raise RuntimeError(
            f"wrk gave no summary (exit {process.returncode}):\n{output[-2000:]}"
            f"\n{chr(10).join(stderr_lines[-20:])}"
        )
    return Load(
        raw=json.loads(marker.removeprefix("BENCH_JSON ")),
        window_s=cpu_end.at - cpu_start.at,
        wrk_cpu_s=wrk_cpu,
        server_cpu_s=cpu_end.server_s - cpu_start.server_s,
        postgres_cpu_s=cpu_end.postgres_s - cpu_start.postgres_s,
        host_busy_s=cpu_end.host_busy_s - cpu_start.host_busy_s,
        drained=finished,
        stderr="\n".join(line for line in stderr_lines if not line.startswith("bench: drained")),
    )


# --- the results table --------------------------------------------------------------------------


@dataclass
class Table:
    header: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    #: Columns aligned left (the others are numbers, aligned right).
    left: frozenset[int] = frozenset({0})

    def add(self, *cells: str) -> None:
        self.rows.append(cells)

    def render(self) -> str:
        widths = [max(len(row[i]) for row in [self.header, *self.rows]) for i in range(len(self.header))]

        def line(cells: tuple[str, ...]) -> str:
            return "  ".join(
                c.ljust(w) if i in self.left else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ).rstrip()

        return "\n".join([line(self.header), "  ".join("-" * w for w in widths), *map(line, self.rows)])


def fmt(value: float | None, digits: int = 0, suffix: str = "") -> str:
    return "-" if value is None else f"{value:,.{digits}f}{suffix}"
