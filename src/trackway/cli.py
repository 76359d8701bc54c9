"""``trackway``: serve, migrate, and manage sources, with the same functions the API calls."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from typing import Any

from trackway import jsonutil
from trackway.api.sources import source_view
from trackway.core import sources as source_service
from trackway.core.sources import DIALECTS
from trackway.db.engine import make_engine
from trackway.db.migrate import upgrade
from trackway.db.uow import SqlUnitOfWork
from trackway.errors import TrackwayError
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
    if not args.no_migrate:
        upgrade(settings.database_url)
    if not settings.admin_token:
        print(
            "trackway: TRACKWAY_ADMIN_TOKEN is not set, so the admin and read API (/api/...) "
            "answers 401.\n  Set one to use it, e.g.: "
            "TRACKWAY_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')",
            file=sys.stderr,
        )
    from trackway.server import uvicorn_options

    options = uvicorn_options(settings)
    if options["limit_concurrency"] < settings.limit_concurrency:
        print(
            f"trackway: at most {options['limit_concurrency']} connections per worker "
            f"(TRACKWAY_LIMIT_CONCURRENCY={settings.limit_concurrency} does not fit the open-file "
            "limit, ulimit -n); more are answered 503",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, _exit_cleanly)
    uvicorn.run(
        "trackway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        **options,
    )
    return 0


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
    """The page snippet for a new tracardi source, on stderr: stdout stays pure JSON for scripts."""
    from trackway.dialects import tracker_script

    api_url = tracker_script.base_url(settings.host, settings.port)
    print(
        "trackway: paste this snippet into your pages' <head>; if browsers reach Trackway at another\n"
        f"address than {api_url} (the TRACKWAY_HOST/TRACKWAY_PORT it listens on), change it there:\n\n"
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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        return int(args.handler(args, settings))
    except TrackwayError as exc:
        print(f"trackway: {exc.detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
