"""Configuration mistakes, by running the ``trackway`` command as an operator would: one line
naming the variable and what it expects, exit status 2, never a traceback; a database that
cannot be reached is one line too, and ``serve`` waits for it (``TRACKWAY_DB_WAIT_SECONDS``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

BIN = Path(sys.executable).parent / "trackway"


def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    return subprocess.run(
        [str(BIN), *args], env={**clean, **env}, capture_output=True, text=True, timeout=timeout
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TRACKWAY_PORT", "abc", "valid integer"),
        ("TRACKWAY_PORT", "70000", "less than or equal to 65535"),
        ("TRACKWAY_DATABASE_URL", "mysql://u:secret-pw@h/db", "expected postgresql://"),
        ("TRACKWAY_DATABASE_URL", "postgres://u:secret-pw@h:port/db", "expected postgresql://"),
        ("TRACKWAY_MASK_IP", "maybe", "valid boolean"),
        ("TRACKWAY_LOG_FORMAT", "xml", "'json' or 'text'"),
        ("TRACKWAY_LOG_LEVEL", "loud", "'info'"),
        ("TRACKWAY_DB_WAIT_SECONDS", "-1", "greater than or equal to 0"),
    ],
)
def test_a_bad_variable_is_one_line_and_status_2(variable: str, value: str, expected: str) -> None:
    result = run("serve", **{variable: value})
    assert result.returncode == 2
    line = one_line(result)
    assert line.startswith(f"trackway: {variable}: ")
    assert expected in line
    assert "secret-pw" not in result.stderr  # the value is not repeated: it may be a secret


def test_an_sqlite_directory_that_does_not_exist(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/missing/dir/t.db"
    result = run("migrate", TRACKWAY_DATABASE_URL=url)
    assert result.returncode == 2
    assert "TRACKWAY_DATABASE_URL" in one_line(result)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_hosted_providers_urls_mean_asyncpg(pg_url: str, scheme: str) -> None:
    url = make_url(pg_url).set(drivername=scheme).render_as_string(hide_password=False)
    result = run("migrate", TRACKWAY_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert "database at head" in result.stderr
    listed = run("sources", "list", TRACKWAY_DATABASE_URL=url + "?sslmode=disable")
    assert listed.returncode == 0, listed.stderr


def test_a_database_that_refuses_the_connection(pg_url: str) -> None:
    url = make_url(pg_url).set(database="trackway_no_such_db", password="not-the-password")
    result = run("migrate", TRACKWAY_DATABASE_URL=url.render_as_string(hide_password=False))
    assert result.returncode == 2
    line = one_line(result)
    assert "TRACKWAY_DATABASE_URL" in line and "not-the-password" not in line


def test_an_unreachable_postgresql_is_one_line_after_the_wait() -> None:
    url = f"postgresql://trackway@127.0.0.1:{free_port()}/trackway"
    started = time.monotonic()
    result = run(
        "serve", "--port", str(free_port()), TRACKWAY_DATABASE_URL=url, TRACKWAY_DB_WAIT_SECONDS="1.5"
    )
    assert time.monotonic() - started >= 1.5
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    waiting, final = result.stderr.strip().splitlines()
    assert "waiting up to 1.5 s" in waiting  # a JSON log line: the server's log format
    assert final.startswith("trackway: cannot reach the database at postgresql+asyncpg://")
    assert "is it running?" in final

    direct = run("migrate", TRACKWAY_DATABASE_URL=url)  # no waiting outside serve
    assert direct.returncode == 1
    assert "cannot reach the database" in one_line(direct)


def _forward(listener: socket.socket, target: tuple[str, int], stop: threading.Event) -> None:
    """A TCP forwarder to the real PostgreSQL: the database "comes up" when it starts listening."""

    def pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    listener.settimeout(0.2)
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        upstream = socket.create_connection(target)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


@pytest.fixture
def late_postgres(pg_url: str) -> Iterator[tuple[str, threading.Event]]:
    """A URL to a port where PostgreSQL appears once the returned event is set."""
    real = make_url(pg_url)
    port = free_port()
    stop = threading.Event()
    up = threading.Event()

    def serve_later() -> None:
        up.wait(60)
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            _forward(listener, (real.host or "127.0.0.1", real.port or 5432), stop)

    thread = threading.Thread(target=serve_later, daemon=True)
    thread.start()
    url = real.set(drivername="postgresql", host="127.0.0.1", port=port)
    yield url.render_as_string(hide_password=False), up
    stop.set()
    up.set()
    thread.join(5)


def test_serve_waits_for_postgresql_to_come_up(late_postgres: tuple[str, threading.Event]) -> None:
    url, up = late_postgres
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRACKWAY_")}
    env = {**clean, "TRACKWAY_DATABASE_URL": url, "TRACKWAY_DB_WAIT_SECONDS": "60"}
    process = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(line.decode() for line in process.stderr or ()), daemon=True
    )
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while not any("waiting up to 60 s" in line for line in lines) and time.monotonic() < deadline:
            assert process.poll() is None, "".join(lines)
            time.sleep(0.1)
        assert any("waiting up to 60 s" in line for line in lines), "".join(lines)
        up.set()  # PostgreSQL comes up while serve waits
        deadline = time.monotonic() + 30
        ready = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, "".join(lines)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
        reader.join(5)
    assert process.returncode == 0
