"""The divergence classes the differential test found (issue #13), each as one small test.

Batches go to the app's writer (as every dialect's do) with receive times chosen by the
test, and at once (``asyncio.gather``): with group commit on, batches queued together are
written as one group. Before the one write path, group commit's bulk path answered these
differently from the per-batch steps; both paths now run the same code, and these keep it so.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import ADMIN
from trackway.core.batch import EventIn, IngestBatch, IngestResult, RequestMeta, SourceRef
from trackway.core.sessions import session_id_for

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"  # conftest's tracardi_source
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=10)


PATHS = [
    pytest.param({"group_commit": False}, id="per-batch"),
    pytest.param({"group_commit": True}, id="group"),
]


async def ingest(batch: IngestBatch, app: FastAPI) -> IngestResult:
    """Through the app's writer: with group commit on, batches sent at once share a group."""
    (result,) = await app.state.services.writer.write([batch])
    return result


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


@pytest.mark.parametrize("settings_overrides", PATHS)
async def test_several_people_in_one_group_keep_their_own_times(
    client, app: FastAPI, tracardi_source
) -> None:
    ann = (await ingest(batch("ann-1", T0), app)).profile_id
    bob = (await ingest(batch("bob-1", T0), app)).profile_id
    # Both come back at once, Ann a minute before Bob: their batches share a group.
    early, late = T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)
    await asyncio.gather(ingest(batch("ann-2", early, ann), app), ingest(batch("bob-2", late, bob), app))
    profile = await view(client, f"/api/profiles/{ann}")
    session = await view(client, f"/api/sessions/{session_id_for(SOURCE, 'ann-2')}")
    assert (moment(profile["last_seen_at"]), moment(session["last_event_at"])) == (early, early)


@pytest.mark.parametrize("settings_overrides", PATHS)
async def test_a_burst_of_first_hits_ends_seen_at_the_latest(client, app: FastAPI, tracardi_source) -> None:
    times = [T0 + timedelta(seconds=i) for i in range(3)]
    results = await asyncio.gather(
        *(ingest(batch("burst", at, key=str(i)), app) for i, at in enumerate(times))
    )
    assert len({r.profile_id for r in results}) == 1
    profile = await view(client, f"/api/profiles/{results[0].profile_id}")
    session = await view(client, f"/api/sessions/{session_id_for(SOURCE, 'burst')}")
    assert session["event_count"] == 3 and profile["visits"] == 1
    assert moment(profile["last_seen_at"]) == times[-1]


@pytest.mark.parametrize("settings_overrides", PATHS)
async def test_a_new_session_of_duplicates_only_opens_nothing(client, app: FastAPI, tracardi_source) -> None:
    """The same event ids again in another session (re-queued after the session rotated): a
    duplicate creates nothing (no session, no profile) and answers the stored events' profile."""
    events = [EventIn("page-view", dedup_key=f"ev-{i}", time=T0) for i in range(3)]
    first = IngestBatch(
        SourceRef(SOURCE, "tracardi"), RequestMeta(received_at=T0), events=events, session_key="old"
    )
    stored = await ingest(first, app)
    again = IngestBatch(
        SourceRef(SOURCE, "tracardi"),
        RequestMeta(received_at=T0 + timedelta(seconds=5)),
        events=[EventIn("page-view", dedup_key=f"ev-{i}", time=T0) for i in range(3)],
        session_key="new",
    )
    result = await ingest(again, app)
    assert result.stored_event_ids == [] and len(result.duplicate_event_ids) == 3
    assert result.profile_id == stored.profile_id
    response = await client.get(f"/api/sessions/{session_id_for(SOURCE, 'new')}", headers=ADMIN)
    assert response.status_code == 404
