"""Secure mode cannot be walked around through another dialect (design.md, "Trust").

A profile that a ``signed_only`` Tracktor source has named is protected: a claim nobody
verified (an InSend call, an unsigned Tracktor call on another source, a Tracardi profile id)
never merges into it, overwrites it or learns its id; verified claims (a valid ``sign``,
Tracify's API key) still join the person across dialects.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN, count
from trackway.core import sources as source_service
from trackway.core.identity import email_sha256
from trackway.db.uow import SqlUnitOfWork
from trackway.dialects.tracktor import signature

SECURE = "tt-secure"
OPEN = "tt-open"
SIGNING = "tt-signing"
SECRET = "secure-mode-secret"
INSEND = "insend-shop"
TRACARDI = "tracardi-web"
TRACIFY = "tracify-backend"
TRACIFY_KEY = "tracify-secret-0123456789"
VICTIM_EMAIL = "victim@example.com"


@pytest.fixture
async def sources(uow: SqlUnitOfWork) -> None:
    create = source_service.create_source
    await create(uow, name="secure", dialect="tracktor", source_id=SECURE, secret=SECRET, signed_only=True)
    await create(uow, name="open", dialect="tracktor", source_id=OPEN)
    await create(uow, name="signing", dialect="tracktor", source_id=SIGNING, secret=SECRET)
    await create(uow, name="shop", dialect="insend", source_id=INSEND)
    await create(uow, name="web", dialect="tracardi", source_id=TRACARDI)
    await create(uow, name="backend", dialect="tracify", source_id=TRACIFY, secret=TRACIFY_KEY)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def tracktor_set(
    client: httpx.AsyncClient, sid: str, person: str, data: dict[str, Any], **extra: str
) -> str:
    params = {"sid": sid, "id": person, "data": json.dumps(data), **extra}
    response = await client.get("/set", params=params)
    assert response.status_code == 200, response.text
    return str(response.json()["profile"]["id"])


async def victim(client: httpx.AsyncClient) -> str:
    """The victim, named by the secure source with a valid signature."""
    data = {"email": VICTIM_EMAIL, "plan": "gold"}
    return await tracktor_set(client, SECURE, "victim", data, sign=signature(SECRET, "victim"))


async def view(client: httpx.AsyncClient, profile_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/profiles/{profile_id}", headers=ADMIN)
    assert response.status_code == 200
    return dict(response.json())


async def assert_untouched(
    client: httpx.AsyncClient, uow: SqlUnitOfWork, victim_id: str, answer: str
) -> None:
    assert answer != victim_id  # the id is not revealed
    profile = await view(client, victim_id)
    assert profile["traits"] == {"email": VICTIM_EMAIL, "plan": "gold"}  # not overwritten
    assert profile["merged_from"] == []  # nothing merged into it
    assert profile["protected"] is True
    assert await count(uow, "profile_merges") == 0


async def test_an_unsigned_tracktor_call_on_another_source_cannot_claim_the_email(
    client, uow, sources
) -> None:
    victim_id = await victim(client)
    answer = await tracktor_set(client, OPEN, "attacker", {"email": VICTIM_EMAIL, "plan": "pwned"})
    await assert_untouched(client, uow, victim_id, answer)
    # The attacker's own profile keeps what they typed, without the victim's identity.
    mine = await view(client, answer)
    assert mine["traits"]["plan"] == "pwned"
    assert ("email_sha256", email_sha256(VICTIM_EMAIL)) not in {
        (i["kind"], i["value"]) for i in mine["identities"]
    }


async def test_an_insend_call_cannot_claim_the_email(client, uow, sources) -> None:
    victim_id = await victim(client)
    data = json.dumps(
        {"type": "link", "properties": {}, "visitor_info": {"email": VICTIM_EMAIL, "plan": "pwned"}}
    )
    response = await client.post(
        "/watch/event", data={"app_key": INSEND, "visitor_uid": "mallory", "data": data}
    )
    assert response.status_code == 200, response.text
    await assert_untouched(client, uow, victim_id, response.json()["profile"]["id"])


async def test_a_tracardi_client_cannot_write_into_a_protected_profile_by_its_id(
    client, uow, sources
) -> None:
    victim_id = await victim(client)
    payload = {
        "source": {"id": TRACARDI},
        "session": {"id": "mallory-session"},
        "profile": {"id": victim_id},
        "events": [{"type": "page-view", "properties": {}}],
    }
    response = await client.post("/track", json=payload)
    assert response.status_code == 200, response.text
    await assert_untouched(client, uow, victim_id, response.json()["profile"]["id"])
    events = (await client.get(f"/api/profiles/{victim_id}/events", headers=ADMIN)).json()["items"]
    assert [e["source_id"] for e in events if e["source_id"] == TRACARDI] == []


async def test_verified_claims_still_join_the_person_across_dialects(client, uow, sources) -> None:
    victim_id = await victim(client)
    # Tracify proves itself with the source's secret: the hashed email finds the person.
    event = {
        "url": "https://shop.example/p/1",
        "customer_site_id": TRACIFY,
        "identity_data": {email_sha256(VICTIM_EMAIL): 1, sha("198.51.100.4"): 3, sha("Mozilla/5.0"): 4},
        "datetime": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "type": "pageview",
        "data": {"origin": "https://shop.example"},
    }
    response = await client.post(
        "/tracify/events", json={"events": [event]}, headers={"X-API-Key": TRACIFY_KEY}
    )
    assert response.status_code == 200, response.text
    assert response.json()["events"][0]["profile_id"] == victim_id
    # A signed call on another (not secure) source is verified too: it joins, and may set traits.
    signed = await tracktor_set(
        client,
        SIGNING,
        "victim-elsewhere",
        {"email": VICTIM_EMAIL},
        sign=signature(SECRET, "victim-elsewhere"),
    )
    assert signed == victim_id


async def test_an_unverified_profile_is_joined_as_before(client, uow, sources) -> None:
    """Without secure mode, the email still joins people across dialects (README, "Email")."""
    first = await tracktor_set(client, OPEN, "ann", {"email": "ann@example.com"})
    data = json.dumps({"type": "link", "properties": {}, "visitor_info": {"email": "ann@example.com"}})
    response = await client.post("/watch/event", data={"app_key": INSEND, "visitor_uid": "ann", "data": data})
    assert response.json()["profile"]["id"] == first
    assert (await view(client, first))["protected"] is False
