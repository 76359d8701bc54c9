"""Tracify: ``POST /tracify/events``, the server-side events API of seed 002 (``002_42fabc1d301769bb.txt``).

A shop's backend posts one or many pageview, productview, addtocart, purchase and
conversion events. ``X-API-Key`` carries the source's secret and every event's
``customer_site_id`` names the source. Visitors arrive only as SHA-256 hashes in
``identity_data``: type 1 is an email (the cross-dialect ``email_sha256`` identity),
type 2 is ``IP|User-Agent`` (the visit, a weak key), types 3 and 4 are the IP and the
user agent (kept on the event, never used to join profiles).

Batches are all or nothing. Every event is checked before anything is written, and the
422 names each bad event by index and field. A valid batch goes to the app's writer as one
request of one ``IngestBatch`` per event, written in one transaction (a group's, under
group commit). Purchases and conversions carry a ``dedup_key``, so a backend can
safely retry a batch.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import pycountry
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from trackway.core.batch import EventIn, IdentityRef, IngestBatch, IngestResult, RequestMeta, SourceRef
from trackway.core.sources import SourceInfo
from trackway.core.values import string_problem, time_problem, value_problem
from trackway.dialects._common import parse_model, pydantic_errors, read_body
from trackway.dialects._common import url_parameters as query_parameters
from trackway.errors import InvalidSource, PayloadTooLarge, ValidationFailed
from trackway.responses import json_response
from trackway.services import AppServices, services_of

DIALECT = "tracify"
DATETIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EventType = Literal["pageview", "productview", "addtocart", "purchase", "conversion"]

#: ``identity_data`` reference types (seed 002, "identity_data").
EMAIL, VISIT, IP, USER_AGENT = 1, 2, 3, 4
TYPE_NAMES = {EMAIL: "email", VISIT: "IP|User-Agent", IP: "IP address", USER_AGENT: "user agent"}
#: The seed marks the IP and user agent hashes "(required)"; email and visit are optional.
REQUIRED_TYPES = (IP, USER_AGENT)
#: Hashes are SHA-256 in hex, as the seed's anonymization examples make them (matched whole).
HASH_RE = re.compile(r"[0-9a-fA-F]{64}")

#: ``data`` fields each event type requires (seed 002, "Event Properties").
REQUIRED_DATA: dict[str, tuple[str, ...]] = {
    "pageview": ("origin",),
    "productview": ("origin",),
    "addtocart": ("origin",),
    "purchase": ("origin", "order_id", "currency", "amount"),
    "conversion": ("origin", "conversion_id", "currency", "amount"),
}
#: The field that makes an event unique per source, and the ``dedup_key`` prefix it gets.
DEDUP_FIELDS = {"purchase": ("order_id", "order"), "conversion": ("conversion_id", "conversion")}

#: Non-negative amounts written out in full, ASCII digits only: no sign, no exponent, no NaN.
DECIMAL_RE = re.compile(r"[0-9]{1,28}(\.[0-9]{1,12})?")
#: ``ITEMn`` / ``AMTn`` / ``QTYn``: the lines of a purchase, numbered from 1.
ITEM_KEY_RE = re.compile(r"(ITEM|AMT|QTY)([1-9][0-9]{0,3})")
#: Attribution parameters: UTM tags and Tracify's ``trc_*`` click ids.
URL_PARAMETER_PREFIXES = ("utm_", "trc_")
MAX_TEXT = 2048
MAX_ID = 200  # the dedup key column holds 255 characters, with its prefix

Loc = tuple[str | int, ...]


# --- wire models ------------------------------------------------------------------------------


def _utc_datetime(value: Any) -> datetime:
    """Seed 002 sends ``%Y-%m-%d %H:%M:%S`` in UTC. The format is strict because there is no zone."""
    if not isinstance(value, str):
        raise ValueError("expected a string like 2024-06-21 12:36:37 (UTC)")
    try:
        return datetime.strptime(value, DATETIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError("expected %Y-%m-%d %H:%M:%S in UTC, e.g. 2024-06-21 12:36:37") from None


def _splittable_url(value: str) -> str:
    """Its query string is read for URL parameters, so it must at least split (no broken IPv6 host)."""
    try:
        urlsplit(value)
    except ValueError:
        raise ValueError("not a valid URL") from None
    return value


class TracifyPayload(BaseModel):
    """The envelope. The events are checked one at a time so one 422 can name every bad event."""

    model_config = ConfigDict(extra="ignore")

    events: Annotated[list[Any], Field(min_length=1)]


class TracifyEvent(BaseModel):
    """The fixed fields of one event. ``identity_data`` and ``data`` are checked by hand below,
    because their keys are data (hashes, ``ITEMn``) and their rules depend on ``type``."""

    model_config = ConfigDict(extra="ignore")

    url: Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_splittable_url)]
    customer_site_id: Annotated[str, Field(min_length=1, max_length=128)]
    identity_data: dict[str, Any]
    time: Annotated[datetime, BeforeValidator(_utc_datetime)] = Field(alias="datetime")
    type: EventType
    data: dict[str, Any]


# --- validation ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Problems:
    """Errors of the whole batch, shaped like pydantic's, so one 422 can list all of them."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, loc: Loc, msg: str, type_: str = "value_error") -> None:
        self.items.append({"loc": list(loc), "msg": msg, "type": type_})


