"""One structured line per request, and the formats of every line Trackway's server writes.

Each HTTP request gets a ``RequestNote`` for as long as it runs, reachable from anywhere in
its task (a ``ContextVar``): the code that makes a decision writes it there, where it is
made, and ``RequestLogMiddleware`` writes the one line when the request is answered:

* the source a request names: ``SourceDirectory.authenticate`` (``core/sources.py``);
* why it was refused: the ``reason`` of the ``TrackwayError`` raised by the check that
  refused it (``unknown_source``, ``wrong_dialect``, ``bad_key``, ``bad_signature``,
  ``invalid``, ``db_unavailable``, ...), noted by the error handlers (``api/errors.py``);
* what was stored: the writers (``core/ingest.py``, ``core/group_commit.py``), once the
  request's transaction committed.

The line holds no value a client sent: no query string, no body, the route's template
instead of the path (``/api/profiles/{profile_id}``; an unmatched path is not logged at
all), and the client IP masked when ``TRACKWAY_MASK_IP`` is on, as it is stored.
Its cost is a small object, a context variable set and reset, and one log record.

A base-layer module: it imports nothing from Trackway but other base modules.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from typing import Any, Final, Literal

from trackway import jsonutil
from trackway.clientip import mask_ip
from trackway.metrics import ASGIApp, Receive, Scope, Send, request_dialect

#: The logger of the request lines; its records carry the line's fields as ``record.request``.
log = logging.getLogger("trackway.request")

LogFormat = Literal["json", "text"]


class RequestNote:
    """What the parts of one request decided, for its log line."""

    __slots__ = ("dialect", "duplicates", "reason", "source", "stored")

    def __init__(self) -> None:
        self.dialect: str | None = None
        self.source: str | None = None
        self.reason: str | None = None
        self.stored = 0
        self.duplicates = 0


_CURRENT: ContextVar[RequestNote | None] = ContextVar("trackway_request_note", default=None)


def current() -> RequestNote | None:
    """The note of the request running in this task (``None`` outside a request: a job, a test)."""
    return _CURRENT.get()


def note_source(source_id: str, dialect: str) -> None:
    """The source (and so the dialect) a request named, as the source check saw it."""
    note = _CURRENT.get()
    if note is not None:
        note.source = source_id
        note.dialect = dialect


def note_reason(reason: str | None) -> None:
    """Why the request was refused or failed; the first reason noted stands."""
    note = _CURRENT.get()
    if note is not None and note.reason is None:
        note.reason = reason


def note_stored(stored: int, duplicates: int) -> None:
    """Events the request's committed transaction stored, and the duplicates it skipped."""
    note = _CURRENT.get()
    if note is not None:
        note.stored += stored
        note.duplicates += duplicates


class RequestLogMiddleware:
    """Pure ASGI middleware: one ``trackway.request`` record per HTTP request, when it ends.

    An exception that escapes the app (a 500 further out) is logged as status 500 with
    reason ``internal_error``; a request cancelled before any answer (the client left) as
    status 499, ``client_closed``.
    """

    def __init__(self, app: ASGIApp, *, mask_ip: bool) -> None:
        self.app = app
        self.mask_ip = mask_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        note = RequestNote()
        token = _CURRENT.set(note)
        status = 0

        async def send_noting(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        except Exception:
            if not status:
                status = 500
            note.reason = note.reason or "internal_error"
            raise
        finally:
            _CURRENT.reset(token)
            if not status:
                status, note.reason = 499, note.reason or "client_closed"
            self._log(scope, note, status, time.perf_counter() - started)

    def _log(self, scope: Scope, note: RequestNote, status: int, seconds: float) -> None:
        route = scope.get("route")
        if route is not None:
            path = getattr(route, "path", None)
        else:  # the lean collector routes (dialects/routes.py): matched, fixed paths without parameters
            path = scope["path"] if "endpoint" in scope else None
        dialect = note.dialect
        if dialect is None:
            dialect = request_dialect(scope["method"], scope["path"], _content_type(scope))
        client = scope.get("client")
        ip = client[0] if client else None
        if ip and self.mask_ip:
            ip = mask_ip(ip)
        # makeRecord and handle, not info(): info() looks up its caller's frame, a third of a
        # record's cost, for a line that never prints it.
        record = log.makeRecord(
            log.name,
            logging.INFO,
            __file__,
            0,
            "request",
            None,
            None,
            extra={
                "request": {
                    "method": scope["method"],
                    "path": path,
                    "dialect": dialect,
                    "source": note.source,
                    "status": status,
                    "reason": note.reason,
                    "latency_ms": round(seconds * 1000, 3),
                    "events": note.stored,
                    "duplicates": note.duplicates,
                    "ip": ip,
                }
            },
        )
        log.handle(record)


def _content_type(scope: Scope) -> str:
    if scope["method"] != "POST":
        return ""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1"))
    return ""


# --- formats -----------------------------------------------------------------------------------


_second: list[Any] = [None, ""]


def _iso(created: float) -> str:
    """``2026-12-02T10:04:11.532Z``; the part up to the second is formatted once a second."""
    seconds = int(created)
    if _second[0] != seconds:
        _second[0], _second[1] = seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{_second[1]}.{int((created - seconds) * 1000):03d}Z"


def _lean_records() -> None:
    """The formats below print no thread or process names: records need not look them up
    (``logging``'s documented switches; set where ``trackway serve`` installs these formats)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class JsonFormatter(logging.Formatter):
    """Every record as one JSON object on one line: ``time``, ``level``, ``logger``, ``msg``,
    a request line's fields, and an exception's (redacted, ``logsafe.py``) traceback as ``exc``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _lean_records()

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"time": _iso(record.created), "level": record.levelname.lower()}
        data["logger"] = record.name
        fields = getattr(record, "request", None)
        data["msg"] = record.getMessage()
        if isinstance(fields, dict):
            data.update(fields)
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exc:
            data["exc"] = exc
        return jsonutil.dumps_str(data)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message``, a request line's fields as ``key=value``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _lean_records()

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "request", None)
        if isinstance(fields, dict):
            message = " ".join(f"{key}={'-' if value is None else value}" for key, value in fields.items())
        else:
            message = record.getMessage()
        line = f"{_iso(record.created)} {record.levelname} {record.name}: {message}"
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        return f"{line}\n{exc}" if exc else line


FORMATTERS: Final = {"json": JsonFormatter, "text": TextFormatter}


def log_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """``logging.dictConfig`` for ``trackway serve`` (uvicorn applies it in every worker):
    Trackway's and uvicorn's records, in one format, on stderr."""
    formatter = FORMATTERS[log_format]
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"trackway": {"()": f"{formatter.__module__}.{formatter.__qualname__}"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "trackway",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"level": level.upper()},
            "trackway": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
        },
    }
