"""The PostgreSQL engine's session settings."""

from __future__ import annotations

import pytest

from trackway.db.engine import make_engine
from trackway.settings import Settings


@pytest.mark.parametrize("prefer, expected", [(True, "off"), (False, "on")])
async def test_connections_plan_sequential_scans_last_unless_told_otherwise(pg_url, prefer, expected) -> None:
    engine = make_engine(Settings(database_url=pg_url, db_prefer_indexes=prefer))
    try:
        async with engine.connect() as db:
            assert (await db.exec_driver_sql("SHOW enable_seqscan")).scalar_one() == expected
            assert (await db.exec_driver_sql("SHOW jit")).scalar_one() == ("off" if prefer else "on")
    finally:
        await engine.dispose()
