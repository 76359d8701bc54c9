"""The SQL unit of work: one transaction per ingest batch, and plain connections for reads."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from trackway.db.engine import READ_ONLY


class SqlUnitOfWork:
    """Runs each batch in ``engine.begin()``.

    On SQLite every write transaction takes the database lock at ``BEGIN``; writers of
    this process queue on an ``asyncio.Lock`` first, so they wait without polling and
    without holding a pooled connection. Other processes still wait on the busy timeout.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        #: Told about every committed transaction (``trackway.metrics.Metrics``), if set.
        self.observer: Any = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self.engine.begin() as db:
                yield db
            return
        async with self._write_lock, self.engine.begin() as db:
            yield db

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for queries only: on SQLite it takes no write lock."""
        async with self.engine.connect() as db:
            await db.execution_options(**{READ_ONLY: True})
            yield db
