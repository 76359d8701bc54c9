"""A 405 lists every method of its path in ``Allow`` and says so in JSON.

Paths served by several routes (one per method, and the collector paths twice: the lean
Starlette routes and FastAPI's) used to list only the first route's methods.
"""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/track", "GET, HEAD, POST"),
        ("/set", "GET, HEAD, POST"),
        ("/alias", "GET, HEAD, POST"),
        ("/tracker", "GET, HEAD"),
        ("/watch/event", "POST"),
        ("/tracify/events", "POST"),
        ("/api/sources", "GET, POST"),
        ("/api/sources/some-id", "PATCH"),
        ("/api/profiles/some-id", "GET"),
        ("/healthz", "GET"),
    ],
)
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
async def test_a_405_lists_every_method_of_the_path(client, path, allow, method) -> None:
    response = await client.request(method, path, headers=ADMIN)
    assert response.status_code == 405, response.text
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": "Method Not Allowed"}
    for listed in allow.split(", "):  # every method listed is really served
        again = await client.request(listed, path, headers=ADMIN)
        assert again.status_code != 405, (listed, path)


async def test_unknown_paths_are_a_json_404(client) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}
