"""Tracktor.io: ``/set``, ``/track`` and ``/alias`` (seed 004, section 2 "HTTP API Reference").

The seed's HTTP API is GET with url-encoded parameters ("for maximum compatibility");
the same fields are also taken from an ``application/x-www-form-urlencoded`` POST body,
because some HTTP clients cannot send long URLs. A person is named by ``id`` (``srcid``
and ``destid`` for ``/alias``), scoped to its source; ids starting with ``a-`` are the
anonymous ids the JS library makes up (seed 4.2.1). Secure mode (seed 4.3): ``sign`` is
the hex HMAC-SHA256 of the person id keyed with the source secret.

The dialect only parses, validates, authenticates and builds one ``IngestBatch``;
identities, merges, traits and storage are the core's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlsplit

import pydantic_core
from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from trackway.core.batch import (
    CartChange,
    CartItem,
    EventIn,
    IdentityRef,
    IngestBatch,
    MergeRequest,
    RequestMeta,
    SourceRef,
    TraitsPatch,
)
from trackway.core.identity import email_sha256
from trackway.core.sources import SourceInfo
from trackway.core.values import string_problem, time_problem, value_problem
from trackway.dialects._common import Where, media_type, read_body, request_meta, urlencoded_fields
from trackway.errors import BadSignature, TrackwayError, ValidationFailed
from trackway.responses import json_response
from trackway.services import AppServices, services_of

DIALECT = "tracktor"
FORM = "application/x-www-form-urlencoded"
#: The JS library's anonymous ids look like ``a-3bxuAx118r02UsdTUdk1Ri9`` (seed 3.1.2).
ANONYMOUS_PREFIX = "a-"
#: Person ids are identity values (``identities.value`` is 255 characters).
MAX_ID = 255
#: Event types are 255 characters (``events.type``).
MAX_ACTION = 255
#: More fields than any Tracktor call has, by far; a flood of fields is refused, not parsed.
MAX_FIELDS = 64
#: The standard 43-byte transparent 1x1 GIF89a, for callers that load the URL as an image.
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
#: A GET answer must never come from a cache: the call would not reach us at all.
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0"}

_TS = re.compile(r"-?\d{1,15}")

Loc = tuple[str | int, ...]


class UnsupportedMediaType(TrackwayError):
    """A POST to ``/set`` or ``/alias`` whose body is not a form: Tracktor sends nothing else."""

    status_code = 415
    reason = "unsupported_media_type"
    detail = "Send the parameters in the query string or as an application/x-www-form-urlencoded body."


# --- reading the parameters ----------------------------------------------------------------


def is_form_request(request: Request) -> bool:
    """Tracktor's POST body is a url-encoded form; the dispatcher of ``POST /track`` asks this."""
    return media_type(request) == FORM


async def read_params(request: Request, limit: int) -> Params:
    """The query string's fields, plus a POSTed form body's (bounded by ``limit`` bytes)."""
    query: bytes = request.scope.get("query_string", b"")
    items: list[tuple[Where, str, str]] = [
        ("query", k, v) for k, v in urlencoded_fields(query, "query", MAX_FIELDS)
    ]
    where: Where = "query"
    if request.method == "POST":
        body = await read_body(request, limit)
        if body:
            if not is_form_request(request):
                raise UnsupportedMediaType()
            items.extend(("body", k, v) for k, v in urlencoded_fields(body, "body", MAX_FIELDS))
            where = "body"
    return Params(items, where)


