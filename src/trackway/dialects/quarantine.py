"""The quarantine: a collector request rejected with a 4xx for a known source is kept, to be
read, fixed and replayed (``dialects/replay.py``), instead of being lost with its data.

One place keeps them all: ``api/errors.py`` answers every ``TrackwayError`` (422, 413, 415...)
and hands the answer to ``Quarantine.keep``, whatever route raised it. Kept are the requests
that reached a dialect's route, were answered 4xx other than 401 and 403, and name a source
that exists, speaks that dialect, is enabled and allows the request's ``Origin``; for Tracify
the ``X-API-Key`` must also be that source's secret (a replay is sent with the source's key:
a request nobody proved could never be replayed as a trusted one). 401 and 403 are not kept:
they are answers about credentials, and the request named no source it could write to.
408 (the body never arrived) is not kept either: there is no request to replay.

Each row has the dialect, the source, the status and the JSON body the client got, and the
raw request: method, path, query, the body as read (at most ``TRACKWAY_MAX_BODY_BYTES``,
cut there and marked when it was larger), the client IP (masked with ``TRACKWAY_MASK_IP``)
and the headers without credentials: ``Authorization``, cookies, ``X-API-Key``, any header
naming a token, key, secret, signature, session or password, the forwarding headers
(Trackway never reads them; they repeat the client's IP) and the hop-by-hop ones.

Keeping never fails or slows the accepted path (only a rejection runs any of this) and never
turns a 4xx into a 5xx: a row that cannot be written within ``STORE_TIMEOUT`` seconds is
given up, logged and counted (``trackway_rejections_total{outcome="failed"}``), and the
client gets its 4xx as it would have. A flood is capped per source by ``FloodCap``: at most
``TRACKWAY_REJECTIONS_PER_MINUTE`` rows per source and minute **in each process** (a counter
in memory: a flood costs a dictionary lookup, no query), so with N workers a source may keep
N times that. What the cap leaves out is counted (``outcome="capped"``).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

from trackway import jsonutil
from trackway.core.sources import SOURCE_ID_RE, SourceInfo
from trackway.db import rejections as statements
from trackway.dialects import dispatch, insend, segment, tracify, tracktor
from trackway.dialects._common import BODY_KEY, BODY_TRUNCATED_KEY, mask_ip, media_type
from trackway.metrics import Metrics
from trackway.services import services_of

log = logging.getLogger(__name__)

#: Set on the scope of a replayed request (``dialects/replay.py``): its answer goes back to
#: the replay, which records it on the rejection it came from, instead of a new row.
REPLAY_KEY = "trackway.replay"
#: Statuses never kept: credentials (401, 403), a body that never arrived (408), a client gone (499).
NOT_KEPT = frozenset({401, 403, 408, 499})
#: The ``reason`` code of a status, for filtering (``GET /api/rejections?reason=invalid``).
REASONS = {
    400: "bad_request",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "rate_limited",
}
#: Seconds a rejection may take to be written before it is given up (and counted).
STORE_TIMEOUT = 2.0

#: Headers never kept, by name; and any header whose name holds one of the words after it.
_DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "x-api-key",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "upgrade",
        "forwarded",
        "x-forwarded-for",
        "x-real-ip",
    }
)
_CREDENTIAL_WORDS = ("auth", "token", "secret", "signature", "key", "password", "session", "cookie")

#: The source of a JSON body that does not parse (cut at the size limit, a sender's bad
#: escape): the first ``"source": {"id": "..."}`` (Tracardi) or ``"customer_site_id"`` (Tracify).
_TRACARDI_SOURCE_RE = re.compile(rb'"source"\s*:\s*\{\s*"id"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
_TRACIFY_SITE_RE = re.compile(rb'"customer_site_id"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')

#: The endpoints of the dialects' routes (``dispatch.track`` decides by its body).
_ENDPOINT_DIALECTS: dict[Any, str] = {
    tracktor.set_properties: tracktor.DIALECT,
    tracktor.track: tracktor.DIALECT,
    tracktor.alias: tracktor.DIALECT,
    insend.watch_event: insend.DIALECT,
    tracify.tracify_events: tracify.DIALECT,
}


def reason_of(status: int) -> str:
    return REASONS.get(status, f"http_{status}")


def dialect_of(request: Request, body: bytes) -> str | None:
    """The dialect whose route the request reached, or ``None`` (not a collector route)."""
    endpoint = request.scope.get("endpoint")
    if endpoint is dispatch.track:
        return dispatch.dialect_of(tracktor.is_form_request(request), body)
    if endpoint in segment.ENDPOINTS:
        return segment.DIALECT
    return _ENDPOINT_DIALECTS.get(endpoint)


def kept_headers(raw: list[tuple[bytes, bytes]]) -> list[list[str]]:
    """The request's headers as ``[name, value]`` pairs, without any that carries a credential."""
    kept = []
    for name_bytes, value_bytes in raw:
        name = name_bytes.decode("latin-1").lower()
        if name in _DROPPED_HEADERS or any(word in name for word in _CREDENTIAL_WORDS):
            continue
        kept.append([name, value_bytes.decode("latin-1").replace("\x00", "")])
    return kept


def _fields(raw: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=256)
    except ValueError:
        return []


