"""Prometheus metrics: one registry per app, a request counter middleware, and hooks for the core.

Every ``create_app`` builds its own ``Metrics`` (tests build many apps in one process, and
the global default registry refuses a metric name registered twice). With several uvicorn
workers (``trackway serve --workers N``) prometheus-client's multiprocess mode is on:
``serve`` gives the workers a fresh ``PROMETHEUS_MULTIPROC_DIR`` before they start, each
worker's counters and histograms are kept in files there, and ``/metrics``, whichever worker
answers it, adds up every worker's (``scrape_registry``), those of workers that have exited
included.

A base-layer module: it imports nothing from Trackway, so the core may call it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The ``dialect`` label of ``trackway_requests_total``: a tracker dialect, the browser
#: tracker script (``GET /tracker`` or ``/tracker/liliput.min.js``), the admin and read API,
#: or anything else.
REQUEST_DIALECTS: Final = ("tracardi", "tracktor", "insend", "tracify", "segment", "tracker", "api", "other")
#: Ingest batches per committed transaction: 1 without group commit, more with it.
BATCH_SIZE_BUCKETS: Final = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Commit latency, from a local SQLite fsync to a slow network round trip.
COMMIT_SECONDS_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

_FORM: Final = "application/x-www-form-urlencoded"
_TRACKTOR_PATHS: Final = frozenset({"/set", "/alias"})
#: The Segment dialect's paths: its HTTP API, and analytics.js' short ones.
_SEGMENT_PATHS: Final = frozenset(
    {f"/v1/{name}" for name in ("track", "identify", "page", "screen", "group", "alias", "batch")}
    | {f"{prefix}/{letter}" for prefix in ("", "/v1") for letter in "tipsgab"}
)


class Metrics:
    """The registry of one app and the metric objects on it, with the calls Trackway makes.

    ``observe_ingest`` and ``observe_commit`` are for the ingest core and the unit of work;
    the request counter is fed by ``RequestMetricsMiddleware``.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "trackway_requests_total",
            "HTTP requests answered, by dialect and status code.",
            ("dialect", "status"),
            registry=self.registry,
        )
        self.events_stored = Counter(
            "trackway_events_stored_total",
            "Events stored (committed), by the source's dialect.",
            ("dialect",),
            registry=self.registry,
        )
        self.event_duplicates = Counter(
            "trackway_event_duplicates_total",
            "Events skipped as duplicates of a stored event (same dedup_key), by dialect.",
            ("dialect",),
            registry=self.registry,
        )
        self.bots_dropped = Counter(
            "trackway_bots_dropped_total",
            "Requests from bots answered and not stored (TRACKWAY_BOTS=drop), by dialect.",
            ("dialect",),
            registry=self.registry,
        )
        self.merges = Counter("trackway_merges_total", "Profile merges committed.", registry=self.registry)
        self.commit_batch_size = Histogram(
            "trackway_commit_batch_size",
            "Ingest batches per committed transaction (1 without group commit).",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.commit_seconds = Histogram(
            "trackway_commit_seconds",
            "Latency of one committed transaction's COMMIT, in seconds.",
            buckets=COMMIT_SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.rejections = Counter(
            "trackway_rejections_total",
            "Rejected collector requests of known sources, by dialect and outcome: kept in the "
            "quarantine, capped (over TRACKWAY_REJECTIONS_PER_MINUTE), or failed (not written).",
            ("dialect", "outcome"),
            registry=self.registry,
        )
        self.replays = Counter(
            "trackway_rejection_replays_total",
            "Replays of quarantined requests, by outcome: accepted, or rejected again.",
            ("outcome",),
            registry=self.registry,
        )
        # Label children cached per (dialect, status): ``labels()`` takes a lock and
        # validates its arguments, and the middleware runs on every request.
        self._request_children: dict[tuple[str, int], Any] = {}

    def observe_ingest(self, dialect: str, stored: int, duplicates: int, merges: int) -> None:
        """Count one ingest batch, after its transaction committed (never before: a rolled
        back batch stored nothing). ``dialect`` is the source's dialect (``tracardi``...),
        not the SQL one."""
        self.events_stored.labels(dialect).inc(stored)
        self.event_duplicates.labels(dialect).inc(duplicates)
        if merges:
            self.merges.inc(merges)

    def count_bot_dropped(self, dialect: str) -> None:
        """One request answered 2xx and not stored because a bot sent it."""
        self.bots_dropped.labels(dialect).inc()

    def observe_commit(self, batches: int, seconds: float) -> None:
        """Record one committed transaction: how many ingest batches it carried, how long the
        COMMIT took. With group commit the batch size shows how well requests are grouped."""
        self.commit_batch_size.observe(batches)
        self.commit_seconds.observe(seconds)

    def count_rejection(self, dialect: str, outcome: str) -> None:
        """A rejected request of a known source: ``kept``, ``capped`` or ``failed``."""
        self.rejections.labels(dialect, outcome).inc()

    def count_replay(self, accepted: bool) -> None:
        self.replays.labels("accepted" if accepted else "rejected").inc()

    def count_request(self, dialect: str, status: int) -> None:
        """One answered HTTP request (the middleware calls this)."""
        key = (dialect, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(dialect, str(status))
        child.inc()


#: prometheus-client's own variable: set, metric values live in files in that directory.
MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_DIR) or None


def scrape_registry(metrics: Metrics) -> CollectorRegistry:
    """What ``/metrics`` renders: this process's registry, or in multiprocess mode every worker's."""
    if multiprocess_dir() is None:
        return metrics.registry
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def metrics_of(app: Any) -> Metrics:
    """The ``Metrics`` of an app built by ``create_app`` (kept on ``app.state.metrics``)."""
    metrics: Metrics = app.state.metrics
    return metrics


def request_dialect(method: str, path: str, content_type: str) -> str:
    """Which dialect a request speaks, from what the router would see, before it runs.

    ``POST /track`` is Tracardi unless its body is a form (then Tracktor, as
    ``dialects/dispatch.py`` decides; the middleware corrects it to Tracardi when the
    form's body turns out to be a JSON object); ``GET /track`` is Tracktor. CORS
    preflights (``OPTIONS``) carry no data and count as ``other``.
    """
    if method == "OPTIONS":
        return "other"
    if path == "/track":
        if method == "POST":
            form = content_type.partition(";")[0].strip().lower() == _FORM
            return "tracktor" if form else "tracardi"
        return "tracktor"
    if path in _TRACKTOR_PATHS:
        return "tracktor"
    if path == "/watch/event":
        return "insend"
    if path == "/tracify/events":
        return "tracify"
    if path in _SEGMENT_PATHS:
        return "segment"
    if path in ("/tracker", "/tracker/liliput.min.js"):
        return "tracker"
    if path == "/api" or path.startswith("/api/"):
        return "api"
    return "other"


class RequestMetricsMiddleware:
    """Counts every HTTP response by dialect and status: a pure ASGI middleware.

    Starlette's ``BaseHTTPMiddleware`` runs each request through extra tasks and memory
    streams, a cost this hot path does not pay. An exception that escapes the app (it
    becomes a 500 further out) is counted as a 500; a request cancelled before any
    answer (the client went away) is not counted.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        content_type = ""
        if scope["method"] == "POST":
            for name, value in scope["headers"]:
                if name == b"content-type":
                    content_type = value.decode("latin-1")
                    break
        dialect = request_dialect(scope["method"], scope["path"], content_type)
        status: int | None = None
        if dialect == "tracktor" and scope["method"] == "POST" and scope["path"] == "/track":
            # ``curl -d '{...}'`` labels JSON as a form; dispatch.py sends a body that is a
            # JSON object to Tracardi. Peek at the first bytes as the app reads them.
            upstream = receive
            looked = False

            async def receive_peeking() -> Message:
                nonlocal dialect, looked
                message = await upstream()
                if not looked and message["type"] == "http.request":
                    head = message.get("body", b"").lstrip()
                    if head:
                        looked = True
                        if head.startswith(b"{"):
                            dialect = "tracardi"
                return message

            receive = receive_peeking

        async def send_counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        except Exception:
            if status is None:
                status = 500
            raise
        finally:
            # A request cancelled before it was answered (the client left) is not counted.
            if status is not None:
                self.metrics.count_request(dialect, status)