@dataclass(frozen=True, slots=True)
class Hashes:
    """The visitor's hashes, in lower-case hex. Only ``email`` and ``visit`` name a person."""

    email: str | None
    visit: str | None
    ip: str
    user_agent: str

    def identities(self, source_id: str) -> list[IdentityRef]:
        """Strongest first. Type 1 is global, so Tracktor's or InSend's email finds the same person.
        Type 2 is weak and local to the source: many people can share one IP and browser."""
        refs = []
        if self.email:
            refs.append(IdentityRef("email_sha256", self.email))
        if self.visit:
            refs.append(IdentityRef("visit_hash", self.visit, scope=source_id, strong=False))
        return refs

    def context(self) -> dict[str, str]:
        names = (
            ("email_sha256", self.email),
            ("visit_hash", self.visit),
            ("ip_hash", self.ip),
            ("user_agent_hash", self.user_agent),
        )
        return {name: value for name, value in names if value}


@dataclass(slots=True)
class ValidEvent:
    """One event that passed every check, ready to become an ``IngestBatch``."""

    type: str
    site_id: str
    url: str
    time: datetime
    hashes: Hashes
    properties: dict[str, Any]
    url_parameters: dict[str, Any]
    dedup_key: str | None


def _hashes(raw: dict[str, Any], loc: Loc, problems: Problems) -> Hashes | None:
    """Map ``{hash: type}`` to one hash per type. A second hash of the same type is refused:
    two emails in one event would merge two people."""
    found: dict[int, str] = {}
    seen: set[int] = set()
    before = len(problems.items)
    for key, kind in raw.items():
        key_loc = (*loc, key)
        if type(kind) is not int or kind not in TYPE_NAMES:
            problems.add(key_loc, "Input should be 1, 2, 3 or 4", "literal_error")
            continue
        if kind in seen:
            problems.add(key_loc, f"a second type-{kind} ({TYPE_NAMES[kind]}) hash: send one at most")
            continue
        seen.add(kind)
        if not HASH_RE.fullmatch(key):
            problems.add(key_loc, "an identity key is a SHA-256 hash: 64 hexadecimal characters")
            continue
        found[kind] = key.lower()
    for kind in REQUIRED_TYPES:
        if kind not in seen:
            problems.add(loc, f"a type-{kind} ({TYPE_NAMES[kind]}) hash is required", "missing")
    if len(problems.items) > before:
        return None
    return Hashes(found.get(EMAIL), found.get(VISIT), found[IP], found[USER_AGENT])


def _text(value: Any, loc: Loc, problems: Problems, max_length: int = MAX_TEXT) -> str | None:
    """A non-empty string. Integers are taken too, since order ids are often numeric."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        problems.add(loc, "Input should be a non-empty string", "string_type")
        return None
    if len(value) > max_length:
        problems.add(loc, f"String should have at most {max_length} characters", "string_too_long")
        return None
    return value


def _identifier(value: Any, loc: Loc, problems: Problems) -> str | None:
    return _text(value, loc, problems, MAX_ID)


def _decimal(value: Any, loc: Loc, problems: Problems) -> str | None:
    """An exact amount as a decimal string, kept exactly as it was written ("100.00" stays "100.00").

    A JSON number with a fraction is refused, not rounded. The sender's encoder may
    already have turned 0.3 into 0.30000000000000004, and a float here would be a guess.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return str(value)
    if isinstance(value, str) and DECIMAL_RE.fullmatch(value):
        return value
    problems.add(loc, 'Input should be a non-negative decimal string, e.g. "100.00"', "decimal_parsing")
    return None


