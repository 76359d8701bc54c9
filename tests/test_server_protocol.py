"""``trackway serve``'s HTTP protocols (httptools and h11): the header deadline and size bound.

Each runs in a uvicorn server inside the test's event loop, on 127.0.0.1, in front of a tiny
ASGI app; the deadline is shortened to a fraction of a second.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from trackway import server as server_module

DEADLINE = 0.3


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["httptools", "h11"])
async def port(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[int]:
    monkeypatch.setattr(server_module, "header_timeout", lambda: DEADLINE)
    protocol = server_module.H11HeaderDeadline if request.param == "h11" else server_module.PROTOCOL
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = int(sock.getsockname()[1])
    config = uvicorn.Config(
        hello,
        host="127.0.0.1",
        port=free,
        http=protocol,
        log_level="error",
        lifespan="off",
        timeout_keep_alive=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(100):  # bounded: 5 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started
    try:
        yield free
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def exchange(port: int, data: bytes, wait: float = DEADLINE + 2) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "data",
    [b"", b"GET / HT", b"GET / HTTP/1.1\r\nHost: x\r\n"],
    ids=["silent", "half-request-line", "half-headers"],
)
async def test_incomplete_headers_get_a_408_and_are_closed(port: int, data: bytes) -> None:
    started = asyncio.get_running_loop().time()
    answer = await exchange(port, data)
    assert asyncio.get_running_loop().time() - started < DEADLINE + 1.5
    last = answer.rsplit(b"HTTP/1.1 ", 1)[-1]
    assert last.startswith(b"408 "), answer
    head, _, body = last.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head
    assert json.loads(body) == {"detail": "The request headers did not arrive in time."}


async def test_the_next_request_after_an_answer_has_the_same_deadline(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
        writer.write(b"GET / HTTP/1.1\r\nHo")  # then nothing: slowloris on a kept-alive connection
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), DEADLINE + 2)
        assert answer.startswith(b"HTTP/1.1 408 "), answer
    finally:
        writer.close()


async def test_a_complete_request_is_answered_and_kept_alive(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200"), head
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"ok"
            await asyncio.sleep(DEADLINE * 1.5)  # idle between requests: the keep-alive timeout's, not ours
    finally:
        writer.close()


async def test_oversized_headers_get_a_431(port: int) -> None:
    filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
    answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n" + filler * 80)
    assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer[:100]
