"""A client that hangs up mid-body is a quiet 499; a body that does not arrive in time is a 408.

Both are driven through the ASGI app directly: a ``receive`` that hands over half a body and
then the client's ``http.disconnect``, or nothing more at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from tests.api.test_metrics import requests_total, scrape
from tests.conftest import ADMIN, counts
from tests.helpers import tracker_payload

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"
Message = dict[str, Any]


def scope_of(method: str, path: str, body_length: int, headers: dict[str, str] | None = None) -> Message:
    raw_headers = [(b"content-length", str(body_length).encode()), (b"host", b"testserver")]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": raw_headers,
        "client": ("203.0.113.7", 40000),
        "server": ("testserver", 80),
    }


def half_then(end: str, body: bytes) -> Callable[[], Awaitable[Message]]:
    """``receive``: the first half of ``body``, then ``end``: a hang-up, or nothing ever again."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body[: len(body) // 2], "more_body": True}
        if end == "disconnect":
            return {"type": "http.disconnect"}
        await asyncio.sleep(3600)  # a stalled upload; the deadline cancels this
        raise AssertionError("unreachable")

    return receive


async def call(app: FastAPI, scope: Message, receive: Callable[[], Awaitable[Message]]) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=10)
    return sent


def status_of(sent: list[Message]) -> int:
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


def body_of(sent: list[Message]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


REQUESTS = [
    ("POST", "/track", "tracardi", {"content-type": "application/json"}),
    ("POST", "/track", "tracktor", {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/tracify/events", "tracify", {"content-type": "application/json", "x-api-key": "k" * 20}),
    ("POST", "/watch/event", "insend", {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/set", "tracktor", {"content-type": "application/x-www-form-urlencoded"}),
    ("POST", "/api/sources", "api", {"content-type": "application/json", **ADMIN}),
]


def body_for(headers: dict[str, str]) -> bytes:
    if "form" in headers["content-type"]:
        return b"sid=" + SOURCE.encode() + b"&uid=u1&ev=page&" + b"x=1&" * 200
    return json.dumps(tracker_payload(SOURCE, session="s")).encode()


@pytest.mark.parametrize(("method", "path", "dialect", "headers"), REQUESTS)
async def test_a_hang_up_mid_body_is_a_quiet_499(
    app, client, tracardi_source, uow, caplog, method, path, dialect, headers
) -> None:
    body = body_for(headers)
    before = await counts(uow)
    caplog.set_level(logging.DEBUG, logger="trackway")
    caplog.set_level(logging.INFO)
    sent = await call(app, scope_of(method, path, len(body), headers), half_then("disconnect", body))
    assert status_of(sent) == 499
    assert body_of(sent) == b""
    # One line says what happened (the per-request log line, trackway.request, is its own channel).
    names = ("trackway", "uvicorn")
    records = [r for r in caplog.records if r.name.startswith(names) and r.name != "trackway.request"]
    assert len(records) == 1, [r.getMessage() for r in records]
    assert "client closed the request" in records[0].getMessage()
    assert records[0].exc_info is None and not records[0].exc_text
    samples = await scrape(client)
    assert requests_total(samples, dialect, 499) == 1
    assert all(
        not (name == "trackway_requests_total" and dict(labels)["status"].startswith("5"))
        for name, labels in samples
    )
    assert await counts(uow) == before


@pytest.mark.parametrize("settings_overrides", [{"body_timeout_seconds": 0.3}])
@pytest.mark.parametrize(("method", "path", "dialect", "headers"), REQUESTS)
async def test_a_body_that_does_not_arrive_in_time_is_a_408(
    app, client, tracardi_source, uow, method, path, dialect, headers
) -> None:
    body = body_for(headers)
    before = await counts(uow)
    started = asyncio.get_running_loop().time()
    sent = await call(app, scope_of(method, path, len(body), headers), half_then("stall", body))
    assert asyncio.get_running_loop().time() - started < 3
    assert status_of(sent) == 408
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(body_of(sent)) == {"detail": "The request body did not arrive within 0.3 seconds."}
    assert requests_total(await scrape(client), dialect, 408) == 1
    assert await counts(uow) == before


@pytest.mark.parametrize("settings_overrides", [{"body_timeout_seconds": 0.3}])
async def test_a_complete_body_is_not_timed_after_it_arrived(app, client, tracardi_source) -> None:
    """The deadline covers reading the body, not the work after it."""
    body = json.dumps(tracker_payload(SOURCE, session="s")).encode()
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        if chunks:
            return chunks.pop()
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    scope = scope_of("POST", "/track", len(body), {"content-type": "application/json"})
    await asyncio.sleep(0.4)  # longer than the deadline, before the app runs: it counts from the call
    assert status_of(await call(app, scope, receive)) == 200
