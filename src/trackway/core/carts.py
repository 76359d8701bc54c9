"""The current cart of a profile in a source: replace, add, remove, clear, and merge."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import CartChange, CartItem
from trackway.db.models import carts
from trackway.db.sql import upsert


def _line(item: CartItem) -> dict[str, Any]:
    line: dict[str, Any] = {**item.extra, "product_id": item.product_id, "qnt": str(item.qnt)}
    if item.price is not None:
        line["price"] = str(item.price)
    return line


def apply(items: list[dict[str, Any]], change: CartChange) -> list[dict[str, Any]]:
    """The cart's lines after ``change``. Removing more than a line holds removes the line."""
    if change.op == "clear":
        return []
    if change.op == "replace":
        return [_line(item) for item in change.items]
    lines = {line["product_id"]: dict(line) for line in items}
    for item in change.items:
        current = lines.get(item.product_id)
        if change.op == "add":
            if current is None:
                lines[item.product_id] = _line(item)
            else:
                current["qnt"] = str(Decimal(current["qnt"]) + item.qnt)
                current.update({k: v for k, v in _line(item).items() if k not in ("qnt", "product_id")})
        elif current is not None:
            remaining = Decimal(current["qnt"]) - item.qnt
            if remaining > 0:
                current["qnt"] = str(remaining)
            else:
                del lines[item.product_id]
    return list(lines.values())


def total(items: list[dict[str, Any]]) -> Decimal:
    return sum(
        (Decimal(line["qnt"]) * Decimal(line["price"]) for line in items if line.get("price") is not None),
        Decimal(0),
    )


async def change(
    db: AsyncConnection,
    dialect: str,
    *,
    profile_id: str,
    source_id: str,
    cart_change: CartChange,
    now: datetime,
) -> None:
    """Apply ``cart_change``. The caller holds the profile's row lock, so this read-modify-write is safe."""
    current = (
        await db.execute(
            select(carts.c["items"]).where(carts.c.profile_id == profile_id, carts.c.source_id == source_id)
        )
    ).scalar_one_or_none()
    items = apply(current or [], cart_change)
    values = {
        "items": items,
        "total": str(total(items)),
        "item_count": len(items),
        "updated_at": now,
    }
    stmt = upsert(
        dialect,
        carts,
        {"profile_id": profile_id, "source_id": source_id, "created_at": now, **values},
        conflict_columns=["profile_id", "source_id"],
        update_values=values,
    )
    await db.execute(stmt)


async def merge(db: AsyncConnection, *, src: str, dst: str) -> None:
    """Carts of a merged profile: per source, the survivor's cart wins if it has items.

    Otherwise the merged profile's cart moves over (a guest's cart follows them on login).
    """
    rows = (await db.execute(select(carts).where(carts.c.profile_id.in_((src, dst))))).all()
    dst_by_source = {row.source_id: row for row in rows if row.profile_id == dst}
    for row in rows:
        if row.profile_id != src:
            continue
        kept = dst_by_source.get(row.source_id)
        if kept is not None and kept.item_count > 0:
            await db.execute(
                delete(carts).where(carts.c.profile_id == src, carts.c.source_id == row.source_id)
            )
            continue
        if kept is not None:
            await db.execute(
                delete(carts).where(carts.c.profile_id == dst, carts.c.source_id == row.source_id)
            )
        await db.execute(
            update(carts)
            .where(carts.c.profile_id == src, carts.c.source_id == row.source_id)
            .values(profile_id=dst)
        )