@cache
def _currency_codes() -> frozenset[str]:
    """ISO-4217 alphabetic codes from pycountry, loaded once, on first use."""
    return frozenset(currency.alpha_3 for currency in pycountry.currencies)


def _currency(value: Any, loc: Loc, problems: Problems) -> str | None:
    """A three-letter ISO-4217 code. Case is forgiven ("eur" is stored as "EUR")."""
    code = value.upper() if isinstance(value, str) else None
    if code is None or code not in _currency_codes():
        problems.add(loc, "Input should be a 3-letter ISO-4217 currency code, e.g. EUR", "currency")
        return None
    return code


Check = Callable[[Any, Loc, Problems], str | None]
DATA_CHECKS: dict[str, Check] = {
    "origin": _text,
    "order_id": _identifier,
    "conversion_id": _identifier,
    "currency": _currency,
    "amount": _decimal,
}


def _required_data(type_: str, data: dict[str, Any], loc: Loc, problems: Problems) -> dict[str, str]:
    """The fields the seed's table requires for this type, normalized (currency upper-cased)."""
    checked: dict[str, str] = {}
    for name in REQUIRED_DATA[type_]:
        if name not in data or data[name] is None:
            problems.add((*loc, name), "Field required", "missing")
            continue
        value = DATA_CHECKS[name](data[name], (*loc, name), problems)
        if value is not None:
            checked[name] = value
    return checked


def _items(data: dict[str, Any], loc: Loc, problems: Problems) -> list[dict[str, Any]]:
    """``ITEMn``/``AMTn``/``QTYn`` as ``[{"name", "amount", "qnt"}]`` in n order.

    An amount or quantity without its ``ITEMn`` belongs to no item, so it is refused
    instead of being dropped without notice.
    """
    lines: dict[int, dict[str, Any]] = {}
    for key, value in data.items():
        match = ITEM_KEY_RE.fullmatch(key)
        if match:
            lines.setdefault(int(match.group(2)), {})[match.group(1)] = (key, value)
    items = []
    for n in sorted(lines):
        line = lines[n]
        if "ITEM" not in line:
            for key, _value in line.values():
                problems.add((*loc, key), f"{key} needs an ITEM{n}", "missing")
            continue
        item: dict[str, Any] = {"name": _text(line["ITEM"][1], (*loc, line["ITEM"][0]), problems)}
        for part, name in (("AMT", "amount"), ("QTY", "qnt")):
            key, value = line.get(part, (None, None))
            item[name] = None if key is None else _decimal(value, (*loc, key), problems)
        items.append(item)
    return items


def url_parameters(url: str, data: dict[str, Any]) -> dict[str, Any]:
    """UTM tags and ``trc_*`` click ids from the URL's query string and from ``data``.

    The seed asks for them as separate keys in ``data``. ``data`` wins when both have a
    key, because the backend states it explicitly.
    """
    params: dict[str, Any] = query_parameters(url, URL_PARAMETER_PREFIXES)
    params.update({key: value for key, value in data.items() if key.startswith(URL_PARAMETER_PREFIXES)})
    return params


def _properties(
    event: TracifyEvent, checked: dict[str, str], items: list[dict[str, Any]], params: dict[str, Any]
) -> dict[str, Any]:
    """``data`` as sent (``Referer`` included), except that item keys become ``items``, URL
    parameters are grouped, and the required fields are normalized."""
    rest = {
        key: value
        for key, value in event.data.items()
        if not ITEM_KEY_RE.fullmatch(key) and not key.startswith(URL_PARAMETER_PREFIXES)
    }
    properties: dict[str, Any] = {**rest, **checked, "url": event.url}
    if params:
        properties["url_parameters"] = params
    if items:
        properties["items"] = items
    return properties


