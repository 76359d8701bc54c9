"""Every dialect test runs on both write paths (issue #13): group commit on, as deployed by
default, and off (one transaction per request). A test that sets ``group_commit`` in its
``settings_overrides`` keeps its setting and runs once."""

from __future__ import annotations

import os
from pathlib import Path
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


#: Tests of requests refused before the ingest core (401, 403, 413, 415, 422, and the tracker
#: script, which writes nothing): the write path cannot change their answer, so they run on
#: group commit only. Two thirds of the suite's cases; running them twice doubled its time.
#: ``TRACKWAY_DIALECTS_EVERY_TEST_TWICE=1`` runs them on both paths too.
REFUSED_BEFORE_THE_CORE = frozenset(
    {
        "test_bad_input_is_422_naming_the_field",
        "test_bad_parameter_is_422_naming_it",
        "test_invalid_predefined_property_is_422_and_not_stored",
        "test_signed_only_refuses_missing_or_wrong_signatures",
        "test_invalid_app_key_is_401",
        "test_invalid_source_is_401_and_writes_nothing",
        "test_invalid_source_is_401_with_seed_body",
        "test_422_lists_every_invalid_event_by_index_and_field",
        "test_a_body_that_is_no_json_object_is_422",
        "test_body_that_is_not_utf8_is_422",
        "test_not_a_form_body_is_415",
        "test_post_body_that_is_not_a_form_is_415",
        "test_parameter_given_twice_is_422",
        "test_tracker_is_served_with_type_etag_and_cache_lifetime",
        "test_tracker_is_gzipped_when_accepted_with_its_own_etag",
        "test_tracker_revalidation_is_a_304",
        "test_tracker_changed_etag_gets_the_script",
        "test_tracker_head",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("TRACKWAY_DIALECTS_EVERY_TEST_TWICE") == "1":
        return
    here = Path(__file__).parent
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            callspec is not None
            and callspec.params.get("write_path") == "per-batch"
            and getattr(item, "originalname", "") in REFUSED_BEFORE_THE_CORE
            and here in Path(str(item.path)).parents
        ):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
