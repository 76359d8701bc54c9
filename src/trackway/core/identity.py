"""Find the live profile behind a hint or an identity, and link identities by insert-on-conflict."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import IdentityRef
from trackway.db import statements

#: Merges compress chains to one hop, so a longer walk means something is badly wrong.
MAX_CHAIN = 32


def email_sha256(email: str) -> str:
    """The global email identity: SHA-256 of the trimmed, lower-cased address, lower-case hex."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


async def live_profile_id(db: AsyncConnection, profile_id: str) -> str | None:
    """Follow ``merged_into`` to the surviving profile; ``None`` if the id names nothing."""
    current = profile_id
    for _ in range(MAX_CHAIN):
        merged_into = (await db.execute(statements.MERGED_INTO, {"id": current})).first()
        if merged_into is None:
            return None
        if merged_into[0] is None:
            return current
        current = merged_into[0]
    raise RuntimeError(f"merge chain from profile {profile_id} is longer than {MAX_CHAIN}")


async def link(db: AsyncConnection, dialect: str, ref: IdentityRef, profile_id: str, now: datetime) -> str:
    """Point ``ref`` at ``profile_id`` unless it already names someone; return who it names.

    Insert, re-read on conflict: two first hits for one person race, and the unique
    key picks the winner. The caller decides what a different owner means.
    """
    values: dict[str, Any] = {
        "scope": ref.scope,
        "kind": ref.kind,
        "value": ref.value,
        "profile_id": profile_id,
        "created_at": now,
    }
    result = await db.execute(statements.link_identity(dialect), values)
    if result.first() is not None:
        return profile_id
    key = {"scope": ref.scope, "kind": ref.kind, "value": ref.value}
    owner = (await db.execute(statements.IDENTITY_OWNER, key)).scalar_one()
    return await live_profile_id(db, owner) or owner
