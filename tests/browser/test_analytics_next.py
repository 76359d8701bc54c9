"""Segment's own browser library, ``@segment/analytics-next`` from npm, in Chromium, sending to Trackway.

The library's UMD build (``dist/umd/index.js``, the global ``AnalyticsNext``, and the chunks it
may load beside it) is fetched once through ``npm pack`` into ``.cache/`` (outside git), never
from a CDN at run time: every request to Segment's CDN or API is blocked and counted. A page on
another origin loads it with ``cdnSettings`` given inline (no settings fetch) and
``apiHost``/``protocol`` pointing at a real ``trackway serve``; its calls are read back through
the read API. Without npm the test skips loudly, except with ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ADMIN_TOKEN, PageServer, Trackway, Visitor
from tests.browser.test_tracker_browser import events_of

pytestmark = pytest.mark.browser
VERSION = "1.84.3"
PACKAGE = "@segment/analytics-next"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "npm" / f"analytics-next-{VERSION}"
KEY = "browser-write-key"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def fetch_bundle() -> Path:
    """The UMD files of the pinned version, from the npm registry through ``npm pack`` (cached)."""
    if (CACHE / "index.js").exists():
        return CACHE
    npm = shutil.which("npm")
    if npm is None:
        message = f"{PACKAGE} test NOT RUN: npm is missing (apt-get install npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        print(f"\n*** {message} ***", file=sys.stderr)
        pytest.skip(message)
    packed = CACHE.parent / "pack"
    packed.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(packed), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"npm pack {PACKAGE}@{VERSION} failed:\n{done.stderr[-2000:]}"
    filename = json.loads(done.stdout)[0]["filename"]
    partial = CACHE.with_suffix(".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(packed / Path(filename).name) as archive:
        for member in archive.getmembers():
            name = member.name
            if name.startswith("package/dist/umd/") and name.endswith(".js") and member.isfile():
                data = archive.extractfile(member)
                assert data is not None
                (partial / Path(name).name).write_bytes(data.read())
    shutil.rmtree(CACHE, ignore_errors=True)
    partial.rename(CACHE)  # whole or not at all: an interrupted fetch is fetched again
    return CACHE


@pytest.fixture(scope="module")
def bundle(chromium_ready: None) -> Iterator[Path]:
    yield fetch_bundle()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Segment shop</title>
<script>window.analytics = {{_cdn: {origin!r}}};</script>
<script src="/analytics-next/bundles/index.js"></script>
<script>
  const settings = {{"Segment.io": {{apiKey: {key!r}, apiHost: {host!r}, protocol: "http"}}}};
  window.loaded = AnalyticsNext.AnalyticsBrowser.load(
    {{writeKey: {key!r}, cdnSettings: {{integrations: settings}}}},
    {{integrations: settings}}
  ).then(([analytics]) => {{ window.segment = analytics; return true; }});
</script>
</head><body><h1>Shop</h1></body></html>
"""


def test_analytics_next_calls_land_in_trackway(
    bundle: Path, visitor: Visitor, site: PageServer, trackway: Trackway
) -> None:
    created = httpx.post(
        f"{trackway.base}/api/sources",
        headers=ADMIN,
        json={"name": "segment web", "dialect": "segment", "id": KEY},
        timeout=10,
    )
    assert created.status_code in (201, 409), created.text
    for path in bundle.iterdir():
        site.add(f"/analytics-next/bundles/{path.name}", path.read_bytes(), "text/javascript")
    host = trackway.base.removeprefix("http://")
    url = site.add("/segment.html", PAGE.format(origin=site.origin, key=KEY, host=host))
    outside: list[str] = []

    def block(route: Any) -> None:
        outside.append(route.request.url)
        route.abort()

    visitor.context.route("**/*segment.com/**", block)
    visitor.context.route("**/*segment.io/**", block)
    sent: list[tuple[str, str, str]] = []
    visitor.context.on(
        "request",
        lambda request: (
            sent.append((request.url, request.headers.get("content-type", ""), request.post_data or ""))
            if request.url.startswith(trackway.base)
            else None
        ),
    )
    page = visitor.page
    page.goto(url, wait_until="load")
    assert page.wait_for_function("window.loaded", timeout=15_000)
    page.evaluate(
        """async () => {
          await segment.page("Home", {section: "top"});
          await segment.track("Product Viewed", {sku: "A-1", price: 9.5});
        }"""
    )
    anonymous_id = page.evaluate("segment.user().anonymousId()")
    assert anonymous_id
    page.evaluate(
        """async () => {
          await segment.identify("web-user-1", {email: "web@example.com", plan: "pro"});
          await segment.track("Order Completed", {total: 19.5});
          await segment.group("acme", {name: "Acme"});
        }"""
    )
    visitor.wait_until(
        lambda: len([u for u, _, _ in sent if u.startswith(trackway.base)]) >= 5, what="five calls sent"
    )

    assert outside == []  # no CDN settings fetch, nothing sent to Segment
    assert {u.removeprefix(trackway.base) for u, _, _ in sent} == {"/p", "/t", "/i", "/g"}
    assert all(kind.startswith("text/plain") for _, kind, _ in sent)
    profile = visitor.wait_until(
        lambda: trackway.api("/api/profiles", identity="user_id:web-user-1", source=KEY)["items"],
        what="the identified profile",
    )[0]
    view = trackway.api(f"/api/profiles/{profile['id']}")
    assert view["traits"] == {"email": "web@example.com", "plan": "pro"}
    assert ("anonymous_id", anonymous_id) in {(i["kind"], i["value"]) for i in view["identities"]}
    assert [p["id"] for p in trackway.api("/api/people", identity="email:web@example.com")["items"]] == [
        view["id"]
    ]
    stored = events_of(trackway, view["id"])
    assert sorted(e["type"] for e in stored) == ["Order Completed", "Product Viewed", "group", "page"]
    viewed = next(e for e in stored if e["type"] == "Product Viewed")
    assert viewed["properties"] == {"sku": "A-1", "price": 9.5}
    assert viewed["context"]["library"]["name"] == "analytics.js"
    assert viewed["context"]["page"]["url"] == url
    assert viewed["context"]["segment"]["anonymousId"] == anonymous_id
    page_event = next(e for e in stored if e["type"] == "page")
    assert page_event["properties"]["name"] == "Home"
    assert page_event["properties"]["section"] == "top"
    assert visitor.page_errors == []