@dataclass
class Params:
    """A call's parameters, with every problem collected before one 422 is raised.

    Collecting answers a client with all its mistakes at once, each naming its field
    the way pydantic's ``loc`` does (``["query", "ts"]``, ``["body", "data", "email"]``).
    """

    items: list[tuple[Where, str, str]]
    #: Where a missing field should have been: the form body of a POST, else the query.
    where: Where = "query"
    errors: list[dict[str, Any]] = field(default_factory=list)

    def error(self, loc: Loc, msg: str, type_: str = "value_error") -> None:
        self.errors.append({"loc": list(loc), "msg": msg, "type": type_})

    def where_of(self, name: str) -> Where:
        """Where the field was sent (the query or the body), for errors about its content."""
        return next((where for where, key, _ in self.items if key == name), self.where)

    def _get(self, name: str) -> tuple[Loc, str] | None:
        """The field's value; a field given twice is refused, since ``id`` and ``sign`` could disagree."""
        found = [(where, value) for where, key, value in self.items if key == name]
        if not found:
            return None
        where, value = found[-1]
        if len(found) > 1:
            self.error((where, name), "Must be given only once.", "duplicate")
        return (where, name), value

    def raw(self, name: str) -> str | None:
        """A field taken as sent (``sid``, ``sign``); empty counts as absent."""
        got = self._get(name)
        return got[1] if got is not None and got[1] != "" else None

    def text(self, name: str, *, max_length: int) -> str:
        """A required, non-empty string; ``""`` (after a recorded error) when it is missing."""
        got = self._get(name)
        if got is None or got[1] == "":
            self.error((self.where, name), "Field required", "missing")
            return ""
        loc, value = got
        if len(value) > max_length:
            self.error(loc, f"At most {max_length} characters.", "string_too_long")
        elif (problem := string_problem(value)) is not None:
            self.error(loc, problem)
        return value

    def time(self) -> datetime | None:
        """``ts``, Unix seconds; ``None`` when absent (the receive time is used)."""
        got = self._get("ts")
        if got is None or got[1] == "":
            return None
        loc, value = got
        if not _TS.fullmatch(value):
            self.error(loc, "Must be an integer: Unix seconds.", "int_parsing")
            return None
        try:
            time = datetime.fromtimestamp(int(value), UTC)
        except (OverflowError, OSError, ValueError):
            self.error(loc, "Unix seconds out of range.", "int_range")
            return None
        problem = time_problem(time)
        if problem is not None:
            self.error(loc, problem, "datetime_range")
            return None
        return time

    def data(self, *, required: bool) -> dict[str, Any]:
        """``data``, a JSON object (``{}`` when absent and optional, or after a recorded error)."""
        got = self._get("data")
        if got is None or got[1] == "":
            if required:
                self.error((self.where, "data"), "Field required", "missing")
            return {}
        loc, value = got
        try:
            # The same parser as the JSON dialects' (pydantic's): integers stay exact, so one
            # beyond 64 bits is refused below instead of turning into a float; NaN is no JSON.
            parsed = pydantic_core.from_json(value, allow_inf_nan=False)
        except ValueError:
            self.error(loc, "Must be valid JSON.", "json_invalid")
            return {}
        if not isinstance(parsed, dict):
            self.error(loc, "Must be a JSON object.", "dict_type")
            return {}
        problem = value_problem(parsed, loc)
        if problem is not None:
            # What no database could store (NUL, a huge integer, too deep): a 422, not a 500 at commit.
            self.errors.append(problem)
            return {}
        return parsed

    def flag(self, name: str) -> bool:
        return (self.raw(name) or "").lower() in ("1", "true", "yes", "on")

    def raise_errors(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)


# --- predefined person properties (seed 2.1.1) ---------------------------------------------


def _email_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "Must be a string: an email address."
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"Not a valid email address: {exc}"
    return None


def _name_problem(value: Any) -> str | None:
    return None if isinstance(value, str) else "Must be a string."


def _image_problem(value: Any) -> str | None:
    """Shown in Tracktor's UI and widget: only a plain http(s) URL may end up in an ``<img src>``."""
    problem = "Must be an http(s) URL."
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return problem
    try:
        parts = urlsplit(value)
    except ValueError:
        return problem
    return None if parts.scheme.lower() in ("http", "https") and parts.hostname else problem


PREDEFINED: dict[str, Callable[[Any], str | None]] = {
    "email": _email_problem,
    "first_name": _name_problem,
    "last_name": _name_problem,
    "profile_image": _image_problem,
}


def check_person_properties(params: Params, data: dict[str, Any]) -> None:
    """Validate the predefined properties; ``null`` is always fine (it removes the property)."""
    where = params.where_of("data")
    for name, problem_of in PREDEFINED.items():
        value = data.get(name)
        problem = problem_of(value) if value is not None else None
        if problem is not None:
            params.error((where, "data", name), problem)


# --- the e-commerce extension (seed 4.5) ----------------------------------------------------
#
# The seed documents ``tio.setCart``, ``tio.cancelCart`` and ``tio.purchaseCart`` for the JS
# library only. Over the HTTP API they are ``/track`` calls whose ``action`` is the method's
# name and whose ``data`` is the cart object (4.5.1), e.g.
# ``/track?sid=...&id=unicorn&action=setCart&data={"totalprice":3.98,"products":[...]}``.
# The call is stored as an ordinary event (type ``setCart``, the cart as its properties) and
# changes the person's cart in the source, the model InSend's cart events feed:
#
# * ``setCart``: the cart becomes ``products`` (required; an empty list empties it);
# * ``cancelCart``: the visitor emptied the cart (its lifecycle ends ``canceled``);
# * ``purchaseCart``: the cart was bought (``purchased``) and is empty afterwards; its
#   ``products``, when given, are what was bought, else the cart as last set.
#
# A product is a cart line keyed by its ``name`` (the seed's products have no id), ``count``
# (1 by default) of it at ``price`` each; every other property is kept on the line.
# ``totalprice`` (fees included) stays on the event: the cart's ``total`` is its lines' sum.

