"""``create_app(settings)``: routers, error handlers, CORS, and the lifespan that owns the engine."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from trackway import __version__, logsafe
from trackway.api import analytics, demo, docs, health, openapi, overview, people, profiles, segments
from trackway.api import erasures as erasures_api
from trackway.api import errors as api_errors
from trackway.api import metrics as metrics_api
from trackway.api import rejections as rejections_api
from trackway.api import sources as sources_api
from trackway.console import routes as console
from trackway.core import cart_outcomes, erasure
from trackway.core import rejections as rejections_retention
from trackway.core import retention as event_retention
from trackway.core.bots import BotPolicy
from trackway.core.group_commit import GroupCommitWriter
from trackway.core.ingest import DirectWriter, Writer
from trackway.core.jobs import PeriodicJob
from trackway.core.sessions import describe_device
from trackway.core.sources import SourceDirectory
from trackway.db.engine import make_engine
from trackway.db.uow import SqlUnitOfWork
from trackway.dialects import dispatch, insend, segment, tracardi, tracify, tracker_script, tracktor
from trackway.dialects.quarantine import Quarantine
from trackway.dialects.routes import lean_routes
from trackway.limits import BodyDeadline
from trackway.metrics import Metrics, RequestMetricsMiddleware
from trackway.requestlog import RequestLogMiddleware
from trackway.runtime import gc_thresholds
from trackway.services import AppServices
from trackway.settings import Settings

#: Routers of the endpoints that trackers call: served lean (``dialects/routes.py``).
COLLECTOR_ROUTERS = (
    dispatch.router,
    tracker_script.router,
    tracktor.router,
    insend.router,
    tracify.router,
    segment.router,
)


def _telemetry_option(enabled: bool) -> dict[str, Any]:
    """FastAPI's native OpenTelemetry (FastAPI 0.165 and newer), off unless asked for.

    When on, every request looks up the global tracer, meter and logger providers (reading
    the environment each time) even when none is configured; when off, it checks one flag.
    """
    if enabled or "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app. Nothing is connected until the lifespan starts."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        uow = SqlUnitOfWork(engine)
        if settings.metrics:
            uow.observer = app.state.metrics
        writer: Writer
        # Bots flagged or dropped for every dialect, before any batch is queued (core/bots.py).
        bots = BotPolicy(settings.bots, app.state.metrics)
        if settings.group_commit:
            group_writer = GroupCommitWriter(
                uow,
                window=settings.group_commit_window_ms / 1000,
                max_batches=settings.group_commit_max_batches,
                in_flight=settings.group_commit_in_flight,
                bots=bots,
            )
            group_writer.start()
            writer = group_writer
        else:
            writer = DirectWriter(uow, bots)
        app.state.services = AppServices(
            settings=settings,
            engine=engine,
            uow=uow,
            sources=SourceDirectory(uow, settings.source_cache_seconds),
            writer=writer,
        )
        # ua-parser compiles its rules on first use (~0.1 s): pay it before the first visitor.
        await asyncio.to_thread(describe_device, "Mozilla/5.0")
        # Abandoned carts: due work claimed in the database, so every process may run it.
        outcomes = PeriodicJob(
            "cart outcomes", lambda: cart_outcomes.run_pass(uow), settings.cart_outcomes_interval
        )
        outcomes.start()
        # Erasures and retention: due work claimed in the database too (core/jobs.py).
        erasures = PeriodicJob("erasures", lambda: erasure.run_pass(uow), settings.erasure_interval)
        app.state.erasure_job = erasures
        erasures.start()
        interval = settings.retention_interval
        retain = PeriodicJob("retention", lambda: event_retention.run_pass(uow, interval=interval), interval)
        retain.start()
        # Old rejections: deleted in bounded batches, claimed in the database.
        days = settings.rejections_days
        retention = PeriodicJob(
            "rejections retention",
            lambda: rejections_retention.purge(uow, days=days),
            settings.rejections_purge_interval,
        )
        retention.start()
        try:
            with gc_thresholds(settings.gc_gen0_threshold):
                yield
        finally:
            await retention.close()
            await outcomes.close()
            await erasures.close()
            await retain.close()
            if getattr(app.state, "console_client", None) is not None:
                await app.state.console_client.aclose()
            await writer.close()  # drain: every queued batch is written first
            await engine.dispose()

    app = FastAPI(
        title="Trackway",
        version=__version__,
        summary="Customer data platform: five tracker dialects, a read API and a console.",
        lifespan=lifespan,
        # /docs is served from the package below (docs.py); FastAPI's own pages load a CDN.
        docs_url=None,
        redoc_url=None,
        **_telemetry_option(settings.opentelemetry),
    )
    # Snippets post from other sites. Preflights are answered for any origin; the
    # per-source allow-list is enforced on the request itself, where the source is known.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        max_age=86400,
    )
    # One registry per app (tests build many); always there, so the core may report to it.
    app.state.metrics = Metrics()
    if settings.metrics:
        app.add_middleware(RequestMetricsMiddleware, metrics=app.state.metrics)
    # Every request's body within its deadline; a client's hang-up mid-body a quiet 499.
    app.add_middleware(BodyDeadline, timeout=settings.body_timeout_seconds)
    # One structured line per request (requestlog.py), outermost: it times the whole answer.
    app.add_middleware(RequestLogMiddleware, mask_ip=settings.mask_ip)
    api_errors.install(app)
    # Collector requests rejected with a 4xx, kept for replay (api/errors.py calls it).
    app.state.keep_rejection = Quarantine(app.state.metrics, settings.rejections_per_minute).keep
    logsafe.install(mask_ip=settings.mask_ip)
    app.include_router(health.router)
    for router in COLLECTOR_ROUTERS:
        app.include_router(router)
    app.include_router(tracardi.router)
    # The same collector endpoints as lean Starlette routes, matched first (dialects/routes.py).
    app.router.routes[0:0] = lean_routes(COLLECTOR_ROUTERS)
    app.include_router(sources_api.router)
    app.include_router(erasures_api.router)
    app.include_router(profiles.router)
    app.include_router(people.router)
    app.include_router(segments.router)
    app.include_router(analytics.router)
    app.include_router(demo.router)
    app.include_router(metrics_api.router)
    app.include_router(rejections_api.router)
    app.include_router(overview.router)
    docs.install(app)
    if settings.console:
        app.include_router(console.router)
        console.mount_static(app)
    openapi.install(app)
    return app
