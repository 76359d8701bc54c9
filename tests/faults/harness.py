"""What the fault tests share: a real ``trackway serve`` process, a bounded load, and the rows it left.

Everything is bounded: each load loop sends at most ``max_requests`` requests before a
deadline, each request waits at most ``REQUEST_TIMEOUT`` seconds, and every process the
tests start is killed in a ``finally``. Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.helpers import tracker_payload
from trackway.db.models import events

BIN = Path(sys.executable).parent
ADMIN_TOKEN = "faults-token"
#: Longest wait for one answer: a request still unanswered after this counts as unanswered.
REQUEST_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_or_fail(message: str) -> None:
    """A missing tool skips loudly on a developer's machine; under ``CI=true`` it is a failure."""
    if ci():
        pytest.fail(message)
    pytest.skip(f"NOT RUN: {message}")


@contextmanager
def scratch_pg_database(prefix: str, what: str) -> Iterator[str]:
    """An empty PostgreSQL database of this test's alone, next to ``TRACKWAY_TEST_DATABASE_URL``'s
    (a server migrates it), dropped with ``FORCE`` at the end, so connections a killed server
    left behind cannot keep it. Unreachable: ``skip_or_fail`` naming ``what``."""
    from tests.conftest import PG_URL, _pg_admin, _pg_reachable, run_sync

    problem = run_sync(_pg_reachable(PG_URL))
    if problem is not None:
        skip_or_fail(f"PostgreSQL at {PG_URL} is unreachable ({problem}): {what}")
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    run_sync(_pg_admin(PG_URL, f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        run_sync(_pg_admin(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    env.update(
        TRACKWAY_DATABASE_URL=database_url,
        TRACKWAY_ADMIN_TOKEN=ADMIN_TOKEN,
        TRACKWAY_LOG_LEVEL="warning",
        TRACKWAY_HOST="127.0.0.1",
    )
    env.update(extra)
    return env


def create_source(database_url: str) -> str:
    """A Tracardi source made with the CLI, as an operator would (it migrates the database first)."""
    source_id = str(uuid.uuid4())
    subprocess.run(
        [str(BIN / "trackway"), "sources", "create", "--dialect", "tracardi", "--name", "faults",
         "--id", source_id],
        env=server_env(database_url), capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    return source_id


class Server:
    """``trackway serve`` as a real process; its output goes to a file (a pipe could fill and block it)."""

    def __init__(
        self, database_url: str, log_path: Path, *, ulimit_files: int | None = None, **env: str
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = server_env(database_url, **env)
        command = [str(BIN / "trackway"), "serve", "--port", str(self.port)]
        if ulimit_files is not None:  # e.g. the slow-client test: few descriptors, as on a small host
            command = [
                "bash",
                "-c",
                f'ulimit -n {ulimit_files} && exec "{command[0]}" serve --port {self.port}',
            ]
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(command, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                pytest.fail(f"trackway serve exited with {self.process.returncode}:\n{self.output()}")
            time.sleep(0.1)
        pytest.fail(f"trackway serve was not ready within {timeout} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL, and reap it; safe to call when it is already gone."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """The cleanup of every test: a graceful stop if it still runs, then SIGKILL if it lingers."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            self._log.close()


@dataclass
class Outcome:
    """One request of the load: what was sent and what (if anything) came back."""

    payload: dict[str, Any]
    started: float
    ended: float = 0.0
    #: ``None``: no answer at all (connection refused or reset, timeout).
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def event_keys(self) -> list[str]:
        """The client's event ids: each event's ``dedup_key`` in its source."""
        return [event["id"] for event in self.payload["events"]]


@dataclass
class Load:
    """A few concurrent client loops posting 3-event Tracardi payloads, each event with its own id.

    ``faulted`` is set by the test once it injected its fault: from then on a loop that
    gets no answer stops, since the server is gone. Before it, a missing answer is recorded
    (and the test fails on it); with ``stop_on_no_answer=False`` loops keep going anyway.
    """

    base: str
    source_id: str
    loops: int = 8
    max_requests: int = 1500
    seconds: float = 20.0
    stop_on_no_answer: bool = True
    outcomes: list[Outcome] = field(default_factory=list)
    faulted: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        run = uuid.uuid4().hex[:8]
        deadline = time.monotonic() + self.seconds
        await asyncio.gather(*(self._loop(f"{run}-{n}", deadline) for n in range(self.loops)))

    async def _loop(self, name: str, deadline: float) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=self.base, timeout=REQUEST_TIMEOUT, limits=limits) as client:
            for i in range(self.max_requests):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                # A browser: one visit per ten requests, its events each with a fresh id.
                outcome = await send(client, tracker_payload(self.source_id, session=f"{name}-{i // 10}"))
                self.outcomes.append(outcome)
                if outcome.status is None:
                    if self.faulted.is_set() and self.stop_on_no_answer:
                        return
                    await asyncio.sleep(0.02)

    def answered_before(self, moment: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.ended < moment]


async def under_load(
    load: Load, *, at_least: float = 1.0, acknowledged: int = 100, at_most: float = 5.0
) -> None:
    """Return once the load ran ``at_least`` seconds and got ``acknowledged`` 2xx, or after ``at_most``.

    The fault comes after about a second on a quick machine, and still meets real load on
    a slow one.
    """
    started = time.monotonic()
    await asyncio.sleep(at_least)
    while time.monotonic() - started < at_most:
        if sum(o.acknowledged for o in load.outcomes) >= acknowledged:
            return
        await asyncio.sleep(0.05)


async def send(client: httpx.AsyncClient, payload: dict[str, Any]) -> Outcome:
    outcome = Outcome(payload=payload, started=time.monotonic())
    try:
        response = await client.post("/track", json=payload)
    except httpx.TransportError as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    else:
        outcome.status = response.status_code
        outcome.headers = dict(response.headers)
        try:
            outcome.body = response.json()
        except ValueError:
            outcome.body = response.text
    outcome.ended = time.monotonic()
    return outcome


async def resend(base: str, outcomes: Iterable[Outcome], loops: int = 4) -> list[Outcome]:
    """Send the same payloads again (same event ids), as a client retrying would."""
    todo = list(outcomes)
    answers: list[Outcome] = []

    async def loop(part: list[Outcome]) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT) as client:
            for outcome in part:
                answers.append(await send(client, outcome.payload))

    await asyncio.gather(*(loop(todo[n::loops]) for n in range(loops)))
    return answers


async def stored_events(database_url: str, source_id: str) -> list[tuple[str, str | None]]:
    """``(id, dedup_key)`` of every event row of the source, read straight from the database."""
    engine = create_async_engine(database_url, poolclass=NullPool)
    try:
        async with engine.connect() as db:
            stmt = select(events.c.id, events.c.dedup_key).where(events.c.source_id == source_id)
            return [(row.id, row.dedup_key) for row in await db.execute(stmt)]
    finally:
        await engine.dispose()


def assert_acknowledged_are_stored(outcomes: Iterable[Outcome], rows: list[tuple[str, str | None]]) -> int:
    """Every 2xx's stored event ids, and its events' dedup keys, are rows: nothing acknowledged was lost.

    Returns how many acknowledged requests were checked.
    """
    ids = {event_id for event_id, _ in rows}
    keys = {key for _, key in rows}
    checked = 0
    for outcome in outcomes:
        if not outcome.acknowledged:
            continue
        checked += 1
        acknowledged = set(outcome.body["events"]) | set(outcome.body["duplicates"])
        missing = acknowledged - ids
        assert not missing, f"acknowledged event ids not stored: {sorted(missing)}"
        missing_keys = set(outcome.event_keys) - keys
        assert not missing_keys, f"acknowledged client event ids not stored: {sorted(missing_keys)}"
    return checked


def summary(outcomes: Iterable[Outcome]) -> str:
    """Status counts, for assertion messages: ``{200: 812, None: 8}``."""
    counts: dict[int | None, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return str(counts)
