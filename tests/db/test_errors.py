"""asyncpg's own errors, which the PostgreSQL write path gets unwrapped, are classified too."""

from __future__ import annotations

import asyncpg

from trackway.db.errors import is_retryable, is_unavailable


def test_raw_asyncpg_errors_are_classified_by_their_sqlstate() -> None:
    assert is_retryable(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))
    assert is_retryable(asyncpg.exceptions.SerializationError("could not serialize"))
    assert is_unavailable(asyncpg.exceptions.AdminShutdownError("terminating connection"))
    assert is_unavailable(asyncpg.exceptions.CannotConnectNowError("the database system is starting up"))
    assert is_unavailable(asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"))
    assert not is_retryable(asyncpg.exceptions.NotNullViolationError("null value"))
    assert not is_unavailable(asyncpg.exceptions.NotNullViolationError("null value"))
