"""Hostile input to the admin and read API: a 422 naming the field (or a 404), never a 500.

PostgreSQL refuses ``\\u0000`` in text and no driver encodes a lone surrogate; a naive time
cannot be compared with a stored UTC one. Each of these was a 500 on PostgreSQL (and some on
SQLite). Every case runs on both databases and must leave them as they were.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import ADMIN, counts
from tests.helpers import tracker_payload

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"


def cursor_of(value: Any) -> str:
    """A cursor as ``encode_cursor`` makes them, around any JSON value."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def assert_422(response: Any, loc: list[Any]) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    assert loc in [error["loc"] for error in response.json()["detail"]], response.json()


@pytest.mark.parametrize(
    ("url", "loc"),
    [
        ("/api/profiles/a%00b", ["path", "profile_id"]),
        ("/api/profiles/a%00b/events", ["path", "profile_id"]),
        ("/api/sessions/a%00b", ["path", "session_id"]),
        ("/api/profiles/" + "x" * 256, ["path", "profile_id"]),
        ("/api/sessions/" + "x" * 256, ["path", "session_id"]),
        ("/api/profiles?identity=person:a%00b&source=web", ["query", "identity"]),
        ("/api/profiles?identity=person:42&source=w%00b", ["query", "source"]),
        ("/api/profiles?identity=email_sha256:%00", ["query", "identity"]),
        ("/api/profiles?identity=" + "p" * 2000, ["query", "identity"]),
        ("/api/profiles?identity=person:1&source=" + "s" * 129, ["query", "source"]),
    ],
)
async def test_hostile_read_ids_are_422(client, tracardi_source, uow, url, loc) -> None:
    before = await counts(uow)
    assert_422(await client.get(url, headers=ADMIN), loc)
    assert await counts(uow) == before


async def test_an_identity_longer_than_any_stored_finds_nothing(client, tracardi_source) -> None:
    response = await client.get("/api/profiles", headers=ADMIN, params={"identity": "person:" + "9" * 1000})
    assert response.status_code == 200, response.text
    assert response.json() == {"items": []}


@pytest.mark.parametrize(
    "cursor",
    [
        cursor_of(["2024-06-21T12:00:00", "e"]),  # a time without zone: was a 500 on both
        cursor_of(["2024-06-21", "e"]),
        cursor_of(["2024-06-21T12:00:00+00:00", "a\u0000b"]),
        cursor_of(["2024-06-21T12:00:00+00:00", "x" * 37]),
        cursor_of(["2024-06-21T12:00:00+00:00", 5]),
        cursor_of([5, "e"]),
        cursor_of({"a": 1, "b": 2}),
        cursor_of(["0001-01-01T00:00:00+01:00", "e"]),  # before year 1 in UTC
        "%%%",
        "x" * 5000,
    ],
)
async def test_a_forged_cursor_is_422(client, tracardi_source, cursor) -> None:
    profile_id = (await client.post("/track", json=tracker_payload(SOURCE, session="s"))).json()["profile"][
        "id"
    ]
    response = await client.get(
        f"/api/profiles/{profile_id}/events", headers=ADMIN, params={"cursor": cursor}
    )
    assert_422(response, ["query", "cursor"])


async def test_a_cursor_with_its_zone_still_pages(client, tracardi_source) -> None:
    profile_id = (await client.post("/track", json=tracker_payload(SOURCE, session="s"))).json()["profile"][
        "id"
    ]
    cursor = cursor_of(["2000-01-01T01:00:00+01:00", ""])
    response = await client.get(
        f"/api/profiles/{profile_id}/events", headers=ADMIN, params={"cursor": cursor}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 3


VALID = {"name": "web", "dialect": "tracardi"}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({**VALID, "name": "a\u0000b"}, ["body", "name"]),
        ({**VALID, "name": "a\ud800b"}, ["body", "name"]),
        ({**VALID, "secret": "secret-\u0000-value"}, ["body", "secret"]),
        ({**VALID, "allowed_origins": ["https://a\u0000.example"]}, ["body", "allowed_origins", 0]),
        ({**VALID, "allowed_origins": ["https://" + "a" * 400 + ".example"]}, ["body", "allowed_origins", 0]),
        ({**VALID, "allowed_origins": ["*"] * 101}, ["body", "allowed_origins"]),
        ({**VALID, "id": "a\u0000b"}, ["body", "id"]),
        ({**VALID, "id": "abc\n"}, ["body", "id"]),
        ({**VALID, "id": "a" * 129}, ["body", "id"]),
        ({**VALID, "dialect": "tracardi\u0000"}, ["body", "dialect"]),
        ({**VALID, "name": "n" * 201}, ["body", "name"]),
        ({**VALID, "secret": "s" * 201}, ["body", "secret"]),
    ],
)
async def test_hostile_source_create_is_422(client, uow, body, loc) -> None:
    raw = json.dumps(body).encode()  # json.dumps escapes the surrogate as \\ud800
    response = await client.post(
        "/api/sources", headers={**ADMIN, "content-type": "application/json"}, content=raw
    )
    assert_422(response, loc)
    assert await counts(uow) == {name: 0 for name in await counts(uow)}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "a\u0000b"}, ["body", "name"]),
        ({"secret": "secret-\u0000-value"}, ["body", "secret"]),
        ({"allowed_origins": ["https://a\u0000.example"]}, ["body", "allowed_origins", 0]),
        ({"secret": "long-enough-secret", "rotate_secret": True}, ["body"]),
    ],
)
async def test_hostile_source_patch_is_422_and_changes_nothing(client, body, loc) -> None:
    created = await client.post("/api/sources", headers=ADMIN, json=VALID)
    source_id = created.json()["id"]
    response = await client.patch(f"/api/sources/{source_id}", headers=ADMIN, json=body)
    assert_422(response, loc)
    listed = (await client.get("/api/sources", headers=ADMIN)).json()["items"]
    assert listed == [{k: v for k, v in created.json().items() if k != "secret"}]


@pytest.mark.parametrize(
    ("path", "loc"), [("a%00b", ["path", "source_id"]), ("s" * 256, ["path", "source_id"])]
)
async def test_hostile_source_path_id_is_422(client, uow, path, loc) -> None:
    response = await client.patch(f"/api/sources/{path}", headers=ADMIN, json={"enabled": False})
    assert_422(response, loc)


@pytest.mark.parametrize("settings_overrides", [{"demo": True}])
@pytest.mark.parametrize(
    ("url", "loc"),
    [
        ("/demo?source=a%00b", ["query", "source"]),
        ("/demo/events?source=a%00b&profile=p", ["query", "source"]),
        ("/demo/events?source=s&profile=a%00b", ["query", "profile"]),
    ],
)
async def test_hostile_demo_ids_are_422(client, url, loc) -> None:
    assert_422(await client.get(url), loc)
