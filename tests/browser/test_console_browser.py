"""The console in Chromium against a real ``trackway serve``: sign in, create sources, post
events through the dialects, find a person, build a segment, a metric and a funnel, and read
what the pages show (numbers, labels, bars drawn); the live tail; phone and desktop widths;
labels on every field; sign out. Screenshots go to ``tests/browser/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.browser.conftest import ADMIN_TOKEN, WAIT_MS, Trackway

pytestmark = pytest.mark.browser

SHOTS = Path(__file__).parent / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
EMAIL = "ann.console@example.com"
# What a visitor's browser says: a client that calls itself python-httpx is a bot to Trackway,
# and bots are left out of segments, metrics and funnels.
BROWSER = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0 Safari/537.36"
}

# Every field needs a label (or an aria-label); hidden inputs carry no text a person types.
UNLABELLED_FIELDS_JS = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
  .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
  .map(el => el.outerHTML.slice(0, 120))"""
# The page's server time: from the request leaving the browser to the answer's first byte.
SERVER_MS_JS = """() => { const n = performance.getEntriesByType('navigation')[0];
  return n.responseStart - n.requestStart; }"""
OVERFLOW_JS = "() => document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture(scope="module")
def console(browser, trackway: Trackway) -> Iterator:
    """One signed-in-able browser context for the whole story (its cookie is the session)."""
    SHOTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=DESKTOP, locale="en-GB", timezone_id="UTC")
    context.set_default_timeout(WAIT_MS)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=trackway.base)
    try:
        yield context
    finally:
        context.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def check_page(page, name: str) -> None:
    """Labels on every field, no sideways scrolling, a server time under 300 ms."""
    assert page.evaluate(UNLABELLED_FIELDS_JS) == [], name
    assert page.evaluate(OVERFLOW_JS) <= 1, f"{name} scrolls sideways"
    server_ms = page.evaluate(SERVER_MS_JS)
    if server_ms >= 300:
        # The first load of a page also compiles its template: the best of two, the second a GET
        # of the same address in another tab (a reload could repeat a form's POST).
        again = page.context.new_page()
        again.goto(page.url)
        server_ms = min(server_ms, again.evaluate(SERVER_MS_JS))
        again.close()
    assert server_ms < 300, f"{name}: {server_ms} ms"


def post_events(base: str, web_id: str, shop_id: str, insend_id: str) -> None:
    """The person Ann through Tracktor (with her email) and two others through Tracardi and InSend."""
    now = datetime.now(UTC).replace(microsecond=0)
    stamps = [int((now - timedelta(minutes=3 - i)).timestamp()) for i in range(3)]
    with httpx.Client(base_url=base, timeout=10, headers=BROWSER) as http:
        data = json.dumps({"email": EMAIL, "name": "Ann Console", "plan": "gold"})
        assert (
            http.get("/set", params={"sid": shop_id, "id": "ann", "ts": stamps[0], "data": data}).status_code
            == 200
        )
        for ts, action in zip(stamps, ("page-view", "signup", "purchase"), strict=True):
            answer = http.get(
                "/track",
                params={"sid": shop_id, "id": "ann", "ts": ts, "action": action, "data": '{"amount": 30}'},
            )
            assert answer.status_code == 200, answer.text
        tracardi = {
            "source": {"id": web_id},
            "session": {"id": "console-bob"},
            "events": [{"type": "page-view"}, {"type": "signup"}],
        }
        assert http.post("/track", json=tracardi).status_code == 200
        insend = {
            "app_key": insend_id,
            "guest_uid": "carol",
            "data": json.dumps({"type": "link", "title": "Home"}),
        }
        assert http.post("/watch/event", data=insend).status_code == 200
        assert http.post("/track", json={**tracardi, "source": {"id": "no-such-source"}}).status_code == 401


