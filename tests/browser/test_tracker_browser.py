"""The browser tracker in Chromium: a page with seed 000's snippet, as ``trackway sources create``
printed it, on another origin than a real ``trackway serve``; asserted on the requests the
browser made and on the rows, read back through the read API.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PageServer, Trackway, Visitor

pytestmark = pytest.mark.browser

DEMO_SCREENSHOT = Path("/tmp/trackway-demo.png")


def html(snippet: str, *, title: str, head: str = "", body: str = "") -> str:
    """A customer's page: the snippet in the head, as the README tells site owners."""
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title>\n'
        f"{snippet}\n{head}\n</head>\n<body>\n{body}\n</body></html>\n"
    )


def events_of(trackway: Trackway, profile_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = trackway.api(f"/api/profiles/{profile_id}/events", limit=1000)["items"]
    return items


def is_uuid4(value: str) -> bool:
    try:
        return uuid.UUID(value).version == 4 and str(uuid.UUID(value)) == value
    except ValueError:
        return False


# Three events tracked while the page is still loading (the image holds the load event back).
THREE_BEFORE_LOAD = """
<img src="/slow.png?ms=700" alt="">
<script>
  window.tracker.track("page-view", {});
  window.tracker.track("purchase-order", {"product": "Sun glasses - Badoo", "price": 13.45});
  window.tracker.track("interest", {"Eletronics": ["Mobile phones", "Accessories"]}, {"profile": true});
</script>
"""


def test_events_tracked_before_load_go_as_one_request(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    url = site.add("/shop.html", html(trackway.snippet, title="Shoe shop", body=THREE_BEFORE_LOAD))
    landing = f"{url}?utm_source=newsletter&utm_campaign=spring&color=red"
    page = visitor.page
    with visitor.expect_track() as answer:
        page.goto(landing, referer="https://search.example/?q=shoes", wait_until="load")
    body = answer.value.json()
    page.wait_for_timeout(1500)  # long enough for any further request to show up

    assert len(visitor.sent) == 1, visitor.sent
    sent = visitor.sent[0]
    assert [e["type"] for e in sent.body["events"]] == ["page-view", "purchase-order", "interest"]
    assert all(is_uuid4(e["id"]) for e in sent.body["events"])
    assert sent.body["events"][2]["options"] == {"profile": True}  # seed 001's event options
    assert sent.body["source"] == {"id": trackway.source_id}
    assert "profile" not in sent.body  # first visit: the server makes the profile
    session_key = sent.body["session"]["id"]
    assert is_uuid4(session_key)
    assert visitor.session_cookie() is not None and visitor.session_cookie().startswith(session_key)

    # The page context: url, path, title, referrer, language, screen, timezone, UTM.
    context = sent.body["context"]
    assert context["page"] == {
        "url": landing,
        "path": "/shop.html",
        "title": "Shoe shop",
        "referrer": "https://search.example/?q=shoes",
    }
    assert context["browser"] == {"language": "de-DE", "timezone": "Europe/Berlin"}
    assert context["screen"]["width"] > 0 and context["screen"]["height"] > 0
    assert context["utm"] == {"utm_source": "newsletter", "utm_campaign": "spring"}

    # Sent once the page had loaded, cross-origin, as JSON (CORS preflight and all).
    timing = page.evaluate(
        """() => ({
          load: performance.getEntriesByType("navigation")[0].loadEventStart,
          track: performance.getEntriesByType("resource").find((e) => e.name.endsWith("/track")).startTime,
        })"""
    )
    assert timing["track"] >= timing["load"], timing
    assert sent.request.all_headers()["origin"] == site.origin
    assert sent.content_type.startswith("application/json")
    assert answer.value.headers["access-control-allow-origin"] in ("*", site.origin)

    # All stored, and the profile id is kept where the tracker keeps it.
    profile_id = body["profile"]["id"]
    assert len(body["events"]) == 3 and body["duplicates"] == []
    assert visitor.stored_profile() == profile_id
    stored = events_of(trackway, profile_id)
    assert [e["type"] for e in stored] == ["page-view", "purchase-order", "interest"]
    assert stored[1]["properties"] == {"product": "Sun glasses - Badoo", "price": 13.45}
    visit = trackway.api(f"/api/sessions/{body['session']['id']}")
    assert visit["client_key"] == session_key
    assert visit["event_count"] == 3
    assert visit["context"]["utm"] == {"utm_source": "newsletter", "utm_campaign": "spring"}
    assert visit["context"]["landing_page"] == landing

    # After load, events are sent promptly; two tracked together share one request.
    with visitor.expect_track() as later:
        page.evaluate(
            'window.tracker.track("scroll", {"depth": 50}); window.tracker.track("scroll", {"depth": 90})'
        )
    assert later.value.status == 200
    assert len(visitor.sent) == 2
    assert [e["properties"]["depth"] for e in visitor.sent[1].body["events"]] == [50, 90]
    assert visitor.sent[1].body["profile"] == {"id": profile_id}
    assert len(events_of(trackway, profile_id)) == 5
    assert visitor.tracker_messages() == [] and visitor.page_errors == []


ONE_PAGE_VIEW = '<script>window.tracker.track("page-view", {})</script>'


def test_reload_keeps_the_profile_and_a_new_session_is_a_second_visit(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    url = site.add("/visit.html", html(trackway.snippet, title="Visit", body=ONE_PAGE_VIEW))
    page = visitor.page
    with visitor.expect_track() as first:
        page.goto(url)
    profile_id = first.value.json()["profile"]["id"]
    first_session = first.value.json()["session"]["id"]

    with visitor.expect_track() as second:
        page.reload()
    assert visitor.sent[1].body["profile"] == {"id": profile_id}
    assert visitor.sent[1].body["session"] == visitor.sent[0].body["session"]
    assert second.value.json()["profile"]["id"] == profile_id
    assert second.value.json()["session"]["id"] == first_session

    visitor.context.clear_cookies()  # the session cookie is gone: a new visit
    with visitor.expect_track() as third:
        page.reload()
    assert visitor.sent[2].body["profile"] == {"id": profile_id}
    assert visitor.sent[2].body["session"] != visitor.sent[0].body["session"]
    assert third.value.json()["profile"]["id"] == profile_id
    assert third.value.json()["session"]["id"] != first_session

    profile = trackway.api(f"/api/profiles/{profile_id}")
    assert profile["visits"] == 2
    stored = events_of(trackway, profile_id)
    assert len(stored) == 3
    assert len({e["session_id"] for e in stored}) == 2
    assert visitor.stored_profile() == profile_id


def test_cleared_local_storage_is_recovered_from_the_session(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    url = site.add("/recover.html", html(trackway.snippet, title="Recover", body=ONE_PAGE_VIEW))
    page = visitor.page
    with visitor.expect_track() as first:
        page.goto(url)
    profile_id = first.value.json()["profile"]["id"]

    page.evaluate("localStorage.clear()")  # the session cookie stays
    with visitor.expect_track() as second:
        page.reload()
    assert "profile" not in visitor.sent[1].body
    assert visitor.sent[1].body["session"] == visitor.sent[0].body["session"]
    # Seed 001's lost-profile recovery: the session names the profile, the tracker keeps it again.
    assert second.value.json()["profile"]["id"] == profile_id
    visitor.wait_until(lambda: visitor.stored_profile() == profile_id, what="the profile id stored again")
    assert trackway.api(f"/api/profiles/{profile_id}")["visits"] == 1
    assert len(events_of(trackway, profile_id)) == 2


LEAVE = """
<a id="leave" href="/elsewhere.html">Checkout elsewhere</a>
<script>
  // The test's eyes: a beacon sent while a page unloads is invisible to Playwright and to the
  // DevTools protocol, so this page notes each sendBeacon call where the next page can read it.
  const sendBeacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (url, data) => {
    const log = JSON.parse(localStorage.getItem("beacons") || "[]");
    localStorage.setItem("beacons", JSON.stringify([...log, {url, data: String(data)}]));
    return sendBeacon(url, data);
  };
  window.tracker.track("page-view", {});
  document.getElementById("leave").addEventListener("click", () => {
    window.tracker.track("outbound-click", {"to": "/elsewhere.html"});
  });
</script>
"""


def test_event_tracked_right_before_leaving_arrives_by_beacon(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    url = site.add("/leave.html", html(trackway.snippet, title="Leave", body=LEAVE))
    site.add("/elsewhere.html", "<!doctype html><title>Elsewhere</title><p>No tracker here.</p>")
    page = visitor.page
    with visitor.expect_track() as first:
        page.goto(url)
    profile_id = first.value.json()["profile"]["id"]

    with page.expect_navigation():
        page.click("#leave")  # tracks, and the browser leaves the page at once
    assert page.title() == "Elsewhere"

    def arrived() -> bool:
        return "outbound-click" in [e["type"] for e in events_of(trackway, profile_id)]

    visitor.wait_until(arrived, what="the outbound-click event in the database")
    beacons = [json.loads(b["data"]) for b in json.loads(page.evaluate("localStorage.getItem('beacons')"))]
    assert [[e["type"] for e in b["events"]] for b in beacons] == [["outbound-click"]]
    assert beacons[0]["profile"] == {"id": profile_id}
    # No fetch carried it: the beacon did (its request is sent by the browser after the page is gone).
    assert [[e["type"] for e in s.body["events"]] for s in visitor.sent] == [["page-view"]]
    stored = events_of(trackway, profile_id)
    assert [e["type"] for e in stored] == ["page-view", "outbound-click"]


WRONG_SOURCE = """
<script>window.tracker.track("page-view", {})</script>
<p id="after">the page's next script did not run</p>
<script>document.getElementById("after").textContent = "the page's next script ran";</script>
"""


def test_wrong_source_is_one_console_message_and_the_page_goes_on(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    snippet = trackway.snippet.replace(trackway.source_id, "no-such-source")
    url = site.add("/wrong.html", html(snippet, title="Wrong source", body=WRONG_SOURCE))
    page = visitor.page
    with visitor.expect_track() as answer:
        page.goto(url)
    assert answer.value.status == 401
    assert answer.value.json() == {"detail": "Access denied. Invalid source."}

    # Later events get the same 401, and nothing more is said on the console.
    with visitor.expect_track():
        page.evaluate('window.tracker.track("click", {"n": 1}); window.tracker.track("click", {"n": 2})')
    page.wait_for_timeout(2000)  # past the first retry delay: a 4xx is never retried
    assert visitor.statuses == [401, 401]
    assert len(visitor.sent) == 2
    assert len(visitor.sent[1].body["events"]) == 2

    messages = visitor.tracker_messages()
    assert len(messages) == 1, visitor.console
    assert "401" in messages[0] and "no-such-source" in messages[0]
    # Everything else on the console is Chromium's own network log of each failed response,
    # which no script on the page can silence; nothing else was said.
    others = [m for m in visitor.console if m not in messages]
    assert all(m.startswith("error: Failed to load resource:") for m in others), visitor.console
    assert page.text_content("#after") == "the page's next script ran"
    assert visitor.page_errors == []


RETRY = (
    '<script>window.tracker.track("page-view", {}); window.tracker.track("signup", {"plan": "pro"})</script>'
)


def test_failed_requests_are_retried_with_the_same_ids_and_stored_once(
    visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    """A 503 whose request did reach the database, then a network error: each event stored once."""
    from playwright.sync_api import Route

    url = site.add("/retry.html", html(trackway.snippet, title="Retry", body=RETRY))
    cors = {"Access-Control-Allow-Origin": "*", "Content-Type": "application/json"}
    attempts: list[str] = []

    def flaky(route: Route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        attempts.append(route.request.post_data or "")
        if len(attempts) == 1:
            route.fetch()  # the server stores the events, but the browser sees a 503
            route.fulfill(status=503, headers=cors, body='{"detail": "Storage unavailable, retry later."}')
        elif len(attempts) == 2:
            route.abort("connectionreset")
        else:
            route.continue_()

    visitor.page.route(visitor.track_url, flaky)
    # Retries wait about 1 s, then about 3 s: the 200 comes well within the bound.
    with visitor.page.expect_response(
        lambda r: visitor.is_track(r) and r.status == 200, timeout=15_000
    ) as ok:
        visitor.page.goto(url)
    final = ok.value
    assert len(attempts) == 3
    assert attempts[0] == attempts[1] == attempts[2]  # same body, same event ids
    body = final.json()
    assert body["events"] == [] and len(body["duplicates"]) == 2
    stored = events_of(trackway, body["profile"]["id"])
    assert [e["type"] for e in stored] == ["page-view", "signup"]
    # One message per kind of failure, not per attempt.
    messages = visitor.tracker_messages()
    assert len(messages) == 2, visitor.console
    assert "HTTP 503" in messages[0] and "network error" in messages[1]


def test_demo_page_shows_the_profile_and_its_events(
    visitor: Visitor, trackway: Trackway, tmp_path: Path
) -> None:
    page = visitor.page
    page.goto(f"{trackway.base}/demo?source={trackway.source_id}")
    page.wait_for_function("document.getElementById('event-count').textContent === '1'", timeout=15_000)
    for label in ("View product", "Add to cart", "Purchase order"):
        page.click(f"text={label}")
    page.wait_for_function("document.getElementById('event-count').textContent === '4'", timeout=15_000)
    page.wait_for_function("document.querySelectorAll('#events tr').length === 4", timeout=15_000)

    profile_id = page.text_content("#profile-id")
    assert profile_id == visitor.stored_profile()
    assert page.text_content("#visits") == "1"
    shown = page.eval_on_selector_all("#events tr td:first-child", "cells => cells.map((c) => c.textContent)")
    assert shown == ["purchase-order", "add-to-cart", "product-view", "page-view"]
    stored = events_of(trackway, profile_id)
    assert sorted(e["type"] for e in stored) == sorted(shown)

    screenshot = tmp_path / "demo.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000
    shutil.copyfile(screenshot, DEMO_SCREENSHOT)
    assert visitor.tracker_messages() == [] and visitor.page_errors == []


BAD_CALLS = """
<p id="after">not reached</p>
<script>
  const cyclic = {"name": "loop"};
  cyclic.self = cyclic;
  window.tracker.track(42, {});
  window.tracker.track("cyclic", cyclic);
  window.tracker.track("page-view", {});
  document.getElementById("after").textContent = "reached";
</script>
"""


def test_bad_track_calls_never_break_the_page(visitor: Visitor, site: PageServer, trackway: Trackway) -> None:
    url = site.add("/bad.html", html(trackway.snippet, title="Bad calls", body=BAD_CALLS))
    with visitor.expect_track() as answer:
        visitor.page.goto(url)
    assert answer.value.status == 200
    assert visitor.page.text_content("#after") == "reached"
    assert [e["type"] for e in visitor.sent[0].body["events"]] == ["page-view"]
    # What was tracked is what is sent, even if the page changes the object right after.
    with visitor.expect_track():
        visitor.page.evaluate(
            'const props = {"price": 1}; window.tracker.track("changed-later", props); props.price = 2;'
        )
    assert visitor.sent[1].body["events"][0]["properties"] == {"price": 1}
    messages = visitor.tracker_messages()
    assert len(messages) == 2 and "type must be a non-empty string" in messages[0], visitor.console
    assert "cyclic" in messages[1]
    assert visitor.page_errors == []
