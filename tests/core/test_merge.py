"""The merge in the core: history moves, the survivor's traits win, chains resolve, races settle."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.conftest import ADMIN, count
from tests.helpers import tracker_payload
from trackway.core import identity
from trackway.core.batch import IdentityRef, IngestBatch, MergeRequest, RequestMeta, SourceRef, TraitsPatch
from trackway.core.ingest import ingest
from trackway.core.merge import merge_profiles
from trackway.db.models import profile_merges, profiles

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"


async def visitor(client, session: str, events: int = 2) -> str:
    response = await client.post("/track", json=tracker_payload(SOURCE, session=session, events=events))
    return str(response.json()["profile"]["id"])


async def set_traits(uow, profile_id: str, traits: dict) -> None:
    async with uow.transaction() as db:
        await db.execute(profiles.update().where(profiles.c.id == profile_id).values(traits=traits))


async def merge(uow, from_id: str, into_id: str) -> str:
    async with uow.transaction() as db:
        return await merge_profiles(
            db, from_id=from_id, into_id=into_id, reason="test", source_id=SOURCE, now=datetime.now(UTC)
        )


async def test_merge_moves_history_and_keeps_survivor_traits(client, uow, tracardi_source) -> None:
    a = await visitor(client, "sa", events=2)
    b = await visitor(client, "sb", events=3)
    await set_traits(uow, a, {"plan": "gold", "city": "Oslo"})
    await set_traits(uow, b, {"plan": "free", "age": 30})
    assert await merge(uow, a, b) == b

    survivor = (await client.get(f"/api/profiles/{b}", headers=ADMIN)).json()
    assert survivor["traits"] == {"plan": "free", "age": 30, "city": "Oslo"}
    assert survivor["visits"] == 2
    assert survivor["merged_from"] == [a]
    events = (await client.get(f"/api/profiles/{b}/events", headers=ADMIN)).json()["items"]
    assert len(events) == 5
    assert await count(uow, "sessions", profile_id=b) == 2
    assert await count(uow, "events", profile_id=a) == 0

    # The merged id answers with the survivor, saying which id was asked for.
    merged = (await client.get(f"/api/profiles/{a}", headers=ADMIN)).json()
    assert merged["id"] == b
    assert merged["requested_id"] == a
    # A client still holding the old profile id lands on the survivor.
    body = (await client.post("/track", json=tracker_payload(SOURCE, session="sa", profile=a))).json()
    assert body["profile"]["id"] == b
    async with uow.read() as db:
        audit = (await db.execute(select(profile_merges))).all()
    assert [(row.from_profile_id, row.into_profile_id, row.reason) for row in audit] == [(a, b, "test")]


async def test_merge_chains_resolve_to_the_final_survivor(client, uow, tracardi_source) -> None:
    a, b, c = [await visitor(client, f"chain-{i}") for i in range(3)]
    await merge(uow, a, b)
    await merge(uow, b, c)
    async with uow.read() as db:
        assert await identity.live_profile_id(db, a) == c
        row = (await db.execute(select(profiles.c.merged_into).where(profiles.c.id == a))).scalar_one()
    assert row == c  # the chain was shortened to one hop
    # Merging back towards an already merged profile cannot form a cycle: it is a no-op.
    assert await merge(uow, c, a) == c
    assert await count(uow, "profiles", merged_into=None) == 1


async def test_concurrent_opposite_merges_end_with_one_survivor(client, uow, tracardi_source) -> None:
    rounds = 10
    pairs = [(await visitor(client, f"x{i}"), await visitor(client, f"y{i}")) for i in range(rounds)]
    results = await asyncio.gather(
        *(merge(uow, a, b) for a, b in pairs), *(merge(uow, b, a) for a, b in pairs)
    )
    for i, (a, b) in enumerate(pairs):
        survivor = results[i]
        assert results[rounds + i] == survivor
        assert survivor in (a, b)
        assert await count(uow, "events", profile_id=survivor) == 4
        assert await count(uow, "profile_merges", into_profile_id=survivor) == 1
    assert await count(uow, "events") == rounds * 4
    assert await count(uow, "profiles", merged_into=None) == rounds


def batch(*, identities=(), merges=(), traits=None, identified=None) -> IngestBatch:
    return IngestBatch(
        source=SourceRef(SOURCE, "tracardi"),
        meta=RequestMeta(received_at=datetime.now(UTC)),
        identities=list(identities),
        merges=list(merges),
        traits=traits or TraitsPatch(),
        identified=identified,
    )


async def test_identities_resolve_link_and_join_profiles(uow, tracardi_source) -> None:
    email = IdentityRef("email_sha256", identity.email_sha256(" Ann@Example.com "))
    person = IdentityRef("person", "42", scope=SOURCE)
    first = await ingest(batch(identities=[person], traits=TraitsPatch(set={"name": "Ann"})), uow)
    assert first.resolved_by == "new"
    again = await ingest(batch(identities=[person]), uow)
    assert again.profile_id == first.profile_id
    assert again.resolved_by == "identity"

    # Another profile claims the same email: the two are one person and merge.
    other = await ingest(batch(identities=[IdentityRef("person", "43", scope=SOURCE), email]), uow)
    joined = await ingest(batch(identities=[person, email]), uow)
    assert joined.profile_id == first.profile_id  # the oldest survives
    assert joined.merged == [other.profile_id]
    assert await count(uow, "identities", profile_id=first.profile_id) == 3


async def test_explicit_merge_before_either_is_known(uow, tracardi_source) -> None:
    anon = IdentityRef("person", "a-xyz", scope=SOURCE)
    known = IdentityRef("person", "unicorn", scope=SOURCE)
    result = await ingest(batch(identities=[known], merges=[MergeRequest(anon, known, "alias")]), uow)
    later = await ingest(batch(identities=[anon]), uow)
    assert later.profile_id == result.profile_id
    assert await count(uow, "profiles") == 1


@pytest.mark.parametrize("parallel", [30])
async def test_parallel_first_sight_of_one_identity_makes_one_profile(uow, tracardi_source, parallel) -> None:
    person = IdentityRef("person", "race", scope=SOURCE)
    results = await asyncio.gather(*(ingest(batch(identities=[person]), uow) for _ in range(parallel)))
    assert len({r.profile_id for r in results}) == 1
    assert await count(uow, "profiles") == 1
