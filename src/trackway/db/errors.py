"""Classify database errors at the storage boundary: retry it, or report the store as down."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

#: serialization failure, deadlock, unique violation after a race.
_RETRY_SQLSTATES = {"40001", "40P01", "23505"}
#: connection failures, server shutting down or starting up, too many connections.
_DOWN_SQLSTATE_CLASSES = ("08", "57", "53")


def is_retryable(exc: BaseException) -> bool:
    """A conflict with a concurrent transaction: the same work may succeed if run again.

    Also for asyncpg's own errors, which the write path (``db/group_pg.py``) gets unwrapped.
    """
    if not isinstance(exc, DBAPIError):
        return getattr(exc, "sqlstate", None) in _RETRY_SQLSTATES
    if exc.connection_invalidated:
        return False
    code = getattr(exc.orig, "sqlstate", None)
    if code in _RETRY_SQLSTATES:
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "deadlock" in message


def is_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached (down, restarting, network, pool exhausted)."""
    if isinstance(exc, OSError | PoolTimeout | ConnectionError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None) or ""
        if code.startswith(_DOWN_SQLSTATE_CLASSES):
            return True
        if isinstance(exc, InterfaceError):
            return True
        orig = exc.orig
        if isinstance(orig, OSError | ConnectionError):
            return True
        name = type(orig).__name__ if orig is not None else ""
        if "Connection" in name or "CannotConnect" in name:
            return True
        if isinstance(exc, OperationalError) and "unable to open database" in str(orig):
            return True
    # asyncpg raises its own errors from the pool's connect and on the write path, outside
    # SQLAlchemy's wrapping.
    if not isinstance(exc, DBAPIError) and str(getattr(exc, "sqlstate", "") or "").startswith(
        _DOWN_SQLSTATE_CLASSES
    ):
        return True
    name = type(exc).__name__
    return "ConnectionDoesNotExist" in name or "CannotConnectNow" in name
