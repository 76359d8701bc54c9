"""The current cart of a profile in a source: replace, add, remove, clear, and merge; and its
lifecycle, from the first item to its one outcome.

A **lifecycle** starts when a cart without an open one gets cart activity that leaves items
in it, and ends in exactly one outcome (seed 004, 3.4.1 and 4.5):

* ``purchased``: a purchase (``clear``: InSend's ``purchase``, Tracktor's ``purchaseCart``);
* ``canceled``: the visitor emptied the cart (removed its last item, replaced it by an empty
  one, Tracktor's ``cancelCart``);
* ``abandoned``: no cart activity for the source's ``cart_abandon_after`` seconds. That one
  no request causes: the lifecycle's ``outcome_due_at`` is the due work the background job
  claims (``core/cart_outcomes.py``).

Purchased and canceled are decided by the write path in the request's own transaction, with
the profile locked, so they happen once with the change that caused them. After an outcome
the next cart activity starts a **new** lifecycle, even on a cart that still holds the
abandoned items: the seed's abandoned-cart workflow exists to bring the visitor back to buy,
and the purchase that follows must count as ``cart-purchased`` (a purchase of an abandoned
cart is a lifecycle that starts and ends with it). An outcome's event carries the items the
lifecycle ended with (for a cancel: the ones the visitor removed).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import CartChange, CartItem
from trackway.db.models import carts
from trackway.db.rows import CartState

ABANDONED = "abandoned"
CANCELED = "canceled"
PURCHASED = "purchased"
#: The event each outcome is stored as.
EVENT_TYPES = {ABANDONED: "cart-abandoned", CANCELED: "cart-canceled", PURCHASED: "cart-purchased"}
#: The context of every outcome event: it was generated, not sent.
CONTEXT = {"generated": True, "generator": "cart-outcomes"}


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


def dedup_key(lifecycle_id: str) -> str:
    """The outcome event's key in its source: one per lifecycle, whatever its kind, so the
    events table's unique key refuses a second outcome of one lifecycle whoever writes it."""
    return f"trackway:cart-outcome:{lifecycle_id}"


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one lifecycle ended, and with which items."""

    kind: str
    items: list[dict[str, Any]]
    lifecycle_id: str
    started_at: datetime
    #: When it ended: the change's time, or for an abandonment when it became due.
    at: datetime

    @property
    def event_type(self) -> str:
        return EVENT_TYPES[self.kind]

    def properties(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": str(total(self.items)),
            "item_count": len(self.items),
            "started_at": self.started_at.isoformat(),
            "lifecycle_id": self.lifecycle_id,
        }


def is_open(state: CartState) -> bool:
    return state.lifecycle_id is not None and state.outcome is None


def step(state: CartState, change: CartChange, at: datetime) -> tuple[CartState, Outcome | None]:
    """The cart and its lifecycle after ``change`` at ``at``, and the outcome it caused, if any."""
    before = state.items
    after = apply(before, change)
    open_ = is_open(state)
    if change.op != "clear" and after:
        # Items remain: the lifecycle goes on (a new one if none is open), abandoned unless the
        # cart changes again within ``abandon_after``.
        return replace(
            state,
            items=after,
            lifecycle_id=state.lifecycle_id if open_ else str(uuid.uuid4()),
            lifecycle_started_at=state.lifecycle_started_at if open_ else at,
            outcome=None,
            outcome_at=None,
            outcome_due_at=at + timedelta(seconds=state.abandon_after),
        ), None
    if change.op == "clear":
        kind, ended = PURCHASED, [_line(item) for item in change.items] or before
    else:
        kind, ended = CANCELED, before
    if not ended:  # an empty cart emptied, nothing bought: no lifecycle to end
        return replace(state, items=after, outcome_due_at=None), None
    lifecycle_id = state.lifecycle_id if open_ and state.lifecycle_id else str(uuid.uuid4())
    started_at = state.lifecycle_started_at if open_ and state.lifecycle_started_at else at
    outcome = Outcome(kind, ended, lifecycle_id, started_at, at)
    return replace(
        state,
        items=after,
        lifecycle_id=lifecycle_id,
        lifecycle_started_at=started_at,
        outcome=kind,
        outcome_at=at,
        outcome_due_at=None,
    ), outcome


def fold(kept: CartState, dropped: CartState | None) -> CartState:
    """The lifecycle of the cart a merge keeps: one lifecycle, never two outcomes.

    If either cart's lifecycle is open, the kept cart's is open: started when the earlier
    started, due when the later was due, under the kept cart's lifecycle id if it was open
    (else the dropped one's). The dropped cart's lifecycle never ends on its own: it goes on
    in the kept one, whose one outcome ends both.
    """
    opened = [s for s in (kept, dropped) if s is not None and is_open(s)]
    if not opened:
        return kept
    starts = [s.lifecycle_started_at for s in opened if s.lifecycle_started_at is not None]
    dues = [s.outcome_due_at for s in opened if s.outcome_due_at is not None]
    return replace(
        kept,
        lifecycle_id=opened[0].lifecycle_id,
        lifecycle_started_at=min(starts) if starts else None,
        outcome=None,
        outcome_at=None,
        outcome_due_at=max(dues) if dues else None,
    )


async def merge(db: AsyncConnection, *, src: str, dst: str) -> None:
    """Carts of a merged profile: per source, the survivor's cart wins if it has items.

    Otherwise the merged profile's cart moves over (a guest's cart follows them on login).
    Their lifecycles fold into one (``fold``). The caller holds both profiles locked, which is
    what the outcome job needs before it touches a cart.
    """
    rows = (await db.execute(select(carts).where(carts.c.profile_id.in_((src, dst))))).all()
    dst_by_source = {row.source_id: row for row in rows if row.profile_id == dst}
    for row in rows:
        if row.profile_id != src:
            continue
        other = dst_by_source.get(row.source_id)
        if other is not None and other.item_count > 0:
            kept, dropped, kept_profile, dropped_profile = other, row, dst, src
        else:
            kept, dropped, kept_profile, dropped_profile = row, other, src, dst
        state = fold(CartState.of_row(kept, 0), None if dropped is None else CartState.of_row(dropped, 0))
        if dropped is not None:
            await db.execute(
                delete(carts).where(carts.c.profile_id == dropped_profile, carts.c.source_id == row.source_id)
            )
        await db.execute(
            update(carts)
            .where(carts.c.profile_id == kept_profile, carts.c.source_id == row.source_id)
            .values(
                profile_id=dst,
                lifecycle_id=state.lifecycle_id,
                lifecycle_started_at=state.lifecycle_started_at,
                outcome=state.outcome,
                outcome_at=state.outcome_at,
                outcome_due_at=state.outcome_due_at,
            )
        )