def _validate_event(raw: Any, index: int, problems: Problems) -> ValidEvent | None:
    """One event, with every problem in it reported, not only the first one."""
    loc: Loc = ("body", "events", index)
    if not isinstance(raw, dict):
        problems.add(loc, "An event must be a JSON object.", "model_type")
        return None
    before = len(problems.items)
    event: TracifyEvent | None = None
    try:
        event = TracifyEvent.model_validate(raw)
    except ValidationError as exc:
        problems.items.extend(pydantic_errors(exc, prefix=loc))
    identity_data, data, type_ = raw.get("identity_data"), raw.get("data"), raw.get("type")
    url = raw.get("url")
    if isinstance(url, str) and (problem := string_problem(url)) is not None:
        problems.add((*loc, "url"), problem)
    if event is not None and (problem := time_problem(event.time)) is not None:
        problems.add((*loc, "datetime"), problem, "datetime_range")
    hashes = None
    if isinstance(identity_data, dict):
        hashes = _hashes(identity_data, (*loc, "identity_data"), problems)
    checked: dict[str, str] = {}
    items: list[dict[str, Any]] = []
    if isinstance(data, dict):
        # What no database could store comes first; the field checks below then see only storable values.
        unstorable = value_problem(data, (*loc, "data"))
        if unstorable is not None:
            problems.items.append(unstorable)
        else:
            if isinstance(type_, str) and type_ in REQUIRED_DATA:
                checked = _required_data(type_, data, (*loc, "data"), problems)
            items = _items(data, (*loc, "data"), problems)
    if event is None or hashes is None or len(problems.items) > before:
        return None
    return _valid_event(event, hashes, checked, items)


def _valid_event(
    event: TracifyEvent, hashes: Hashes, checked: dict[str, str], items: list[dict[str, Any]]
) -> ValidEvent:
    """A checked event's stored shape; a purchase or a conversion gets its ``dedup_key``."""
    params = url_parameters(event.url, event.data)
    dedup = DEDUP_FIELDS.get(event.type)
    return ValidEvent(
        type=event.type,
        site_id=event.customer_site_id,
        url=event.url,
        time=event.time,
        hashes=hashes,
        properties=_properties(event, checked, items, params),
        url_parameters=params,
        dedup_key=f"{dedup[1]}:{checked[dedup[0]]}" if dedup else None,
    )


def validate_events(raw_events: list[Any]) -> list[ValidEvent]:
    """Every event, or a ``ValidationFailed`` listing each invalid one by index and field."""
    problems = Problems()
    valid = [_validate_event(raw, index, problems) for index, raw in enumerate(raw_events)]
    if problems.items:
        raise ValidationFailed(problems.items)
    return [event for event in valid if event is not None]


# --- source check -------------------------------------------------------------------------------


def named_sites(raw_events: list[Any]) -> set[str]:
    """The ``customer_site_id`` strings the events name, whatever else is wrong with them."""
    return {
        site
        for raw in raw_events
        if isinstance(raw, dict) and isinstance(site := raw.get("customer_site_id"), str) and site
    }


async def authenticate(
    services: AppServices, api_key: str | None, site_ids: set[str], origin: str | None
) -> SourceInfo:
    """The one enabled Tracify source that every event names, and that the key unlocks.

    The secret is compared in constant time, so the response time says nothing about
    how much of a guessed key was right. Every failure gives the same 401.
    """
    if not api_key:
        raise InvalidSource(reason="bad_key")
    if len(site_ids) != 1:
        raise InvalidSource(reason="several_sources")
    info = await services.sources.authenticate(next(iter(site_ids)), DIALECT, origin=origin)
    if not info.secret or not hmac.compare_digest(info.secret.encode(), api_key.encode()):
        raise InvalidSource(reason="bad_key")
    return info


# --- batches and response -----------------------------------------------------------------------


def session_context(event: ValidEvent) -> dict[str, Any]:
    """The visit's attribution, which the core keeps only when this event opens the visit."""
    context: dict[str, Any] = {"landing_page": event.url}
    referer = event.properties.get("Referer")
    if isinstance(referer, str) and referer:
        context["page_referrer"] = referer
    context["origin"] = event.properties["origin"]
    if event.url_parameters:
        context["url_parameters"] = event.url_parameters
        utm = {k: v for k, v in event.url_parameters.items() if k.startswith("utm_")}
        if utm:
            context["utm"] = utm  # the key Tracardi sessions use, so attribution reads alike
    return context


