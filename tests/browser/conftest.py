"""A real browser against a real server: Debian's Chromium through Playwright, ``trackway serve``.

The test pages come from a second small HTTP server on another port, so every request
the tracker makes is cross-origin and CORS is exercised as on a customer's site.
Chromium or Playwright missing: the tests skip with a loud reason, except under
``CI=true``, where that is a failure (``.ci/run`` installs both).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, Response

# Debian's Chromium; another build (a developer's Mac) can be named in TRACKWAY_TEST_CHROMIUM.
CHROMIUM = os.environ.get("TRACKWAY_TEST_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium phones home at start-up, and on a closed
# network its connections are refused; --disable-quic keeps it on plain HTTP/1.1 to localhost.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN_TOKEN = "browser-test-token"
BIN = Path(sys.executable).parent
WAIT_MS = 15_000  # the bound on every browser wait
# A 1x1 transparent PNG: the slow image that keeps the page's load event back.
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e5270de10000000049454e44ae426082"
)


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    return None


@pytest.fixture(scope="session")
def chromium_ready() -> None:
    problem = _missing()
    if problem is not None:
        message = f"browser tests NOT RUN: {problem}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        print(f"\n*** {message} ***", file=sys.stderr)
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Trackway:
    """The running server, the tracardi source made with the CLI, and the snippet it printed."""

    base: str
    env: dict[str, str]
    source_id: str
    snippet: str
    log: Path

    def api(self, path: str, **params: Any) -> Any:
        """The read API, with the admin token the page never sees."""
        response = httpx.get(
            f"{self.base}{path}",
            params=params,
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def create_source(self, name: str) -> tuple[str, str]:
        """A new tracardi source through the CLI: its id, and the snippet printed on stderr."""
        done = subprocess.run(
            [str(BIN / "trackway"), "sources", "create", "--dialect", "tracardi", "--name", name],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        source_id = json.loads(done.stdout)["id"]  # stdout is pure JSON
        start, end = done.stderr.index("<script>"), done.stderr.index("</script>") + len("</script>")
        return source_id, done.stderr[start:end]


@contextmanager
def serve_trackway(tmp: Path, database_url: str) -> Iterator[Trackway]:
    """``trackway serve`` on a free port and ``database_url``, the demo on; a tracardi source."""
    port = free_port()
    env = {
        **os.environ,
        "TRACKWAY_DATABASE_URL": database_url,
        "TRACKWAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "TRACKWAY_HOST": "127.0.0.1",
        "TRACKWAY_PORT": str(port),
        "TRACKWAY_DEMO": "true",
        "TRACKWAY_LOG_LEVEL": "warning",
    }
    log = tmp / "server.log"
    with log.open("wb") as out:
        # A log file, not a pipe: a pipe nobody reads would fill and stall the server.
        process = subprocess.Popen([str(BIN / "trackway"), "serve"], env=env, stdout=out, stderr=out)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                pytest.fail(f"trackway serve exited with {process.returncode}:\n{log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"trackway serve was not ready within 30 s:\n{log.read_text()}")
            time.sleep(0.1)
        server = Trackway(base=base, env=env, source_id="", snippet="", log=log)
        server.source_id, server.snippet = server.create_source("web")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def trackway(chromium_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trackway]:
    """``trackway serve`` on a temporary SQLite database."""
    tmp = tmp_path_factory.mktemp("trackway")
    with serve_trackway(tmp, f"sqlite+aiosqlite:///{tmp / 'browser.db'}") as server:
        yield server


class PageServer:
    """The customer's site: pages registered by the tests, on another origin than Trackway."""

    def __init__(self) -> None:
        self.pages: dict[str, tuple[str, bytes]] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/slow.png":
                    # Holds the page's load event back, so "before load" lasts a while.
                    time.sleep(int(parse_qs(url.query).get("ms", ["500"])[0]) / 1000)
                    self._send(200, "image/png", PIXEL)
                elif url.path in pages:
                    self._send(200, *pages[url.path])
                else:
                    self._send(404, "text/plain", b"not found")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def add(self, path: str, body: str | bytes, content_type: str = "text/html; charset=utf-8") -> str:
        """Serve ``body`` at ``path`` (a page, or a script with its own content type)."""
        self.pages[path] = (content_type, body.encode() if isinstance(body, str) else body)
        return f"{self.origin}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def site(chromium_ready: None) -> Iterator[PageServer]:
    server = PageServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def browser(chromium_ready: None) -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=WAIT_MS * 2
        )
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Sent:
    """A request the browser made to ``POST /track``, as it left the browser."""

    content_type: str
    body: dict[str, Any]
    resource_type: str
    request: Request


@dataclass
class Visitor:
    """One browser profile (cookies, localStorage) with one tab, and what it said and sent."""

    context: BrowserContext
    page: Page
    track_url: str
    sent: list[Sent] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    console: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)

    def is_track(self, response: Response) -> bool:
        return response.url == self.track_url and response.request.method == "POST"

    def expect_track(self) -> Any:
        """Context manager: the next ``POST /track`` response (bounded by WAIT_MS)."""
        return self.page.expect_response(self.is_track, timeout=WAIT_MS)

    def tracker_messages(self) -> list[str]:
        return [text for text in self.console if "[trackway]" in text]

    def stored_profile(self) -> str | None:
        value: str | None = self.page.evaluate("localStorage.getItem('trackway_profile')")
        return value

    def wait_until(self, check: Callable[[], Any], *, what: str, timeout_ms: int = WAIT_MS) -> Any:
        """Poll ``check`` until it returns something truthy; fail after ``timeout_ms``.

        Waits with the page's clock: the sync API delivers browser events only while it is
        called, so a bare ``time.sleep`` would leave ``sent`` and ``console`` stale.
        """
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_ms} ms waiting for {what}")
            self.page.wait_for_timeout(100)

    def session_cookie(self) -> str | None:
        for cookie in self.context.cookies():
            if cookie["name"] == "trackway_session":
                return cookie["value"]
        return None


@pytest.fixture
def visitor(browser: Browser, trackway: Trackway) -> Iterator[Visitor]:
    """A fresh browser context per test: a new person as far as Trackway can tell."""
    context = browser.new_context(
        locale="de-DE", timezone_id="Europe/Berlin", viewport={"width": 1200, "height": 900}
    )
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    visitor = Visitor(context=context, page=page, track_url=f"{trackway.base}/track")

    def on_request(request: Request) -> None:
        if request.url == visitor.track_url and request.method == "POST":
            headers = request.headers
            visitor.sent.append(
                Sent(
                    content_type=headers.get("content-type", ""),
                    body=json.loads(request.post_data or "null"),
                    resource_type=request.resource_type,
                    request=request,
                )
            )

    def on_response(response: Response) -> None:
        if visitor.is_track(response):
            visitor.statuses.append(response.status)

    def on_console(message: ConsoleMessage) -> None:
        visitor.console.append(f"{message.type}: {message.text}")

    # On the context, not the page: a beacon sent while the page unloads is still seen.
    context.on("request", on_request)
    context.on("response", on_response)
    page.on("console", on_console)
    page.on("pageerror", lambda error: visitor.page_errors.append(str(error)))
    try:
        yield visitor
    finally:
        context.close()
