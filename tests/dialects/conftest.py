"""Every dialect test runs on both write paths (issue #13): group commit on, as deployed by
default, and off (one transaction per request). A test that sets ``group_commit`` in its
``settings_overrides`` keeps its setting and runs once."""

from __future__ import annotations

from typing import Any

import pytest

from trackway.settings import Settings


@pytest.fixture(params=["group", "per-batch"])
def write_path(request: pytest.FixtureRequest, settings_overrides: dict[str, Any]) -> str:
    path: str = request.param
    if "group_commit" in settings_overrides and settings_overrides["group_commit"] != (path == "group"):
        pytest.skip("the test sets group_commit itself")
    return path


@pytest.fixture
def settings(settings: Settings, settings_overrides: dict[str, Any], write_path: str) -> Settings:
    """The suite's settings (``tests/conftest.py``) on the write path of this run."""
    if "group_commit" in settings_overrides:
        return settings
    return settings.model_copy(update={"group_commit": write_path == "group"})