def _field(request: Request, body: bytes, name: str, form_types: frozenset[str]) -> str | None:
    """The last value of a url-encoded field, the form body's over the query's, as the dialects read it."""
    found = None
    for key, value in _fields(request.scope.get("query_string", b"")):
        if key == name:
            found = value
    if body and media_type(request) in form_types:
        for key, value in _fields(body):
            if key == name:
                found = value
    return found


def _json(body: bytes) -> Any:
    try:
        return jsonutil.loads(body)
    except ValueError:
        return None


def named_source(dialect: str, request: Request, body: bytes) -> str | None:
    """The source id the request names, read the way its dialect reads it, leniently: a request
    rejected for its content may still say plainly whose it is."""
    if dialect == tracktor.DIALECT:
        return _field(request, body, "sid", frozenset({tracktor.FORM}))
    if dialect == insend.DIALECT:
        return _field(request, body, "app_key", insend.FORM_TYPES)
    payload = _json(body)
    if dialect == segment.DIALECT:  # HTTP Basic's user name, else the body's writeKey
        return segment.write_key(request, payload if isinstance(payload, dict) else {})
    if dialect == tracify.DIALECT:
        if isinstance(payload, dict) and isinstance(payload.get("events"), list):
            sites = tracify.named_sites(payload["events"])
        else:
            sites = {match.decode() for match in _TRACIFY_SITE_RE.findall(body)}
        return next(iter(sites)) if len(sites) == 1 else None
    source = payload.get("source") if isinstance(payload, dict) else None
    if isinstance(source, dict):
        source_id = source.get("id")
        return source_id if isinstance(source_id, str) else None
    match = _TRACARDI_SOURCE_RE.search(body)
    return match.group(1).decode() if match else None


def owns(info: SourceInfo | None, dialect: str, request: Request) -> bool:
    """Whether the request is the source's: the source would have let it through to its checks."""
    if info is None or not info.enabled or info.dialect != dialect:
        return False
    if not info.allows_origin(request.headers.get("origin")):
        return False
    if dialect == tracify.DIALECT:
        key = request.headers.get("x-api-key")
        return bool(info.secret and key and hmac.compare_digest(info.secret.encode(), key.encode()))
    return True


class FloodCap:
    """At most ``per_minute`` rejections kept per source in each clock minute, in this process.

    A counter in memory, not a query: a flood of bad requests costs a dictionary lookup each
    once its source's minute is full. The dictionary holds known sources only.
    """

    def __init__(self, per_minute: int, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._windows: dict[str, tuple[int, int]] = {}

    def allow(self, source_id: str) -> bool:
        minute = int(self._clock() // 60)
        start, used = self._windows.get(source_id, (minute, 0))
        if start != minute:
            used = 0
        if used >= self.per_minute:
            self._windows[source_id] = (minute, used)
            return False
        self._windows[source_id] = (minute, used + 1)
        return True


class Quarantine:
    """Keeps rejected collector requests (``keep``), capped per source and counted."""

    def __init__(self, metrics: Metrics, per_minute: int) -> None:
        self.metrics = metrics
        self.cap = FloodCap(per_minute)

    async def keep(self, request: Request, status: int, response: bytes) -> None:
        """Keep the request if it is a kept rejection. Never raises: the client gets its 4xx."""
        if not 400 <= status < 500 or status in NOT_KEPT or REPLAY_KEY in request.scope:
            return
        if "endpoint" not in request.scope:
            return
        dialect = None
        try:
            body: bytes = request.scope.get(BODY_KEY, b"")
            dialect = dialect_of(request, body)
            if dialect is None:
                return
            source_id = named_source(dialect, request, body)
            if source_id is None or not SOURCE_ID_RE.fullmatch(source_id):
                return
            services = services_of(request)
            async with asyncio.timeout(STORE_TIMEOUT):
                info = await services.sources.get(source_id)
                if not owns(info, dialect, request):
                    return
                if not self.cap.allow(source_id):
                    self.metrics.count_rejection(dialect, "capped")
                    return
                row = self._row(request, dialect, source_id, status, response, body)
                async with services.uow.transaction() as db:
                    await statements.insert_rejection(db, row)
        except Exception as exc:  # the database away or slow: the 4xx goes out all the same
            if dialect is not None:
                self.metrics.count_rejection(dialect, "failed")
            log.warning("a rejected %s request was not kept: %s", dialect or "collector", type(exc).__name__)
            return
        self.metrics.count_rejection(dialect, "kept")

    @staticmethod
    def _row(
        request: Request, dialect: str, source_id: str, status: int, response: bytes, body: bytes
    ) -> dict[str, Any]:
        settings = services_of(request).settings
        ip = request.client.host if request.client else None
        if ip and settings.mask_ip:
            ip = mask_ip(ip)
        return {
            "id": str(uuid.uuid4()),
            "received_at": datetime.now(UTC),
            "dialect": dialect,
            "source_id": source_id,
            "status": status,
            "reason": reason_of(status),
            "response": response.decode("utf-8", "replace"),
            "method": request.method[:8],
            "path": request.url.path[:255],
            "query": request.scope.get("query_string", b""),
            "headers": kept_headers(request.scope.get("headers", [])),
            "body": body,
            "body_truncated": bool(request.scope.get(BODY_TRUNCATED_KEY)),
            "client_ip": ip[:64] if ip else None,
        }