def to_batch(event: ValidEvent, source: SourceRef, meta: RequestMeta, visit_timeout: int) -> IngestBatch:
    """One event becomes one ``IngestBatch``, because each event may name a different visitor."""
    hashes = event.hashes
    return IngestBatch(
        source=source,
        meta=meta,
        events=[
            EventIn(
                type=event.type,
                properties=event.properties,
                context={"identity": hashes.context()},
                time=event.time,
                dedup_key=event.dedup_key,
            )
        ],
        identities=hashes.identities(source.id),
        session_context=session_context(event),
        visit_key=f"visit:{hashes.visit}" if hashes.visit else None,
        visit_timeout=visit_timeout,
        identified=True if hashes.email else None,
        # The backend proved itself with the source's secret (X-API-Key): its claims are verified.
        verified=True,
    )


def _current_profiles(results: list[IngestResult]) -> list[str]:
    """Each event's profile as it is after the whole batch: a later event of the same request
    may have merged an earlier event's anonymous profile into a known person."""
    merged_into = {merged: result.profile_id for result in results for merged in result.merged}
    current = []
    for result in results:
        profile_id = result.profile_id
        for _ in range(len(results) + 1):  # merges never form a cycle; the bound is a guard
            if profile_id not in merged_into:
                break
            profile_id = merged_into[profile_id]
        current.append(profile_id)
    return current


def render(results: list[IngestResult]) -> dict[str, Any]:
    """``accepted`` counts events stored now, ``duplicates`` the ones already stored. A duplicate's
    ``id`` is the id of the event stored first."""
    events = [
        {
            "index": index,
            "id": (result.stored_event_ids + result.duplicate_event_ids)[0],
            "profile_id": profile_id,
            "duplicate": not result.stored_event_ids,
        }
        for index, (result, profile_id) in enumerate(zip(results, _current_profiles(results), strict=True))
    ]
    duplicates = sum(1 for event in events if event["duplicate"])
    return {"accepted": len(events) - duplicates, "duplicates": duplicates, "events": events}


router = APIRouter(tags=["tracify"])


async def tracify_events(request: Request) -> Response:
    """Seed 002's batch, checked in this order, each step before anything is written:

    1. ``X-API-Key`` present, else 401;
    2. the body is a JSON object with an ``events`` list (422), of at most ``max_batch_events`` (413);
    3. the source: the ``customer_site_id`` strings the events name must be exactly one enabled
       Tracify source whose secret is the key, else 401, whatever else the events hold
       (a value that cannot be a source id, NUL included, names no source: 401);
    4. every event, each problem named by index and field (422);
    5. all events stored in one transaction.

    When no event names a site at all, step 3 has nothing to check the key against: step 4
    reports the missing ``customer_site_id`` (422).
    """
    services = services_of(request)
    settings = services.settings
    api_key = request.headers.get("x-api-key")
    if not api_key:
        raise InvalidSource(reason="bad_key")
    body = await read_body(request, settings.max_body_bytes)
    payload = parse_model(TracifyPayload, body)
    if len(payload.events) > settings.max_batch_events:
        raise PayloadTooLarge(
            f"{len(payload.events)} events is over the {settings.max_batch_events} event limit."
        )
    # The source first: a caller without the right key learns nothing about its events' content.
    named = named_sites(payload.events)
    info = None
    if named:
        info = await authenticate(services, api_key, named, request.headers.get("origin"))
    events = validate_events(payload.events)
    if info is None:  # no event named a site: the events cannot have passed validation
        info = await authenticate(
            services, api_key, {event.site_id for event in events}, request.headers.get("origin")
        )
    # The HTTP client is the shop's backend, not the visitor. Its user agent and IP would
    # describe the wrong machine, so only the receive time is recorded.
    meta = RequestMeta(received_at=datetime.now(UTC))
    source = SourceRef(info.id, DIALECT)
    batches = [to_batch(event, source, meta, settings.session_timeout) for event in events]
    results = await services.writer.write(batches)
    return json_response(render(results))


router.add_api_route(
    "/tracify/events", tracify_events, methods=["POST"], summary="Tracify server-side events (seed 002)"
)
