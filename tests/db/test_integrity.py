"""The check behind ``events_reference_real_rows`` finds what it looks for (it can fail)."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.conftest import orphan_events
from trackway.db.models import events


async def test_an_event_of_a_missing_profile_and_session_is_found(uow, tracardi_source) -> None:
    assert await orphan_events(uow) == {}
    now = datetime.now(UTC)
    async with uow.transaction() as db:
        await db.execute(
            events.insert().values(
                id="e-1",
                source_id=tracardi_source.id,
                profile_id="no-such-profile",
                session_id="no-such-session",
                type="page-view",
                time=now,
                received_at=now,
                properties={},
                context={},
            )
        )
    assert await orphan_events(uow) == {"profile": 1, "session": 1}
    async with uow.transaction() as db:
        await db.execute(events.delete())  # the autouse check runs after this test too
