"""The one table from error to HTTP: status, JSON body, headers. Every error body is JSON."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.utils import is_body_allowed_for_status_code
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match

from trackway import requestlog
from trackway.db.errors import is_unavailable
from trackway.errors import ClientClosedRequest, StorageUnavailable, TrackwayError
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


async def _trackway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, TrackwayError)
    requestlog.note_reason(exc.reason)
    response = _json(exc.status_code, exc.body(), exc.headers())
    # The quarantine (dialects/quarantine.py) sees every error answer here, whatever raised it,
    # and keeps a collector request's 4xx; it never raises, so the answer is always this one.
    keep = getattr(request.app.state, "keep_rejection", None)
    if keep is not None and 400 <= exc.status_code < 500:
        await keep(request, exc.status_code, response.body)
    return response


async def _client_closed(request: Request, _exc: Exception) -> Response:
    """The client hung up mid-body: one line, no traceback, a 499 for the metrics that no one reads."""
    requestlog.note_reason(ClientClosedRequest.reason)
    log.info(
        "client closed the request before its body was complete: %s %s", request.method, request.url.path
    )
    return Response(status_code=ClientClosedRequest.status_code)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    requestlog.note_reason("invalid")
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    return _json(422, {"detail": errors})


#: The methods a 405's ``Allow`` may list: every one a route here could serve.
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method some route serves on the request's path, for a 405's ``Allow``.

    Starlette answers a 405 with the methods of the first route whose path matched; a path
    served by several routes (one per method, and the collector paths twice: lean and
    FastAPI) then listed only some of them. HEAD is listed where a route answers it (the
    lean collector routes do for GET, FastAPI's do not). Each method is tried against every route
    (FastAPI's included routers match through ``matches`` too); only 405s pay for it.
    """
    allowed: set[str] = set()
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            allowed.add(method)
    return ", ".join(sorted(allowed))


#: Starlette's own errors, named for the request log.
_HTTP_REASONS = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's and FastAPI's own errors (404, 405, a body that failed to read), as JSON.

    FastAPI turns any error while it reads a body into a 400 raised ``from`` that error; a
    body that timed out or a client that hung up is answered as itself (``limits.py``).
    """
    assert isinstance(exc, StarletteHTTPException)
    cause = exc.__cause__
    if isinstance(cause, ClientClosedRequest | ClientDisconnect):
        return await _client_closed(request, cause)
    if isinstance(cause, TrackwayError):
        return await _trackway_error(request, cause)
    headers = dict(exc.headers or {})
    requestlog.note_reason(_HTTP_REASONS.get(exc.status_code, "bad_request"))
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    return _json(exc.status_code, {"detail": exc.detail}, headers)


async def _storage_error(request: Request, exc: Exception) -> Response:
    """Database errors that reach a route: unreachable is a 503 to retry, anything else a 500."""
    if is_unavailable(exc):
        return await _trackway_error(request, StorageUnavailable())
    requestlog.note_reason("db_error")
    log.exception("unexpected database error", exc_info=exc)
    return _json(500, {"detail": "Internal error."})


async def _unexpected(_request: Request, exc: Exception) -> Response:
    requestlog.note_reason("internal_error")
    log.exception("unhandled error", exc_info=exc)
    return _json(500, {"detail": "Internal error."})


def install(app: FastAPI) -> None:
    app.add_exception_handler(ClientClosedRequest, _client_closed)
    app.add_exception_handler(ClientDisconnect, _client_closed)
    app.add_exception_handler(TrackwayError, _trackway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for db_error in (DBAPIError, OSError, PoolTimeout):
        app.add_exception_handler(db_error, _storage_error)
    app.add_exception_handler(Exception, _unexpected)
