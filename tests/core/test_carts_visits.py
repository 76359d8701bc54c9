"""Core features the later dialects lean on: carts, server-derived visits, weak keys, many batches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import ADMIN, count
from trackway.core import carts
from trackway.core.batch import (
    CartChange,
    CartItem,
    EventIn,
    IdentityRef,
    IngestBatch,
    MergeRequest,
    RequestMeta,
    SourceRef,
)
from trackway.core.ingest import ingest, ingest_many

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
T0 = datetime(2024, 6, 21, 12, 0, tzinfo=UTC)


def item(product: str, qnt: str, price: str | None = "10.00", **extra) -> CartItem:
    return CartItem(product, Decimal(qnt), Decimal(price) if price else None, extra)


def batch(*identities: IdentityRef, **kwargs) -> IngestBatch:
    return IngestBatch(
        source=SourceRef(SOURCE, "tracardi"),
        meta=RequestMeta(received_at=kwargs.pop("at", datetime.now(UTC))),
        identities=list(identities),
        **kwargs,
    )


def test_cart_arithmetic() -> None:
    lines = carts.apply([], CartChange("replace", (item("1", "1", "125.15"), item("2", "15", "127.02"))))
    assert carts.total(lines) == Decimal("2030.45")
    lines = carts.apply(lines, CartChange("add", (item("1", "2", "125.15"), item("3", "1", None))))
    assert [(line["product_id"], line["qnt"]) for line in lines] == [("1", "3"), ("2", "15"), ("3", "1")]
    lines = carts.apply(lines, CartChange("remove", (item("2", "20"), item("1", "1"), item("9", "1"))))
    assert [(line["product_id"], line["qnt"]) for line in lines] == [("1", "2"), ("3", "1")]
    assert carts.apply(lines, CartChange("clear")) == []
    assert carts.apply(lines, CartChange("replace")) == []


async def test_cart_is_stored_shown_and_follows_a_merge(client, uow, tracardi_source) -> None:
    guest = IdentityRef("guest", "g1", scope=SOURCE)
    visitor = IdentityRef("visitor", "v1", scope=SOURCE)
    g = await ingest(
        batch(guest, cart=CartChange("replace", (item("1", "2", "5.50", product_name="Tea"),))), uow
    )
    v = await ingest(batch(visitor, identified=True), uow)
    profile = (await client.get(f"/api/profiles/{g.profile_id}", headers=ADMIN)).json()
    assert profile["carts"][0]["items"] == [
        {"product_id": "1", "qnt": "2", "price": "5.50", "product_name": "Tea"}
    ]
    assert profile["carts"][0]["total"] == "11.00"

    # The visitor has no cart: the guest's moves over on registration.
    await ingest(batch(visitor, guest, merges=[MergeRequest(guest, visitor, "guest-registered")]), uow)
    survivor = (await client.get(f"/api/profiles/{v.profile_id}", headers=ADMIN)).json()
    assert survivor["carts"][0]["total"] == "11.00"
    assert await count(uow, "carts") == 1


async def test_survivor_cart_with_items_wins(client, uow, tracardi_source) -> None:
    a = IdentityRef("guest", "ga", scope=SOURCE)
    b = IdentityRef("visitor", "vb", scope=SOURCE)
    await ingest(batch(a, cart=CartChange("replace", (item("1", "1"),))), uow)
    v = await ingest(batch(b, cart=CartChange("replace", (item("2", "3"),))), uow)
    await ingest(batch(b, a, merges=[MergeRequest(a, b, "guest-registered")]), uow)
    view = (await client.get(f"/api/profiles/{v.profile_id}", headers=ADMIN)).json()
    assert [line["product_id"] for line in view["carts"][0]["items"]] == ["2"]
    assert await count(uow, "carts") == 1


async def test_derived_visits_end_after_the_timeout(uow, tracardi_source) -> None:
    person = IdentityRef("person", "p1", scope=SOURCE)

    def at(minutes: int) -> IngestBatch:
        return batch(
            person,
            visit_key="person:p1",
            events=[EventIn("page-view", time=T0 + timedelta(minutes=minutes))],
        )

    first = await ingest(at(0), uow)
    assert first.session_created
    same = await ingest(at(20), uow)
    assert same.session_id == first.session_id
    assert not same.session_created
    later = await ingest(at(20 + 31), uow)
    assert later.session_created
    assert later.session_id != first.session_id
    assert await count(uow, "sessions") == 2


async def test_weak_key_joins_an_anonymous_visit_to_the_person(uow, tracardi_source) -> None:
    visit = IdentityRef("visit_hash", "h1", scope=SOURCE, strong=False)
    email = IdentityRef("email_sha256", "e" * 64)
    anonymous = await ingest(batch(visit, events=[EventIn("pageview")]), uow)
    known = await ingest(batch(email, identified=True), uow)
    assert anonymous.profile_id != known.profile_id
    # The same visit now carries the email: its anonymous history joins the person.
    joined = await ingest(batch(email, visit, identified=True, events=[EventIn("purchase")]), uow)
    assert joined.profile_id == known.profile_id
    assert joined.merged == [anonymous.profile_id]
    assert await count(uow, "events", profile_id=known.profile_id) == 2


async def test_weak_key_never_merges_two_identified_people(uow, tracardi_source) -> None:
    shared = IdentityRef("visit_hash", "same-ip-and-browser", scope=SOURCE, strong=False)
    ann = await ingest(batch(IdentityRef("email_sha256", "a" * 64), shared, identified=True), uow)
    bob = await ingest(batch(IdentityRef("email_sha256", "b" * 64), shared, identified=True), uow)
    assert ann.profile_id != bob.profile_id
    assert bob.merged == []
    assert await count(uow, "profiles", merged_into=None) == 2


async def test_ingest_many_is_all_or_nothing(uow, tracardi_source) -> None:
    good = batch(IdentityRef("person", "ok", scope=SOURCE), events=[EventIn("a")])
    # Runs after `good` (its person key sorts later); its session names a missing source.
    bad = IngestBatch(
        source=SourceRef("no-such-source", "tracardi"),
        meta=RequestMeta(received_at=datetime.now(UTC)),
        identities=[IdentityRef("person", "zz", scope=SOURCE)],
        session_key="s",
        events=[EventIn("b")],
    )
    with pytest.raises(Exception, match=r"(?i)foreign key|constraint"):
        await ingest_many([good, bad], uow)
    assert await count(uow, "events") == 0
    assert await count(uow, "profiles") == 0
    results = await ingest_many([good, batch(IdentityRef("person", "ok", scope=SOURCE))], uow)
    assert results[0].profile_id == results[1].profile_id
