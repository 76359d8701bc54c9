"""Issue #13's first finding, on its own: a Tracardi ``profile.id`` naming a merged profile.

Design step 1 and the README: a hint that names a merged profile resolves to its survivor
("a merged one answers with its survivor's id, and the client replaces the id it keeps"),
with group commit on or off, whether its group commits or fails and is written one by one.
(Before the one write path, group commit's bulk path made a brand-new profile when the
session was new.) The profile id is learned from another dialect's answer
(a Tracktor person's, later aliased): Tracardi-made profiles have no identities, so no
dialect can merge one, but any profile id may come back as a hint.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, count
from tests.differential.generator import TRACARDI, TRACKTOR
from tests.differential.harness import fallback_hook
from trackway.core import sources as source_service
from trackway.db.uow import SqlUnitOfWork

PATHS = [
    pytest.param({"group_commit": False}, id="per-batch"),
    pytest.param({"group_commit": True}, id="group"),
]


@pytest.fixture
async def sources(uow: SqlUnitOfWork) -> None:
    await source_service.create_source(uow, name="web", dialect="tracardi", source_id=TRACARDI)
    await source_service.create_source(uow, name="app", dialect="tracktor", source_id=TRACKTOR)


async def merged_and_survivor(client: httpx.AsyncClient) -> tuple[str, str]:
    """An anonymous Tracktor person's profile, then aliased into an identified one."""
    params = {"sid": TRACKTOR, "id": "a-anon", "action": "viewed", "ts": "1717232400"}
    anonymous = (await client.get("/track", params=params)).json()["profile"]["id"]
    alias = {"sid": TRACKTOR, "srcid": "a-anon", "destid": "user-1"}
    survivor = (await client.get("/alias", params=alias)).json()["profile"]["id"]
    assert survivor != anonymous
    view = (await client.get(f"/api/profiles/{anonymous}", headers=ADMIN)).json()
    assert view["id"] == survivor and view["requested_id"] == anonymous
    return anonymous, survivor


def track(session: str, hint: str) -> dict[str, Any]:
    return {
        "source": {"id": TRACARDI},
        "session": {"id": session},
        "profile": {"id": hint},
        "events": [{"id": f"{session}-1", "type": "page-view", "time": "2024-06-01T10:00:00Z"}],
    }


@pytest.mark.parametrize("settings_overrides", PATHS)
async def test_merged_hint_new_session(client, uow, sources) -> None:
    merged, survivor = await merged_and_survivor(client)
    profiles_before = await count(uow, "profiles")
    body = (await client.post("/track", json=track("new-session", merged))).json()
    assert body["profile"]["id"] == survivor
    assert await count(uow, "profiles") == profiles_before
    view = (await client.get(f"/api/profiles/{survivor}", headers=ADMIN)).json()
    assert view["visits"] == 2  # the Tracktor visit and this one


@pytest.mark.parametrize("settings_overrides", PATHS)
async def test_merged_hint_known_session(client, uow, sources) -> None:
    """With a known session too."""
    merged, survivor = await merged_and_survivor(client)
    first = (await client.post("/track", json=track("known-session", survivor))).json()
    assert first["profile"]["id"] == survivor
    again = track("known-session", merged)
    again["events"][0]["id"] = "known-session-2"
    body = (await client.post("/track", json=again)).json()
    assert body["profile"]["id"] == survivor
    assert body["session"] == first["session"]


@pytest.mark.parametrize(
    "fail_group", [pytest.param(True, id="group-fails"), pytest.param(False, id="group-commits")]
)
# A window long enough for both requests to join one group even on a busy machine.
@pytest.mark.parametrize(
    "settings_overrides", [{"group_commit": True, "group_commit_window_ms": 50}], ids=["group"]
)
async def test_merged_hint_answer_does_not_depend_on_the_group_failing(
    client, app, uow, sources, fail_group
) -> None:
    """Two requests of one visitor at once (one group), hinted with a merged id in a new session,
    land on the survivor whether the group's transaction commits or fails (written one by one)."""
    merged, survivor = await merged_and_survivor(client)
    app.state.services.writer.diff_fail_groups = fail_group
    first, second = track("burst", merged), track("burst", merged)
    second["events"][0]["id"] = "burst-2"
    with fallback_hook():
        answers = await asyncio.gather(client.post("/track", json=first), client.post("/track", json=second))
    assert getattr(app.state.services.writer, "diff_failed_groups", 0) == (1 if fail_group else 0)
    assert [a.json()["profile"]["id"] for a in answers] == [survivor, survivor]
