"""Group commit: concurrent requests share transactions, and each still answers only once committed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from tests.conftest import ADMIN, count
from tests.helpers import plain_batch, tracker_payload
from trackway.core import identity
from trackway.core.batch import (
    EventIn,
    IdentityRef,
    IngestBatch,
    IngestResult,
    MergeRequest,
    RequestMeta,
    SourceRef,
)
from trackway.core.group_commit import GroupCommitWriter, row_keys, write_group
from trackway.core.ingest import in_transaction, ingest

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"


def writer_of(app) -> GroupCommitWriter:
    writer = app.state.services.writer
    assert isinstance(writer, GroupCommitWriter)
    return writer


async def test_mixed_traffic_is_written_in_groups_and_every_answer_is_stored(
    app, client, uow, tracardi_source
) -> None:
    known = []
    for i in range(10):
        body = (await client.post("/track", json=tracker_payload(SOURCE, session=f"k{i}"))).json()
        known.append((body["profile"]["id"], f"k{i}"))
    writer = writer_of(app)
    groups_before = writer.groups
    payloads = []
    for i in range(60):
        profile_id, session = known[i % len(known)]
        if i % 10 < 7:
            payloads.append(tracker_payload(SOURCE, session=session, profile=profile_id))
        elif i % 10 < 9:
            payloads.append(tracker_payload(SOURCE, session=f"new-visit-{i}", profile=profile_id))
        else:
            payloads.append(tracker_payload(SOURCE, session=f"new-visitor-{i}"))
    payloads.append(payloads[0])  # a retry of a request in the same group
    responses = await asyncio.gather(*(client.post("/track", json=p) for p in payloads))
    assert {r.status_code for r in responses} == {200}
    assert writer.groups - groups_before < len(payloads)  # requests really shared transactions

    bodies = [r.json() for r in responses]
    stored = [event_id for body in bodies for event_id in body["events"]]
    assert len(stored) == len(set(stored)) == 60 * 3
    assert sorted(bodies[-1]["duplicates"] + bodies[0]["duplicates"]) == sorted(bodies[0]["events"])
    assert await count(uow, "events") == 10 * 3 + 60 * 3
    for i, body in enumerate(bodies[:60]):
        if i % 10 < 9:
            assert body["profile"]["id"] == known[i % len(known)][0]
    # Visits: the 10 first ones, 12 new visits of known profiles, 6 brand-new visitors.
    total_visits = 0
    for profile_id, _ in known:
        total_visits += (await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)).json()["visits"]
    assert total_visits == 10 + 12
    assert await count(uow, "sessions") == 10 + 12 + 6
    for body in bodies[:60]:
        session = (await client.get(f"/api/sessions/{body['session']['id']}", headers=ADMIN)).json()
        events = await count(uow, "events", session_id=body["session"]["id"])
        assert session["event_count"] == events


async def test_a_bad_batch_does_not_sink_its_group(app, uow, tracardi_source) -> None:
    writer = writer_of(app)

    def batch(source: str, key: str, session: str | None = None) -> IngestBatch:
        return IngestBatch(
            source=SourceRef(source, "tracardi"),
            meta=RequestMeta(received_at=datetime.now(UTC)),
            identities=[IdentityRef("person", key, scope=source)],
            session_key=session,
            events=[EventIn("e", dedup_key=str(uuid.uuid4()))],
        )

    good = [batch(SOURCE, f"p{i}") for i in range(5)]
    bad = batch("no-such-source", "x", session="s")  # violates the sessions -> sources foreign key
    outcomes = await asyncio.gather(
        *(writer.submit(b) for b in [*good[:3], bad, *good[3:]]), return_exceptions=True
    )
    assert isinstance(outcomes[3], Exception)
    assert all(not isinstance(o, Exception) for i, o in enumerate(outcomes) if i != 3)
    assert await count(uow, "events") == 5
    assert await count(uow, "profiles") == 5


async def test_a_request_of_several_batches_is_atomic_inside_a_group(app, uow, tracardi_source) -> None:
    """A Tracify request (one batch per event) shares a group with others and stays atomic."""
    writer = writer_of(app)

    def batch(source: str, key: str) -> IngestBatch:
        return IngestBatch(
            source=SourceRef(source, "tracardi"),
            meta=RequestMeta(received_at=datetime.now(UTC)),
            identities=[IdentityRef("person", key, scope=source)],
            session_key="s" if source != SOURCE else None,
            events=[EventIn("e")],
        )

    good_request = [batch(SOURCE, f"g{i}") for i in range(4)]
    bad_request = [batch(SOURCE, "b0"), batch("no-such-source", "b1")]  # the second violates a key
    singles = [[batch(SOURCE, f"s{i}")] for i in range(6)]
    outcomes = await asyncio.gather(
        *(writer.write(r) for r in [good_request, *singles[:3], bad_request, *singles[3:]]),
        return_exceptions=True,
    )
    assert isinstance(outcomes[4], Exception)
    assert [len(o) for i, o in enumerate(outcomes) if i != 4] == [4, 1, 1, 1, 1, 1, 1]  # type: ignore[arg-type]
    assert len({r.profile_id for r in outcomes[0]}) == 4  # type: ignore[union-attr]
    assert await count(uow, "events") == 4 + 6  # nothing of the bad request
    assert await count(uow, "profiles") == 4 + 6


async def test_a_merge_in_a_group_moves_the_events_stored_in_bulk(app, client, uow, tracardi_source) -> None:
    a = (await client.post("/track", json=tracker_payload(SOURCE, session="a"))).json()["profile"]["id"]
    b = (await client.post("/track", json=tracker_payload(SOURCE, session="b"))).json()["profile"]["id"]
    src = IdentityRef("person", "src", scope=SOURCE)
    dest = IdentityRef("person", "dest", scope=SOURCE)
    async with uow.transaction() as db:
        now = datetime.now(UTC)
        await identity.link(db, uow.dialect, src, a, now)
        await identity.link(db, uow.dialect, dest, b, now)
    alias = IngestBatch(
        source=SourceRef(SOURCE, "tracardi"),
        meta=RequestMeta(received_at=datetime.now(UTC)),
        merges=[MergeRequest(src, dest, "alias")],
        identities=[dest],
    )
    # Events for `a` and the alias folding `a` into `b` arrive together.
    results = await asyncio.gather(
        *(client.post("/track", json=tracker_payload(SOURCE, session="a", profile=a)) for _ in range(5)),
        ingest(alias, uow),
    )
    assert all(r.status_code == 200 for r in results[:5])
    assert await count(uow, "events", profile_id=a) == 0
    assert await count(uow, "events", profile_id=b) == 3 + 3 + 5 * 3


async def test_close_writes_every_queued_batch(app, uow, tracardi_source) -> None:
    writer = writer_of(app)
    batches = [
        IngestBatch(
            source=SourceRef(SOURCE, "tracardi"),
            meta=RequestMeta(received_at=datetime.now(UTC)),
            events=[EventIn("e")],
        )
        for _ in range(20)
    ]
    pending = [asyncio.create_task(writer.submit(b)) for b in batches]
    await asyncio.sleep(0)
    await writer.close()
    assert all(task.done() and not task.exception() for task in pending)
    assert await count(uow, "events") == 20
    with pytest.raises(Exception, match="Shutting down"):
        await writer.submit(batches[0])


def test_a_request_names_its_people_and_visits_for_scheduling() -> None:
    base = {"source": SourceRef(SOURCE, "tracardi"), "meta": RequestMeta(received_at=datetime.now(UTC))}
    person = IdentityRef("person", "1", SOURCE)
    assert row_keys([IngestBatch(**base, profile_hint="p", session_key="s")]) == {
        ("profile", "p"),
        ("visit", SOURCE, "s"),
    }
    assert row_keys([IngestBatch(**base)]) == frozenset()  # nothing names the person or the visit
    assert row_keys([IngestBatch(**base, identities=[person]), IngestBatch(**base, session_key="t")]) == {
        ("identity", SOURCE, "person", "1"),
        ("visit", SOURCE, "t"),
    }


def _new_visitor(session: str, profile: str | None = None) -> IngestBatch:
    return plain_batch(SOURCE, session, profile)


async def test_new_visitors_in_one_group_share_the_profile_of_their_session(uow, tracardi_source) -> None:
    batches = [_new_visitor("fresh") for _ in range(4)] + [_new_visitor("other", profile="stale-id")]
    async with uow.transaction() as db:
        written = await write_group(db, uow.dialect, batches)
    results = [r for r in written if r is not None]
    assert len(results) == len(batches)
    assert len({r.profile_id for r in results[:4]}) == 1
    assert [r.profile_created for r in results] == [True, False, False, False, True]
    assert [r.session_created for r in results] == [True, False, False, False, True]
    # As if each had committed alone: the first makes the profile, the others find its session.
    assert [r.resolved_by for r in results] == ["new", "session", "session", "session", "new"]
    assert results[4].profile_id != "stale-id"
    assert await count(uow, "profiles") == 2
    assert await count(uow, "sessions") == 2
    assert await count(uow, "events", profile_id=results[0].profile_id) == 4


async def test_a_group_that_loses_the_race_for_a_new_session_joins_its_owner(uow, tracardi_source) -> None:
    """Two groups in flight open the same new visitor's session: one profile survives.

    On PostgreSQL the second group's session insert waits for the first group's commit,
    then inserts nothing: the second group is written again, and then finds the session's
    owner. On SQLite the second transaction only starts after the first commits.
    """
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def first() -> list[IngestResult]:
        async with uow.transaction() as db:
            results = await write_group(db, uow.dialect, [_new_visitor("raced")])
            first_in.set()
            await release.wait()
        return results

    async def second() -> list[IngestResult]:
        await first_in.wait()
        batches = [_new_visitor("raced"), _new_visitor("raced")]
        return await in_transaction(uow, lambda db: write_group(db, uow.dialect, batches))

    first_task = asyncio.create_task(first())
    second_task = asyncio.create_task(second())
    await first_in.wait()
    await asyncio.sleep(0.2)  # PostgreSQL: the second group is now waiting on the session's key
    release.set()
    (winner,), losers = await first_task, await second_task
    assert winner is not None and None not in losers
    assert {r.profile_id for r in losers if r} == {winner.profile_id}
    assert not any(r and (r.profile_created or r.session_created) for r in losers)
    assert await count(uow, "profiles") == 1
    assert await count(uow, "sessions") == 1
    assert await count(uow, "events", profile_id=winner.profile_id) == 3


async def test_a_visitor_whose_rows_are_in_flight_waits_for_the_next_group(uow, tracardi_source) -> None:
    """The group being formed leaves out a batch whose profile or visit a group in flight writes."""
    writer = GroupCommitWriter(uow, max_batches=10)
    loop = asyncio.get_running_loop()
    busy_profile = _new_visitor("a", profile="p-in-flight")
    busy_visit = _new_visitor("v-in-flight")
    free = [_new_visitor("b", profile="p-free"), _new_visitor("c")]
    writer._busy.update({("profile", "p-in-flight"), ("visit", SOURCE, "v-in-flight")})
    writer._queue = [([b], loop.create_future()) for b in [busy_profile, *free, busy_visit]]
    group, keys = writer._take_group()
    assert [batch for (batch,), _ in group] == free
    assert keys == {("profile", "p-free"), ("visit", SOURCE, "b"), ("visit", SOURCE, "c")}
    assert [batch for (batch,), _ in writer._queue] == [busy_profile, busy_visit]


async def test_the_driver_statements_store_times_as_sqlalchemy_does(uow, tracardi_source) -> None:
    """Times written on the driver connection and by SQLAlchemy compare as times (SQLite keeps text)."""
    from datetime import timedelta

    from sqlalchemy import select, update

    from trackway.db.models import profiles, sessions
    from trackway.db.sql import greatest

    late = datetime.now(UTC)
    visitor = _new_visitor("clock")
    visitor.meta = RequestMeta(received_at=late)
    async with uow.transaction() as db:
        (result,) = await write_group(db, uow.dialect, [visitor])
    assert result is not None and result.session_id is not None
    async with uow.transaction() as db:  # an older time through SQLAlchemy moves nothing back
        earlier = late - timedelta(hours=1)
        await db.execute(
            update(sessions)
            .where(sessions.c.id == result.session_id)
            .values(last_event_at=greatest(sessions.c.last_event_at, earlier))
        )
    async with uow.read() as db:
        row = (await db.execute(select(sessions).where(sessions.c.id == result.session_id))).one()
        seen = (
            await db.execute(select(profiles.c.last_seen_at).where(profiles.c.id == result.profile_id))
        ).scalar_one()
    assert row.started_at == late and row.last_event_at == late and seen == late
    assert row.event_count == 1

    again = _new_visitor("clock", profile=result.profile_id)
    again.meta = RequestMeta(received_at=late - timedelta(minutes=5))  # older, through the write path
    async with uow.transaction() as db:
        await write_group(db, uow.dialect, [again])
    async with uow.read() as db:
        row = (await db.execute(select(sessions).where(sessions.c.id == result.session_id))).one()
    assert row.last_event_at == late and row.event_count == 2


@pytest.mark.parametrize("settings_overrides", [{"group_commit": True}, {"group_commit": False}])
async def test_a_merged_hint_with_a_new_session_lands_on_the_survivor(
    app, client, uow, tracardi_source
) -> None:
    """design.md step 1: a hint naming a merged profile lands on its survivor, on both paths."""
    from trackway.core.merge import merge_profiles

    a = (await client.post("/track", json=tracker_payload(SOURCE, session="a"))).json()["profile"]["id"]
    b = (await client.post("/track", json=tracker_payload(SOURCE, session="b"))).json()["profile"]["id"]
    async with uow.transaction() as db:
        now = datetime.now(UTC)
        await merge_profiles(db, from_id=a, into_id=b, reason="test", source_id=SOURCE, now=now)
    body = (await client.post("/track", json=tracker_payload(SOURCE, session="a-new", profile=a))).json()
    assert body["profile"]["id"] == b
    assert await count(uow, "profiles") == 2
    profile = (await client.get(f"/api/profiles/{b}", headers=ADMIN)).json()
    assert profile["visits"] == 3


async def test_each_batch_of_a_group_moves_the_clocks_to_its_own_time(uow, tracardi_source) -> None:
    """last_seen_at / last_event_at take each batch's own time, not the group's latest."""
    from datetime import timedelta

    from sqlalchemy import select

    from trackway.db.models import profiles, sessions

    early = datetime.now(UTC) - timedelta(minutes=10)
    one, other = _new_visitor("one"), _new_visitor("other")
    one.meta, other.meta = RequestMeta(received_at=early), RequestMeta(received_at=early)
    async with uow.transaction() as db:
        first = await write_group(db, uow.dialect, [one, other])
    a, b = (r.profile_id for r in first if r is not None)
    again_a, again_b = _new_visitor("one", profile=a), _new_visitor("other", profile=b)
    again_a.meta = RequestMeta(received_at=early + timedelta(minutes=1))
    again_b.meta = RequestMeta(received_at=early + timedelta(minutes=5))
    async with uow.transaction() as db:
        await write_group(db, uow.dialect, [again_a, again_b])
    async with uow.read() as db:
        seen = dict((await db.execute(select(profiles.c.id, profiles.c.last_seen_at))).all())
        clocks = dict((await db.execute(select(sessions.c.profile_id, sessions.c.last_event_at))).all())
    assert seen == {a: again_a.meta.received_at, b: again_b.meta.received_at}
    assert clocks == seen
