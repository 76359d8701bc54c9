"""The admin and read API with values no row can hold: a 422 naming them, never a 500 (both databases)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.conftest import ADMIN
from tests.hostile.conftest import row_counts

pytestmark = pytest.mark.usefixtures("sources")


async def test_read_api_ids_no_row_can_hold_are_422_naming_them(client, uow) -> None:
    for path, name in (
        ("/api/profiles/%00", "profile_id"),
        ("/api/profiles/a%00b/events", "profile_id"),
        ("/api/sessions/%00", "session_id"),
    ):
        response = await client.get(path, headers=ADMIN)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["loc"] == ["path", name]
    for params in ({"identity": "person:a\x00"}, {"identity": "person:a", "source": "\x00"}):
        response = await client.get("/api/profiles", params=params, headers=ADMIN)
        assert response.status_code == 422, (params, response.text)
    cursor = base64.urlsafe_b64encode(json.dumps(["2024-01-01T00:00:00+00:00", "e\x00"]).encode()).decode()
    profile = await client.post(
        "/track", json={"source": {"id": "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"}, "events": []}
    )
    profile_id = profile.json()["profile"]["id"]
    response = await client.get(
        f"/api/profiles/{profile_id}/events", params={"cursor": cursor}, headers=ADMIN
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["query", "cursor"]


async def test_sources_api_refuses_what_no_row_can_hold(client, uow) -> None:
    before = await row_counts(uow)
    for body, loc in (
        ({"name": "a\x00", "dialect": "tracardi"}, ["body", "name"]),
        ({"name": "a", "dialect": "tracardi", "secret": "s\x00ecret-long"}, ["body", "secret"]),
        (
            {"name": "a", "dialect": "tracardi", "allowed_origins": ["http://a\x00b"]},
            ["body", "allowed_origins", 0],
        ),
        ({"name": "a", "dialect": "tracardi", "id": "abc\n"}, ["body", "id"]),
        ({"name": "a", "dialect": "tracardi", "id": "a\x00"}, ["body", "id"]),
    ):
        response = await client.post("/api/sources", json=body, headers=ADMIN)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"] == loc
    response = await client.patch("/api/sources/%00", json={"name": "x"}, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "source_id"]
    assert await row_counts(uow) == before