#: The actions that change the cart, and what each does to it.
CART_ACTIONS = {"setCart": "replace", "cancelCart": "cancel", "purchaseCart": "clear"}


def _no_exponent(value: Decimal) -> Decimal:
    """``1e2`` is stored as ``100``, not ``1E+2``."""
    exponent = value.as_tuple().exponent
    return value.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else value


Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6), AfterValidator(_no_exponent)]


class Product(BaseModel):
    """A product of the seed's cart object (4.5.1); other properties are kept as sent."""

    model_config = ConfigDict(extra="allow")

    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID)]
    price: Money
    count: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] = 1


class CartObject(BaseModel):
    """The seed's cart object: ``totalprice`` and ``products``, any other property kept."""

    model_config = ConfigDict(extra="allow")

    totalprice: Money | None = None
    products: Annotated[list[Product], Field(max_length=500)] | None = None


def _cart_item(product: Product) -> CartItem:
    extra = {"name": product.name, **(product.model_extra or {})}
    return CartItem(product.name, Decimal(product.count), product.price, extra=extra)


def parse_cart(params: Params, action: str, data: dict[str, Any]) -> CartChange | None:
    """The cart change of an e-commerce action (``None`` for any other action, or on errors)."""
    op = CART_ACTIONS.get(action)
    if op is None:
        return None
    where = params.where_of("data")
    try:
        cart = CartObject.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            params.error((where, "data", *error["loc"]), error["msg"], error["type"])
        return None
    items = tuple(_cart_item(product) for product in cart.products or ())
    if op == "replace":
        if cart.products is None:
            params.error(
                (where, "data", "products"), "Field required: setCart sets the whole cart.", "missing"
            )
            return None
        return CartChange("replace", items)
    if op == "cancel":
        return CartChange("replace", ())
    return CartChange("clear", items)


# --- the three calls, parsed ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetCall:
    sid: str | None
    person_id: str
    sign: str | None
    data: dict[str, Any]
    pixel: bool


@dataclass(frozen=True, slots=True)
class TrackCall:
    sid: str | None
    person_id: str
    sign: str | None
    action: str
    data: dict[str, Any]
    time: datetime | None
    pixel: bool
    #: The cart change of an e-commerce action (seed 4.5), else ``None``.
    cart: CartChange | None = None


@dataclass(frozen=True, slots=True)
class AliasCall:
    sid: str | None
    srcid: str
    destid: str
    destsign: str | None
    #: Not in the seed: vouches for an identified ``srcid`` in secure mode (see ``check_alias_source``).
    srcsign: str | None
    pixel: bool


def parse_set(params: Params) -> SetCall:
    person_id = params.text("id", max_length=MAX_ID)
    params.time()  # validated like every call's; a property change keeps no time of its own
    data = params.data(required=True)
    check_person_properties(params, data)
    call = SetCall(params.raw("sid"), person_id, params.raw("sign"), data, params.flag("pixel"))
    params.raise_errors()
    return call


def parse_track(params: Params) -> TrackCall:
    person_id = params.text("id", max_length=MAX_ID)
    action = params.text("action", max_length=MAX_ACTION)
    data = params.data(required=False)
    call = TrackCall(
        sid=params.raw("sid"),
        person_id=person_id,
        sign=params.raw("sign"),
        action=action,
        data=data,
        time=params.time(),
        pixel=params.flag("pixel"),
        cart=parse_cart(params, action, data),
    )
    params.raise_errors()
    return call


def parse_alias(params: Params) -> AliasCall:
    params.time()
    call = AliasCall(
        sid=params.raw("sid"),
        srcid=params.text("srcid", max_length=MAX_ID),
        destid=params.text("destid", max_length=MAX_ID),
        destsign=params.raw("destsign"),
        srcsign=params.raw("srcsign"),
        pixel=params.flag("pixel"),
    )
    params.raise_errors()
    return call


# --- secure mode (seed 4.3) -----------------------------------------------------------------


