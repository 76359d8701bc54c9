"""Segment / RudderStack: the HTTP tracking API (``/v1/track``, ``/v1/batch``...), analytics.js' paths.

Every Segment and RudderStack SDK speaks this format: the server SDKs post ``/v1/batch``
(``analytics-python``, ``rudder-sdk-python``: JSON, Basic auth with the write key as user
name, often gzipped); analytics.js (``@segment/analytics-next``) posts one call to ``/t``,
``/i``, ``/p``, ``/s``, ``/g``, ``/a`` or a batch to ``/b`` as ``text/plain`` (a CORS
"simple" request: no preflight), with ``writeKey`` in the body. A source of dialect
``segment`` is named by its id, the write key.

The dialect parses, validates, authenticates and builds one ``IngestBatch`` per call;
identities, merges, traits and storage are the core's:

* ``userId`` is a strong, source-scoped identity (``user_id``); ``anonymousId`` a weak one
  (``anonymous_id``): it finds the device's profile, and when a call names both, the
  anonymous profile joins the user's (the core's rule for a weak key met with a strong one:
  only an anonymous profile joins, so a shared device never merges two signed-in people);
* ``alias`` (``previousId`` -> ``userId``) is an explicit merge; ``previousId`` may have been
  either kind of id, so both are folded into the user;
* ``identify`` patches traits (``null`` removes one, as Tracktor's ``/set``), and a valid
  ``email`` trait is the global ``email_sha256`` identity under the core's ``email_trait`` rule;
* ``track`` / ``page`` / ``screen`` / ``group`` are events; ``messageId`` is their
  ``dedup_key`` (unique per source in the database: a retried batch stores nothing twice,
  however late); ``group`` events are the person's memberships, their ``traits`` the group's.

Checks follow Segment's documented limits (32 KB a call, 500 KB and 2,500 calls a batch) and
its answers: every problem is a 400 with a JSON body naming it, a batch is all or nothing.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pydantic_core
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import TypeAdapter, ValidationError

from trackway import jsonutil
from trackway.core.batch import (
    EventIn,
    IdentityRef,
    IngestBatch,
    MergeRequest,
    RequestMeta,
    SourceRef,
    TraitsPatch,
)
from trackway.core.identity import email_sha256
from trackway.core.values import string_problem, time_problem, value_problem
from trackway.dialects._common import deep_merge, email_address, mask_ip, read_body, url_parameters
from trackway.errors import TrackwayError
from trackway.responses import json_response
from trackway.services import services_of

DIALECT = "segment"
#: Segment's documented limits ("Max request size"): a call, a batch, calls in a batch.
MAX_CALL_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_CALLS = 2500
#: Ids become identity values (255 characters) and visit keys (``"anon:" + id``).
MAX_ID = 200
#: ``messageId`` is the event's ``dedup_key`` (255 characters).
MAX_MESSAGE_ID = 255
MAX_EVENT = 255
CALL_TYPES = ("track", "identify", "page", "screen", "group", "alias")
#: analytics.js' short paths: the first letter of the call's type, ``b`` for its batches.
SHORT_PATHS = {"t": "track", "i": "identify", "p": "page", "s": "screen", "g": "group", "a": "alias"}
#: The calls stored as events, and the event type each becomes (``track``: its ``event``).
EVENT_TYPES = {"page": "page", "screen": "screen", "group": "group"}
#: Segment's ``context.campaign`` keys, kept on a visit as the UTM parameters they are.
CAMPAIGN_KEYS = {"name": "utm_campaign", "source": "utm_source", "medium": "utm_medium"}
CAMPAIGN_KEYS |= {"term": "utm_term", "content": "utm_content"}

Loc = tuple[str | int, ...]
_DATETIME: TypeAdapter[datetime] = TypeAdapter(datetime)


class BadRequest(TrackwayError):
    """What Segment answers 400 to: bad JSON, an oversized call or batch, a call missing what
    its type needs. ``detail`` lists each problem as ``{loc, msg, type}``, like a 422's."""

    status_code = 400

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)

    @classmethod
    def at(cls, loc: Loc, msg: str, type_: str = "value_error") -> BadRequest:
        return cls([{"loc": list(loc), "msg": msg, "type": type_}])


