"""``GET /tracker`` (headers, ETag, 304), the demo page and its events, and the CLI's snippet.

The browser itself is exercised in ``tests/browser``; these run on every database in a blink.
"""

from __future__ import annotations

import gzip
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import tracker_payload
from trackway import cli
from trackway.core import sources as source_service
from trackway.core.sources import SourceInfo
from trackway.db.uow import SqlUnitOfWork
from trackway.dialects import tracker_script

TRACKER_JS = files("trackway").joinpath("static", "tracker.js").read_bytes()
DEMO_ON = pytest.mark.parametrize("settings_overrides", [{"demo": True}], ids=["demo"])


async def test_tracker_is_served_with_type_etag_and_cache_lifetime(client: httpx.AsyncClient) -> None:
    response = await client.get("/tracker", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "content-encoding" not in response.headers
    assert response.content == TRACKER_JS
    etag = response.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")


async def test_tracker_is_gzipped_when_accepted_with_its_own_etag(client: httpx.AsyncClient) -> None:
    plain = await client.get("/tracker", headers={"Accept-Encoding": "identity"})
    zipped = await client.get("/tracker", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["vary"]
    assert zipped.content == TRACKER_JS  # httpx decoded it
    assert int(zipped.headers["content-length"]) == len(gzip.compress(TRACKER_JS, 9, mtime=0))
    # Different bytes, different strong validator: a cache must not mix the two up.
    assert zipped.headers["etag"] != plain.headers["etag"]
    refused = await client.get("/tracker", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', "*"],
    ids=["exact", "weak", "list", "star"],
)
async def test_tracker_revalidation_is_a_304(client: httpx.AsyncClient, if_none_match: str) -> None:
    first = await client.get("/tracker", headers={"Accept-Encoding": "identity"})
    etag = first.headers["etag"]
    again = await client.get(
        "/tracker",
        headers={"Accept-Encoding": "identity", "If-None-Match": if_none_match.format(etag=etag)},
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=3600"


async def test_tracker_changed_etag_gets_the_script(client: httpx.AsyncClient) -> None:
    response = await client.get("/tracker", headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.content == TRACKER_JS


async def test_tracker_head(client: httpx.AsyncClient) -> None:
    response = await client.head("/tracker", headers={"Accept-Encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["etag"]
    assert response.content == b""


def test_snippet_has_the_seed_shape() -> None:
    snippet = tracker_script.snippet(api_url="https://cdp.example/", source_id="my-site")
    lines = snippet.splitlines()
    # Seed 000: the loader is the first line of the script, then `const options`.
    assert lines[0] == "<script>"
    assert lines[1] == tracker_script.LOADER
    assert lines[1].startswith("!function(") and "\n" not in lines[1]
    assert lines[2] == "const options = {"
    assert "script: 'https://cdp.example/tracker'," in snippet
    assert "api: 'https://cdp.example'" in snippet
    assert "id: 'my-site'" in snippet
    assert lines[-1] == "</script>"
    # The loader line is the last line of static/loader.js, the documented source.
    loader_js = files("trackway").joinpath("static", "loader.js").read_text()
    assert loader_js.rstrip().splitlines()[-1] == tracker_script.LOADER


def test_snippet_strings_cannot_break_out_of_the_script() -> None:
    snippet = tracker_script.snippet(api_url="http://x", source_id="a'</script><b>")
    assert "</script><b>" not in snippet
    assert "id: 'a\\'\\u003c/script>\\u003cb>'" in snippet


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8686"),
        ("0.0.0.0", "http://localhost:8686"),
        ("::", "http://localhost:8686"),
        ("::1", "http://[::1]:8686"),
        ("cdp.example", "http://cdp.example:8686"),
    ],
)
def test_base_url(host: str, expected: str) -> None:
    assert tracker_script.base_url(host, 8686) == expected


async def test_demo_is_off_by_default(client: httpx.AsyncClient, tracardi_source: SourceInfo) -> None:
    for path in (f"/demo?source={tracardi_source.id}", f"/demo/events?source={tracardi_source.id}&profile=x"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"detail": "Not found."}


@DEMO_ON
async def test_demo_page_carries_the_snippet(
    client: httpx.AsyncClient, tracardi_source: SourceInfo, settings_overrides: dict[str, Any]
) -> None:
    response = await client.get(f"/demo?source={tracardi_source.id}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert tracker_script.snippet(api_url="http://testserver", source_id=tracardi_source.id) in page
    assert f"const SOURCE = {json.dumps(tracardi_source.id)};" in page
    assert "{{" not in page


@DEMO_ON
async def test_demo_needs_an_enabled_tracardi_source(
    client: httpx.AsyncClient, uow: SqlUnitOfWork, settings_overrides: dict[str, Any]
) -> None:
    await source_service.create_source(uow, name="t", dialect="tracktor", source_id="tt")
    await source_service.create_source(uow, name="off", dialect="tracardi", source_id="off", enabled=False)
    for source in ("nope", "tt", "off"):
        response = await client.get(f"/demo?source={source}")
        assert response.status_code == 404
        assert "trackway sources create --dialect tracardi" in response.json()["detail"]
    assert (await client.get("/demo")).status_code == 422


@DEMO_ON
async def test_demo_events_shows_one_profile_in_one_source(
    client: httpx.AsyncClient,
    uow: SqlUnitOfWork,
    tracardi_source: SourceInfo,
    settings_overrides: dict[str, Any],
) -> None:
    first = await client.post("/track", json=tracker_payload(tracardi_source.id, session="s-1", events=3))
    profile_id = first.json()["profile"]["id"]
    # The same profile in another source, and another profile in this one: neither is shown.
    other = await source_service.create_source(uow, name="other", dialect="tracardi", source_id="other")
    await client.post("/track", json=tracker_payload(other.id, session="s-2", profile=profile_id, events=2))
    await client.post("/track", json=tracker_payload(tracardi_source.id, session="s-3", events=4))

    response = await client.get("/demo/events", params={"source": tracardi_source.id, "profile": profile_id})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["profile"] == {"id": profile_id, "visits": 2}
    assert body["count"] == 3
    assert [e["type"] for e in body["events"]] == ["add-to-cart", "product-view", "page-view"]
    # Type, time and properties only: no IPs, user agents or contexts reach the page.
    assert set(body["events"][0]) == {"id", "type", "time", "properties"}

    missing = await client.get("/demo/events", params={"source": tracardi_source.id, "profile": "nobody"})
    assert missing.status_code == 404


def test_cli_prints_the_snippet_for_a_tracardi_source_on_stderr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TRACKWAY_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("TRACKWAY_HOST", "127.0.0.1")
    monkeypatch.setenv("TRACKWAY_PORT", "9123")
    assert cli.main(["sources", "create", "--dialect", "tracardi", "--name", "web", "--id", "site-1"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["id"] == "site-1"  # stdout stays pure JSON for scripts
    assert tracker_script.snippet(api_url="http://127.0.0.1:9123", source_id="site-1") in err
    assert "window.tracker.track(" in err
    assert "http://127.0.0.1:9123/demo?source=site-1" in err

    assert cli.main(["sources", "create", "--dialect", "tracktor", "--name", "app", "--id", "app-1"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["dialect"] == "tracktor"
    assert "<script>" not in err


@pytest.mark.parametrize("encoding", ["identity", "gzip"])
async def test_tracker_at_tracardis_loader_path_is_the_same_script(
    client: httpx.AsyncClient, encoding: str
) -> None:
    """Tracardi's loader line asks for ``{script}/liliput.min.js``: the same script, same headers."""
    headers = {"Accept-Encoding": encoding}
    tracker = await client.get("/tracker", headers=headers)
    liliput = await client.get("/tracker/liliput.min.js", headers=headers)
    assert liliput.status_code == 200
    assert liliput.content == TRACKER_JS
    for name in (
        "content-type",
        "cache-control",
        "etag",
        "vary",
        "x-content-type-options",
        "content-encoding",
    ):
        assert liliput.headers.get(name) == tracker.headers.get(name), name
    etag = liliput.headers["etag"]
    again = await client.get("/tracker/liliput.min.js", headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == "public, max-age=3600"
    head = await client.head("/tracker/liliput.min.js", headers=headers)
    assert head.status_code == 200 and head.headers["etag"] == etag and head.content == b""