def signature(secret: str, person_id: str) -> str:
    """HMAC-SHA256 of the person id keyed with the source secret, lower-case hex.

    The seed's C# sample prints upper-case hex (``BitConverter.ToString``); either case is accepted.
    """
    return hmac.new(secret.encode(), person_id.encode(), hashlib.sha256).hexdigest()


def check_signature(source: SourceInfo, person_id: str, sign: str | None) -> bool:
    """``signed_only``: every call must be signed. Otherwise a sign that is sent must still verify.

    A sign sent to a source without a secret cannot verify: refusing it tells the integrator
    at once that their secure-mode setup is wrong, instead of silently trusting the id.
    Returns whether the call is signed: only a signed call's claims are verified (design.md,
    "Trust"), and only they reach a profile a secure source protects.
    """
    if sign is None:
        if source.signed_only:
            raise BadSignature(reason="missing_signature")
        return False
    if not source.secret:
        raise BadSignature(reason="signature_without_secret")
    expected = signature(source.secret, person_id)
    if not hmac.compare_digest(expected.encode(), sign.lower().encode()):
        raise BadSignature()
    return True


def check_alias_source(source: SourceInfo, srcid: str, destid: str, srcsign: str | None) -> bool:
    """The seed signs only ``destid``: enough for its one use, folding an anonymous id into a person.

    An identified ``srcid`` needs its own ``srcsign`` under ``signed_only``, or anyone holding
    a signature for their own id could alias a stranger's profile, history and all, into
    theirs: the identity theft secure mode exists to stop. Anonymous ids are random and
    cannot be signed by the backend, so they pass as the seed describes.
    """
    if srcid == destid or (srcsign is None and is_anonymous(srcid)):
        return True
    return check_signature(source, srcid, srcsign)


# --- building the batch ---------------------------------------------------------------------


def is_anonymous(person_id: str) -> bool:
    return person_id.startswith(ANONYMOUS_PREFIX)


def person_ref(source_id: str, person_id: str) -> IdentityRef:
    """Person ids are local to their source: person 42 of one source is not person 42 of another."""
    return IdentityRef("person", person_id, scope=source_id)


def email_ref(email: str) -> IdentityRef:
    """Global and strong: the one key that joins a Tracktor person with other sources and dialects."""
    return IdentityRef("email_sha256", email_sha256(email))


def set_batch(call: SetCall, source_id: str, meta: RequestMeta) -> IngestBatch:
    """``/set``: a traits patch (``null`` removes), and the ``email`` property mirrored as an identity.

    The email identity follows the property: a new email is linked (joining any live profile
    that already has it), and the email it replaces, or that ``null`` removes, is unlinked by
    the core inside the transaction (``email_trait``), so a corrected typo cannot later pull a
    stranger's profile into this one.
    """
    data = call.data
    person = person_ref(source_id, call.person_id)
    identities = [person]
    new_email = data.get("email")
    if new_email is not None:
        identities.append(email_ref(new_email))
    # Seed 3.1.2: a person is identified by a non-anonymous id, or by an email.
    identified = not is_anonymous(call.person_id) or new_email is not None
    return IngestBatch(
        source=SourceRef(source_id, DIALECT),
        meta=meta,
        identities=identities,
        traits=TraitsPatch(
            set={k: v for k, v in data.items() if v is not None},
            remove=[k for k, v in data.items() if v is None],
        ),
        email_trait="email",
        identified=True if identified else None,
    )


def track_batch(call: TrackCall, source_id: str, meta: RequestMeta, visit_timeout: int) -> IngestBatch:
    """``/track``: one event. Without ``ts`` the receive time is used, and the event says so.

    Tracktor has no client session: the person id is the visit key the core forms
    server-side visits from (``session_timeout`` of silence ends one).
    """
    context = {"person_id": call.person_id, "time_source": "ts" if call.time else "received"}
    return IngestBatch(
        source=SourceRef(source_id, DIALECT),
        meta=meta,
        events=[EventIn(type=call.action, properties=call.data, context=context, time=call.time)],
        identities=[person_ref(source_id, call.person_id)],
        identified=None if is_anonymous(call.person_id) else True,
        visit_key=call.person_id,
        visit_timeout=visit_timeout,
        cart=call.cart,
    )


