"""``GET /metrics``: request counts by dialect and status, and the core's hooks, as Prometheus sees them."""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ADMIN
from tests.helpers import tracker_payload
from trackway.app import create_app
from trackway.core.sources import SourceInfo, create_source
from trackway.metrics import REQUEST_DIALECTS, Metrics, metrics_of, request_dialect
from trackway.settings import Settings


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics``, keyed by name and sorted labels: what a scraper parses."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def requests_total(samples: dict, dialect: str, status: int) -> float:
    return samples.get(("trackway_requests_total", (("dialect", dialect), ("status", str(status)))), 0.0)


async def test_track_requests_are_counted_by_dialect_and_status(
    client: httpx.AsyncClient, tracardi_source: SourceInfo
) -> None:
    for _ in range(3):
        response = await client.post("/track", json=tracker_payload(tracardi_source.id, session="s"))
        assert response.status_code == 200, response.text
    for _ in range(2):
        response = await client.post("/track", json=tracker_payload("no-such-source"))
        assert response.status_code == 401
    # curl -d labels JSON as a form: still Tracardi (dispatch.py looks at the body).
    as_form = {"content-type": "application/x-www-form-urlencoded"}
    response = await client.post("/track", content=json.dumps(tracker_payload("nope")), headers=as_form)
    assert response.status_code == 401
    response = await client.post("/track", content=b"sid=nope&event=x&ts=1", headers=as_form)
    assert response.status_code in (401, 422)
    assert (await client.get("/api/sources", headers=ADMIN)).status_code == 200
    assert (await client.get("/api/sources")).status_code == 401

    samples = await scrape(client)
    assert requests_total(samples, "tracardi", 200) == 3
    assert requests_total(samples, "tracardi", 401) == 3
    assert requests_total(samples, "tracktor", response.status_code) == 1
    assert requests_total(samples, "api", 200) == 1
    assert requests_total(samples, "api", 401) == 1
    # The scrape is counted once it is answered: the second scrape sees the first.
    assert requests_total(await scrape(client), "other", 200) == 1


async def test_observe_ingest_and_commit_change_the_exposed_values(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    metrics = metrics_of(app)
    metrics.observe_ingest("tracardi", stored=3, duplicates=1, merges=0)
    metrics.observe_ingest("tracardi", stored=2, duplicates=0, merges=2)
    metrics.observe_ingest("insend", stored=1, duplicates=0, merges=0)
    metrics.observe_commit(batches=1, seconds=0.002)
    metrics.observe_commit(batches=40, seconds=0.03)

    samples = await scrape(client)
    assert samples[("trackway_events_stored_total", (("dialect", "tracardi"),))] == 5
    assert samples[("trackway_events_stored_total", (("dialect", "insend"),))] == 1
    assert samples[("trackway_event_duplicates_total", (("dialect", "tracardi"),))] == 1
    assert samples[("trackway_merges_total", ())] == 2
    assert samples[("trackway_commit_batch_size_count", ())] == 2
    assert samples[("trackway_commit_batch_size_sum", ())] == 41
    assert samples[("trackway_commit_batch_size_bucket", (("le", "1.0"),))] == 1
    assert samples[("trackway_commit_batch_size_bucket", (("le", "32.0"),))] == 1
    assert samples[("trackway_commit_batch_size_bucket", (("le", "64.0"),))] == 2
    assert samples[("trackway_commit_seconds_count", ())] == 2
    assert samples[("trackway_commit_seconds_bucket", (("le", "0.0025"),))] == 1
    assert samples[("trackway_commit_seconds_bucket", (("le", "1.0"),))] == 2
    assert samples[("trackway_commit_seconds_sum", ())] == pytest.approx(0.032)


async def test_metrics_can_be_turned_off(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, metrics=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            await client.post("/track", json=tracker_payload("no-such-source"))
            response = await client.get("/metrics")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}
    # The core may still report (nothing checks first); nothing counted requests.
    metrics_of(app).observe_commit(batches=1, seconds=0.001)
    registry = metrics_of(app).registry
    assert not [
        s for family in registry.collect() for s in family.samples if s.name.startswith("trackway_requests")
    ]
    assert registry.get_sample_value("trackway_commit_batch_size_count") == 1


def test_each_app_has_its_own_registry() -> None:
    """Tests and workers build many apps in one process: no metric may be registered twice."""
    first, second = Metrics(), Metrics()
    first.observe_ingest("tracify", stored=4, duplicates=0, merges=0)
    assert first.registry.get_sample_value("trackway_events_stored_total", {"dialect": "tracify"}) == 4
    assert second.registry.get_sample_value("trackway_events_stored_total", {"dialect": "tracify"}) is None


@pytest.mark.parametrize(
    ("method", "path", "content_type", "dialect"),
    [
        ("POST", "/track", "application/json", "tracardi"),
        ("POST", "/track", "text/plain;charset=UTF-8", "tracardi"),
        ("POST", "/track", "", "tracardi"),
        ("POST", "/track", "application/x-www-form-urlencoded; charset=utf-8", "tracktor"),
        ("GET", "/track", "", "tracktor"),
        ("GET", "/set", "", "tracktor"),
        ("POST", "/alias", "application/x-www-form-urlencoded", "tracktor"),
        ("POST", "/watch/event", "application/x-www-form-urlencoded", "insend"),
        ("POST", "/tracify/events", "application/json", "tracify"),
        ("POST", "/v1/batch", "application/json", "segment"),
        ("POST", "/v1/identify", "application/json", "segment"),
        ("POST", "/b", "text/plain", "segment"),
        ("POST", "/v1/t", "text/plain", "segment"),
        ("POST", "/v1/other", "application/json", "other"),
        ("GET", "/tracker", "", "tracker"),
        ("GET", "/tracker/liliput.min.js", "", "tracker"),
        ("GET", "/api/profiles/x", "", "api"),
        ("OPTIONS", "/track", "", "other"),
        ("GET", "/readyz", "", "other"),
        ("GET", "/apix", "", "other"),
    ],
)
def test_request_dialect(method: str, path: str, content_type: str, dialect: str) -> None:
    assert request_dialect(method, path, content_type) == dialect
    assert dialect in REQUEST_DIALECTS


@pytest.mark.parametrize("settings_overrides", [{"group_commit": True}, {"group_commit": False}])
async def test_the_core_reports_committed_events_and_transactions(client, uow) -> None:
    await create_source(uow, name="web", dialect="tracardi", source_id="metrics-src")
    payload = tracker_payload("metrics-src", session="m1")
    await client.post("/track", json=payload)
    await client.post("/track", json=payload)  # a retry: three duplicates
    text = (await client.get("/metrics")).text
    assert 'trackway_events_stored_total{dialect="tracardi"} 3.0' in text
    assert 'trackway_event_duplicates_total{dialect="tracardi"} 3.0' in text
    assert "trackway_commit_batch_size_count 2.0" in text
    assert "trackway_commit_seconds_count 2.0" in text
