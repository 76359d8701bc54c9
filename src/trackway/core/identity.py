"""Find the live profile behind a hint or an identity, and link identities by insert-on-conflict."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from trackway.core.batch import IdentityRef
from trackway.db import statements
from trackway.db.models import identities, profiles

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


async def create_profile(db: AsyncConnection, now: datetime, *, anonymous: bool) -> str:
    profile_id = str(uuid.uuid4())
    await db.execute(
        statements.CREATE_PROFILE,
        {
            "id": profile_id,
            "traits": {},
            "anonymous": anonymous,
            "visits": 0,
            "created_at": now,
            "updated_at": now,
            "last_seen_at": now,
        },
    )
    return profile_id


async def delete_unused_profile(db: AsyncConnection, profile_id: str) -> None:
    """Drop a profile this transaction created and then lost a race for: nothing points at it."""
    await db.execute(delete(profiles).where(profiles.c.id == profile_id))


async def lookup(db: AsyncConnection, refs: list[IdentityRef]) -> dict[IdentityRef, str]:
    """The live profile each known identity points at; unknown identities are absent."""
    if not refs:
        return {}
    if db.dialect.name == "postgresql":
        params = {
            "scopes": [r.scope for r in refs],
            "kinds": [r.kind for r in refs],
            "keys": [r.value for r in refs],
        }
        rows = (await db.execute(statements.PG_IDENTITY_OWNERS, params)).all()
    else:
        refs_in = [(r.scope, r.kind, r.value) for r in refs]
        rows = (await db.execute(statements.IDENTITY_OWNERS, {"refs": refs_in})).all()
    owners = {(row.scope, row.kind, row.value): (row.profile_id, row.merged_into) for row in rows}
    found: dict[IdentityRef, str] = {}
    for ref in refs:
        owner = owners.get((ref.scope, ref.kind, ref.value))
        if owner is None:
            continue
        profile_id, merged_into = owner
        # Most owners are live: only a merged one needs its chain followed.
        live = profile_id if merged_into is None else await live_profile_id(db, merged_into)
        if live is not None:
            found[ref] = live
    return found


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


async def unlink(db: AsyncConnection, ref: IdentityRef, profile_id: str) -> None:
    """Detach ``ref`` from ``profile_id`` (and only from it: another owner keeps its key)."""
    await db.execute(
        delete(identities).where(
            identities.c.scope == ref.scope,
            identities.c.kind == ref.kind,
            identities.c.value == ref.value,
            identities.c.profile_id == profile_id,
        )
    )


async def is_anonymous(db: AsyncConnection, profile_id: str) -> bool:
    flag = (await db.execute(select(profiles.c.anonymous).where(profiles.c.id == profile_id))).scalar_one()
    return bool(flag)


async def oldest(db: AsyncConnection, profile_ids: list[str]) -> str:
    """The profile that survives an identity-driven merge: the oldest, then the smallest id."""
    row = (
        await db.execute(
            select(profiles.c.id)
            .where(profiles.c.id.in_(profile_ids))
            .order_by(profiles.c.created_at, profiles.c.id)
            .limit(1)
        )
    ).scalar_one()
    return str(row)