def create_source(page, name: str, dialect: str) -> str:
    page.goto(page.url.split("/console")[0] + "/console/sources")
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("Dialect").select_option(dialect)
    page.get_by_role("button", name="Create source").click()
    page.wait_for_selector("#created-id")
    return page.locator("#created-id").inner_text()


def test_the_console_end_to_end(console, trackway: Trackway) -> None:
    page = console.new_page()
    base = trackway.base

    # Signed out, the console sends you to sign in; a wrong token is refused.
    page.goto(f"{base}/console")
    assert page.url.startswith(f"{base}/console/sign-in")
    check_page(page, "sign-in")
    shot(page, "console-sign-in")
    page.get_by_label("Admin token").fill("wrong-token")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_text("That token is not the admin token.").wait_for()
    assert not [c for c in console.cookies() if c["name"] == "trackway_console"]
    # By keyboard alone: the token field has the focus, Enter sends the form.
    assert page.evaluate("document.activeElement.id") == "token"
    page.keyboard.type(ADMIN_TOKEN)
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Overview").wait_for()
    [cookie] = [c for c in console.cookies() if c["name"] == "trackway_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert cookie["expires"] > time.time() + 3600

    # Sources: a tracardi source, its snippet copied; a tracktor and an insend source.
    web_id = create_source(page, "Console web", "tracardi")
    snippet = page.locator("#snippet").inner_text()
    assert f"id: '{web_id}'" in snippet and f"script: '{base}/tracker'" in snippet
    page.get_by_role("button", name="Copy snippet").click()
    page.get_by_role("button", name="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == snippet
    check_page(page, "sources")
    shot(page, "console-sources-created")
    shop_id = create_source(page, "Console shop", "tracktor")
    insend_id = create_source(page, "Console app", "insend")
    # Origins saved through the form show in the API.
    page.goto(f"{base}/console/sources")
    card = page.locator(f"#source-{insend_id}")
    card.get_by_label("Allowed origins").fill("https://app.example")
    card.get_by_role("button", name="Save origins").click()
    page.locator(f"#source-{insend_id}").wait_for()
    assert trackway.api("/api/sources")["items"] and any(
        s["allowed_origins"] == ["https://app.example"] for s in trackway.api("/api/sources")["items"]
    )
    # The insend request below comes without an Origin header, so the allow-list does not stop it.

    post_events(base, web_id, shop_id, insend_id)

    # Overview: the chart has bars for this minute's sources, the refusal is counted, the tail shows events.
    page.goto(f"{base}/console")
    legend = page.locator("#per-minute ~ ul.legend")
    assert "Console shop" in legend.inner_text() and "(tracktor)" in legend.inner_text()
    bars = page.locator("section[aria-labelledby=per-minute] rect.bar")
    assert bars.count() >= 3
    drawn = sum(int(bars.nth(i).get_attribute("data-value")) for i in range(bars.count()))
    stored = trackway.api("/api/events", limit=1000)["items"]
    assert drawn == len(stored) >= 6  # 3 tracktor, 2 tracardi, 1 insend (and the fixture's, if any)
    assert "unknown or disabled source" in page.locator("#rejections").inner_text()
    today = page.locator("#sources-today").inner_text()
    assert re.search(r"Console web.*tracardi\s+on\s+2", today)
    check_page(page, "overview")
    shot(page, "console-overview")

    # People: find Ann by email, open her page, see her events newest first.
    page.get_by_role("link", name="People").click()
    page.get_by_label("Email").fill(EMAIL)
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#people tbody tr")
    rows.first.wait_for()
    assert rows.count() == 1 and EMAIL in rows.first.inner_text()
    check_page(page, "people")
    rows.first.get_by_role("link").click()
    page.locator("#timeline").wait_for()
    ann_id = page.url.rsplit("/", 1)[1]
    assert page.locator(".etype").all_inner_texts() == ["purchase", "signup", "page-view"]
    assert "Ann Console" in page.locator("#traits").inner_text()
    assert "email_sha256" in page.locator("#identities").inner_text()
    check_page(page, "person")
    shot(page, "console-person")

    # A segment: people who did purchase AND whose plan is gold; preview, then save, then its size.
    page.get_by_role("link", name="Segments").click()
    page.get_by_label("Name", exact=True).fill("Gold buyers")
    page.locator("#kind-1").select_option("event")
    page.locator("#field-1").fill("purchase")
    # An event row offers only the event choices.
    assert page.locator("#op-1 optgroup[label=Trait]").get_attribute("disabled") is not None
    page.locator("#op-1").select_option("did")
    page.locator("#days-1").fill("30")
    page.get_by_role("button", name="Add a condition").click()
    assert page.locator("li.condition").count() == 3
    page.locator("#kind-2").select_option("property")
    page.locator("#field-2").fill("plan")
    page.locator("#op-2").select_option("eq")
    page.locator("#value-2").fill("gold")
    page.get_by_role("button", name="Preview").click()
    assert page.locator("#preview-size").inner_text() == "1"
    check_page(page, "segments")
    page.get_by_role("button", name="Save segment").click()
    page.locator("#segment-size").wait_for()
    assert page.locator("#segment-size").inner_text() == "1"
    assert ann_id in page.locator("#members").inner_html()
    shot(page, "console-segment")

    # A metric: times "purchase" happened, as bars over the last 7 days.
    page.get_by_role("link", name="Metrics").click()
    page.get_by_label("Name", exact=True).fill("Purchases")
    page.get_by_label("Type").select_option("times_happened")
    page.get_by_label("Event", exact=True).fill("purchase")
    page.get_by_label("Chart").select_option("bar")
    page.get_by_role("button", name="Show").click()
    bars = page.locator(".chart rect.bar")
    assert bars.count() == 7
    assert [bars.nth(i).get_attribute("data-value") for i in range(7)][-1] == "1"
    # The axis runs 0..4 in whole steps; today's 1 is a quarter of the 202-pixel plot.
    assert float(bars.nth(6).get_attribute("height")) == pytest.approx(202 / 4, abs=0.1)
    assert page.locator("#stat-max").inner_text() == "1" and page.locator("#stat-min").inner_text() == "0"
    assert page.locator("#stat-average").inner_text() == "0.14"  # 1 over 7 days
    check_page(page, "metrics")
    page.get_by_role("button", name="Save metric").click()
    page.get_by_role("heading", name="Purchases").wait_for()
    assert page.locator(".chart rect.bar").count() == 7
    page.get_by_label("Chart").select_option("line")
    page.get_by_role("button", name="Show").click()
    page.locator(".chart polyline.line").wait_for()
    assert page.locator(".chart circle.point").count() == 7
    shot(page, "console-metric")
    page.get_by_role("link", name="Metrics").click()
    card = page.locator(".metric-card", has_text="Purchases")
    assert card.locator("rect.bar").count() == 7 and card.locator(".big").inner_text() == "1"
    shot(page, "console-metrics-dashboard")

    # A funnel: signup then purchase; Ann converts, Bob (tracardi) stops after signup.
    page.get_by_role("link", name="Funnels").click()
    page.get_by_label("Name", exact=True).fill("Signup to purchase")
    page.get_by_label("Step 1 event").fill("signup")
    page.get_by_label("Step 2 event").fill("purchase")
    page.get_by_role("button", name="Save funnel").click()
    page.locator("#funnel-steps").wait_for()
    bars = page.locator(".chart rect.bar")
    assert [bars.nth(i).get_attribute("data-value") for i in range(bars.count())] == ["2", "1"]
    assert float(bars.nth(1).get_attribute("width")) == pytest.approx(
        float(bars.nth(0).get_attribute("width")) / 2
    )
    table = page.locator("#funnel-steps").inner_text()
    assert "50.0 %" in table and "100.0 %" in table
    check_page(page, "funnel")
    shot(page, "console-funnel")
    page.get_by_role("link", name="purchase").click()
    page.locator("#step-people").wait_for()
    assert (
        page.locator("#step-people tbody tr").count() == 1
        and EMAIL in page.locator("#step-people").inner_text()
    )

    # The live tail: a new event shows by itself; paused, it does not.
    page.goto(f"{base}/console")
    with httpx.Client(base_url=base, timeout=10, headers=BROWSER) as http:
        http.get("/track", params={"sid": shop_id, "id": "ann", "action": "tail-one"})
        page.locator("#tail", has_text="tail-one").wait_for(timeout=8000)
        page.get_by_role("button", name="Pause").click()
        assert page.get_by_role("button", name="Resume").get_attribute("aria-pressed") == "true"
        http.get("/track", params={"sid": shop_id, "id": "ann", "action": "tail-two"})
        page.wait_for_timeout(4000)
        assert "tail-two" not in page.locator("#tail").inner_text()
        page.get_by_role("button", name="Resume").click()
        page.locator("#tail", has_text="tail-two").wait_for(timeout=8000)

    # At a phone's width every page still fits and keeps its labels.
    for path in (
        "/console",
        "/console/sources",
        "/console/people",
        f"/console/people/{ann_id}",
        "/console/segments",
        "/console/metrics",
        "/console/funnels",
    ):
        page.set_viewport_size(PHONE)
        page.goto(f"{base}{path}")
        check_page(page, f"phone {path}")
        name = path.strip("/").split("/")[1] if path.count("/") > 1 else "overview"
        shot(page, f"console-phone-{name}{'-person' if path.count('/') > 2 else ''}")
    page.set_viewport_size(DESKTOP)

    # Keyboard: the first Tab reaches the skip link, Enter on it moves to the content.
    page.goto(f"{base}/console/people")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"

    # Sign out: back to sign-in, and the console is closed again.
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Sign in").wait_for()
    page.goto(f"{base}/console/people")
    assert page.url.startswith(f"{base}/console/sign-in")


def test_console_refuses_without_cookie_or_csrf(trackway: Trackway) -> None:
    """Against the real server: no cookie, no page; a form post without its CSRF token changes nothing."""
    with httpx.Client(base_url=trackway.base, timeout=10, follow_redirects=False) as http:
        assert http.get("/console/people").status_code == 303
        assert http.get("/console/tail").status_code == 401
        page = http.get("/console/sign-in")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        assert http.post("/console/sign-in", data={"csrf": csrf, "token": ADMIN_TOKEN}).status_code == 303
        before = trackway.api("/api/sources")["items"]
        refused = http.post("/console/sources", data={"name": "forged", "dialect": "tracardi"})
        assert refused.status_code == 403
        assert trackway.api("/api/sources")["items"] == before
        assert http.get("/console/people").status_code == 200


def test_swagger_ui_works_offline_and_authorizes(console, trackway: Trackway) -> None:
    """``/docs`` loads nothing from outside this server, and "Authorize" works against ``/api``."""
    page = console.new_page()
    outside: list[str] = []
    page.on("request", lambda r: None if r.url.startswith(trackway.base) else outside.append(r.url))
    page.goto(f"{trackway.base}/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "Trackway" in page.locator(".swagger-ui .info .title").inner_text()
    page.get_by_role("button", name="Authorize").first.click()
    page.locator(".auth-container input").fill(ADMIN_TOKEN)
    page.locator(".auth-btn-wrapper button.authorize").click()
    page.locator(".auth-btn-wrapper button.btn-done").click()
    operation = page.locator("#operations-admin-list_sources_api_sources_get")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    with page.expect_response(lambda r: r.url == f"{trackway.base}/api/sources") as answer:
        operation.get_by_role("button", name="Execute").click()
    assert answer.value.status == 200
    assert answer.value.request.headers["authorization"] == f"Bearer {ADMIN_TOKEN}"
    shot(page, "docs-swagger-ui")
    assert outside == []
