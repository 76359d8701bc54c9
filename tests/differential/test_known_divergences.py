"""The divergence classes the differential test found (issue #13), each as one small test.

Batches go to the core directly (``ingest``, as every dialect calls it) with receive times
chosen by the test, and at once (``asyncio.gather``): with group commit on, batches queued
together are written as one group, which is what the bulk path gets wrong here. The
per-batch path (group commit off) is right; the group path is marked ``xfail(strict=True)``
until the core is fixed, so a fix shows up as an XPASS to remove the mark.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.conftest import ADMIN
from trackway.core.batch import EventIn, IngestBatch, RequestMeta, SourceRef
from trackway.core.ingest import ingest
from trackway.core.sessions import session_id_for
from trackway.db.uow import SqlUnitOfWork

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"  # conftest's tracardi_source
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)


def group_xfail(reason: str) -> list[object]:
    return [
        pytest.param({"group_commit": False}, id="per-batch"),
        pytest.param({"group_commit": True}, id="group", marks=pytest.mark.xfail(strict=True, reason=reason)),
    ]


def batch(session: str, at: datetime, profile: str | None = None, key: str = "") -> IngestBatch:
    """A plain Tracardi batch (the bulk path takes it) received at ``at``."""
    return IngestBatch(
        source=SourceRef(SOURCE, "tracardi"),
        meta=RequestMeta(received_at=at),
        events=[EventIn("page-view", dedup_key=f"{session}-{key or at.isoformat()}", time=at)],
        profile_hint=profile,
        session_key=session,
    )


async def view(client: httpx.AsyncClient, path: str) -> dict[str, object]:
    response = await client.get(path, headers=ADMIN)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def moment(value: object) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "settings_overrides",
    group_xfail(
        "issue #13: the bulk path moves every profile and session of a group to the group's "
        "latest receive time (BulkWriter.now), not each batch's own"
    ),
)
async def test_several_people_in_one_group_keep_their_own_times(
    client, uow: SqlUnitOfWork, tracardi_source
) -> None:
    ann = (await ingest(batch("ann-1", T0), uow)).profile_id
    bob = (await ingest(batch("bob-1", T0), uow)).profile_id
    # Both come back at once, Ann a minute before Bob: their batches share a group.
    early, late = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    await asyncio.gather(ingest(batch("ann-2", early, ann), uow), ingest(batch("bob-2", late, bob), uow))
    profile = await view(client, f"/api/profiles/{ann}")
    session = await view(client, f"/api/sessions/{session_id_for(SOURCE, 'ann-2')}")
    assert (moment(profile["last_seen_at"]), moment(session["last_event_at"])) == (early, early)


@pytest.mark.parametrize(
    "settings_overrides",
    group_xfail(
        "issue #13: the bulk path makes a new visitor's profile with the first batch's receive "
        "time as last_seen_at and leaves it there for the group's later batches of that visitor"
    ),
)
async def test_a_burst_of_first_hits_ends_seen_at_the_latest(
    client, uow: SqlUnitOfWork, tracardi_source
) -> None:
    times = [T0 + timedelta(seconds=i) for i in range(3)]
    results = await asyncio.gather(
        *(ingest(batch("burst", at, key=str(i)), uow) for i, at in enumerate(times))
    )
    assert len({r.profile_id for r in results}) == 1
    profile = await view(client, f"/api/profiles/{results[0].profile_id}")
    session = await view(client, f"/api/sessions/{session_id_for(SOURCE, 'burst')}")
    assert session["event_count"] == 3 and profile["visits"] == 1
    assert moment(profile["last_seen_at"]) == times[-1]


@pytest.mark.parametrize(
    "settings_overrides",
    [
        pytest.param(
            {"group_commit": False},
            id="per-batch",
            marks=pytest.mark.xfail(
                strict=True,
                reason="issue #13: the per-batch path opens the session with the events it expects "
                "and skips the correction when every one was a duplicate (ingest.py _Run.run: "
                "'if not (self.session_created and not stored)'); the bulk path counts what it stored",
            ),
        ),
        pytest.param({"group_commit": True}, id="group"),
    ],
)
async def test_a_new_session_of_duplicates_only_counts_no_event(
    client, uow: SqlUnitOfWork, tracardi_source
) -> None:
    """The same event ids again in another session (re-queued after the session rotated)."""
    events = [EventIn("page-view", dedup_key=f"ev-{i}", time=T0) for i in range(3)]
    first = IngestBatch(
        SourceRef(SOURCE, "tracardi"), RequestMeta(received_at=T0), events=events, session_key="old"
    )
    await ingest(first, uow)
    again = IngestBatch(
        SourceRef(SOURCE, "tracardi"),
        RequestMeta(received_at=T0 + timedelta(seconds=5)),
        events=[EventIn("page-view", dedup_key=f"ev-{i}", time=T0) for i in range(3)],
        session_key="new",
    )
    result = await ingest(again, uow)
    assert result.stored_event_ids == [] and len(result.duplicate_event_ids) == 3
    session = await view(client, f"/api/sessions/{session_id_for(SOURCE, 'new')}")
    assert session["event_count"] == 0