def alias_batch(call: AliasCall, source_id: str, meta: RequestMeta) -> IngestBatch:
    """``/alias``: fold ``srcid``'s profile into ``destid``'s, irreversibly (seed 2.3).

    The core's explicit merge handles every case: neither id seen yet (both are linked to
    one new profile), only one seen, or both already on one profile (nothing to do). An id
    aliased to itself asks for no merge at all.
    """
    dest = person_ref(source_id, call.destid)
    merges = []
    if call.srcid != call.destid:
        merges.append(MergeRequest(src=person_ref(source_id, call.srcid), dest=dest, reason="alias"))
    identified = not (is_anonymous(call.srcid) and is_anonymous(call.destid))
    return IngestBatch(
        source=SourceRef(source_id, DIALECT),
        meta=meta,
        identities=[dest],
        merges=merges,
        identified=True if identified else None,
    )


def trusted(batch: IngestBatch, source: SourceInfo, signed: bool) -> IngestBatch:
    """A signed call's claims are verified; on a secure source they protect the profile named."""
    batch.verified = signed
    batch.protect = signed and source.signed_only
    return batch


# --- responses ------------------------------------------------------------------------------


def wants_pixel(request: Request, asked: bool) -> bool:
    """``?pixel=1``, or an ``<img>`` load: Accept names an image type and no JSON type."""
    if asked:
        return True
    accepted = {
        part.partition(";")[0].strip().lower() for part in request.headers.get("accept", "").split(",")
    }
    image = any(t.startswith("image/") for t in accepted)
    json = any(t == "application/json" or t.endswith("+json") for t in accepted)
    return image and not json


def render(request: Request, pixel: bool, profile_id: str) -> Response:
    if wants_pixel(request, pixel):
        return Response(PIXEL, media_type="image/gif", headers=NO_STORE)
    return json_response({"profile": {"id": profile_id}}, headers=NO_STORE)


# --- routes ---------------------------------------------------------------------------------


async def _authenticate(request: Request, services: AppServices, sid: str | None) -> SourceInfo:
    return await services.sources.authenticate(sid, DIALECT, origin=request.headers.get("origin"))


async def set_properties(request: Request) -> Response:
    """Set person properties (seed 2.1): unnamed ones stay, ``null`` removes one."""
    services = services_of(request)
    settings = services.settings
    call = parse_set(await read_params(request, settings.max_body_bytes))
    source = await _authenticate(request, services, call.sid)
    signed = check_signature(source, call.person_id, call.sign)
    batch = trusted(
        set_batch(call, source.id, request_meta(request, masked=settings.mask_ip)), source, signed
    )
    (result,) = await services.writer.write([batch])
    return render(request, call.pixel, result.profile_id)


async def track(request: Request) -> Response:
    """Track an event (seed 2.2): ``action`` is its type, ``data`` its properties, ``ts`` its time."""
    services = services_of(request)
    settings = services.settings
    call = parse_track(await read_params(request, settings.max_body_bytes))
    source = await _authenticate(request, services, call.sid)
    signed = check_signature(source, call.person_id, call.sign)
    meta = request_meta(request, masked=settings.mask_ip)
    batch = trusted(track_batch(call, source.id, meta, settings.session_timeout), source, signed)
    (result,) = await services.writer.write([batch])
    return render(request, call.pixel, result.profile_id)


async def alias(request: Request) -> Response:
    """Merge ``srcid`` into ``destid`` (seed 2.3); the answer names the destination's profile."""
    services = services_of(request)
    settings = services.settings
    call = parse_alias(await read_params(request, settings.max_body_bytes))
    source = await _authenticate(request, services, call.sid)
    signed = check_signature(source, call.destid, call.destsign)
    signed = check_alias_source(source, call.srcid, call.destid, call.srcsign) and signed
    batch = trusted(
        alias_batch(call, source.id, request_meta(request, masked=settings.mask_ip)), source, signed
    )
    (result,) = await services.writer.write([batch])
    return render(request, call.pixel, result.profile_id)


router = APIRouter(tags=["tracktor"])
# POST /track is shared with Tracardi: dialects/dispatch.py sends form bodies to ``track``.
_ROUTES: tuple[tuple[str, Callable[..., Any], tuple[str, ...], str], ...] = (
    ("/set", set_properties, ("GET", "POST"), "Tracktor: set person properties"),
    ("/track", track, ("GET",), "Tracktor: track an event"),
    ("/alias", alias, ("GET", "POST"), "Tracktor: merge two persons"),
)
for _path, _endpoint, _methods, _summary in _ROUTES:
    for _method in _methods:  # one route per method: each needs its own OpenAPI operation id
        router.add_api_route(
            _path,
            _endpoint,
            methods=[_method],
            summary=_summary,
            operation_id=f"tracktor_{_path.strip('/')}_{_method.lower()}",
        )
