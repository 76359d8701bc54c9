"""The one error family. The core and the dialects raise these; ``api/errors.py`` maps them to HTTP."""

from __future__ import annotations

import math
from typing import Any


class TrackwayError(Exception):
    """Base of every error Trackway reports to a client."""

    status_code = 500
    detail: Any = "Internal error."
    #: Why, in a word, for the request log (``requestlog.py``): decided where the error is
    #: raised; a raise site that knows more passes its own (``InvalidSource(reason="wrong_dialect")``).
    reason = "internal_error"

    def __init__(self, detail: Any = None, *, reason: str | None = None) -> None:
        if detail is not None:
            self.detail = detail
        if reason is not None:
            self.reason = reason
        super().__init__(str(self.detail))

    def body(self) -> dict[str, Any]:
        return {"detail": self.detail}

    def headers(self) -> dict[str, str] | None:
        return None


class InvalidSource(TrackwayError):
    """The source named by the request is unknown, disabled, or of another dialect."""

    status_code = 401
    detail = "Access denied. Invalid source."
    reason = "unknown_source"


class Unauthorized(TrackwayError):
    """The admin API was called without the right bearer token."""

    status_code = 401
    detail = "Missing or invalid bearer token."
    reason = "bad_token"

    def headers(self) -> dict[str, str] | None:
        return {"WWW-Authenticate": "Bearer"}


class BadSignature(TrackwayError):
    """A signed identity is missing where required, or its signature does not verify."""

    status_code = 403
    detail = "Invalid or missing signature."
    reason = "bad_signature"


class OriginNotAllowed(TrackwayError):
    """The request's Origin is not among the origins its source allows."""

    status_code = 403
    detail = "Origin not allowed for this source."
    reason = "origin_not_allowed"


class NotFound(TrackwayError):
    """A read API id that names nothing."""

    status_code = 404
    detail = "Not found."
    reason = "not_found"


class Conflict(TrackwayError):
    """A create that collides with an existing row (a source id already taken)."""

    status_code = 409
    detail = "Already exists."
    reason = "conflict"


class RequestTimeout(TrackwayError):
    """The request's body did not arrive within ``body_timeout_seconds``: a stalled or
    trickling upload must not hold a connection (and a file descriptor) for ever."""

    status_code = 408
    detail = "The request body did not arrive in time."
    reason = "body_timeout"

    def headers(self) -> dict[str, str] | None:
        # The unread rest of the body is still on the connection: it cannot serve another request.
        return {"Connection": "close"}


class ClientClosedRequest(TrackwayError):
    """The client hung up before its request's body was complete: nobody is left to answer.

    Counted as status 499 (nginx's "client closed request") in the metrics; no response reaches anyone.
    """

    status_code = 499
    detail = "Client closed the request."
    reason = "client_closed"


class PayloadTooLarge(TrackwayError):
    """A body over ``max_body_bytes`` or a batch over ``max_batch_events``."""

    status_code = 413
    detail = "Payload too large."
    reason = "too_large"


class RateLimited(TrackwayError):
    """The source sent more requests than its ``rate_limit_per_second`` (and burst) allow."""

    status_code = 429
    reason = "rate_limited"

    def __init__(self, *, rate: float, burst: int, retry_after: float) -> None:
        #: Whole seconds, as ``Retry-After`` takes them; at least one.
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(
            f"Rate limit of {rate:g} requests per second (burst {burst}) exceeded for this source; "
            f"retry after {self.retry_after} s."
        )

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}


class ValidationFailed(TrackwayError):
    """Input that parsed but is wrong; ``detail`` is a list of ``{loc, msg, type}`` like pydantic's."""

    status_code = 422
    reason = "invalid"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)

    @classmethod
    def field(
        cls, loc: tuple[str | int, ...] | list[str | int], msg: str, type_: str = "value_error"
    ) -> ValidationFailed:
        return cls([{"loc": list(loc), "msg": msg, "type": type_}])


class StorageUnavailable(TrackwayError):
    """The database cannot be reached or keeps failing; nothing was acknowledged."""

    status_code = 503
    detail = "Storage unavailable, retry later."
    reason = "db_unavailable"

    def __init__(self, detail: Any = None, retry_after: int = 1, *, reason: str | None = None) -> None:
        super().__init__(detail, reason=reason)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return {"Retry-After": str(self.retry_after)}
