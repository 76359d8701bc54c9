"""Statements built once with bind parameters instead of per call.

Building an SQLAlchemy Core statement is Python work: coercing every clause, then
computing the cache key that finds its compiled form. A statement built once keeps its
cache key, so each call only binds its values.
Statements that differ between SQLite and PostgreSQL (``INSERT ... ON CONFLICT``) are
built once per dialect.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam, select, text, tuple_

from trackway.db.models import identities, profiles
from trackway.db.sql import insert_ignore

#: The live-or-merged state of one profile.
MERGED_INTO = select(profiles.c.merged_into).where(profiles.c.id == bindparam("id"))

#: Identities by key with their profile's ``merged_into``, on PostgreSQL: three arrays, one
#: statement text whatever their count.
PG_IDENTITY_OWNERS = text(
    """
    SELECT i.scope, i.kind, i.value, i.profile_id, p.merged_into FROM identities i
    JOIN unnest(CAST(:scopes AS varchar[]), CAST(:kinds AS varchar[]), CAST(:keys AS varchar[]))
         AS k(scope, kind, value)
      ON i.scope = k.scope AND i.kind = k.kind AND i.value = k.value
    JOIN profiles p ON p.id = i.profile_id
    """
)

#: Identities by key elsewhere (SQLite): a row-value ``IN`` list.
IDENTITY_OWNERS = (
    select(
        identities.c.scope,
        identities.c.kind,
        identities.c.value,
        identities.c.profile_id,
        profiles.c.merged_into,
    )
    .join(profiles, profiles.c.id == identities.c.profile_id)
    .where(
        tuple_(identities.c.scope, identities.c.kind, identities.c.value).in_(
            bindparam("refs", expanding=True)
        )
    )
)


@functools.cache
def link_identity(dialect: str) -> Any:
    """``INSERT`` an identity unless its key exists; returns a row only when it inserted."""
    return insert_ignore(dialect, identities, ["scope", "kind", "value"]).returning(identities.c.profile_id)
