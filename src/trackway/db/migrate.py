"""Run Alembic migrations from code: ``trackway migrate``, ``trackway serve`` and the tests."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection


def script_location() -> Path:
    """Migrations ship inside the wheel (``trackway/migrations``) or sit at the repo's top."""
    packaged = Path(__file__).resolve().parent.parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "migrations"


def alembic_config(database_url: str, connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["database_url"] = database_url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision``.

    Alembic's env runs its own event loop; called from inside a running loop, the
    upgrade runs in a worker thread instead (and this call blocks until it is done).
    """
    config = alembic_config(database_url)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, config, revision).result()


def upgrade_on(connection: Connection, revision: str = "head") -> None:
    """Upgrade through an open connection (``await conn.run_sync(upgrade_on)`` from async code)."""
    url = connection.engine.url.render_as_string(hide_password=False)
    command.upgrade(alembic_config(url, connection), revision)
