"""Logs without values: a failed request's exception is logged by its kind and place, not its text.

The text of a database error holds what was being written: SQLAlchemy appends the bound
``[parameters: ...]`` (a source's secret on a failed create; the properties, traits and IPs
of every request of a failed group commit), and PostgreSQL's ``DETAIL`` repeats key values
(``Key (scope, kind, value)=(..., email_sha256, ...) already exists``). The engine hides the
parameters (``hide_parameters=True``, ``db/engine.py``); this filter does the rest for every
record of Trackway's loggers and of uvicorn's error logger (which logs an exception that
escaped the app): an exception becomes its traceback's frames, each exception's type, and
for database errors the SQLSTATE and the constraint, table and column names, which are
schema, not data. Its message is left out, and so is any exception passed as an argument.
uvicorn's access log keeps each request's path, not its query string (``AccessLogFilter``).

A base-layer module: it imports nothing from Trackway but ``clientip``.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any, Final

from trackway.clientip import mask_ip

#: Loggers whose records may carry an exception: Trackway's (all of them) and uvicorn's.
REDACTED_LOGGERS: Final = ("trackway", "uvicorn.error")
#: Attributes of asyncpg's errors (directly or as a DBAPI error's ``orig``) that name schema.
_SCHEMA_ATTRIBUTES: Final = ("sqlstate", "constraint_name", "table_name", "column_name")


def describe(exc: BaseException) -> str:
    """``IntegrityError (sqlstate 23505, constraint_name pk_sources)``: the kind, never the text."""
    names = [type(exc).__name__]
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        names.append(type(orig).__name__)
    facts = []
    for holder in (exc, orig):
        for attribute in _SCHEMA_ATTRIBUTES:
            value = getattr(holder, attribute, None)
            if isinstance(value, str) and value and f"{attribute} {value}" not in facts:
                facts.append(f"{attribute} {value}")
    if (code := getattr(exc, "code", None)) and isinstance(code, str):
        facts.append(f"sqlalchemy code {code}")
    text = " / ".join(names)
    return f"{text} ({', '.join(facts)})" if facts else text


def redacted_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes, frames and kinds only (message redacted)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts: list[str] = []
    for index, item in enumerate(reversed(chain)):
        if index:
            parts.append("\nThe above led to:\n\n")
        parts.append("Traceback (most recent call last; values redacted):\n")
        parts.extend(traceback.format_tb(item.__traceback__))
        parts.append(f"{describe(item)}: [message redacted]")
    return "".join(parts)


class RedactingFilter(logging.Filter):
    """Replaces a record's exception by ``redacted_traceback`` and exception arguments by
    ``describe``; the record is kept (a filter that dropped it would hide the failure)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redacted_traceback(record.exc_info[1])
            record.exc_info = None
        elif record.exc_info:
            record.exc_info = None
        if record.args:
            record.args = _redact_args(record.args)
        return True


def _redact_args(args: Any) -> Any:
    if isinstance(args, tuple):
        return tuple(describe(a) if isinstance(a, BaseException) else a for a in args)
    if isinstance(args, dict):
        return {k: describe(v) if isinstance(v, BaseException) else v for k, v in args.items()}
    return args


class AccessLogFilter(logging.Filter):
    """uvicorn's access log (off unless ``TRACKWAY_ACCESS_LOG``) without query strings:
    Tracktor's and InSend's GET calls carry emails, person ids and properties there
    (``/set?sid=...&data={"email": ...}``); with ``mask_ip`` the client's address is masked
    as it is stored, and its port left out."""

    mask_ip = False

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        # uvicorn: '%s - "%s %s HTTP/%s" %d' % (client, method, path?query, version, status)
        if isinstance(args, tuple) and len(args) == 5 and isinstance(args[2], str):
            client, path = args[0], args[2]
            if "?" in path:
                path = path.partition("?")[0] + "?[query redacted]"
            if self.mask_ip and isinstance(client, str):
                client = mask_ip(client.rpartition(":")[0] or client)
            record.args = (client, args[1], path, *args[3:])
        return True


_FILTER: Final = RedactingFilter()
_ACCESS_FILTER: Final = AccessLogFilter()


def install(*, mask_ip: bool = False) -> None:
    """Put the filter on every Trackway logger that exists and on uvicorn's error logger.

    A logger's filters see only the records made on that logger, not its children's, so
    each is filtered itself; the app imports every module (and so makes every logger)
    before it calls this. Idempotent: ``create_app`` calls it for each app.
    """
    names = [
        name
        for name in list(logging.root.manager.loggerDict)
        if any(name == root or name.startswith(root + ".") for root in REDACTED_LOGGERS)
    ]
    for name in {*names, *REDACTED_LOGGERS}:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    _ACCESS_FILTER.mask_ip = mask_ip
    access = logging.getLogger("uvicorn.access")
    if _ACCESS_FILTER not in access.filters:
        access.addFilter(_ACCESS_FILTER)
