"""``trackway rejections list|replay|purge``: the quarantine from the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from tests.conftest import run_sync
from trackway.app import create_app
from trackway.cli import main
from trackway.core import sources as source_service
from trackway.db.models import rejections
from trackway.settings import Settings


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TRACKWAY_DATABASE_URL", url)
    return url


async def _reject(url: str, bodies: list[dict[str, object]]) -> None:
    """Requests rejected by a real app on the CLI's database; the first rejection made old."""
    app = create_app(Settings(database_url=url, cart_outcomes_interval=0, rejections_purge_interval=0))
    async with app.router.lifespan_context(app):
        uow = app.state.services.uow
        await source_service.create_source(uow, name="web", dialect="tracardi", source_id="cli-site")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            for body in bodies:
                assert (await client.post("/track", json=body)).status_code == 422
        async with uow.transaction() as db:
            first = (await db.execute(rejections.select().order_by(rejections.c.received_at))).first()
            old = datetime.now(UTC) - timedelta(days=30)
            await db.execute(update(rejections).where(rejections.c.id == first.id).values(received_at=old))


def test_list_replay_purge(sqlite_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    payload = {"source": {"id": "cli-site"}, "events": [{"id": "e-1"}]}
    run_sync(_reject(sqlite_env, [payload, payload]))
    capsys.readouterr()

    assert main(["rejections", "list", "--source", "cli-site", "--reason", "invalid"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["state"] for item in listed] == ["quarantined", "quarantined"]
    newest, oldest = listed[0]["id"], listed[1]["id"]

    # As it was: rejected again, exit status 1, the reason printed.
    assert main(["rejections", "replay", newest]) == 1
    (outcome,) = json.loads(capsys.readouterr().out)
    assert (outcome["state"], outcome["status"]) == ("quarantined", 422)
    assert outcome["response"]["detail"][0]["loc"] == ["body", "events", 0, "type"]

    fixed = json.dumps({"source": {"id": "cli-site"}, "events": [{"id": "e-1", "type": "page-view"}]})
    assert main(["rejections", "replay", newest, "--body", fixed]) == 0
    (outcome,) = json.loads(capsys.readouterr().out)
    assert (outcome["state"], outcome["status"], outcome["ran"]) == ("replayed", 200, True)

    assert main(["rejections", "replay", "missing"]) == 1
    (outcome,) = json.loads(capsys.readouterr().out)
    assert outcome["error"]["status"] == 404

    # The 30-day-old one goes with the default 7 days; --days 0 takes the rest.
    assert main(["rejections", "purge"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": 1}
    assert main(["rejections", "list"]) == 0
    assert [item["id"] for item in json.loads(capsys.readouterr().out)] == [newest]
    assert oldest != newest
    assert main(["rejections", "purge", "--days", "0"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": 1}
