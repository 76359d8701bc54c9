"""Cart outcomes (seed 004, 3.4.1 and 4.5): each cart lifecycle ends abandoned, canceled or
purchased, once; from InSend's cart events and Tracktor's e-commerce calls, on SQLite and
PostgreSQL. The job runs when a test calls ``run_pass`` (the test settings turn its clock off)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from trackway.core import sources as source_service
from trackway.core.batch import (
    CartChange,
    CartItem,
    IdentityRef,
    IngestBatch,
    MergeRequest,
    RequestMeta,
    SourceRef,
)
from trackway.core.cart_outcomes import run_once, run_pass
from trackway.core.ingest import ingest
from trackway.db.models import carts, events
from trackway.db.uow import SqlUnitOfWork

INSEND = "insend-shop"
TRACKTOR = "tracktor-shop"
LATER = timedelta(hours=2)  # past the default cart_abandon_after (an hour)


@pytest.fixture
async def shops(uow: SqlUnitOfWork) -> None:
    await source_service.create_source(uow, name="shop", dialect="insend", source_id=INSEND)
    await source_service.create_source(uow, name="app", dialect="tracktor", source_id=TRACKTOR)


def now() -> datetime:
    return datetime.now(UTC)


async def outcomes(uow: SqlUnitOfWork, profile_id: str | None = None) -> list[dict[str, Any]]:
    """The generated outcome events, oldest first: type, properties, context, profile."""
    stmt = select(events).where(events.c.type.like("cart-%")).order_by(events.c.time, events.c.id)
    if profile_id is not None:
        stmt = stmt.where(events.c.profile_id == profile_id)
    async with uow.read() as db:
        rows = (await db.execute(stmt)).all()
    return [
        {
            "type": row.type,
            "properties": row.properties,
            "context": row.context,
            "profile_id": row.profile_id,
            "source_id": row.source_id,
            "time": row.time,
        }
        for row in rows
    ]


async def cart_row(uow: SqlUnitOfWork, profile_id: str, source_id: str) -> Any:
    async with uow.read() as db:
        return (
            await db.execute(
                select(carts).where(carts.c.profile_id == profile_id, carts.c.source_id == source_id)
            )
        ).one()


# --- InSend's cart events ------------------------------------------------------------------


async def insend(client: httpx.AsyncClient, type_: str, properties: dict[str, Any], guest: str) -> str:
    data = json.dumps({"type": type_, "properties": properties, "url": "https://shop.example/"})
    response = await client.post("/watch/event", data={"app_key": INSEND, "guest_uid": guest, "data": data})
    assert response.status_code == 200, response.text
    return str(response.json()["profile"]["id"])


def line(product: str, qnt: int = 1, price: str = "2.50") -> dict[str, Any]:
    return {"product_id": product, "qnt": qnt, "price": price}


async def test_an_idle_cart_is_abandoned_once(client, uow, shops) -> None:
    started = now()
    profile_id = await insend(client, "add_to_cart", line("1", 2), "g-idle")
    await insend(client, "add_to_cart", line("2"), "g-idle")
    row = await cart_row(uow, profile_id, INSEND)
    assert row.outcome is None and row.lifecycle_started_at >= started
    assert row.outcome_due_at == row.updated_at + timedelta(seconds=3600)

    assert await run_pass(uow, now=now()) == 0  # not due yet
    assert await outcomes(uow) == []
    assert await run_pass(uow, now=now() + LATER) == 1
    for _ in range(3):  # more passes find nothing more to do
        assert await run_pass(uow, now=now() + LATER * 5) == 0
    (abandoned,) = await outcomes(uow)
    assert abandoned["type"] == "cart-abandoned"
    assert abandoned["profile_id"] == profile_id and abandoned["source_id"] == INSEND
    assert abandoned["context"] == {"generated": True, "generator": "cart-outcomes"}
    props = abandoned["properties"]
    assert [(i["product_id"], i["qnt"]) for i in props["items"]] == [("1", "2"), ("2", "1")]
    assert props["total"] == "7.50" and props["item_count"] == 2
    assert datetime.fromisoformat(props["started_at"]) == row.lifecycle_started_at
    # The event happened when the cart became abandoned: an hour after its last change.
    assert abandoned["time"] == row.outcome_due_at
    closed = await cart_row(uow, profile_id, INSEND)
    assert (closed.outcome, closed.outcome_due_at) == ("abandoned", None)
    assert closed.item_count == 2  # the cart keeps its items


async def test_cart_activity_postpones_abandonment(client, uow, shops) -> None:
    await source_service.update_source(uow, INSEND, {"cart_abandon_after": 60})
    profile_id = await insend(client, "add_to_cart", line("1"), "g-busy")
    first = await cart_row(uow, profile_id, INSEND)
    assert first.outcome_due_at == first.updated_at + timedelta(seconds=60)
    await insend(client, "remove_from_cart", {"product_id": "9", "qnt": 1}, "g-busy")  # activity too
    second = await cart_row(uow, profile_id, INSEND)
    assert second.outcome_due_at == second.updated_at + timedelta(seconds=60) > first.outcome_due_at
    assert second.lifecycle_id == first.lifecycle_id
    assert await run_pass(uow, now=first.outcome_due_at) == 0
    assert await run_pass(uow, now=second.outcome_due_at) == 1


async def test_removing_the_last_item_cancels(client, uow, shops) -> None:
    profile_id = await insend(client, "add_to_cart", line("1", 2), "g-cancel")
    await insend(client, "remove_from_cart", {"product_id": "1", "qnt": 1}, "g-cancel")
    assert await outcomes(uow) == []
    await insend(client, "remove_from_cart", {"product_id": "1", "qnt": 5}, "g-cancel")
    (canceled,) = await outcomes(uow)
    assert canceled["type"] == "cart-canceled" and canceled["profile_id"] == profile_id
    # The items the visitor removed: the cart as it was before it was emptied.
    assert [(i["product_id"], i["qnt"]) for i in canceled["properties"]["items"]] == [("1", "1")]
    assert await run_pass(uow, now=now() + LATER) == 0
    assert len(await outcomes(uow)) == 1
    # Emptying an empty cart again ends nothing.
    await insend(client, "update_cart", {"items": []}, "g-cancel")
    assert len(await outcomes(uow)) == 1


async def test_an_empty_update_cancels_and_a_purchase_purchases(client, uow, shops) -> None:
    await insend(client, "update_cart", {"items": [line("1"), line("2", 3)]}, "g-empty")
    await insend(client, "update_cart", {"items": []}, "g-empty")
    buyer = await insend(client, "add_to_cart", line("7", 2, "10"), "g-buyer")
    order = {"order_id": "o-1", "revenue": "20", "items": [line("7", 2, "10")]}
    await insend(client, "purchase", order, "g-buyer")
    found = await outcomes(uow)
    assert [o["type"] for o in found] == ["cart-canceled", "cart-purchased"]
    purchased = found[1]
    assert purchased["profile_id"] == buyer
    assert purchased["properties"]["total"] == "20" and purchased["properties"]["item_count"] == 1
    assert await run_pass(uow, now=now() + LATER) == 0
    # The purchase is stored once per order id: its resend ends nothing again.
    await insend(client, "purchase", order, "g-buyer")
    assert len(await outcomes(uow)) == 2


async def test_a_resent_purchase_leaves_a_later_cart_alone(client, uow, shops) -> None:
    profile_id = await insend(client, "add_to_cart", line("1"), "g-resend")
    order = {"order_id": "o-resend", "revenue": "2.5", "items": [line("1")]}
    await insend(client, "purchase", order, "g-resend")
    await insend(client, "add_to_cart", line("2"), "g-resend")  # a new lifecycle
    await insend(client, "purchase", order, "g-resend")  # the client retries the first purchase
    assert [o["type"] for o in await outcomes(uow)] == ["cart-purchased"]
    row = await cart_row(uow, profile_id, INSEND)
    assert [i["product_id"] for i in row.items] == ["2"] and row.outcome is None


async def test_after_an_abandonment_the_next_activity_starts_a_new_lifecycle(client, uow, shops) -> None:
    profile_id = await insend(client, "add_to_cart", line("1"), "g-back")
    first = await cart_row(uow, profile_id, INSEND)
    assert await run_pass(uow, now=now() + LATER) == 1
    # The visitor comes back to the abandoned cart and buys it: a lifecycle of its own.
    await insend(client, "add_to_cart", line("2"), "g-back")
    second = await cart_row(uow, profile_id, INSEND)
    assert second.lifecycle_id != first.lifecycle_id
    assert second.lifecycle_started_at > first.lifecycle_started_at and second.outcome is None
    await insend(client, "purchase", {"order_id": "o-back", "revenue": "5"}, "g-back")
    # (The abandonment's time is an hour after the first add: later than the purchase, here.)
    by_type = {o["type"]: o for o in await outcomes(uow, profile_id)}
    assert sorted(by_type) == ["cart-abandoned", "cart-purchased"]
    abandoned, purchased = by_type["cart-abandoned"], by_type["cart-purchased"]
    assert abandoned["properties"]["lifecycle_id"] == first.lifecycle_id
    assert purchased["properties"]["lifecycle_id"] == second.lifecycle_id
    assert [i["product_id"] for i in purchased["properties"]["items"]] == ["1", "2"]
    # Bought straight from the abandoned cart: that purchase is a lifecycle too.
    other = await insend(client, "add_to_cart", line("3"), "g-straight")
    assert await run_pass(uow, now=now() + LATER) == 1
    await insend(client, "purchase", {"order_id": "o-straight", "revenue": "2.5"}, "g-straight")
    assert sorted(o["type"] for o in await outcomes(uow, other)) == ["cart-abandoned", "cart-purchased"]


# --- Tracktor's e-commerce calls -----------------------------------------------------------

CART = {
    "totalprice": 3.98,
    "products": [
        {"name": "Marshmallows 1kg pack", "price": 1.99, "color": "green"},
        {"name": "Zephir 1kg pack", "price": 1.99},
    ],
    "paid_with": "Credit card",
}


async def tracktor(client: httpx.AsyncClient, action: str, person: str, data: Any = None) -> httpx.Response:
    params = {"sid": TRACKTOR, "id": person, "action": action}
    if data is not None:
        params["data"] = json.dumps(data)
    return await client.get("/track", params=params)


async def tracktor_ok(client: httpx.AsyncClient, action: str, person: str, data: Any = None) -> str:
    response = await tracktor(client, action, person, data)
    assert response.status_code == 200, response.text
    return str(response.json()["profile"]["id"])


async def test_tracktor_set_cart_is_abandoned(client, uow, shops) -> None:
    profile_id = await tracktor_ok(client, "setCart", "unicorn", CART)
    row = await cart_row(uow, profile_id, TRACKTOR)
    assert [(i["product_id"], i["qnt"], i["price"], i.get("color")) for i in row.items] == [
        ("Marshmallows 1kg pack", "1", "1.99", "green"),
        ("Zephir 1kg pack", "1", "1.99", None),
    ]
    assert row.total == "3.98"
    assert await run_pass(uow, now=now() + LATER) == 1
    (abandoned,) = await outcomes(uow)
    assert abandoned["type"] == "cart-abandoned" and abandoned["source_id"] == TRACKTOR
    assert abandoned["properties"]["total"] == "3.98"
    # The call itself is an ordinary event, the cart object its properties.
    async with uow.read() as db:
        stored = (await db.execute(select(events).where(events.c.type == "setCart"))).one()
    assert stored.properties["paid_with"] == "Credit card"


async def test_tracktor_cancel_and_purchase(client, uow, shops) -> None:
    canceler = await tracktor_ok(client, "setCart", "a-cancel", CART)
    await tracktor_ok(client, "cancelCart", "a-cancel", CART)
    buyer = await tracktor_ok(client, "setCart", "buyer", CART)
    await tracktor_ok(client, "purchaseCart", "buyer", CART)
    # purchaseCart names the cart bought: a purchase with no cart set before is a lifecycle too.
    direct = await tracktor_ok(
        client, "purchaseCart", "direct", {"products": [{"name": "Tea", "price": 3, "count": 2}]}
    )
    # setCart with no products empties the cart: canceled.
    emptier = await tracktor_ok(client, "setCart", "emptier", CART)
    await tracktor_ok(client, "setCart", "emptier", {"totalprice": 0, "products": []})
    # cancelCart on an empty cart ends nothing.
    await tracktor_ok(client, "cancelCart", "nobody")
    by_profile = {o["profile_id"]: o for o in await outcomes(uow)}
    assert len(by_profile) == 4
    assert by_profile[canceler]["type"] == "cart-canceled"
    assert by_profile[buyer]["type"] == "cart-purchased"
    assert by_profile[buyer]["properties"]["total"] == "3.98"
    assert by_profile[direct]["type"] == "cart-purchased"
    assert by_profile[direct]["properties"]["items"][0]["qnt"] == "2"
    assert by_profile[direct]["properties"]["total"] == "6"
    assert by_profile[emptier]["type"] == "cart-canceled"
    assert await run_pass(uow, now=now() + LATER) == 0
    assert (await cart_row(uow, buyer, TRACKTOR)).item_count == 0


@pytest.mark.parametrize(
    ("action", "data", "loc"),
    [
        ("setCart", None, ["query", "data", "products"]),
        ("setCart", {"products": [{"name": "x", "price": -1}]}, ["query", "data", "products", 0, "price"]),
        ("setCart", {"products": [{"price": 1}]}, ["query", "data", "products", 0, "name"]),
        (
            "purchaseCart",
            {"products": [{"name": "x", "price": 1, "count": 0}]},
            ["query", "data", "products", 0, "count"],
        ),
        ("purchaseCart", {"products": "x"}, ["query", "data", "products"]),
        ("cancelCart", {"totalprice": "lots"}, ["query", "data", "totalprice"]),
    ],
)
async def test_tracktor_cart_objects_are_checked(client, uow, shops, action, data, loc) -> None:
    response = await tracktor(client, action, "checked", data)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]
    async with uow.read() as db:
        assert (await db.execute(select(events))).all() == []


# --- merges --------------------------------------------------------------------------------


def batch(*identities: IdentityRef, at: datetime, **kwargs: Any) -> IngestBatch:
    return IngestBatch(
        source=SourceRef(INSEND, "insend"),
        meta=RequestMeta(received_at=at),
        identities=list(identities),
        **kwargs,
    )


def item(product: str) -> CartItem:
    return CartItem(product, Decimal(1), Decimal("1.00"))


async def test_a_merge_folds_two_open_lifecycles_into_one_outcome(uow, shops) -> None:
    guest = IdentityRef("guest", "g-fold", scope=INSEND)
    visitor = IdentityRef("visitor", "v-fold", scope=INSEND)
    t0 = now()
    g = await ingest(batch(guest, at=t0, cart=CartChange("add", (item("g"),))), uow)
    v = await ingest(batch(visitor, at=t0 + timedelta(seconds=5), cart=CartChange("add", (item("v"),))), uow)
    guest_cart = await cart_row(uow, g.profile_id, INSEND)
    visitor_cart = await cart_row(uow, v.profile_id, INSEND)
    await ingest(
        batch(
            visitor,
            guest,
            at=t0 + timedelta(seconds=10),
            merges=[MergeRequest(guest, visitor, "guest-registered")],
        ),
        uow,
    )
    kept = await cart_row(uow, v.profile_id, INSEND)
    # The survivor's cart (it has items) is kept; one lifecycle goes on, from the earlier start.
    assert [i["product_id"] for i in kept.items] == ["v"]
    assert kept.lifecycle_id == visitor_cart.lifecycle_id
    assert kept.lifecycle_started_at == guest_cart.lifecycle_started_at
    assert kept.outcome_due_at == visitor_cart.outcome_due_at
    for _ in range(2):
        await run_pass(uow, now=now() + LATER)
    (only,) = await outcomes(uow)
    assert only["profile_id"] == v.profile_id and only["type"] == "cart-abandoned"
    assert only["properties"]["lifecycle_id"] == visitor_cart.lifecycle_id


async def test_a_guest_cart_moved_by_a_merge_keeps_its_lifecycle(uow, shops) -> None:
    guest = IdentityRef("guest", "g-move", scope=INSEND)
    visitor = IdentityRef("visitor", "v-move", scope=INSEND)
    t0 = now()
    g = await ingest(batch(guest, at=t0, cart=CartChange("add", (item("g"),))), uow)
    v = await ingest(batch(visitor, at=t0, identified=True), uow)
    before = await cart_row(uow, g.profile_id, INSEND)
    await ingest(batch(visitor, guest, at=t0, merges=[MergeRequest(guest, visitor, "guest-registered")]), uow)
    moved = await cart_row(uow, v.profile_id, INSEND)
    assert (moved.lifecycle_id, moved.outcome_due_at) == (before.lifecycle_id, before.outcome_due_at)
    # Bought after the merge: the guest's lifecycle ends once, on the survivor.
    await ingest(batch(visitor, at=t0 + timedelta(seconds=1), cart=CartChange("clear")), uow)
    assert await run_pass(uow, now=now() + LATER) == 0
    (only,) = await outcomes(uow)
    assert (only["type"], only["profile_id"]) == ("cart-purchased", v.profile_id)
    assert only["properties"]["lifecycle_id"] == before.lifecycle_id


async def test_an_abandoned_survivor_cart_takes_the_guests_open_lifecycle(uow, shops) -> None:
    guest = IdentityRef("guest", "g-open", scope=INSEND)
    visitor = IdentityRef("visitor", "v-old", scope=INSEND)
    t0 = now()
    v = await ingest(batch(visitor, at=t0, cart=CartChange("add", (item("v"),))), uow)
    assert await run_pass(uow, now=t0 + LATER) == 1  # the visitor's cart was abandoned
    g = await ingest(batch(guest, at=t0 + LATER, cart=CartChange("add", (item("g"),))), uow)
    guest_cart = await cart_row(uow, g.profile_id, INSEND)
    await ingest(
        batch(visitor, guest, at=t0 + LATER, merges=[MergeRequest(guest, visitor, "guest-registered")]), uow
    )
    kept = await cart_row(uow, v.profile_id, INSEND)
    assert kept.outcome is None and kept.lifecycle_id == guest_cart.lifecycle_id
    assert await run_pass(uow, now=t0 + LATER * 3) == 1
    assert [o["type"] for o in await outcomes(uow)] == ["cart-abandoned", "cart-abandoned"]


# --- the job under concurrency -------------------------------------------------------------


async def test_concurrent_passes_abandon_each_cart_once(uow, shops) -> None:
    t0 = now()
    people = [IdentityRef("guest", f"g-many-{n}", scope=INSEND) for n in range(60)]
    for person in people:
        await ingest(batch(person, at=t0, cart=CartChange("add", (item("x"),))), uow)
    done = await asyncio.gather(*(run_pass(uow, now=t0 + LATER, limit=7) for _ in range(4)))
    assert sum(done) == 60
    found = await outcomes(uow)
    assert len(found) == 60 and len({o["profile_id"] for o in found}) == 60
    assert await run_pass(uow, now=t0 + LATER) == 0


async def test_a_cart_whose_profile_a_group_holds_is_skipped_not_waited_for(uow, shops) -> None:
    if uow.dialect != "postgresql":
        pytest.skip("SQLite has one writer: the job's transaction waits its turn")
    t0 = now()
    result = await ingest(
        batch(IdentityRef("guest", "g-held", scope=INSEND), at=t0, cart=CartChange("add", (item("x"),))), uow
    )
    async with uow.engine.begin() as holder:
        # What a group writing this profile holds until its commit.
        await holder.execute(
            text("SELECT id FROM profiles WHERE id = :id FOR NO KEY UPDATE"), {"id": result.profile_id}
        )
        assert await asyncio.wait_for(run_once(uow, now=t0 + LATER), timeout=10) == 0
    assert await run_once(uow, now=t0 + LATER) == 1