# --- the body: size, encoding, JSON --------------------------------------------------------------


def _gunzip(raw: bytes, limit: int) -> bytes:
    """A gzip body, inflated to at most ``limit`` bytes: a small bomb cannot fill the memory."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, limit + 1)
        if len(body) <= limit and not inflater.eof:
            body += inflater.flush()
    except zlib.error:
        raise BadRequest.at(("body",), "Content-Encoding is gzip, but the body is not gzip.") from None
    if len(body) > limit or inflater.unconsumed_tail:
        raise BadRequest.at(("body",), f"The body is over the {limit} byte limit.", "too_large")
    return body


def decoded_body(request: Request, raw: bytes, limit: int) -> bytes:
    """The body as sent, inflated when ``Content-Encoding: gzip`` (the server SDKs' option)."""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding == "gzip":
        return _gunzip(raw, limit)
    if encoding not in ("", "identity"):
        raise BadRequest.at(("header", "content-encoding"), "Only gzip bodies are accepted.")
    if len(raw) > limit:
        raise BadRequest.at(("body",), f"The body is over the {limit} byte limit.", "too_large")
    return raw


def parse_json(body: bytes) -> dict[str, Any]:
    """A JSON object, whatever the content type (analytics.js sends ``text/plain``)."""
    try:
        parsed = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError:
        raise BadRequest.at(("body",), "The body is not valid JSON.", "json_invalid") from None
    if not isinstance(parsed, dict):
        raise BadRequest.at(("body",), "The body must be a JSON object.", "model_type")
    return parsed


def write_key(request: Request, body: dict[str, Any]) -> str | None:
    """HTTP Basic's user name (the password is empty), else the body's ``writeKey``."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "basic" and credentials:
        try:
            user = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user.partition(":")[0]
    key = body.get("writeKey")
    return key if isinstance(key, str) else None


# --- one call, checked -------------------------------------------------------------------------


@dataclass(slots=True)
class Call:
    """One call that passed every check, ready to become an ``IngestBatch``."""

    type: str
    user_id: str | None
    anonymous_id: str | None
    message_id: str | None
    event: str | None
    properties: dict[str, Any]
    traits: dict[str, Any]
    context: dict[str, Any]
    integrations: dict[str, Any]
    group_id: str | None
    previous_id: str | None
    #: The event's time after clock correction; ``None``: the receive time.
    time: datetime | None
    #: The client's times as sent (``originalTimestamp``, ``timestamp``, ``sentAt``).
    times: dict[str, str]
    name: str | None
    category: str | None


class Problems:
    """Every problem of a request, so one 400 names them all."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: Loc, msg: str, type_: str = "value_error") -> None:
        self.items.append({"loc": list(loc), "msg": msg, "type": type_})

    def raise_any(self) -> None:
        if self.items:
            raise BadRequest(self.items)


def _id(raw: dict[str, Any], name: str, loc: Loc, problems: Problems, max_length: int = MAX_ID) -> str | None:
    """An id: a string, or a number the SDKs would have stringified; ``""`` and ``null`` are absent."""
    value = raw.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        problems.add((*loc, name), "Must be a string.", "string_type")
        return None
    if len(value) > max_length:
        problems.add((*loc, name), f"At most {max_length} characters.", "string_too_long")
        return None
    if (problem := string_problem(value)) is not None:
        problems.add((*loc, name), problem)
        return None
    return value


def _text(raw: dict[str, Any], name: str, loc: Loc, problems: Problems) -> str | None:
    """An optional free text (a page's ``name``, ``category``)."""
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add((*loc, name), "Must be a string.", "string_type")
        return None
    if (problem := string_problem(value)) is not None:
        problems.add((*loc, name), problem)
        return None
    return value


def _object(raw: dict[str, Any], name: str, loc: Loc, problems: Problems) -> dict[str, Any]:
    """A free-form object (``properties``, ``traits``, ``context``, ``integrations``), storable."""
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add((*loc, name), "Must be a JSON object.", "dict_type")
        return {}
    problem = value_problem(value, (*loc, name))
    if problem is not None:
        problems.items.append(problem)
        return {}
    return value


def _time(raw: dict[str, Any], name: str, loc: Loc, problems: Problems) -> datetime | None:
    """An ISO 8601 time; without a zone, UTC."""
    value = raw.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add((*loc, name), "Must be an ISO 8601 date-time string.", "datetime_type")
        return None
    try:
        parsed = _DATETIME.validate_python(value)
    except ValidationError:
        problems.add((*loc, name), "Must be an ISO 8601 date-time string.", "datetime_parsing")
        return None
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # 0001-01-01T00:00+01:00 has no UTC time
        problems.add((*loc, name), "Out of range.", "datetime_range")
        return None


def event_time(
    raw: dict[str, Any], sent_at: datetime | None, received_at: datetime, loc: Loc, problems: Problems
) -> datetime | None:
    """Segment's clock correction: ``receivedAt - (sentAt - originalTimestamp)`` when both are
    sent (a device's clock may be hours off; the gap between the call and its sending is not),
    else ``timestamp`` as given, else the receive time (``None``)."""
    original = _time(raw, "originalTimestamp", loc, problems)
    timestamp = _time(raw, "timestamp", loc, problems)
    if original is not None and sent_at is not None:
        try:
            corrected: datetime | None = received_at - (sent_at - original)
        except OverflowError:
            corrected = None
        if corrected is None or time_problem(corrected, received_at) is not None:
            problems.add(
                (*loc, "originalTimestamp"),
                "The corrected time (receivedAt - (sentAt - originalTimestamp)) is out of range: "
                "it must lie between 1970-01-01T00:00Z and 1 day after the server's clock.",
                "datetime_range",
            )
            return None
        return corrected
    if timestamp is not None:
        if time_problem(timestamp, received_at) is not None:
            problems.add(
                (*loc, "timestamp"),
                "Event time out of range: it must lie between 1970-01-01T00:00Z and 1 day after "
                "the server's clock.",
                "datetime_range",
            )
            return None
        return timestamp
    return None


def check_call(
    raw: Any,
    type_: str | None,
    loc: Loc,
    envelope_sent_at: datetime | None,
    received_at: datetime,
    problems: Problems,
) -> Call | None:
    """One call of ``type_`` (a single-call path's), or of its own ``type`` (a batch's item)."""
    if not isinstance(raw, dict):
        problems.add(loc, "A call must be a JSON object.", "model_type")
        return None
    before = len(problems.items)
    if type_ is None:
        sent_type = raw.get("type")
        if sent_type not in CALL_TYPES:
            problems.add((*loc, "type"), f"Must be one of {', '.join(CALL_TYPES)}.", "literal_error")
            return None
        type_ = str(sent_type)
    user_id = _id(raw, "userId", loc, problems)
    anonymous_id = _id(raw, "anonymousId", loc, problems)
    message_id = _id(raw, "messageId", loc, problems, MAX_MESSAGE_ID)
    previous_id = group_id = event = None
    if type_ == "alias":
        previous_id = _id(raw, "previousId", loc, problems)
        if raw.get("previousId") in (None, ""):
            problems.add((*loc, "previousId"), "An alias needs previousId.", "missing")
        if raw.get("userId") in (None, ""):
            problems.add((*loc, "userId"), "An alias needs userId.", "missing")
    elif user_id is None and anonymous_id is None and len(problems.items) == before:
        problems.add(loc, "A call needs userId or anonymousId.", "missing")
    if type_ == "track":
        event = raw.get("event")
        if not isinstance(event, str) or not event:
            problems.add((*loc, "event"), "A track call needs event (a non-empty string).", "missing")
            event = None
        elif len(event) > MAX_EVENT:
            problems.add((*loc, "event"), f"At most {MAX_EVENT} characters.", "string_too_long")
        elif (problem := string_problem(event)) is not None:
            problems.add((*loc, "event"), problem)
    if type_ == "group":
        group_id = _id(raw, "groupId", loc, problems)
        if group_id is None and raw.get("groupId") in (None, ""):
            problems.add((*loc, "groupId"), "A group call needs groupId.", "missing")
    properties = _object(raw, "properties", loc, problems)
    traits = _object(raw, "traits", loc, problems)
    context = _object(raw, "context", loc, problems)
    integrations = _object(raw, "integrations", loc, problems)
    name = _text(raw, "name", loc, problems)
    category = _text(raw, "category", loc, problems)
    sent_at = _time(raw, "sentAt", loc, problems) or envelope_sent_at
    time = event_time(raw, sent_at, received_at, loc, problems)
    if len(problems.items) > before:
        return None
    times = {
        key: raw[key] for key in ("originalTimestamp", "timestamp", "sentAt") if isinstance(raw.get(key), str)
    }
    return Call(
        type=type_,
        user_id=user_id,
        anonymous_id=anonymous_id,
        message_id=message_id,
        event=event,
        properties=properties,
        traits=traits,
        context=context,
        integrations=integrations,
        group_id=group_id,
        previous_id=previous_id,
        time=time,
        times=times,
        name=name,
        category=category,
    )


def call_size(raw: Any) -> int:
    """A batch item's size as its JSON: Segment's 32 KB is per call, also inside a batch."""
    try:
        return len(jsonutil.dumps(raw))
    except TypeError:  # a value JSON cannot write back (a lone surrogate): refused elsewhere
        return 0


# --- the batch --------------------------------------------------------------------------------


def user_ref(source_id: str, user_id: str) -> IdentityRef:
    """The site's own user id: scoped to the source, strong (it names one person)."""
    return IdentityRef("user_id", user_id, scope=source_id)


def anonymous_ref(source_id: str, anonymous_id: str) -> IdentityRef:
    """A device's id: weak, so it finds the device's profile but never merges two known people."""
    return IdentityRef("anonymous_id", anonymous_id, scope=source_id, strong=False)


def session_context(context: dict[str, Any]) -> dict[str, Any]:
    """What a visit keeps: landing page, page referrer, UTM (``context.campaign`` or the page URL)."""
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    captured: dict[str, Any] = {}
    url = page.get("url")
    if isinstance(url, str) and url:
        captured["landing_page"] = url
    if isinstance(page.get("referrer"), str) and page["referrer"]:
        captured["page_referrer"] = page["referrer"]
    campaign = context.get("campaign")
    utm: dict[str, Any] = {}
    if isinstance(campaign, dict):
        utm = {CAMPAIGN_KEYS[k]: v for k, v in campaign.items() if k in CAMPAIGN_KEYS and isinstance(v, str)}
    if not utm and isinstance(url, str):
        utm = url_parameters(url, ("utm_",))
    if utm:
        captured["utm"] = utm
    return captured


def event_of(call: Call, context: dict[str, Any]) -> EventIn | None:
    """The event a call stores, if any: ``identify`` and ``alias`` change the person only."""
    if call.type == "track":
        type_, properties = str(call.event), call.properties
    elif call.type in ("page", "screen"):
        extra = {k: v for k, v in (("name", call.name), ("category", call.category)) if v is not None}
        type_, properties = call.type, {**call.properties, **extra}
    elif call.type == "group":
        type_, properties = "group", {"groupId": call.group_id, "traits": call.traits}
    else:
        return None
    return EventIn(
        type=type_, properties=properties, context=context, time=call.time, dedup_key=call.message_id
    )


def to_batch(
    call: Call,
    source: SourceRef,
    meta: RequestMeta,
    envelope: dict[str, Any],
    visit_timeout: int,
    masked: bool,
) -> IngestBatch:
    """One call, one ``IngestBatch``: each call of a batch may name another person."""
    # A copy: deep_merge may hand back the envelope's own context, which every call shares.
    context = dict(deep_merge(envelope.get("context") or {}, call.context))
    client_ip = context.get("ip")
    if masked and isinstance(client_ip, str):
        context = {**context, "ip": mask_ip(client_ip)}
    user_agent = context.get("userAgent")
    meta = RequestMeta(
        received_at=meta.received_at,
        user_agent=user_agent if isinstance(user_agent, str) else meta.user_agent,
        ip=context["ip"] if isinstance(context.get("ip"), str) else meta.ip,
        referer=meta.referer,
        origin=meta.origin,
    )
    message = {
        "type": call.type,
        "messageId": call.message_id,
        "userId": call.user_id,
        "anonymousId": call.anonymous_id,
        "receivedAt": meta.received_at.isoformat(),
        **call.times,
        "integrations": deep_merge(envelope.get("integrations") or {}, call.integrations) or None,
    }
    context["segment"] = {k: v for k, v in message.items() if v is not None}
    event = event_of(call, context)
    identities: list[IdentityRef] = []
    merges: list[MergeRequest] = []
    traits = TraitsPatch()
    email = None
    if call.user_id is not None:
        identities.append(user_ref(source.id, call.user_id))
    if call.type == "identify":
        # RudderStack's SDKs send an identify's traits in ``context.traits`` only.
        sent = call.traits
        if isinstance(context.get("traits"), dict):
            sent = {**context["traits"], **sent}
        traits = TraitsPatch(
            set={k: v for k, v in sent.items() if v is not None},
            remove=[k for k, v in sent.items() if v is None],
        )
        email = email_address(sent.get("email"))
        if email is not None:
            identities.append(IdentityRef("email_sha256", email_sha256(email)))
    if call.anonymous_id is not None:
        identities.append(anonymous_ref(source.id, call.anonymous_id))
    if call.type == "alias" and call.previous_id is not None and call.user_id is not None:
        dest = user_ref(source.id, call.user_id)
        if call.previous_id != call.user_id:
            merges.append(MergeRequest(user_ref(source.id, call.previous_id), dest, "alias"))
        merges.append(MergeRequest(anonymous_ref(source.id, call.previous_id), dest, "alias"))
    # The device's visit continues across sign-in: analytics.js sends the same anonymousId after it.
    device = f"anon:{call.anonymous_id}" if call.anonymous_id is not None else f"user:{call.user_id}"
    return IngestBatch(
        source=source,
        meta=meta,
        events=[event] if event is not None else [],
        identities=identities,
        merges=merges,
        traits=traits,
        email_trait="email" if call.type == "identify" else None,
        identified=True if call.user_id is not None or email is not None else None,
        # No event, no visit: an identify alone must not open an empty one.
        visit_key=device if event is not None else None,
        visit_timeout=visit_timeout,
        session_context=session_context(context) if event is not None else {},
    )


def coalesce(batches: list[IngestBatch]) -> list[IngestBatch]:
    """A person's event calls in one request as one ``IngestBatch`` with their events, in order.

    A server SDK flushes up to 100 calls at a time, a few per person: resolving the person
    once per call would cost the write path as many batches. Only calls that store an event
    and change nothing else (``track``, ``page``, ``screen``, ``group``) and name the same ids,
    visit and client are joined; an ``identify`` or ``alias`` in between closes every open
    one, so no event moves across a change of who someone is.
    """
    out: list[IngestBatch] = []
    open_: dict[tuple[Any, ...], IngestBatch] = {}
    for batch in batches:
        if not batch.events or batch.traits or batch.merges or batch.email_trait:
            open_.clear()
            out.append(batch)
            continue
        key = (tuple(batch.identities), batch.visit_key, batch.meta.user_agent, batch.meta.ip)
        joined = open_.get(key)
        if joined is not None:
            joined.events.extend(batch.events)
            continue
        open_[key] = batch
        out.append(batch)
    return out


# --- the routes -------------------------------------------------------------------------------


async def _ingest(request: Request, type_: str | None) -> Response:
    """One call (``type_``) or a batch (``None``): read, authenticate, check, write, answer.

    Order: the body within the server's limit (413), Basic auth when sent (401), gzip and
    JSON and Segment's size limits (400), the write key of the body (401), every call (400),
    then all calls in one transaction.
    """
    services = services_of(request)
    settings = services.settings
    origin = request.headers.get("origin")
    raw = await read_body(request, settings.max_body_bytes)
    # The key of a Basic header is checked before the body is even parsed.
    has_basic = request.headers.get("authorization", "").lower().startswith("basic ")
    limit = MAX_BATCH_BYTES if type_ is None else MAX_CALL_BYTES
    if has_basic:
        info = await services.sources.authenticate(write_key(request, {}), DIALECT, origin=origin)
        body = parse_json(decoded_body(request, raw, limit))
    else:
        body = parse_json(decoded_body(request, raw, limit))
        info = await services.sources.authenticate(write_key(request, body), DIALECT, origin=origin)
    received_at = datetime.now(UTC)
    problems = Problems()
    if type_ is None:
        items = body.get("batch")
        if not isinstance(items, list):
            raise BadRequest.at(("body", "batch"), "A batch needs batch: a list of calls.", "missing")
        if len(items) > MAX_BATCH_CALLS:
            raise BadRequest.at(
                ("body", "batch"), f"{len(items)} calls is over the {MAX_BATCH_CALLS} call limit.", "too_long"
            )
        envelope = body
        raws = [(("body", "batch", index), item) for index, item in enumerate(items)]
        for loc, item in raws:
            if call_size(item) > MAX_CALL_BYTES:
                problems.add(loc, f"The call is over the {MAX_CALL_BYTES} byte limit.", "too_large")
        problems.raise_any()
    else:
        envelope = {}
        raws = [(("body",), body)]
    envelope_sent_at = _time(envelope, "sentAt", ("body",), problems)
    for name in ("context", "integrations"):
        _object(envelope, name, ("body",), problems)
    calls = [check_call(item, type_, loc, envelope_sent_at, received_at, problems) for loc, item in raws]
    problems.raise_any()
    meta = RequestMeta(
        received_at=received_at,
        user_agent=request.headers.get("user-agent"),
        ip=request.client.host if request.client else None,
        referer=request.headers.get("referer"),
        origin=origin,
    )
    if meta.ip and settings.mask_ip:
        meta = RequestMeta(meta.received_at, meta.user_agent, mask_ip(meta.ip), meta.referer, meta.origin)
    source = SourceRef(info.id, DIALECT)
    batches = [
        to_batch(call, source, meta, envelope, settings.session_timeout, settings.mask_ip)
        for call in calls
        if call is not None
    ]
    await services.writer.write(coalesce(batches))
    return json_response({"success": True})


def _endpoint(type_: str | None) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await _ingest(request, type_)

    endpoint.__name__ = f"segment_{type_ or 'batch'}"
    return endpoint


router = APIRouter(tags=["segment"])
#: Every route this dialect answers: ``(path, call type or None for a batch)``.
ROUTES: tuple[tuple[str, str | None], ...] = (
    *((f"/v1/{type_}", type_) for type_ in CALL_TYPES),
    ("/v1/batch", None),
    # analytics.js posts to ``{protocol}://{apiHost}/{letter}``; its default apiHost is
    # ``api.segment.io/v1``, so a host configured with or without ``/v1`` must both work.
    *((f"{prefix}/{letter}", type_) for prefix in ("", "/v1") for letter, type_ in SHORT_PATHS.items()),
    ("/b", None),
    ("/v1/b", None),
)
#: The route functions, for the quarantine to tell a Segment request (``dialects/quarantine.py``).
ENDPOINTS: set[Callable[[Request], Awaitable[Response]]] = set()
for _path, _type in ROUTES:
    _route_endpoint = _endpoint(_type)
    ENDPOINTS.add(_route_endpoint)
    router.add_api_route(
        _path,
        _route_endpoint,
        methods=["POST"],
        summary=f"Segment {_type or 'batch'} ({'analytics.js' if len(_path) in (2, 5) else 'HTTP API'})",
        operation_id=f"segment_{_path.strip('/').replace('/', '_')}",
    )
