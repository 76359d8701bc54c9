"""Bots (core/bots.py): flagged on the visit and its events and left out of metrics, funnels and
segments unless asked (TRACKWAY_BOTS=flag), or answered 2xx and not stored (drop)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN, BROWSER_UA, counts
from tests.helpers import tracker_payload
from trackway.core import sources as source_service
from trackway.core.bots import is_bot
from trackway.dialects.tracktor import signature

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
HEADLESS = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0"


@pytest.mark.parametrize(
    ("user_agent", "bot"),
    [
        (BROWSER_UA, False),
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile Safari/604.1",
            False,
        ),
        (GOOGLEBOT, True),  # ua-parser's Spider family
        ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", True),
        (HEADLESS, True),
        (
            "Mozilla/5.0 (Linux; Android 11) AppleWebKit/537.36 Chrome/114.0 Mobile Chrome-Lighthouse",
            True,
        ),
        ("curl/8.4.0", True),
        ("Wget/1.21.4", True),
        ("python-requests/2.31.0", True),
        ("Mozilla/5.0 curl-impersonating-a-browser", False),  # a browser signal: not by the client rule
        ("", False),
        (None, False),
    ],
)
def test_classification(user_agent: str | None, bot: bool) -> None:
    assert is_bot(user_agent) is bot


async def _day_events(client, source: str, user_agent: str, session: str) -> dict:
    payload = tracker_payload(source, session=session, events=2)
    response = await client.post("/track", json=payload, headers={"User-Agent": user_agent})
    assert response.status_code == 200, response.text
    return response.json()


async def test_flagged_on_the_visit_and_events_and_left_out_unless_asked(client, tracardi_source) -> None:
    person = await _day_events(client, SOURCE, BROWSER_UA, "human")
    crawler = await _day_events(client, SOURCE, GOOGLEBOT, "crawler")
    await _day_events(client, SOURCE, HEADLESS, "headless")

    session = (await client.get(f"/api/sessions/{crawler['session']['id']}", headers=ADMIN)).json()
    assert session["context"]["bot"] is True
    events = (await client.get(f"/api/profiles/{crawler['profile']['id']}/events", headers=ADMIN)).json()
    assert events["items"] and all(e["context"]["bot"] is True for e in events["items"])
    human = (await client.get(f"/api/sessions/{person['session']['id']}", headers=ADMIN)).json()
    assert "bot" not in human["context"]
    human_events = (await client.get(f"/api/profiles/{person['profile']['id']}/events", headers=ADMIN)).json()
    assert all("bot" not in e["context"] for e in human_events["items"])

    today = datetime.now(UTC).date()
    window = {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}
    body = {"type": "people_who_did", "event": "page-view", **window}
    metric = (await client.post("/api/metrics/query", json=body, headers=ADMIN)).json()
    assert metric["value"] == 1 and metric["people"] == 1
    with_bots = (
        await client.post("/api/metrics/query", json={**body, "include_bots": True}, headers=ADMIN)
    ).json()
    assert with_bots["value"] == 3

    steps = {"steps": ["page-view", "product-view"], **window}
    funnel = (await client.post("/api/funnels/query", json=steps, headers=ADMIN)).json()["steps"]
    assert [step["people"] for step in funnel] == [1, 1]
    funnel = (
        await client.post("/api/funnels/query", json={**steps, "include_bots": True}, headers=ADMIN)
    ).json()["steps"]
    assert [step["people"] for step in funnel] == [3, 3]
    saved = (
        await client.post("/api/funnels", json={"name": "f", "steps": steps["steps"]}, headers=ADMIN)
    ).json()
    query = f"from={window['from']}&to={window['to']}"
    got = (await client.get(f"/api/funnels/{saved['id']}?{query}", headers=ADMIN)).json()
    assert [step["people"] for step in got["steps"]] == [1, 1]
    got = (await client.get(f"/api/funnels/{saved['id']}?{query}&include_bots=true", headers=ADMIN)).json()
    assert [step["people"] for step in got["steps"]] == [3, 3]

    condition = {"event": "page-view"}
    preview = (
        await client.post("/api/segments/preview", json={"condition": condition}, headers=ADMIN)
    ).json()
    assert [p["id"] for p in preview["items"]] == [person["profile"]["id"]]
    preview = (
        await client.post(
            "/api/segments/preview", json={"condition": condition, "include_bots": True}, headers=ADMIN
        )
    ).json()
    assert preview["size"] == 3
    segment = (
        await client.post("/api/segments", json={"name": "s", "condition": condition}, headers=ADMIN)
    ).json()
    members = (await client.get(f"/api/segments/{segment['id']}/people", headers=ADMIN)).json()
    assert members["size"] == 1
    members = (
        await client.get(f"/api/segments/{segment['id']}/people?include_bots=true", headers=ADMIN)
    ).json()
    assert members["size"] == 3


async def test_a_signed_backend_call_is_never_a_bot(client, uow) -> None:
    await source_service.create_source(uow, name="t", dialect="tracktor", source_id="tt", secret="k")
    params = {"sid": "tt", "id": "42", "action": "buy", "sign": signature("k", "42")}
    response = await client.get("/track", params=params, headers={"User-Agent": "python-requests/2.31"})
    assert response.status_code == 200
    events = (
        await client.get(f"/api/profiles/{response.json()['profile']['id']}/events", headers=ADMIN)
    ).json()
    assert [e["type"] for e in events["items"]] == ["buy"] and "bot" not in events["items"][0]["context"]


@pytest.mark.parametrize("settings_overrides", [{"bots": "drop"}, {"bots": "drop", "group_commit": False}])
async def test_drop_answers_2xx_stores_nothing_and_counts(client, uow, tracardi_source) -> None:
    before = await counts(uow)
    response = await client.post(
        "/track",
        json=tracker_payload(SOURCE, session="c", profile="bot-kept-id"),
        headers={"User-Agent": GOOGLEBOT},
    )
    assert response.status_code == 200, response.text
    assert response.json()["profile"] == {"id": "bot-kept-id"}
    assert await counts(uow) == before
    metrics = (await client.get("/metrics")).text
    assert 'trackway_bots_dropped_total{dialect="tracardi"} 1.0' in metrics
    # A person's request is stored as ever.
    assert (await client.post("/track", json=tracker_payload(SOURCE, session="p"))).status_code == 200
    assert (await counts(uow))["events"] == before["events"] + 3
