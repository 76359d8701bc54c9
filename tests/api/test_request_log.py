"""One JSON line per request: its dialect, source, status, the reason a check gave, what it stored.

The lines are formatted as ``trackway serve`` writes them (``requestlog.JsonFormatter``) and
parsed back; none may hold an email, a query string, or (with ``TRACKWAY_MASK_IP``) a whole IP.
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from tests.helpers import tracker_payload
from trackway.app import create_app
from trackway.core import sources as source_service
from trackway.dialects.tracktor import signature
from trackway.requestlog import JsonFormatter, TextFormatter
from trackway.settings import Settings

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
EMAIL = "hidden.person@example.com"
CLIENT_IP = "198.51.100.23"


@pytest.fixture
async def lan_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client at a public-looking address, so a logged IP can be searched for."""
    transport = httpx.ASGITransport(app=app, client=(CLIENT_IP, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


def lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The request lines as written in JSON, parsed back (every one must parse)."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "trackway.request"]


def last(caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    found = lines(caplog)
    assert found, "no request line was logged"
    return found[-1]


@pytest.fixture(autouse=True)
def capture(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trackway.request")


async def test_an_accepted_request_says_what_it_stored(lan_client, tracardi_source, caplog) -> None:
    payload = tracker_payload(SOURCE, session="s1", profile=None)
    for event_id, event in enumerate(payload["events"]):
        event["id"] = f"e{event_id}"
    assert (await lan_client.post("/track", json=payload)).status_code == 200
    line = last(caplog)
    stored = len(payload["events"])
    assert line["msg"] == "request" and line["logger"] == "trackway.request"
    assert line["time"].endswith("Z") and line["level"] == "info"
    assert {k: line[k] for k in ("method", "path", "dialect", "source", "status", "reason")} == {
        "method": "POST",
        "path": "/track",
        "dialect": "tracardi",
        "source": SOURCE,
        "status": 200,
        "reason": None,
    }
    assert (line["events"], line["duplicates"]) == (stored, 0)
    assert line["latency_ms"] > 0
    assert line["ip"] == CLIENT_IP  # TRACKWAY_MASK_IP is off: the address as it is stored

    caplog.clear()
    assert (await lan_client.post("/track", json=payload)).status_code == 200
    assert (last(caplog)["events"], last(caplog)["duplicates"]) == (0, stored)


@pytest.mark.parametrize("settings_overrides", [{"group_commit": False}])
async def test_stored_counts_without_group_commit(lan_client, tracardi_source, caplog) -> None:
    assert (await lan_client.post("/track", json=tracker_payload(SOURCE, session="s"))).status_code == 200
    assert last(caplog)["events"] == len(tracker_payload(SOURCE, session="s")["events"])


async def test_each_refusal_names_its_reason(lan_client, uow, tracardi_source, caplog) -> None:
    await source_service.create_source(uow, name="t", dialect="tracktor", source_id="tt", secret="k")
    await source_service.create_source(
        uow, name="ts", dialect="tracktor", source_id="secure", secret="k", signed_only=True
    )
    await source_service.create_source(uow, name="off", dialect="tracardi", source_id="off", enabled=False)
    await source_service.create_source(uow, name="f", dialect="tracify", source_id="shop", secret="key")

    async def reason_of(response: httpx.Response, status: int) -> dict[str, Any]:
        assert response.status_code == status, response.text
        line = last(caplog)
        assert line["status"] == status
        caplog.clear()
        return line

    line = await reason_of(await lan_client.post("/track", json=tracker_payload("nobody")), 401)
    assert (line["reason"], line["source"], line["dialect"]) == ("unknown_source", "nobody", "tracardi")
    line = await reason_of(await lan_client.post("/track", json=tracker_payload("tt")), 401)
    assert (line["reason"], line["source"]) == ("wrong_dialect", "tt")
    line = await reason_of(await lan_client.post("/track", json=tracker_payload("off")), 401)
    assert line["reason"] == "disabled_source"
    line = await reason_of(await lan_client.post("/track", json=tracker_payload("has space")), 401)
    assert (line["reason"], line["source"]) == ("bad_source_id", None)
    line = await reason_of(await lan_client.post("/track", json={"source": {}}), 422)
    assert (line["reason"], line["dialect"]) == ("invalid", "tracardi")

    query = {"sid": "secure", "id": "42", "action": "x"}
    line = await reason_of(await lan_client.get("/track", params=query), 403)
    assert (line["reason"], line["dialect"], line["source"]) == ("missing_signature", "tracktor", "secure")
    line = await reason_of(await lan_client.get("/track", params={**query, "sign": "00"}), 403)
    assert line["reason"] == "bad_signature"
    signed = {**query, "sign": signature("k", "42")}
    line = await reason_of(await lan_client.get("/track", params=signed), 200)
    assert (line["reason"], line["events"]) == (None, 1)

    event = {"customer_site_id": "shop", "type": 1}
    line = await reason_of(
        await lan_client.post("/tracify/events", json={"events": [event]}, headers={"X-API-Key": "nope"}), 401
    )
    assert (line["reason"], line["dialect"], line["source"]) == ("bad_key", "tracify", "shop")
    line = await reason_of(await lan_client.post("/tracify/events", json={"events": [event]}), 401)
    assert line["reason"] == "bad_key"

    line = await reason_of(await lan_client.get("/api/sources"), 401)
    assert (line["reason"], line["dialect"], line["path"]) == ("bad_token", "api", "/api/sources")
    line = await reason_of(await lan_client.get(f"/no/such/{EMAIL}"), 404)
    assert (line["reason"], line["path"]) == ("not_found", None)  # an unmatched path is not logged


@pytest.mark.parametrize("settings_overrides", [{"mask_ip": True}])
async def test_no_email_query_or_whole_ip_in_any_line(lan_client, uow, caplog) -> None:
    await source_service.create_source(uow, name="t", dialect="tracktor", source_id="tt")
    data = json.dumps({"email": EMAIL, "first_name": "Ann"})
    response = await lan_client.get("/set?" + urlencode({"sid": "tt", "id": EMAIL, "data": data}))
    assert response.status_code == 200, response.text
    bad = await lan_client.get("/set?" + urlencode({"sid": "tt", "id": "1", "data": "{", "x": EMAIL}))
    assert bad.status_code == 422
    found = lines(caplog)
    assert [line["status"] for line in found] == [200, 422]
    assert all(line["ip"] == "198.51.100.0" and line["path"] == "/set" for line in found)
    written = "\n".join(JsonFormatter().format(r) + TextFormatter().format(r) for r in caplog.records)
    for value in (EMAIL, "hidden.person", CLIENT_IP, "first_name", "?"):
        assert value not in written, value


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_a_database_outage_is_named(database, tmp_path, caplog) -> None:
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/trackway.db"
    else:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/test"
    app = create_app(Settings(database_url=url, source_cache_seconds=0))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            assert (await client.post("/track", json=tracker_payload("any"))).status_code == 503
            assert (await client.get("/readyz")).status_code == 503
    found = lines(caplog)
    assert [(line["status"], line["reason"]) for line in found] == [
        (503, "db_unavailable"),
        (503, "db_unavailable"),
    ]
    assert found[0]["source"] == "any"


def test_the_text_format_is_one_line_of_fields() -> None:
    record = logging.LogRecord("trackway.request", logging.INFO, __file__, 1, "request", None, None)
    record.request = {"method": "GET", "path": "/set", "status": 401, "reason": "unknown_source", "ip": None}
    text = TextFormatter().format(record)
    assert "\n" not in text
    assert text.endswith("trackway.request: method=GET path=/set status=401 reason=unknown_source ip=-")


def test_uvicorns_access_log_masks_the_client_when_asked(caplog: pytest.LogCaptureFixture) -> None:
    """``TRACKWAY_ACCESS_LOG=true`` with ``TRACKWAY_MASK_IP``: the address as it is stored, no port."""
    from trackway import logsafe

    caplog.set_level(logging.INFO, logger="uvicorn.access")
    try:
        logsafe.install(mask_ip=True)
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', f"{CLIENT_IP}:40000", "GET", f"/set?id={EMAIL}", "1.1", 200
        )
    finally:
        logsafe.install(mask_ip=False)
    (record,) = [r for r in caplog.records if r.name == "uvicorn.access"]
    assert record.getMessage() == '198.51.100.0 - "GET /set?[query redacted] HTTP/1.1" 200'
