"""The ``trackway`` command: migrate, and sources create/list/update print JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trackway.cli import build_parser, main


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("TRACKWAY_DATABASE_URL", f"sqlite+aiosqlite:///{path}")
    return path


def test_sources_create_list_update(sqlite_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"]) == 0
    assert sqlite_env.exists()
    capsys.readouterr()

    assert main(["sources", "create", "--dialect", "tracardi", "--name", "web"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert created["dialect"] == "tracardi"
    assert created["name"] == "web"
    assert created["enabled"] is True

    assert main(["sources", "create", "--dialect", "tracify", "--name", "srv", "--id", "srv-1"]) == 0
    tracify = json.loads(capsys.readouterr().out)
    assert tracify["id"] == "srv-1"
    assert tracify["secret"]  # generated and shown once created

    assert main(["sources", "list"]) == 0
    output = capsys.readouterr().out
    listed = json.loads(output)
    assert [s["id"] for s in listed] == [created["id"], "srv-1"]
    assert [s["has_secret"] for s in listed] == [False, True]
    assert tracify["secret"] not in output
    assert all("secret" not in s for s in listed)

    assert main(["sources", "update", "srv-1", "--disable", "--signed-only"]) == 0
    updated = json.loads(capsys.readouterr().out)
    assert updated["enabled"] is False
    assert updated["signed_only"] is True
    assert "secret" not in updated and updated["has_secret"] is True

    assert main(["sources", "update", "srv-1", "--rotate-secret"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["secret"] and rotated["secret"] != tracify["secret"]


def test_errors_are_reported_not_raised(sqlite_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sources", "create", "--dialect", "tracardi", "--name", "a", "--id", "dup"]) == 0
    assert main(["sources", "create", "--dialect", "tracardi", "--name", "b", "--id", "dup"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["sources", "update", "missing", "--enable"]) == 2


def test_serve_flags_parse() -> None:
    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--workers", "2"])
    assert (args.host, args.port, args.workers, args.no_migrate) == ("0.0.0.0", 9000, 2, False)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sources", "create", "--dialect", "mixpanel", "--name", "x"])


def test_cart_abandon_after_and_run_outcomes(sqlite_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from trackway.core.batch import CartChange, CartItem, IdentityRef, IngestBatch, RequestMeta, SourceRef
    from trackway.core.ingest import ingest
    from trackway.db.engine import make_engine
    from trackway.db.uow import SqlUnitOfWork
    from trackway.settings import Settings

    args = ["sources", "create", "--dialect", "insend", "--name", "shop", "--id", "shop"]
    assert main([*args, "--cart-abandon-after", "90"]) == 0
    assert json.loads(capsys.readouterr().out)["cart_abandon_after"] == 90
    assert main(["sources", "update", "shop", "--cart-abandon-after", "60"]) == 0
    assert json.loads(capsys.readouterr().out)["cart_abandon_after"] == 60
    assert main(["sources", "update", "shop", "--cart-abandon-after", "0"]) == 2
    assert "cart_abandon_after" in capsys.readouterr().err

    async def fill_cart() -> None:
        engine = make_engine(Settings())
        try:
            batch = IngestBatch(
                source=SourceRef("shop", "insend"),
                meta=RequestMeta(received_at=datetime.now(UTC) - timedelta(minutes=5)),
                identities=[IdentityRef("guest", "g", scope="shop")],
                cart=CartChange("add", (CartItem("1", Decimal(1), Decimal(2)),)),
            )
            await ingest(batch, SqlUnitOfWork(engine))
        finally:
            await engine.dispose()

    asyncio.run(fill_cart())
    assert main(["carts", "run-outcomes"]) == 0
    assert json.loads(capsys.readouterr().out) == {"abandoned": 1}
    assert main(["carts", "run-outcomes", "--batch", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"abandoned": 0}


def test_sources_rate_limits(sqlite_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sources", "create", "--dialect", "tracardi", "--name", "w", "--id", "rl"]
    assert main([*args, "--rate-limit", "50", "--rate-burst", "100"]) == 0
    created = json.loads(capsys.readouterr().out)
    assert (created["rate_limit_per_second"], created["rate_limit_burst"]) == (50, 100)
    assert main(["sources", "update", "rl", "--rate-limit", "0.5"]) == 0
    updated = json.loads(capsys.readouterr().out)
    assert (updated["rate_limit_per_second"], updated["rate_limit_burst"]) == (0.5, 100)
    assert main(["sources", "update", "rl", "--no-rate-limit"]) == 0
    lifted = json.loads(capsys.readouterr().out)
    assert (lifted["rate_limit_per_second"], lifted["rate_limit_burst"]) == (None, None)
    assert main(["sources", "update", "rl", "--rate-limit", "0"]) == 2
    assert "rate_limit_per_second" in capsys.readouterr().err


def test_the_snippet_uses_the_public_url(
    sqlite_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRACKWAY_HOST", "0.0.0.0")
    assert main(["sources", "create", "--dialect", "tracardi", "--name", "w", "--id", "a"]) == 0
    err = capsys.readouterr().err
    assert "http://localhost:8686" in err and "TRACKWAY_PUBLIC_URL" in err  # and how to fix it
    monkeypatch.setenv("TRACKWAY_PUBLIC_URL", "https://track.example.com/")
    assert main(["sources", "create", "--dialect", "tracardi", "--name", "w", "--id", "b"]) == 0
    err = capsys.readouterr().err
    assert '"https://track.example.com/tracker"' in err or "https://track.example.com/" in err
    assert "localhost" not in err
    monkeypatch.setenv("TRACKWAY_PUBLIC_URL", "track.example.com")
    assert main(["migrate"]) == 2
    assert "TRACKWAY_PUBLIC_URL" in capsys.readouterr().err
