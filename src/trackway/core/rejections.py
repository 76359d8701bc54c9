"""Retention of the quarantine: rejections older than ``TRACKWAY_REJECTIONS_DAYS`` are deleted.

Every Trackway process runs a pass (``core/jobs.py``, in the app's lifespan, every
``TRACKWAY_REJECTIONS_PURGE_INTERVAL`` seconds); ``trackway rejections purge`` runs one pass.
A pass deletes the oldest rows in batches of ``BATCH``, a transaction each, the rows claimed
with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (``db/rejections.py``): several processes
purging at once share the work without waiting, and no transaction holds SQLite's write lock
for more than one bounded batch, so ingest waits at most that long.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from trackway.core.ingest import in_transaction
from trackway.core.uow import UnitOfWork
from trackway.db import rejections as statements

log = logging.getLogger(__name__)

#: Rejections deleted in one transaction.
BATCH = 200


async def purge(uow: UnitOfWork, *, days: float, now: datetime | None = None, limit: int = BATCH) -> int:
    """Delete every rejection received more than ``days`` ago, a batch a transaction; how many."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    before = (now or datetime.now(UTC)) - timedelta(days=days)
    done = 0
    while True:
        deleted = await in_transaction(uow, lambda db: statements.delete_older(db, before, limit))
        done += deleted
        if deleted < limit:
            return done
