"""Suppression in the write path: a batch naming an erased person's key is answered, not stored.

An erasure with ``suppress`` leaves the person's strong keys (email hash, person, visitor
and guest ids, and the profile ids themselves: what a Tracardi tracker sends back) in
``suppressions``, as hashes (``db/erasure.key_hash``). The write path asks only about keys
that name no stored profile once its profiles are locked: a suppressed key never has an
identity row (the erasure deleted it in the transaction that suppressed it, and nothing
links it since), so a returning visitor's batch, whose keys all name someone, pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import IngestBatch
from trackway.db.erasure import PROFILE_KIND, WEAK_KINDS, key_hash, suppressed_hashes

Key = tuple[str, str, str]


def named_keys(batch: IngestBatch) -> Iterator[Key]:
    """Every key of a batch that suppression covers: its strong identities, both sides of its
    merges, and its profile hint (as ``("", "profile", id)``)."""
    for ref in (*batch.identities, *(r for m in batch.merges for r in (m.src, m.dest))):
        if ref.strong and ref.kind not in WEAK_KINDS:
            yield (ref.scope, ref.kind, ref.value)
    if batch.profile_hint:
        yield ("", PROFILE_KIND, batch.profile_hint)


async def suppressed_batches(
    db: AsyncConnection, batches: list[IngestBatch], unknown: Callable[[Key], bool]
) -> tuple[set[int], set[str]]:
    """The indexes of the batches naming a suppressed key, and the hashes of the keys looked up
    and found free (for ``still_free``). Only keys for which ``unknown`` is true are looked up,
    in one statement; none, no statement."""
    asked: dict[int, list[str]] = {}
    for index, batch in enumerate(batches):
        hashes = [key_hash(*key) for key in named_keys(batch) if unknown(key)]
        if hashes:
            asked[index] = hashes
    if not asked:
        return set(), set()
    found = await suppressed_hashes(db, (h for hashes in asked.values() for h in hashes))
    dropped = {index for index, hashes in asked.items() if not found.isdisjoint(hashes)}
    free = {h for index, hashes in asked.items() if index not in dropped for h in hashes}
    return dropped, free


async def still_free(db: AsyncConnection, hashes: set[str]) -> bool:
    """After the group's writes: none of the keys it found free was suppressed meanwhile.

    On PostgreSQL an erasure may commit between the group's check and its insert of an
    identity the erasure just deleted (the insert waited for it): the group then starts again
    and finds the key suppressed. SQLite runs one write transaction at a time: never.
    """
    if not hashes or db.dialect.name != "postgresql":
        return True
    return not await suppressed_hashes(db, hashes)
