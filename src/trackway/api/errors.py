"""The one table from error to HTTP: status, JSON body, headers. Every error body is JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from trackway.db.errors import is_unavailable
from trackway.errors import StorageUnavailable, TrackwayError
from trackway.responses import json_response

log = logging.getLogger("trackway")


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Response:
    try:
        return json_response(body, status_code=status, headers=headers)
    except TypeError:  # an error naming a client's string JSON cannot hold (a lone surrogate)
        return json_response(_printable(body), status_code=status, headers=headers)


def _printable(value: object) -> object:
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_printable(key): _printable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(item) for item in value]
    return value


async def _trackway_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TrackwayError)
    return _json(exc.status_code, exc.body(), exc.headers())


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return _json(422, {"detail": errors})


async def _storage_error(request: Request, exc: Exception) -> Response:
    """Database errors that reach a route: unreachable is a 503 to retry, anything else a 500."""
    if is_unavailable(exc):
        return await _trackway_error(request, StorageUnavailable())
    log.exception("unexpected database error", exc_info=exc)
    return _json(500, {"detail": "Internal error."})


async def _unexpected(_request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", exc_info=exc)
    return _json(500, {"detail": "Internal error."})


def install(app: FastAPI) -> None:
    app.add_exception_handler(TrackwayError, _trackway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for db_error in (DBAPIError, OSError, PoolTimeout):
        app.add_exception_handler(db_error, _storage_error)
    app.add_exception_handler(Exception, _unexpected)
