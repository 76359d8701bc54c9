"""Databases for the differential test: each configuration plays on its own, at the same time."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import PG_URL, _pg_admin, run_sync
from trackway.db.migrate import upgrade


@pytest.fixture(scope="session")
def pg_urls(pg_url: str) -> Iterator[list[str]]:
    """``pg_url`` and two more migrated PostgreSQL databases, dropped at the end."""
    made: list[str] = []
    try:
        for _ in range(2):
            name = f"trackway_diff_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            run_sync(_pg_admin(PG_URL, f'CREATE DATABASE "{name}"'))
            made.append(name)
            upgrade(PG_URL.rsplit("/", 1)[0] + f"/{name}")
        yield [pg_url, *(PG_URL.rsplit("/", 1)[0] + f"/{name}" for name in made)]
    finally:
        for name in made:
            run_sync(_pg_admin(PG_URL, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
