"""``trackway erasures|suppressions|profiles export|retention`` and ``--retention-days``: JSON out,
the same functions as the API (issue 17)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from trackway.cli import main
from trackway.core.batch import EventIn, IdentityRef, IngestBatch, RequestMeta, SourceRef
from trackway.core.ingest import ingest
from trackway.db.engine import make_engine
from trackway.db.uow import SqlUnitOfWork
from trackway.settings import Settings


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TRACKWAY_DATABASE_URL", url)
    return url


def store(url: str, person: str, ages: list[float]) -> str:
    async def run() -> str:
        engine = make_engine(Settings(database_url=url))
        try:
            now = datetime.now(UTC)
            batch = IngestBatch(
                source=SourceRef("app", "tracktor"),
                meta=RequestMeta(received_at=now),
                events=[EventIn(type="view", time=now - timedelta(days=a)) for a in ages],
                identities=[IdentityRef("person", person, scope="app")],
            )
            return (await ingest(batch, SqlUnitOfWork(engine))).profile_id
        finally:
            await engine.dispose()

    return asyncio.run(run())


def out(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_retention_days_and_a_retention_pass(sqlite_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sources", "create", "--dialect", "tracktor", "--name", "a", "--id", "app"]) == 0
    assert out(capsys)["retention_days"] is None  # type: ignore[index]
    assert main(["sources", "update", "app", "--retention-days", "7"]) == 0
    assert out(capsys)["retention_days"] == 7  # type: ignore[index]
    store(sqlite_env, "1", [10, 20, 1])
    assert main(["retention", "run"]) == 0
    assert out(capsys) == {"deleted": 2}
    assert main(["sources", "update", "app", "--no-retention"]) == 0
    assert out(capsys)["retention_days"] is None  # type: ignore[index]
    with pytest.raises(SystemExit):
        main(["sources", "update", "app", "--retention-days", "0"])
    assert "1 to 3650" in capsys.readouterr().err


def test_erase_export_and_suppress(sqlite_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sources", "create", "--dialect", "tracktor", "--name", "a", "--id", "app"]) == 0
    capsys.readouterr()
    profile_id = store(sqlite_env, "42", [1, 2])

    assert main(["profiles", "export", profile_id]) == 0
    exported = out(capsys)
    assert exported["profile_id"] == profile_id and len(exported["events"]) == 2  # type: ignore[index]
    assert main(["profiles", "export", "nobody"]) == 2
    assert "no profile" in capsys.readouterr().err

    assert main(["erasures", "request", "--identity", "person:42", "--source", "app", "--suppress"]) == 0
    requested = out(capsys)
    assert requested["state"] == "pending" and requested["requested_by"] == "cli"  # type: ignore[index]
    assert main(["erasures", "run"]) == 0
    assert out(capsys)["steps"] == 1  # type: ignore[index]
    assert main(["erasures", "show", requested["id"]]) == 0  # type: ignore[index]
    shown = out(capsys)
    assert shown["state"] == "done" and shown["counts"]["events"] == 2  # type: ignore[index]
    assert main(["erasures", "list"]) == 0
    assert [e["id"] for e in out(capsys)] == [requested["id"]]  # type: ignore[index, union-attr]

    store(sqlite_env, "42", [0])  # suppressed: nothing stored
    assert main(["profiles", "export", profile_id]) == 2
    capsys.readouterr()
    assert main(["suppressions", "list"]) == 0
    listed = out(capsys)
    assert sorted(s["kind"] for s in listed) == ["person", "profile"]  # type: ignore[union-attr, index]
    person = next(s for s in listed if s["kind"] == "person")  # type: ignore[union-attr, index]
    assert main(["suppressions", "lift", person["id"]]) == 0
    assert out(capsys) == {"lifted": person["id"]}
    assert main(["suppressions", "lift", person["id"]]) == 2
    assert main(["erasures", "request", "--profile", "nobody"]) == 2
    assert main(["erasures", "request", "--identity", "nocolon"]) == 2
