"""The source cache: one lookup per expiry, however many requests ask at once."""

from __future__ import annotations

import asyncio

import pytest

from trackway.core import sources as source_module
from trackway.core.sources import SourceDirectory
from trackway.errors import InvalidSource

SOURCE = "3ee63fc6-490a-4fd8-bfb3-bf0c8c8d3387"


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every database lookup the directory makes (the real one still runs)."""
    seen: list[str] = []
    real = source_module.get_source

    async def counting(uow, source_id):  # type: ignore[no-untyped-def]
        seen.append(source_id)
        await asyncio.sleep(0.01)  # let the other callers arrive while it is in flight
        return await real(uow, source_id)

    monkeypatch.setattr(source_module, "get_source", counting)
    return seen


async def test_concurrent_misses_share_one_lookup(uow, tracardi_source, lookups) -> None:
    directory = SourceDirectory(uow, ttl=60)
    found = await asyncio.gather(*(directory.get(SOURCE) for _ in range(50)))
    assert {info.id for info in found if info} == {SOURCE}
    assert lookups == [SOURCE]
    await directory.get(SOURCE)
    assert lookups == [SOURCE]  # cached


async def test_unknown_source_is_cached_too_and_invalidate_forgets(uow, tracardi_source, lookups) -> None:
    directory = SourceDirectory(uow, ttl=60)
    for _ in range(3):
        with pytest.raises(InvalidSource):
            await directory.authenticate("nope", "tracardi")
    assert lookups == ["nope"]
    directory.invalidate("nope")
    assert await directory.get("nope") is None
    assert lookups == ["nope", "nope"]


async def test_a_lookup_started_before_invalidate_does_not_refill_the_cache(
    uow, tracardi_source, lookups
) -> None:
    directory = SourceDirectory(uow, ttl=60)
    pending = asyncio.create_task(directory.get(SOURCE))
    await asyncio.sleep(0)
    directory.invalidate(SOURCE)
    assert (await pending) is not None
    await directory.get(SOURCE)
    assert lookups == [SOURCE, SOURCE]


async def test_a_cancelled_caller_does_not_cancel_the_others(uow, tracardi_source, lookups) -> None:
    directory = SourceDirectory(uow, ttl=60)
    first = asyncio.create_task(directory.get(SOURCE))
    second = asyncio.create_task(directory.get(SOURCE))
    await asyncio.sleep(0)
    first.cancel()
    assert (await second) is not None
    assert lookups == [SOURCE]
