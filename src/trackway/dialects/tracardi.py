"""Tracardi: ``POST /track`` with the tracker payload (seed 001), as the Tracardi JS snippet sends it.

Profile and session rules are seed 001's "Understanding Customer Identification":
no profile id creates one; an unknown profile id gets a new one (unless its session
already names a profile: lost-profile recovery); a known profile with a new session id
is a new visit. The response always names the profile id the client must keep.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from trackway.core.batch import EventIn, IdentityRef, IngestBatch, SourceRef, TraitsPatch
from trackway.core.identity import email_sha256
from trackway.core.values import (
    check_event_time,
    check_string,
    problem_at,
    string_problem,
    time_problem,
    walk,
)
from trackway.dialects._common import (
    as_utc,
    deep_merge,
    email_address,
    parse_model,
    read_body,
    request_meta,
    url_parameters,
)
from trackway.errors import PayloadTooLarge, ValidationFailed
from trackway.responses import json_response
from trackway.services import services_of

DIALECT = "tracardi"

Key = Annotated[str, Field(min_length=1, max_length=128)]


class _Ref(BaseModel):
    model_config = ConfigDict(extra="allow")


class SourceRefIn(_Ref):
    id: Key


class OptionalRefIn(_Ref):
    id: Key | None = None


class TracardiTime(BaseModel):
    """Tracardi's event ``time`` object (its ``EventTime``): ``{"create": "<ISO time>"}`` from its tracker.

    ``create`` is when the event happened; Tracardi itself falls back to ``insert`` without it.
    ``update``, ``process_time`` and ``total_time`` are Tracardi's own bookkeeping: checked for
    their type as Tracardi would, then not kept. Other keys are ignored, as Tracardi does.
    """

    create: datetime | None = None
    insert: datetime | None = None
    update: datetime | None = None
    process_time: float | None = None
    total_time: float | None = None


_TRACARDI_TIME = TypeAdapter(TracardiTime)


def event_time(value: Any) -> Any:
    """An event's ``time``: an ISO string (Trackway's tracker) or Tracardi's time object.

    The object becomes its ``create`` time (else ``insert``, else none: the receive time); an
    error inside it is a 422 on ``time`` whose message names the key, e.g. ``time.create: ...``.
    """
    if not isinstance(value, dict):
        return value
    try:
        parsed = _TRACARDI_TIME.validate_python(value)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in ("time", *first["loc"]))
        raise PydanticCustomError(
            "time_object", "{where}: {msg}", {"where": where, "msg": first["msg"]}
        ) from None
    return parsed.create or parsed.insert


class TrackerEvent(BaseModel):
    """One event of the tracker payload. ``id`` (sent by Trackway's tracker) deduplicates retries."""

    model_config = ConfigDict(extra="allow")

    id: Key | None = None
    type: Annotated[str, Field(min_length=1, max_length=255)]
    properties: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)
    time: Annotated[datetime | None, BeforeValidator(event_time)] = None
    tags: list[str] = Field(default_factory=list)


class IdentifyIn(BaseModel):
    """Trackway's extension of the tracker payload (Tracardi's servers ignore the key): the
    visitor signed in. ``userId`` is the site's id of the person, scoped to the source;
    ``traits`` patch the profile (``null`` removes one) and a valid ``email`` in them is the
    global email identity, so the browser's profile meets what backends send about the person."""

    model_config = ConfigDict(extra="ignore")

    userId: Annotated[str, Field(min_length=1, max_length=255)]
    traits: dict[str, Any] = Field(default_factory=dict)


class TrackerPayload(BaseModel):
    """Seed 001's tracker payload; extra keys are tolerated, both full and minimal forms pass."""

    model_config = ConfigDict(extra="allow")

    source: SourceRefIn
    session: OptionalRefIn | None = None
    profile: OptionalRefIn | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    properties: dict[str, Any] = Field(default_factory=dict)
    events: list[TrackerEvent]
    options: dict[str, Any] = Field(default_factory=dict)
    identify: IdentifyIn | None = None


def utm_of(context: dict[str, Any]) -> dict[str, str]:
    """UTM parameters: sent by the tracker as ``context.utm``, else read off the page URL."""
    utm = context.get("utm")
    if isinstance(utm, dict) and utm:
        return {str(k): str(v) for k, v in utm.items()}
    page = context.get("page")
    url = page.get("url") if isinstance(page, dict) else None
    if not isinstance(url, str):
        return {}
    return url_parameters(url, ("utm_",))


def session_context(context: dict[str, Any]) -> dict[str, Any]:
    """What a visit keeps from its first payload: landing page, page referrer, UTM."""
    page = context.get("page") if isinstance(context.get("page"), dict) else {}
    captured: dict[str, Any] = {}
    if page.get("url"):
        captured["landing_page"] = page["url"]
    if page.get("referrer"):
        captured["page_referrer"] = page["referrer"]
    utm = utm_of(context)
    if utm:
        captured["utm"] = utm
    return captured


