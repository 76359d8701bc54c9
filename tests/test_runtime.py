"""The collector's GC thresholds: raised while the app runs, given back when it stops."""

from __future__ import annotations

import gc

from trackway.app import create_app
from trackway.runtime import gc_thresholds
from trackway.settings import Settings


def test_thresholds_are_raised_inside_and_restored_after() -> None:
    before = gc.get_threshold()
    with gc_thresholds(123_456):
        assert gc.get_threshold()[0] == 123_456
        assert gc.get_freeze_count() > 0  # what was alive at the start is left out of collections
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    with gc_thresholds(0):
        assert gc.get_threshold() == before


async def test_the_app_runs_with_the_configured_threshold(tmp_path) -> None:
    before = gc.get_threshold()
    app = create_app(
        Settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 't.db'}", gc_gen0_threshold=54_321)
    )
    async with app.router.lifespan_context(app):
        assert gc.get_threshold()[0] == 54_321
    assert gc.get_threshold() == before
