"""Text the admin and read API accepts: what PostgreSQL and SQLite can both store and compare.

PostgreSQL refuses ``\\u0000`` in text and no driver can encode a lone surrogate; either
reaching the database was a 500 (``DataError`` on PostgreSQL, an encode error on both)
after the request had been accepted. These types refuse them as a 422 naming the field,
the same on both databases, before anything runs. Lengths are bounded by the widest
column a value can match (255 characters), so a longer id is a 422 too, never a query.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator

#: The widest text column a path or query id can be compared with (identity values).
MAX_ID_LENGTH = 255


def storable_text(value: str) -> str:
    """``value`` unchanged, or a ``ValueError`` (a 422) for text no database stores."""
    if "\x00" in value:
        raise ValueError("must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return value


#: Any text field of an admin body (a name, a secret, an origin).
StorableText = Annotated[str, AfterValidator(storable_text)]

#: An id in an admin or read API path (``/api/profiles/{profile_id}``...).
PathId = Annotated[str, Path(min_length=1, max_length=MAX_ID_LENGTH), AfterValidator(storable_text)]