def check_values(payload: TrackerPayload) -> None:
    """Every value the payload would store obeys the storable-value rule (core/values.py), or a 422.

    ``source.id`` is left to authentication: a value that cannot name a source is a 401.
    On the hot path: a ``loc`` is built only for a value that fails.
    """
    for name in ("context", "properties", "options"):
        value = getattr(payload, name)
        if value and (found := walk(value)) is not None:
            raise ValidationFailed([problem_at(("body", name), found)])
    if payload.identify is not None:
        check_string(payload.identify.userId, ("body", "identify", "userId"))
        if payload.identify.traits and (found := walk(payload.identify.traits)) is not None:
            raise ValidationFailed([problem_at(("body", "identify", "traits"), found)])
    for name in ("session", "profile"):
        ref = getattr(payload, name)
        if ref is not None and ref.id is not None:
            check_string(ref.id, ("body", name, "id"))
    now = datetime.now(UTC)
    for index, event in enumerate(payload.events):
        if string_problem(event.type) is not None:
            check_string(event.type, ("body", "events", index, "type"))
        if event.id is not None and string_problem(event.id) is not None:
            check_string(event.id, ("body", "events", index, "id"))
        for name in ("properties", "context", "options", "tags"):
            value = getattr(event, name)
            if value and (found := walk(value)) is not None:
                raise ValidationFailed([problem_at(("body", "events", index, name), found)])
        if event.time is not None and time_problem(event.time, now) is not None:
            check_event_time(event.time, ("body", "events", index, "time"), now)


def to_batch(
    payload: TrackerPayload, source: SourceRef, request: Request, mask_ip: bool
) -> tuple[IngestBatch, int]:
    """The payload as an ``IngestBatch``, and how many events ``saveEvent: false`` left out."""
    events: list[EventIn] = []
    skipped = 0
    tracker_extra = {
        key: value
        for key, value in (("properties", payload.properties), ("options", payload.options))
        if value
    }
    for event in payload.events:
        if event.options.get("saveEvent") is False:
            skipped += 1
            continue
        context = deep_merge(payload.context, event.context)
        if event.options:
            context = {**context, "options": event.options}
        if event.tags:
            context = {**context, "tags": event.tags}
        if tracker_extra:
            context = {**context, "tracker": tracker_extra}
        events.append(
            EventIn(
                type=event.type,
                properties=event.properties,
                context=context,
                time=as_utc(event.time),
                dedup_key=event.id,
            )
        )
    # The session belongs to the payload, the option to each event: skip it only if all agree.
    save_session = not payload.events or not all(
        e.options.get("saveSession") is False for e in payload.events
    )
    # The visit's landing page: Trackway's tracker sends the page on the payload's context,
    # Tracardi's own tracker on each event's.
    first = deep_merge(payload.context, payload.events[0].context) if payload.events else payload.context
    batch = IngestBatch(
        source=source,
        meta=request_meta(request, masked=mask_ip),
        events=events,
        profile_hint=payload.profile.id if payload.profile else None,
        session_key=payload.session.id if payload.session else None,
        session_context=session_context(first),
        save_session=save_session,
    )
    if payload.identify is not None:
        identify(batch, payload.identify)
    return batch, skipped


def identify(batch: IngestBatch, sign_in: IdentifyIn) -> None:
    """``tracker.identify(userId, traits)``: the person's source-scoped user id and, when the
    traits hold a valid address, their email identity; the core links them to the browser's
    profile, merging it with a profile that already holds them, as for every dialect."""
    traits = sign_in.traits
    batch.identities.append(IdentityRef("user_id", sign_in.userId, scope=batch.source.id))
    email = email_address(traits.get("email"))
    if email is not None:
        batch.identities.append(IdentityRef("email_sha256", email_sha256(email)))
    batch.traits = TraitsPatch(
        set={k: v for k, v in traits.items() if v is not None},
        remove=[k for k, v in traits.items() if v is None],
    )
    batch.email_trait = "email"
    batch.identified = True


router = APIRouter(tags=["tracardi"])


async def track(request: Request) -> Response:
    """Tracardi tracker payload: JSON, also as ``text/plain`` from ``navigator.sendBeacon``."""
    services = services_of(request)
    settings = services.settings
    body = await read_body(request, settings.max_body_bytes)
    payload = parse_model(TrackerPayload, body)
    if len(payload.events) > settings.max_batch_events:
        raise PayloadTooLarge(
            f"{len(payload.events)} events is over the {settings.max_batch_events} event limit."
        )
    check_values(payload)
    info = await services.sources.authenticate(
        payload.source.id, DIALECT, origin=request.headers.get("origin")
    )
    batch, skipped = to_batch(payload, SourceRef(info.id, DIALECT), request, settings.mask_ip)
    (result,) = await services.writer.write([batch])
    body_out: dict[str, Any] = {
        "profile": {"id": result.profile_id},
        "session": {"id": result.session_id} if result.session_id else None,
        "events": result.stored_event_ids,
        "duplicates": result.duplicate_event_ids,
    }
    if payload.options.get("debugger") or any(e.options.get("debugger") for e in payload.events):
        body_out["debug"] = {
            "resolved_by": result.resolved_by,
            "profile_created": result.profile_created,
            "session_created": result.session_created,
            "merged": result.merged,
            "skipped_events": skipped,
        }
    return json_response(body_out)


# ``POST /track`` is shared with Tracktor: dialects/dispatch.py owns the route and calls ``track``.
