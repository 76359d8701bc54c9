"""Tracardi's own browser JavaScript against Trackway, in Chromium (issue #12).

Two ways a Tracardi user meets Trackway, each on SQLite and on PostgreSQL:

- Tracardi's GUI snippet (its compiled loader line) pasted unchanged but for the host and the
  source id: the loader asks for ``{script}/liliput.min.js``, which is Trackway's tracker, and
  hands it the page's early ``window.tracker.track(...)`` calls;
- Tracardi's real tracker, ``liliput.min.js``, served from the page's own origin and posting
  to Trackway's ``POST /track`` (event ``time`` as ``{"create": ...}``, an ``x-timestamp`` header).

Tracardi's files are third-party: they are read from ``../shared/vendor/tracardi/`` next to the
repository (its README says where each came from), never copied into the project. Without
them the tests skip loudly, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PageServer, Trackway, Visitor, serve_trackway

pytestmark = pytest.mark.browser

VENDOR = Path(__file__).resolve().parents[2].parent / "shared" / "vendor" / "tracardi"
#: The versions the vendor README names: another file would prove nothing about these.
SHA256 = {
    "liliput.min.js": "46de94cbb40ef0dbfe1bd30a37d716df67b12c00a781260f88c7de090449f7f9",
    "tracardi-gui-trackerLoader.txt": "f512efe38043cf1098f4df497fc3958dac8968c412470c1fb3e00f47a750bb0f",
}

# Seed 000, step 2: the events, in a script after the snippet. The second script is what a
# Tracardi page binds to be told the profile (Tracardi's tracker calls it after its response).
SEED_CALLS = """
<script>
window.tracker.track("purchase-order", {"product": "Sun glasses - Badoo", "price": 13.45})
window.tracker.track("interest", {"Eletronics": ["Mobile phones", "Accessories"]})
window.tracker.track("page-view",{});
</script>
<script>
window.onTracardiReady.bind(function (params) {
  window.readyProfile = params.context && params.context.profile ? params.context.profile.id : null;
});
</script>
"""
SEED_TYPES = ["purchase-order", "interest", "page-view"]
SEED_PROPERTIES = [
    {"product": "Sun glasses - Badoo", "price": 13.45},
    {"Eletronics": ["Mobile phones", "Accessories"]},
    {},
]


@pytest.fixture(scope="module")
def vendor(chromium_ready: None) -> dict[str, bytes]:
    """Tracardi's files, checked against the checksums its README lists."""
    missing = [name for name in SHA256 if not (VENDOR / name).is_file()]
    if missing:
        message = f"Tracardi browser tests NOT RUN: {', '.join(missing)} missing in {VENDOR}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        print(f"\n*** {message} ***", file=sys.stderr)
        pytest.skip(message)
    files = {name: (VENDOR / name).read_bytes() for name in SHA256}
    for name, content in files.items():
        assert hashlib.sha256(content).hexdigest() == SHA256[name], (
            f"{VENDOR / name} is not the pinned version"
        )
    return files


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def trackway(
    request: pytest.FixtureRequest, chromium_ready: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Trackway]:
    """This module's ``trackway serve``: on SQLite, then on the test run's PostgreSQL database."""
    tmp = tmp_path_factory.mktemp(f"trackway-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp / 'browser.db'}"
    else:
        url = request.getfixturevalue("pg_url")  # skipped loudly (a failure under CI) when down
    with serve_trackway(tmp, url) as server:
        yield server


def gui_snippet(vendor: dict[str, bytes], trackway: Trackway, *, script: str | None = None) -> str:
    """Tracardi's GUI snippet as a site owner pastes it: its host and the source id replaced.

    ``script`` replaces the tracker's location instead (``null``: liliput.min.js next to the page).
    """
    snippet = vendor["tracardi-gui-trackerLoader.txt"].decode()
    assert snippet.count("'//localhost:8686/tracker'") == 1 and snippet.count("'//localhost:8686'") == 1
    if script is not None:
        snippet = snippet.replace("'//localhost:8686/tracker'", script)
    host = trackway.base.removeprefix("http://")
    return snippet.replace("localhost:8686", host).replace("<paste-your-source-id>", trackway.source_id)


def page(snippet: str, title: str) -> str:
    return (
        f'<!doctype html>\n<html><head><meta charset="utf-8"><title>{title}</title>\n'
        f'<link rel="icon" href="data:,">\n{snippet}\n</head>\n<body>\n{SEED_CALLS}\n</body></html>\n'
    )


def events_of(trackway: Trackway, profile_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = trackway.api(f"/api/profiles/{profile_id}/events", limit=1000)["items"]
    return items


def three_visits(visitor: Visitor, trackway: Trackway, url: str, *, session_cookie: str) -> str:
    """The seed's page loaded, reloaded, then loaded with the session cookie gone: one profile.

    Returns the profile id, after checking what each load sent and what was stored.
    """
    browser_page = visitor.page
    with visitor.expect_track() as first:
        browser_page.goto(url)
    assert first.value.status == 200, first.value.text()
    browser_page.wait_for_timeout(1000)  # long enough for any further request to show up
    assert len(visitor.sent) == 1, [s.body for s in visitor.sent]
    sent = visitor.sent[0].body
    assert [e["type"] for e in sent["events"]] == SEED_TYPES
    assert [e["properties"] for e in sent["events"]] == SEED_PROPERTIES
    assert sent["source"] == {"id": trackway.source_id}
    assert not sent.get("profile")  # a first visit: the server makes the profile
    answer = first.value.json()
    profile_id: str = answer["profile"]["id"]
    first_session = answer["session"]["id"]
    stored = events_of(trackway, profile_id)
    assert [e["type"] for e in stored] == SEED_TYPES
    assert [e["properties"] for e in stored] == SEED_PROPERTIES
    assert {e["session_id"] for e in stored} == {first_session}
    # Tracardi's callback for pages: told the profile, as Tracardi's own tracker tells it.
    visitor.wait_until(
        lambda: browser_page.evaluate("window.readyProfile") == profile_id, what="onTracardiReady"
    )

    # A reload: the same visit of the same profile.
    with visitor.expect_track() as second:
        browser_page.reload()
    assert second.value.status == 200
    assert visitor.sent[1].body["profile"] == {"id": profile_id}
    assert visitor.sent[1].body["session"] == sent["session"]
    assert second.value.json()["profile"]["id"] == profile_id
    assert second.value.json()["session"]["id"] == first_session

    # The session cookie gone (the browser was closed): a new visit of the same profile.
    assert any(c["name"] == session_cookie for c in visitor.context.cookies())
    visitor.context.clear_cookies(name=session_cookie)
    with visitor.expect_track() as third:
        browser_page.reload()
    assert third.value.status == 200
    assert visitor.sent[2].body["profile"] == {"id": profile_id}
    assert visitor.sent[2].body["session"] != sent["session"]
    assert third.value.json()["profile"]["id"] == profile_id
    assert third.value.json()["session"]["id"] != first_session

    assert trackway.api(f"/api/profiles/{profile_id}")["visits"] == 2
    stored = events_of(trackway, profile_id)
    assert [e["type"] for e in stored] == SEED_TYPES * 3
    assert len({e["session_id"] for e in stored}) == 2
    return profile_id


def console_errors(visitor: Visitor) -> list[str]:
    return [m for m in visitor.console if m.startswith("error:")] + visitor.page_errors


def test_tracardi_gui_snippet_pasted_unchanged_loads_trackways_tracker(
    vendor: dict[str, bytes], visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    snippet = gui_snippet(vendor, trackway)
    assert f"script: '//{trackway.base.removeprefix('http://')}/tracker'" in snippet
    url = site.add("/tracardi-gui.html", page(snippet, "Tracardi GUI snippet"))

    profile_id = three_visits(visitor, trackway, url, session_cookie="trackway_session")

    # Tracardi's loader asked for {script}/liliput.min.js, and Trackway answered with its tracker.
    loaded = visitor.page.evaluate(
        "performance.getEntriesByType('resource').map((e) => e.name).filter((n) => n.includes('/tracker'))"
    )
    assert loaded == [f"{trackway.base}/tracker/liliput.min.js"]
    assert visitor.page.evaluate("window.tracker === window.tracardi.default")
    assert visitor.page.evaluate("window.tracker.profileId()") == profile_id
    assert visitor.stored_profile() == profile_id
    assert all(isinstance(e["time"], str) for s in visitor.sent for e in s.body["events"])
    assert console_errors(visitor) == [] and visitor.tracker_messages() == [], visitor.console


def test_tracardis_real_tracker_talks_to_trackway(
    vendor: dict[str, bytes], visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    # `script: null`: Tracardi's loader loads liliput.min.js next to the page, from the site itself.
    site.add("/liliput.min.js", vendor["liliput.min.js"], "application/javascript; charset=utf-8")
    snippet = gui_snippet(vendor, trackway, script="null")
    url = site.add("/tracardi-real.html", page(snippet, "Tracardi's tracker"))

    profile_id = three_visits(visitor, trackway, url, session_cookie="tracardi-session-id")

    # Tracardi's tracker sent its own shape: time objects, the x-timestamp header (CORS let it).
    first = visitor.sent[0]
    assert "x-timestamp" in first.request.all_headers()
    created = [e["time"]["create"] for e in first.body["events"]]
    assert all(set(e["time"]) == {"create"} for e in first.body["events"])
    # The first visit's events, stored at the times Tracardi's tracker says they were made.
    stored = events_of(trackway, profile_id)[:3]
    assert [datetime.fromisoformat(e["time"]) for e in stored] == [datetime.fromisoformat(c) for c in created]
    # It keeps the profile id it was given where Tracardi keeps it (localStorage holds JSON).
    kept = visitor.page.evaluate("localStorage.getItem('tracardi-profile-id')")
    assert json.loads(kept) == profile_id
    cookies = {c["name"]: c["value"] for c in visitor.context.cookies()}
    assert cookies["__tr_pid"] == profile_id
    assert console_errors(visitor) == [], visitor.console


def test_seed_snippet_with_const_options(
    vendor: dict[str, bytes], visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    """Seed 000 declares ``const options`` (a global lexical binding, not ``window.options``)."""
    snippet = gui_snippet(vendor, trackway)
    assert snippet.count("var options = {") == 1
    url = site.add(
        "/tracardi-const.html", page(snippet.replace("var options = {", "const options = {"), "Const")
    )
    with visitor.expect_track() as answer:
        visitor.page.goto(url)
    assert answer.value.status == 200
    profile_id = answer.value.json()["profile"]["id"]
    stored = events_of(trackway, profile_id)
    assert [(e["type"], e["properties"]) for e in stored] == list(
        zip(SEED_TYPES, SEED_PROPERTIES, strict=True)
    )
    assert console_errors(visitor) == [] and visitor.tracker_messages() == [], visitor.console
