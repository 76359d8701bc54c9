"""Per-source rate limits: off by default; over the limit a 429 with Retry-After and a JSON body,
nothing written; set and lifted through the API (and the CLI, in tests/test_cli.py)."""

from __future__ import annotations

import logging

import pytest

from tests.conftest import ADMIN, counts
from tests.helpers import tracker_payload
from trackway.core.ratelimit import TokenBuckets
from trackway.errors import RateLimited

SOURCE = "limited-site"


async def make_source(client, **limits) -> dict:
    response = await client.post(
        "/api/sources", headers=ADMIN, json={"name": "web", "dialect": "tracardi", "id": SOURCE, **limits}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_limits_are_off_by_default(client) -> None:
    created = await make_source(client)
    assert created["rate_limit_per_second"] is None and created["rate_limit_burst"] is None
    for _ in range(30):
        assert (await client.post("/track", json=tracker_payload(SOURCE, session="s"))).status_code == 200


async def test_over_the_limit_is_a_429_that_writes_nothing(client, uow, caplog) -> None:
    created = await make_source(client, rate_limit_per_second=0.01, rate_limit_burst=3)
    assert (created["rate_limit_per_second"], created["rate_limit_burst"]) == (0.01, 3)
    for index in range(3):
        response = await client.post("/track", json=tracker_payload(SOURCE, session=f"s{index}"))
        assert response.status_code == 200, response.text
    before = await counts(uow)
    caplog.set_level(logging.INFO, logger="trackway.request")
    refused = await client.post("/track", json=tracker_payload(SOURCE, session="late"))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    assert 1 <= int(refused.headers["retry-after"]) <= 100  # 1 token at 0.01/s: up to 100 s
    assert "0.01 requests per second" in refused.json()["detail"]
    assert await counts(uow) == before
    (line,) = [r.request for r in caplog.records if r.name == "trackway.request"]
    assert (line["status"], line["reason"], line["source"]) == (429, "rate_limited", SOURCE)

    # A change through the API applies at once in this process; null lifts the limit.
    lifted = await client.patch(f"/api/sources/{SOURCE}", headers=ADMIN, json={"rate_limit_per_second": None})
    assert lifted.status_code == 200
    assert (lifted.json()["rate_limit_per_second"], lifted.json()["rate_limit_burst"]) == (None, None)
    assert (await client.post("/track", json=tracker_payload(SOURCE, session="late"))).status_code == 200


async def test_a_limit_set_later_applies_at_once(client) -> None:
    await make_source(client)
    assert (await client.post("/track", json=tracker_payload(SOURCE, session="a"))).status_code == 200
    patched = await client.patch(f"/api/sources/{SOURCE}", headers=ADMIN, json={"rate_limit_per_second": 0.5})
    assert (patched.json()["rate_limit_per_second"], patched.json()["rate_limit_burst"]) == (0.5, None)
    assert (await client.post("/track", json=tracker_payload(SOURCE, session="b"))).status_code == 200
    refused = await client.post("/track", json=tracker_payload(SOURCE, session="c"))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"  # one token at 0.5 per second


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"rate_limit_per_second": 0}, "rate_limit_per_second"),
        ({"rate_limit_per_second": -1}, "rate_limit_per_second"),
        ({"rate_limit_per_second": 2e6}, "rate_limit_per_second"),
        ({"rate_limit_per_second": "fast"}, "rate_limit_per_second"),
        ({"rate_limit_per_second": 5, "rate_limit_burst": 0}, "rate_limit_burst"),
        ({"rate_limit_per_second": 5, "rate_limit_burst": 1.5}, "rate_limit_burst"),
        ({"rate_limit_burst": 10}, "rate_limit_burst"),
    ],
)
async def test_bad_limits_are_422_naming_the_field(client, uow, body, field) -> None:
    await make_source(client)
    response = await client.patch(f"/api/sources/{SOURCE}", headers=ADMIN, json=body)
    assert response.status_code == 422, response.text
    assert [e["loc"][-1] for e in response.json()["detail"]] == [field]
    listed = (await client.get("/api/sources", headers=ADMIN)).json()["items"]
    assert listed[0]["rate_limit_per_second"] is None  # nothing changed


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock)
    for _ in range(5):
        buckets.take("s", 10.0, 5)
    with pytest.raises(RateLimited) as refused:
        buckets.take("s", 10.0, 5)
    assert refused.value.retry_after == 1 and refused.value.status_code == 429
    clock.now += 0.25  # 2.5 tokens
    buckets.take("s", 10.0, 5)
    buckets.take("s", 10.0, 5)
    with pytest.raises(RateLimited):
        buckets.take("s", 10.0, 5)
    clock.now += 100  # full again, never past the burst
    for _ in range(5):
        buckets.take("s", 10.0, 5)
    with pytest.raises(RateLimited):
        buckets.take("s", 10.0, 5)
    buckets.take("other", 10.0, None)  # each source has its own bucket; default burst: one second's
    clock.now += 100
    for _ in range(10):
        buckets.take("other", 10.0, None)
    with pytest.raises(RateLimited):
        buckets.take("other", 10.0, None)
