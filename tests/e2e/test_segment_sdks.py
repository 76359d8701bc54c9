"""The official Segment and RudderStack server SDKs, unchanged, against a real ``trackway serve``.

``segment-analytics-python`` and ``rudder-sdk-python`` (dev dependencies) queue calls and post
them to ``{host}/v1/batch`` from their own thread: Basic auth with the write key, gzip (the
RudderStack SDK's default), up to 100 calls a request. They sit behind a small forwarding
proxy of the test's own, which can answer one request with a 503 *after* Trackway stored it:
the worst case of a lost answer, so the SDK's retry must be recognised by its messageIds and
store nothing twice. What landed is read back through the read API.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tests.e2e.test_server import server  # noqa: F401  (the fixture)

pytestmark = pytest.mark.e2e
ADMIN = {"Authorization": "Bearer e2e-token"}
KEY = "sdk-write-key"
FORWARDED = ("content-type", "content-encoding", "authorization", "user-agent", "x-retry-count")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proxy:
    """Forwards every request to Trackway; ``fail_next`` answers the next one 503 once it is stored."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.fail_next = False
        self.seen: list[tuple[str, int]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k: v for k, v in self.headers.items() if k.lower() in FORWARDED}
                answer = httpx.post(proxy.target + self.path, content=body, headers=headers, timeout=30)
                status, content = answer.status_code, answer.content
                if proxy.fail_next and status == 200:
                    proxy.fail_next = False
                    status, content = 503, b'{"detail": "Storage unavailable, retry later."}'
                proxy.seen.append((self.path, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Proxy:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


def segment_client(host: str, on_error: Callable[..., None]) -> Any:
    from segment.analytics import Client

    return Client(KEY, host=host, gzip=True, max_retries=3, on_error=on_error, upload_interval=0.1)


def rudder_client(host: str, on_error: Callable[..., None]) -> Any:
    from rudderstack.analytics import Client

    return Client(KEY, host=host, max_retries=3, on_error=on_error, upload_interval=0.1)


@pytest.fixture
def trackway(server: tuple[str, dict[str, str]]) -> Iterator[str]:  # noqa: F811
    base, _env = server
    created = httpx.post(
        f"{base}/api/sources",
        headers=ADMIN,
        json={"name": "sdk", "dialect": "segment", "id": KEY},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    yield base


def get(base: str, path: str, **params: Any) -> Any:
    response = httpx.get(f"{base}{path}", params=params, headers=ADMIN, timeout=10)
    assert response.status_code == 200, (path, response.text)
    return response.json()


@pytest.mark.parametrize("make_client", [segment_client, rudder_client], ids=["segment", "rudderstack"])
def test_the_sdk_sends_everything_and_a_retry_stores_nothing_twice(trackway: str, make_client) -> None:
    errors: list[Any] = []
    with Proxy(trackway) as proxy:
        client = make_client(proxy.url, lambda error, batch: errors.append((repr(error), len(batch))))
        try:
            client.page(anonymous_id="dev-1", name="Home", properties={"url": "https://shop.example/"})
            client.track(anonymous_id="dev-1", event="Product Viewed", properties={"sku": "A-1"})
            client.track(user_id="old-1", event="Legacy Login")
            client.identify(
                user_id="u-1", anonymous_id="dev-1", traits={"email": "Ann@Example.com", "plan": "gold"}
            )
            client.track(user_id="u-1", event="Order Completed", properties={"total": 19.9})
            client.group(user_id="u-1", group_id="acme", traits={"name": "Acme", "employees": 12})
            client.alias(previous_id="old-1", user_id="u-1")
            client.screen(user_id="u-1", name="Settings")
            client.flush()
            assert errors == []
            assert proxy.seen and all(status == 200 for _, status in proxy.seen), proxy.seen
            assert {path for path, _ in proxy.seen} == {"/v1/batch"}

            [ann] = get(trackway, "/api/people", identity="email:ann@example.com")["items"]
            profile = get(trackway, f"/api/profiles/{ann['id']}")
            assert profile["traits"] == {"email": "Ann@Example.com", "plan": "gold"}
            assert profile["anonymous"] is False
            assert {(i["kind"], i["value"]) for i in profile["identities"]} >= {
                ("user_id", "u-1"),
                ("user_id", "old-1"),
                ("anonymous_id", "dev-1"),
            }
            assert profile["merged_from"]  # the anonymous device and the old account joined
            events = get(trackway, "/api/events", source=KEY, order="asc", limit=100)["items"]
            types = sorted(e["type"] for e in events)
            assert types == ["Legacy Login", "Order Completed", "Product Viewed", "group", "page", "screen"]
            assert {e["profile_id"] for e in events} == {ann["id"]}
            order = next(e for e in events if e["type"] == "Order Completed")
            assert order["properties"] == {"total": 19.9}
            assert order["context"]["library"]["name"] == "analytics-python"
            group = next(e for e in events if e["type"] == "group")
            assert group["properties"] == {"groupId": "acme", "traits": {"name": "Acme", "employees": 12}}

            # One answer lost: Trackway stored the batch, the SDK saw a 503 and sent it again.
            stored_before = len(events)
            proxy.seen.clear()
            proxy.fail_next = True
            for n in range(3):
                client.track(user_id="u-1", event="Retried", properties={"n": n})
            client.identify(user_id="u-1", traits={"plan": "platinum"})
            client.flush()
            assert errors == []
            assert [status for _, status in proxy.seen] == [503, 200], proxy.seen
            events = get(trackway, "/api/events", source=KEY, limit=100)["items"]
            assert len(events) == stored_before + 3
            assert sorted(e["properties"]["n"] for e in events if e["type"] == "Retried") == [0, 1, 2]
            assert get(trackway, f"/api/profiles/{ann['id']}")["traits"]["plan"] == "platinum"
        finally:
            client.shutdown()
    assert json.dumps(errors) == "[]"
