"""``trackway``: serve, migrate, and manage sources, with the same functions the API calls."""

from __future__ import annotations

import argparse
import asyncio
import logging
import logging.config
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trackway import jsonutil
from trackway.api.sources import source_view
from trackway.core import sources as source_service
from trackway.core.sources import DIALECTS
from trackway.db.engine import make_engine
from trackway.db.errors import is_unavailable
from trackway.db.migrate import upgrade
from trackway.db.uow import SqlUnitOfWork
from trackway.errors import TrackwayError
from trackway.logsafe import describe
from trackway.settings import Settings


def _print_json(value: Any) -> None:
    sys.stdout.write(jsonutil.dumps(value).decode() + "\n")


#: How long ``trackway serve`` lets in-flight requests finish after SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 30


def _exit_cleanly(_signum: int, _frame: Any) -> None:
    """SIGTERM ends the process with status 0.

    uvicorn shuts down gracefully on SIGTERM, then restores the handler it found and raises
    the signal again; with the default handler the process would die of it (status 143)
    after a clean shutdown, which supervisors report as a failure.
    """
    raise SystemExit(0)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    overrides = {"host": args.host, "port": args.port}
    for name, value in overrides.items():
        if value is not None:
            # Workers are separate processes that read their settings from the environment.
            os.environ[f"TRACKWAY_{name.upper()}"] = str(value)
    settings = Settings()
    from trackway.requestlog import log_config
    from trackway.server import uvicorn_options

    # The server's notices in the log's format from the first line on (JSON lines by default).
    logging.config.dictConfig(log_config(settings.log_format, settings.log_level))
    log = logging.getLogger("trackway.serve")
    wait_for_database(settings, log)
    if not args.no_migrate:
        upgrade(settings.database_url)
    if not settings.admin_token:
        log.warning(
            "TRACKWAY_ADMIN_TOKEN is not set, so the admin and read API (/api/...) answers 401. "
            "Set one to use it, e.g.: "
            "TRACKWAY_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )
    options = uvicorn_options(settings)
    if options["limit_concurrency"] < settings.limit_concurrency:
        log.warning(
            "at most %d connections per worker (TRACKWAY_LIMIT_CONCURRENCY=%d does not fit the "
            "open-file limit, ulimit -n); more are answered 503",
            options["limit_concurrency"],
            settings.limit_concurrency,
        )
    signal.signal(signal.SIGTERM, _exit_cleanly)
    metrics_dir = _multiprocess_metrics(args.workers)
    try:
        _run_uvicorn(uvicorn, settings, args, options)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _multiprocess_metrics(workers: int) -> str | None:
    """With several workers, a fresh ``PROMETHEUS_MULTIPROC_DIR`` for prometheus-client's
    multiprocess mode (``metrics.py``): the workers inherit it, and ``/metrics`` adds up all of
    them. Returns the directory to remove at exit (``None``: none was made here). A directory
    the operator set is used, emptied of an earlier run's files first, as prometheus-client asks.
    """
    from trackway.metrics import MULTIPROC_DIR, multiprocess_dir

    given = multiprocess_dir()
    if given is not None:
        for stale in Path(given).glob("*.db"):
            stale.unlink(missing_ok=True)
        return None
    if workers <= 1:
        return None
    made = tempfile.mkdtemp(prefix="trackway-metrics-")
    os.environ[MULTIPROC_DIR] = made
    return made


def _run_uvicorn(uvicorn: Any, settings: Settings, args: argparse.Namespace, options: dict[str, Any]) -> None:
    from trackway import requestlog

    uvicorn.run(
        "trackway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level=settings.log_level,
        log_config=requestlog.log_config(settings.log_format, settings.log_level),
        access_log=settings.access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **options,
    )


class DatabaseUnreachable(Exception):
    """The database did not answer (within ``TRACKWAY_DB_WAIT_SECONDS`` for ``serve``)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def database_problem(exc: BaseException, settings: Settings | None) -> str | None:
    """One line for a database that refused the CLI's connection, or ``None`` if ``exc`` is another
    error. Kinds and SQLSTATEs only: a driver's message may quote values (``logsafe.describe``)."""
    from sqlalchemy.exc import DBAPIError

    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if not any(isinstance(e, DBAPIError | OSError) or is_unavailable(e) for e in chain):
        return None
    where = _redacted(settings.database_url) if settings is not None else "TRACKWAY_DATABASE_URL"
    cause = describe(next((e for e in chain if isinstance(e, OSError | DBAPIError)), chain[-1]))
    if settings is not None and settings.is_sqlite:
        return (
            f"cannot open the SQLite database {where} ({cause}): does its directory exist, and may "
            "this user write there? (TRACKWAY_DATABASE_URL)"
        )
    if any(is_unavailable(e) for e in chain):
        return f"cannot reach the database at {where} ({cause}): is it running? (TRACKWAY_DATABASE_URL)"
    return f"the database at {where} refused the connection ({cause}); check TRACKWAY_DATABASE_URL"


def check_sqlite_directory(settings: Settings) -> None:
    """An SQLite file whose directory does not exist cannot be created: said before any driver
    runs (aiosqlite's thread would print a traceback of its own once the loop is gone)."""
    if not settings.is_sqlite:
        return

    from sqlalchemy.engine import make_url

    path = make_url(settings.database_url).database
    if path and path != ":memory:" and not Path(path).parent.is_dir():
        raise DatabaseUnreachable(
            f"cannot create the SQLite database {path}: its directory does not exist (TRACKWAY_DATABASE_URL)",
            retryable=False,
        )


async def _ping(settings: Settings) -> None:
    from sqlalchemy import text

    engine = make_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def wait_for_database(settings: Settings, log: logging.Logger) -> None:
    """Until the database answers, for ``db_wait_seconds`` at most: in a compose stack PostgreSQL
    and Trackway start together. One line when waiting starts; an error that waiting cannot
    cure (a wrong password, no such database, an SQLite path that cannot be opened) at once."""
    deadline = time.monotonic() + settings.db_wait_seconds
    waiting = False
    while True:
        try:
            asyncio.run(_ping(settings))
            return
        except Exception as exc:
            problem = database_problem(exc, settings) or describe(exc)
            retryable = is_unavailable(exc) and not settings.is_sqlite
            if not retryable or time.monotonic() >= deadline:
                raise DatabaseUnreachable(problem, retryable=retryable) from None
            if not waiting:
                waiting = True
                log.warning(
                    "%s; waiting up to %g s (TRACKWAY_DB_WAIT_SECONDS)", problem, settings.db_wait_seconds
                )
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _migrate(_args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.database_url)
    print(f"trackway: database at head ({_redacted(settings.database_url)})", file=sys.stderr)
    return 0


def _redacted(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


async def _with_uow(settings: Settings, action: Any) -> Any:
    engine = make_engine(settings)
    try:
        return await action(SqlUnitOfWork(engine))
    finally:
        await engine.dispose()


def _print_snippet(source_id: str, settings: Settings) -> None:
    """The page snippet for a new tracardi source, on stderr: stdout stays pure JSON for scripts.

    Its address is ``TRACKWAY_PUBLIC_URL`` (what browsers reach, behind a proxy or a domain);
    unset, the listen address, which browsers elsewhere may not reach: the text says so.
    """
    from trackway.dialects import tracker_script

    if settings.public_url:
        api_url = settings.public_url
        where = f"browsers reach Trackway at {api_url} (TRACKWAY_PUBLIC_URL)"
    else:
        api_url = tracker_script.base_url(settings.host, settings.port)
        where = (
            f"if browsers reach Trackway at another address than {api_url} (the TRACKWAY_HOST/"
            "TRACKWAY_PORT it listens on),\nset TRACKWAY_PUBLIC_URL to it, or change it in the snippet"
        )
    print(
        f"trackway: paste this snippet into your pages' <head>; {where}:\n\n"
        f"{tracker_script.snippet(api_url=api_url, source_id=source_id)}\n\n"
        'Then track events from later scripts: window.tracker.track("purchase-order", {"price": 13.45})\n'
        f"Demo page (with TRACKWAY_DEMO=true): {api_url}/demo?source={source_id}",
        file=sys.stderr,
    )


def _sources(args: argparse.Namespace, settings: Settings) -> int:
    upgrade(settings.database_url)
    if args.sources_command == "create":

        async def action(uow: SqlUnitOfWork) -> Any:
            return await source_service.create_source(
                uow,
                name=args.name,
                dialect=args.dialect,
                source_id=args.id,
                secret=args.secret,
                signed_only=args.signed_only,
                allowed_origins=args.origin or [],
                cart_abandon_after=args.cart_abandon_after,
                retention_days=args.retention_days,
                rate_limit_per_second=args.rate_limit,
                rate_limit_burst=args.rate_burst,
            )

        info = asyncio.run(_with_uow(settings, action))
        _print_json(source_view(info, show_secret=True))  # the one time the secret is shown
        if info.dialect == "tracardi":
            _print_snippet(info.id, settings)
    elif args.sources_command == "list":
        items = asyncio.run(_with_uow(settings, source_service.list_sources))
        _print_json([source_view(info) for info in items])
    elif args.sources_command == "update":
        changes: dict[str, Any] = {}
        if args.enabled is not None:
            changes["enabled"] = args.enabled
        if args.signed_only is not None:
            changes["signed_only"] = args.signed_only
        if args.secret is not None:
            changes["secret"] = args.secret
        elif args.rotate_secret:
            changes["secret"] = secrets.token_urlsafe(32)
        if args.name is not None:
            changes["name"] = args.name
        if args.origin is not None:
            changes["allowed_origins"] = args.origin
        if args.cart_abandon_after is not None:
            changes["cart_abandon_after"] = args.cart_abandon_after
        if args.retention_days is not None:
            changes["retention_days"] = args.retention_days or None  # 0: --no-retention
        if args.no_rate_limit:
            changes["rate_limit_per_second"] = None
        elif args.rate_limit is not None:
            changes["rate_limit_per_second"] = args.rate_limit
        if args.rate_burst is not None:
            changes["rate_limit_burst"] = args.rate_burst

        async def update(uow: SqlUnitOfWork) -> Any:
            return await source_service.update_source(uow, args.source_id, changes)

        updated = asyncio.run(_with_uow(settings, update))
        _print_json(source_view(updated, show_secret="secret" in changes))
    return 0


def _batch_size(value: str) -> int:
    """1 to 1000 carts a transaction: a batch's events are one statement, within SQLite's limits."""
    try:
        size = int(value)
    except ValueError:
        size = 0
    if not 1 <= size <= 1000:
        raise argparse.ArgumentTypeError("a whole number from 1 to 1000")
    return size


def _carts(args: argparse.Namespace, settings: Settings) -> int:
    """``trackway carts run-outcomes``: one pass of the outcome job, as the server runs it."""
    from trackway.core import cart_outcomes

    upgrade(settings.database_url)

    async def action(uow: SqlUnitOfWork) -> int:
        return await cart_outcomes.run_pass(uow, limit=args.batch)

    done = asyncio.run(_with_uow(settings, action))
    _print_json({"abandoned": done})
    return 0


def _erasures(args: argparse.Namespace, settings: Settings) -> int:
    """``trackway erasures request|list|show|run``: the same functions as ``/api/erasures``."""
    from trackway.core import erasure

    upgrade(settings.database_url)
    command = args.erasures_command

    async def action(uow: SqlUnitOfWork) -> Any:
        if command == "request":
            return await erasure.request_erasure(
                uow,
                profile_id=args.profile,
                identity=args.identity,
                source=args.source,
                suppress=args.suppress,
                requested_by="cli",
            )
        if command == "list":
            return await erasure.list_erasures(uow, args.limit)
        if command == "show":
            return await erasure.get_erasure(uow, args.erasure_id)
        steps = await erasure.run_pass(uow, batch=args.batch)
        return {"steps": steps, "items": await erasure.list_erasures(uow, 10)}

    _print_json(asyncio.run(_with_uow(settings, action)))
    return 0


def _suppressions(args: argparse.Namespace, settings: Settings) -> int:
    from trackway.core import erasure

    upgrade(settings.database_url)

    async def action(uow: SqlUnitOfWork) -> Any:
        if args.suppressions_command == "lift":
            await erasure.lift_suppression(uow, args.suppression_id)
            return {"lifted": args.suppression_id}
        return await erasure.list_suppressions(uow, args.limit)

    _print_json(asyncio.run(_with_uow(settings, action)))
    return 0


def _profiles(args: argparse.Namespace, settings: Settings) -> int:
    """``trackway profiles export ID``: what ``GET /api/profiles/{id}/export`` streams, on stdout."""
    from trackway.core import erasure

    upgrade(settings.database_url)

    async def action(uow: SqlUnitOfWork) -> None:
        ids = await erasure.export_person(uow, args.profile_id)
        async for chunk in erasure.export_chunks(uow, ids):
            sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()

    asyncio.run(_with_uow(settings, action))
    return 0


def _retention(args: argparse.Namespace, settings: Settings) -> int:
    """``trackway retention run``: one whole pass now, due or not; prints how many events went."""
    from trackway.core import retention

    upgrade(settings.database_url)

    async def action(uow: SqlUnitOfWork) -> int:
        return await retention.run_pass(
            uow, interval=settings.retention_interval, limit=args.batch, due_only=False
        )

    _print_json({"deleted": asyncio.run(_with_uow(settings, action))})
    return 0


def _retention_days(value: str) -> int:
    try:
        days = int(value)
    except ValueError:
        days = 0
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError("whole days from 1 to 3650")
    return days


def _add_privacy_commands(commands: Any) -> None:
    """``erasures``, ``suppressions``, ``profiles export`` and ``retention`` (issue 17)."""
    erasures = commands.add_parser("erasures", help="erase people (and suppress what they send later)")
    erasures.set_defaults(handler=_erasures)
    verbs = erasures.add_subparsers(dest="erasures_command", required=True)
    request = verbs.add_parser("request", help="record an erasure (the server's job, or `run`, does it)")
    who = request.add_mutually_exclusive_group(required=True)
    who.add_argument("--profile", help="a profile id (a merged one erases its whole person)")
    who.add_argument("--identity", help="kind:value, e.g. email:ann@example.com or person:42")
    request.add_argument("--source", help="the source of a source-local identity kind (person, visitor...)")
    request.add_argument("--suppress", action="store_true", help="store nothing later requests send for them")
    listing = verbs.add_parser("list", help="erasures, newest first")
    listing.add_argument("--limit", type=_batch_size, default=100, help="1-1000 (default 100)")
    show = verbs.add_parser("show", help="one erasure's state and counts")
    show.add_argument("erasure_id")
    run = verbs.add_parser("run", help="work on every erasure not done, now (as the server's job does)")
    run.add_argument(
        "--batch", type=_batch_size, help="events deleted per transaction (default 100 on SQLite, 500)"
    )

    suppressions = commands.add_parser("suppressions", help="list and lift suppressions")
    suppressions.set_defaults(handler=_suppressions)
    verbs = suppressions.add_subparsers(dest="suppressions_command", required=True)
    listing = verbs.add_parser("list", help="suppressed keys (kind, scope, hash), newest first")
    listing.add_argument("--limit", type=_batch_size, default=100, help="1-1000 (default 100)")
    lift = verbs.add_parser("lift", help="store what a suppressed key sends again")
    lift.add_argument("suppression_id")

    profiles = commands.add_parser("profiles", help="export a person")
    profiles.set_defaults(handler=_profiles)
    verbs = profiles.add_subparsers(dest="profiles_command", required=True)
    export = verbs.add_parser("export", help="print everything stored about a person as JSON")
    export.add_argument("profile_id")

    retention = commands.add_parser("retention", help="delete events past their source's retention_days")
    retention.set_defaults(handler=_retention)
    verbs = retention.add_subparsers(dest="retention_command", required=True)
    run = verbs.add_parser("run", help="one pass now; prints how many events were deleted")
    run.add_argument(
        "--batch", type=_batch_size, help="events walked per transaction (default 100 on SQLite, 1000)"
    )


def _rejections(args: argparse.Namespace, settings: Settings) -> int:
    """``trackway rejections list|replay|purge``: the quarantine, with the functions the API calls."""
    from trackway.api.rejections import rejection_view
    from trackway.core import rejections as retention
    from trackway.db import rejections as statements

    upgrade(settings.database_url)
    if args.rejections_command == "list":
        wanted = statements.RejectionFilter(
            source=args.source, dialect=args.dialect, reason=args.reason, state=args.state
        )

        async def page(uow: SqlUnitOfWork) -> Any:
            async with uow.read() as db:
                rows, _ = await statements.list_page(db, wanted, limit=args.limit)
            return [rejection_view(row, full=False) for row in rows]

        _print_json(asyncio.run(_with_uow(settings, page)))
    elif args.rejections_command == "purge":
        days = settings.rejections_days if args.days is None else args.days

        async def purge(uow: SqlUnitOfWork) -> int:
            return await retention.purge(uow, days=days)

        _print_json({"deleted": asyncio.run(_with_uow(settings, purge))})
    elif args.rejections_command == "replay":
        body = None
        if args.body is not None:
            try:
                body = jsonutil.loads(args.body)
            except ValueError:
                body = args.body  # not JSON: sent as the text it is (a form body)
        outcomes = asyncio.run(_replay(settings, args.ids, body))
        _print_json(outcomes)
        if any(outcome.get("state") != "replayed" for outcome in outcomes):
            return 1
    return 0


async def _replay(settings: Settings, ids: list[str], body: Any) -> list[dict[str, Any]]:
    """Replays through an app built here, as the server's route does (``dialects/replay.py``)."""
    from trackway.app import create_app
    from trackway.dialects.replay import replay
    from trackway.metrics import metrics_of

    quiet = settings.model_copy(update={"cart_outcomes_interval": 0, "rejections_purge_interval": 0})
    app = create_app(quiet)
    outcomes: list[dict[str, Any]] = []
    async with app.router.lifespan_context(app):
        for rejection_id in ids:
            try:
                outcome = await replay(
                    app, app.state.services, rejection_id, body=body, metrics=metrics_of(app)
                )
            except TrackwayError as exc:
                outcomes.append({"id": rejection_id, "error": {"status": exc.status_code, **exc.body()}})
                continue
            outcomes.append(outcome.view())
    return outcomes


def _days(value: str) -> float:
    try:
        days = float(value)
    except ValueError:
        days = -1
    if not 0 <= days <= 3650:
        raise argparse.ArgumentTypeError("days from 0 to 3650")
    return days


def _rate_limit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rate-limit",
        type=float,
        metavar="PER_SECOND",
        help="requests per second each server process accepts for the source (default: no limit)",
    )
    parser.add_argument(
        "--rate-burst", type=int, metavar="N", help="requests at once above the rate (default: one second's)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trackway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (migrates first)")
    serve.add_argument("--host", help="listen address (default: TRACKWAY_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="listen port (default: TRACKWAY_PORT, 8686)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument("--no-migrate", action="store_true", help="do not run pending migrations")
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to the latest revision")
    migrate.set_defaults(handler=_migrate)

    sources = commands.add_parser("sources", help="create, list and change sources")
    sources.set_defaults(handler=_sources)
    source_commands = sources.add_subparsers(dest="sources_command", required=True)
    create = source_commands.add_parser("create", help="create a source and print it as JSON")
    create.add_argument("--dialect", required=True, choices=DIALECTS)
    create.add_argument("--name", required=True)
    create.add_argument("--id", help="the public key clients send (default: a new UUID)")
    create.add_argument("--secret", help="signing secret (generated for tracify when omitted)")
    create.add_argument("--signed-only", action="store_true", help="accept only signed identities")
    create.add_argument("--origin", action="append", help="allowed CORS origin (repeat; default: any)")
    create.add_argument(
        "--cart-abandon-after",
        type=int,
        default=source_service.DEFAULT_CART_ABANDON_AFTER,
        metavar="SECONDS",
        help="a cart with items and no cart activity this long is abandoned (default 3600)",
    )
    create.add_argument(
        "--retention-days", type=_retention_days, metavar="DAYS", help="delete events older than this"
    )
    _rate_limit_options(create)
    source_commands.add_parser("list", help="print every source as JSON (secrets as has_secret)")
    update = source_commands.add_parser("update", help="change a source and print it as JSON")
    update.add_argument("source_id")
    update.add_argument("--name")
    secret = update.add_mutually_exclusive_group()
    secret.add_argument("--secret", help="set the signing secret (printed back once)")
    secret.add_argument(
        "--rotate-secret", action="store_true", help="replace the secret by a generated one, printed once"
    )
    toggle = update.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_const", const=True)
    toggle.add_argument("--disable", dest="enabled", action="store_const", const=False)
    signed = update.add_mutually_exclusive_group()
    signed.add_argument("--signed-only", dest="signed_only", action="store_const", const=True)
    signed.add_argument("--no-signed-only", dest="signed_only", action="store_const", const=False)
    update.add_argument("--origin", action="append", help="replace the allowed origins (repeat)")
    update.add_argument(
        "--cart-abandon-after", type=int, metavar="SECONDS", help="seconds after which a cart is abandoned"
    )
    retention = update.add_mutually_exclusive_group()
    retention.add_argument(
        "--retention-days", type=_retention_days, metavar="DAYS", help="delete events older than this"
    )
    retention.add_argument(
        "--no-retention", dest="retention_days", action="store_const", const=0, help="keep events for ever"
    )
    _rate_limit_options(update)
    update.add_argument("--no-rate-limit", action="store_true", help="lift the source's rate limit")

    carts = commands.add_parser("carts", help="cart outcomes (abandoned, canceled, purchased)")
    carts.set_defaults(handler=_carts)
    cart_commands = carts.add_subparsers(dest="carts_command", required=True)
    run_outcomes = cart_commands.add_parser(
        "run-outcomes",
        help="abandon every cart due now (one pass of the job each server runs) and print how many",
    )
    run_outcomes.add_argument(
        "--batch", type=_batch_size, default=100, help="carts claimed per transaction, 1-1000 (default 100)"
    )
    _add_privacy_commands(commands)

    rejections = commands.add_parser("rejections", help="the quarantine of rejected requests")
    rejections.set_defaults(handler=_rejections)
    rejection_commands = rejections.add_subparsers(dest="rejections_command", required=True)
    listing = rejection_commands.add_parser("list", help="print the newest rejections as JSON")
    listing.add_argument("--source")
    listing.add_argument("--dialect", choices=DIALECTS)
    listing.add_argument("--reason", help="invalid, too_large, unsupported_media_type...")
    listing.add_argument("--state", choices=("quarantined", "replaying", "replayed"))
    listing.add_argument("--limit", type=_batch_size, default=100, help="1-1000 (default 100)")
    replay = rejection_commands.add_parser(
        "replay", help="run rejections through their dialect again; exit 1 if one is rejected again"
    )
    replay.add_argument("ids", nargs="+", metavar="ID")
    replay.add_argument("--body", help="a corrected body: JSON, or text sent as it is (a form)")
    purge = rejection_commands.add_parser(
        "purge", help="delete rejections older than TRACKWAY_REJECTIONS_DAYS (or --days) now"
    )
    purge.add_argument("--days", type=_days, help="older than this many days (0: all)")
    return parser


def configuration_errors(exc: ValidationError) -> list[str]:
    """One line per variable: its name and what it expects (never its value: it may be a secret)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        message = str(error["msg"]).removeprefix("Value error, ")
        lines.append(f"TRACKWAY_{name.upper()}: {message[:1].lower()}{message[1:]}")
    return lines


#: Exit statuses: a configuration error (and a usage error, as argparse's), a database that
#: could not be reached.
EXIT_CONFIGURATION = 2
EXIT_UNAVAILABLE = 1


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
        check_sqlite_directory(settings)
        return int(args.handler(args, settings))
    except ValidationError as exc:
        for line in configuration_errors(exc):
            print(f"trackway: {line}", file=sys.stderr)
        return EXIT_CONFIGURATION
    except TrackwayError as exc:
        print(f"trackway: {exc.detail}", file=sys.stderr)
        return 2
    except DatabaseUnreachable as exc:
        print(f"trackway: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE if exc.retryable else EXIT_CONFIGURATION
    except Exception as exc:
        problem = database_problem(exc, _settings_or_none())
        if problem is None:
            raise
        print(f"trackway: {problem}", file=sys.stderr)
        sqlite = "sqlite" in os.environ.get("TRACKWAY_DATABASE_URL", "sqlite")
        return EXIT_UNAVAILABLE if is_unavailable(exc) and not sqlite else EXIT_CONFIGURATION


def _settings_or_none() -> Settings | None:
    try:
        return Settings()
    except ValidationError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())
