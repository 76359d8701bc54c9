"""Abandoned carts: the due work of cart lifecycles, claimed in the database (``core/carts.py``).

A cart's open lifecycle carries ``outcome_due_at``: its last cart activity plus its source's
``cart_abandon_after``. Every Trackway process runs a pass (``core/jobs.py``, in the app's
lifespan, every ``TRACKWAY_CART_OUTCOMES_INTERVAL`` seconds); ``trackway carts run-outcomes`` runs one
pass. A pass claims the carts due, a batch a transaction (``db/cart_outcomes.py``: row locks,
``SKIP LOCKED`` on PostgreSQL), and in that same transaction stores each one's
``cart-abandoned`` event and ends its lifecycle. Nothing lives in a process's memory: any
number of processes can run it, a restart loses nothing (the rows are still due), and a
lifecycle ends once: the claim, the event and the end commit together, and the event's key
(one per lifecycle, ``carts.dedup_key``) would refuse a second outcome anyway.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from trackway.core import carts
from trackway.core.events import uuid7
from trackway.core.ingest import in_transaction
from trackway.core.uow import UnitOfWork
from trackway.db import cart_outcomes as statements

log = logging.getLogger(__name__)

#: Carts claimed in one transaction.
BATCH = 100


def _event(cart: Any, outcome: carts.Outcome, now: datetime) -> dict[str, Any]:
    return {
        "id": uuid7(),
        "source_id": cart.source_id,
        "profile_id": cart.profile_id,
        "session_id": None,
        "type": outcome.event_type,
        "time": outcome.at,
        "received_at": now,
        "properties": outcome.properties(),
        "context": dict(carts.CONTEXT),
        "dedup_key": carts.dedup_key(outcome.lifecycle_id),
    }


async def run_once(uow: UnitOfWork, *, now: datetime | None = None, limit: int = BATCH) -> int:
    """Claim up to ``limit`` carts due by ``now`` and abandon them, in one transaction; how many."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    moment = now or datetime.now(UTC)

    async def work(db: Any) -> int:
        due = await statements.claim_due(db, moment, limit)
        outcomes = [
            carts.Outcome(
                carts.ABANDONED,
                cart.items,
                cart.lifecycle_id or str(uuid.uuid4()),
                cart.lifecycle_started_at or cart.outcome_due_at,
                cart.outcome_due_at,
            )
            for cart in due
        ]
        await statements.insert_events(db, [_event(c, o, moment) for c, o in zip(due, outcomes, strict=True)])
        await statements.close_lifecycles(
            db,
            [
                (c.profile_id, c.source_id, o.lifecycle_id, carts.ABANDONED, moment)
                for c, o in zip(due, outcomes, strict=True)
            ],
        )
        return len(due)

    return await in_transaction(uow, work)


async def run_pass(uow: UnitOfWork, *, now: datetime | None = None, limit: int = BATCH) -> int:
    """Abandon every cart due by ``now`` (a batch a transaction); how many this process did.

    Carts other processes hold stay for them (or for the next pass): a pass never waits.
    """
    moment = now or datetime.now(UTC)
    done = 0
    while True:
        claimed = await run_once(uow, now=moment, limit=limit)
        done += claimed
        if claimed < limit:
            return done
