"""Merge one profile into another: irreversible, history kept, safe against concurrent merges."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core import carts
from trackway.core.identity import live_profile_id
from trackway.db.models import events, identities, profile_merges, profiles, sessions

MAX_ATTEMPTS = 8


async def merge_profiles(
    db: AsyncConnection,
    *,
    from_id: str,
    into_id: str,
    reason: str,
    source_id: str | None,
    now: datetime,
) -> str:
    """Fold ``from_id`` into ``into_id`` and return the survivor.

    Both rows are locked in id order, so A->B and B->A at once cannot deadlock: the
    second waits, then finds one side already merged and follows ``merged_into``.
    Only two live profiles are ever joined, so no cycle can form. The survivor's traits
    win; identities, sessions and events move; the loser keeps its row, marked merged.
    """
    for _ in range(MAX_ATTEMPTS):
        src = await live_profile_id(db, from_id)
        dst = await live_profile_id(db, into_id)
        if src is None or dst is None:
            raise LookupError(f"cannot merge unknown profile {from_id if src is None else into_id}")
        if src == dst:
            return dst
        rows = {
            row.id: row
            for row in (
                await db.execute(
                    select(profiles)
                    .where(profiles.c.id.in_(sorted((src, dst))))
                    .order_by(profiles.c.id)
                    .with_for_update()
                )
            ).all()
        }
        a, b = rows[src], rows[dst]
        if a.merged_into is not None or b.merged_into is not None:
            from_id, into_id = src, dst  # a concurrent merge won the race: follow it
            continue
        await _move(db, src, dst)
        await db.execute(
            update(profiles)
            .where(profiles.c.id == dst)
            .values(
                traits={**a.traits, **b.traits},
                anonymous=a.anonymous and b.anonymous,
                protected=a.protected or b.protected,
                visits=a.visits + b.visits,
                created_at=min(a.created_at, b.created_at),
                last_seen_at=max(a.last_seen_at, b.last_seen_at),
                updated_at=now,
            )
        )
        await db.execute(update(profiles).where(profiles.c.id == src).values(merged_into=dst, updated_at=now))
        await db.execute(
            insert(profile_merges).values(
                from_profile_id=src, into_profile_id=dst, reason=reason, source_id=source_id, at=now
            )
        )
        return dst
    raise RuntimeError(f"could not merge {from_id} into {into_id}: too many concurrent merges")


async def _move(db: AsyncConnection, src: str, dst: str) -> None:
    """Re-point everything of ``src`` at ``dst``, and shorten merge chains that ended at ``src``."""
    for table in (identities, sessions, events):
        await db.execute(update(table).where(table.c.profile_id == src).values(profile_id=dst))
    await carts.merge(db, src=src, dst=dst)
    await db.execute(update(profiles).where(profiles.c.merged_into == src).values(merged_into=dst))
