"""Admin API for sources: bearer auth, create, list, change; changes take effect on ingest."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN
from tests.helpers import tracker_payload


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dGVzdA=="}, {"Authorization": "Bearer"}],
)
async def test_admin_api_needs_the_bearer_token(client, headers) -> None:
    for method, url in (("GET", "/api/sources"), ("POST", "/api/sources"), ("GET", "/api/profiles/x")):
        response = await client.request(method, url, headers=headers, json={})
        assert response.status_code == 401, (method, url)
        assert response.json() == {"detail": "Missing or invalid bearer token."}


@pytest.mark.parametrize("settings_overrides", [{"admin_token": None}])
async def test_without_a_configured_token_the_admin_api_refuses_everything(client) -> None:
    response = await client.get("/api/sources", headers={"Authorization": "Bearer "})
    assert response.status_code == 401
    response = await client.get("/api/sources", headers={"Authorization": "Bearer None"})
    assert response.status_code == 401


async def test_create_list_and_patch_a_source(client) -> None:
    created = await client.post(
        "/api/sources",
        headers=ADMIN,
        json={"name": "web", "dialect": "tracardi", "allowed_origins": ["https://Shop.example/"]},
    )
    assert created.status_code == 201, created.text
    source = created.json()
    assert source["dialect"] == "tracardi"
    assert source["enabled"] is True
    assert source["allowed_origins"] == ["https://shop.example"]
    assert source["secret"] is None
    assert source["has_secret"] is False

    listed = (await client.get("/api/sources", headers=ADMIN)).json()["items"]
    assert [s["id"] for s in listed] == [source["id"]]
    assert "secret" not in listed[0]

    ok = await client.post("/track", json=tracker_payload(source["id"], session="s"))
    assert ok.status_code == 200
    patched = await client.patch(f"/api/sources/{source['id']}", headers=ADMIN, json={"enabled": False})
    assert patched.status_code == 200
    assert patched.json()["enabled"] is False
    refused = await client.post("/track", json=tracker_payload(source["id"], session="s"))
    assert refused.status_code == 401
    assert refused.json() == {"detail": "Access denied. Invalid source."}


async def test_tracify_source_gets_a_generated_secret(client) -> None:
    created = (
        await client.post("/api/sources", headers=ADMIN, json={"name": "srv", "dialect": "tracify"})
    ).json()
    assert isinstance(created["secret"], str) and len(created["secret"]) >= 32


async def test_source_with_a_chosen_id_and_duplicates(client) -> None:
    body = {"name": "web", "dialect": "tracardi", "id": "ee2db027-46cf-4034-a759-79f1c930f80d"}
    assert (await client.post("/api/sources", headers=ADMIN, json=body)).status_code == 201
    again = await client.post("/api/sources", headers=ADMIN, json=body)
    assert again.status_code == 409
    assert "already exists" in again.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "x", "dialect": "mixpanel"}, ["body", "dialect"]),
        ({"dialect": "tracardi"}, ["body", "name"]),
        ({"name": "x", "dialect": "tracardi", "id": "has space"}, ["body", "id"]),
        (
            {"name": "x", "dialect": "tracardi", "allowed_origins": ["shop.example"]},
            ["body", "allowed_origins", 0],
        ),
        ({"name": "x", "dialect": "tracktor", "signed_only": True}, ["body", "signed_only"]),
        ({"name": "x", "dialect": "insend", "cart_abandon_after": 0}, ["body", "cart_abandon_after"]),
        ({"name": "x", "dialect": "insend", "cart_abandon_after": 10**12}, ["body", "cart_abandon_after"]),
        ({"name": "x", "dialect": "insend", "cart_abandon_after": "soon"}, ["body", "cart_abandon_after"]),
    ],
)
async def test_invalid_source_is_422_naming_the_field(client, body, loc) -> None:
    response = await client.post("/api/sources", headers=ADMIN, json=body)
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["detail"]]
    assert (await client.get("/api/sources", headers=ADMIN)).json()["items"] == []


async def test_patch_unknown_source_is_404(client) -> None:
    response = await client.patch("/api/sources/nope", headers=ADMIN, json={"enabled": False})
    assert response.status_code == 404
    assert "nope" in response.json()["detail"]


async def test_signed_only_and_secret_can_be_changed(client) -> None:
    source = (
        await client.post("/api/sources", headers=ADMIN, json={"name": "t", "dialect": "tracktor"})
    ).json()
    refused = await client.patch(f"/api/sources/{source['id']}", headers=ADMIN, json={"signed_only": True})
    assert refused.status_code == 422
    changed = await client.patch(
        f"/api/sources/{source['id']}",
        headers=ADMIN,
        json={"signed_only": True, "secret": "2D8CarQ4rX3WvH6TK7DpJDk5"},
    )
    assert changed.status_code == 200
    assert changed.json()["signed_only"] is True
    assert changed.json()["secret"] == "2D8CarQ4rX3WvH6TK7DpJDk5"


async def test_a_secret_is_shown_at_creation_and_rotation_never_in_lists(client) -> None:
    created = (
        await client.post("/api/sources", headers=ADMIN, json={"name": "srv", "dialect": "tracify"})
    ).json()
    secret = created["secret"]
    assert created["has_secret"] is True and len(secret) >= 32

    listing = await client.get("/api/sources", headers=ADMIN)
    assert secret not in listing.text
    assert listing.json()["items"][0]["has_secret"] is True
    assert "secret" not in listing.json()["items"][0]

    renamed = await client.patch(f"/api/sources/{created['id']}", headers=ADMIN, json={"name": "renamed"})
    assert renamed.status_code == 200
    assert "secret" not in renamed.json() and secret not in renamed.text
    assert renamed.json()["has_secret"] is True

    rotated = await client.patch(f"/api/sources/{created['id']}", headers=ADMIN, json={"rotate_secret": True})
    assert rotated.status_code == 200, rotated.text
    new_secret = rotated.json()["secret"]
    assert len(new_secret) >= 32 and new_secret != secret
    assert new_secret not in (await client.get("/api/sources", headers=ADMIN)).text

    cleared = await client.patch(f"/api/sources/{created['id']}", headers=ADMIN, json={"secret": None})
    assert cleared.status_code == 200
    assert cleared.json()["secret"] is None and cleared.json()["has_secret"] is False


async def test_cart_abandon_after_is_set_at_creation_and_patched(client) -> None:
    body = {"name": "shop", "dialect": "insend", "id": "shop"}
    created = (await client.post("/api/sources", headers=ADMIN, json=body)).json()
    assert created["cart_abandon_after"] == 3600
    patched = await client.patch("/api/sources/shop", headers=ADMIN, json={"cart_abandon_after": 900})
    assert patched.status_code == 200 and patched.json()["cart_abandon_after"] == 900
    for bad in (0, None, -5, 1.5):
        refused = await client.patch("/api/sources/shop", headers=ADMIN, json={"cart_abandon_after": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert ["body", "cart_abandon_after"] in [e["loc"] for e in refused.json()["detail"]]
    listed = (await client.get("/api/sources", headers=ADMIN)).json()["items"]
    assert listed[0]["cart_abandon_after"] == 900
    other = {"name": "app", "dialect": "tracktor", "cart_abandon_after": 60}
    assert (await client.post("/api/sources", headers=ADMIN, json=other)).json()["cart_abandon_after"] == 60
