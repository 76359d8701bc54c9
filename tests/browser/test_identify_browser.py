"""``window.tracker.identify(userId, traits)`` in Chromium: an anonymous visitor signs in, and a
backend's Tracify batch naming the same email (hashed) lands on the browser's profile, with the
anonymous history kept."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import httpx
import pytest

from tests.browser.conftest import ADMIN_TOKEN, PageServer, Trackway, Visitor
from tests.browser.test_tracker_browser import events_of, html

pytestmark = pytest.mark.browser
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_sign_in_joins_the_browser_profile_with_the_backends_person(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    url = site.add(
        "/identify.html",
        html(trackway.snippet, title="Shop", body='<script>window.tracker.track("page-view", {})</script>'),
    )
    page = visitor.page
    with visitor.expect_track() as first:
        page.goto(url, wait_until="load")
    browser_profile = first.value.json()["profile"]["id"]
    with visitor.expect_track():
        page.evaluate('window.tracker.track("product-view", {"sku": "A-1"})')

    # The visitor signs in.
    with visitor.expect_track() as signed_in:
        page.evaluate(
            'window.tracker.identify("u-77", {"email": "Ann.B@Example.com", "name": "Ann"});'
            'window.tracker.track("signed-in", {})'
        )
    assert signed_in.value.json()["profile"]["id"] == browser_profile
    sent = visitor.sent[-1].body
    assert sent["identify"] == {"userId": "u-77", "traits": {"email": "Ann.B@Example.com", "name": "Ann"}}
    assert [e["type"] for e in sent["events"]] == ["signed-in"]
    profile = trackway.api(f"/api/profiles/{browser_profile}")
    assert profile["anonymous"] is False
    assert profile["traits"] == {"email": "Ann.B@Example.com", "name": "Ann"}

    # The shop's backend sends a purchase with the email's hash (Tracify, seed 002).
    created = httpx.post(
        f"{trackway.base}/api/sources",
        headers=ADMIN,
        json={"name": "backend", "dialect": "tracify", "secret": "browser-identify-secret-0123456789"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    site_id = created.json()["id"]
    answer = httpx.post(
        f"{trackway.base}/tracify/events",
        headers={"X-API-Key": "browser-identify-secret-0123456789"},
        json={
            "events": [
                {
                    "url": "https://shop.example/checkout",
                    "customer_site_id": site_id,
                    "identity_data": {sha("ann.b@example.com"): 1, sha("198.51.100.9"): 3, sha("UA"): 4},
                    "datetime": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                    "type": "purchase",
                    "data": {
                        "origin": "https://shop.example",
                        "order_id": "B-1",
                        "currency": "EUR",
                        "amount": "9.90",
                    },
                }
            ]
        },
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"][0]["profile_id"] == browser_profile
    types = [e["type"] for e in events_of(trackway, browser_profile)]
    assert sorted(types) == ["page-view", "product-view", "purchase", "signed-in"]
    assert visitor.stored_profile() == browser_profile
    assert visitor.tracker_messages() == [] and visitor.page_errors == []


def test_identify_before_the_script_arrives_is_queued_by_the_loader(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    body = (
        '<script>window.tracker.identify("u-88", {"plan": "pro"});'
        ' window.tracker.track("page-view", {})</script>'
    )
    url = site.add("/identify-early.html", html(trackway.snippet, title="Early", body=body))
    with visitor.expect_track() as answer:
        visitor.page.goto(url, wait_until="load")
    [sent] = [s.body for s in visitor.sent]
    assert sent["identify"] == {"userId": "u-88", "traits": {"plan": "pro"}}
    profile = trackway.api(f"/api/profiles/{answer.value.json()['profile']['id']}")
    assert profile["traits"] == {"plan": "pro"}
    assert ("user_id", "u-88") in {(i["kind"], i["value"]) for i in profile["identities"]}
    assert visitor.page_errors == []
