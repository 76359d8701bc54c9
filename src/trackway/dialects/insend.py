"""InSend (Convead): ``POST /watch/event``, as seed 003 ("JS Event API") describes it.

The JS snippet and the PHP client post four fields, url-encoded in the query string or
in an ``application/x-www-form-urlencoded`` body: ``app_key`` (the source), ``visitor_uid``
(a registered visitor), ``guest_uid`` (an anonymous guest) and ``data``, a JSON *string*
with ``type``, ``properties``, ``visitor_info`` and the page (``url``, ``domain``, ``host``,
``path``, ``title``, ``referrer``, ``attributes``: seeds/README.md). Both uids at once mean
the guest has just registered: the guest's profile merges into the visitor's.

The dialect parses, validates, authenticates and builds one ``IngestBatch``; identities,
merges, visits, traits and the cart are the core's. Prices, quantities and revenue are
exact decimals: ``data`` is parsed with ``parse_float=Decimal``, so ``125.03`` stays
``125.03`` and is stored as the string ``"125.03"``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, NoReturn

from email_validator import EmailNotValidError, validate_email
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)

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
from trackway.core.values import MAX_DEPTH, string_problem, value_problem
from trackway.dialects._common import (
    Where,
    media_type,
    pydantic_errors,
    read_body,
    request_meta,
    url_parameters,
    urlencoded_fields,
)
from trackway.errors import TrackwayError, ValidationFailed
from trackway.responses import json_response
from trackway.services import services_of

DIALECT = "insend"
FORM = "application/x-www-form-urlencoded"
#: Content types whose body is read as url-encoded fields. ``text/plain`` is what
#: ``navigator.sendBeacon`` sends for a string body; no type at all is a bare ``curl --data-binary``.
FORM_TYPES = frozenset({FORM, "text/plain", ""})
#: The four fields of seed 003, with room for cache busters; a flood of fields is refused, not parsed.
MAX_FIELDS = 32
#: Uids become identity values (255 characters) and visit keys (``"visitor:" + uid``, 255).
MAX_UID = 200
#: Product and order ids: an order id becomes the dedup key ``"order:" + id`` (255 characters).
MAX_ID = 200
#: Page fields of ``data`` kept in each event's context (seeds/README.md).
PAGE_FIELDS = ("url", "domain", "host", "path", "title", "referrer")

Loc = tuple[str | int, ...]


class UnsupportedMediaType(TrackwayError):
    """A body that is not url-encoded fields (JSON, multipart): InSend's clients send nothing else."""

    status_code = 415
    reason = "unsupported_media_type"
    detail = "Send the fields in the query string or as an application/x-www-form-urlencoded body."


# --- reading the fields ---------------------------------------------------------------------


@dataclass
class Params:
    """The request's fields, each with where it came from, so an error can name it like pydantic's ``loc``."""

    values: dict[str, tuple[Where, str]]
    #: Where a missing field should have been: the form body when one was posted, else the query.
    where: Where

    def get(self, name: str) -> tuple[Loc, str] | None:
        """The field and its loc; an empty value counts as absent (PHP clients send ``guest_uid=``)."""
        found = self.values.get(name)
        if found is None or found[1] == "":
            return None
        return (found[0], name), found[1]

    def value(self, name: str) -> str | None:
        found = self.get(name)
        return None if found is None else found[1]


async def read_params(request: Request, limit: int) -> Params:
    """Query fields, then form fields over them: a form value wins over the query's (seed 003's clients).

    Within one place the last value of a repeated field wins, as PHP reads them.
    """
    values: dict[str, tuple[Where, str]] = {}
    for key, value in urlencoded_fields(request.scope.get("query_string", b""), "query", MAX_FIELDS):
        values[key] = ("query", value)
    where: Where = "query"
    body = await read_body(request, limit)
    if body:
        if media_type(request) not in FORM_TYPES:
            raise UnsupportedMediaType()
        for key, value in urlencoded_fields(body, "body", MAX_FIELDS):
            values[key] = ("body", value)
        where = "body"
    return Params(values, where)


# --- the data JSON string -------------------------------------------------------------------


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str, loc: Loc) -> Any:
    """``data`` as Python values, with every non-integer number an exact ``Decimal``.

    ``NaN`` and ``Infinity`` (which Python's json would accept) are refused; so is nesting
    deep enough to exhaust the parser's recursion.
    """
    try:
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise ValidationFailed.field(
            loc, "Must be a JSON string holding an object.", "json_invalid"
        ) from None


def plain(value: Any) -> Any:
    """Free-form content (extra keys, traits, attributes) as JSON typed it: decimals back to floats.

    Only the fields Trackway computes with (prices, quantities, revenue) are kept exact;
    a trait like ``"rating": 4.5`` stays a number instead of turning into a string.
    """
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


# --- field types ----------------------------------------------------------------------------


def _id_text(value: Any) -> Any:
    """Ids may come as numbers (``product_id: 123``, PHP ints): kept as their exact text."""
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    return value


def _no_exponent(value: Decimal) -> Decimal:
    """``1e2`` is stored as ``100``, not ``1E+2``: the same number, written the way shops read it."""
    exponent = value.as_tuple().exponent
    return value.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else value


def _empty_list_is_object(value: Any) -> Any:
    """PHP's ``json_encode(array())`` writes ``[]`` for an empty object; ``null`` means none too."""
    return {} if value is None or value == [] else value


Id = Annotated[
    str,
    BeforeValidator(_id_text),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_ID),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4), AfterValidator(_no_exponent)]
Money = Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=6), AfterValidator(_no_exponent)]
Object = Annotated[dict[str, Any], BeforeValidator(_empty_list_is_object)]


class _Properties(BaseModel):
    """An event's ``properties``: the fields below are checked, any other key is kept as sent."""

    model_config = ConfigDict(extra="allow")


class CartLine(_Properties):
    """A product in a cart or an order: seed 003's ``update_cart`` and ``purchase`` items."""

    product_id: Id
    qnt: Quantity
    price: Money


class AddToCart(CartLine):
    """``add_to_cart``: one product, ``qnt`` more of it."""


class RemoveFromCart(_Properties):
    """``remove_from_cart``: ``qnt`` less of one product (no price in the seed's example)."""

    product_id: Id
    qnt: Quantity


class UpdateCart(_Properties):
    """``update_cart``: the whole cart; empty ``items`` means it was cleared."""

    items: list[CartLine]


class Purchase(_Properties):
    """``purchase``: the order. ``items`` may be left out by shops that only report revenue."""

    order_id: Id
    revenue: Money
    items: list[CartLine] = Field(default_factory=list)


class ViewProduct(_Properties):
    """``view_product``: the product card; its price, when sent, must be a price."""

    product_id: Id
    price: Money | None = None


class Custom(_Properties):
    """``custom``: ``key`` is the event key set up in InSend's "My events"."""

    key: Text


class File(_Properties):
    """``file``: a download; ``file_url`` says which."""

    file_url: Text


class Mailto(_Properties):
    """``mailto``: the link's address is the site's, not the visitor's: kept as sent, never an identity."""

    email: Text


class Link(_Properties):
    """``link``: a page view; its properties are free (``key_page_id`` in the seed)."""


class UpdateInfo(_Properties):
    """``update_info``: only ``visitor_info`` matters."""


class Data(BaseModel):
    """The ``data`` JSON string's object (seed 003 and seeds/README.md); extra keys are kept."""

    model_config = ConfigDict(extra="allow")

    type: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    properties: Object = Field(default_factory=dict)
    visitor_info: Object = Field(default_factory=dict)
    url: str | None = None
    domain: str | None = None
    host: str | None = None
    path: str | None = None
    title: str | None = None
    referrer: str | None = None
    attributes: Any = None


# --- events ---------------------------------------------------------------------------------


def _typed(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return properties_of(value)
    if isinstance(value, list):
        return [_typed(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def properties_of(model: BaseModel) -> dict[str, Any]:
    """Checked fields as validated (exact decimals as strings), other keys as sent."""
    out = {key: plain(value) for key, value in (model.model_extra or {}).items()}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if value is not None or name in model.model_fields_set:
            out[name] = _typed(value)
    return out


def _item(line: CartLine) -> CartItem:
    return CartItem(line.product_id, line.qnt, line.price, extra=plain(line.model_extra or {}))


@dataclass(frozen=True, slots=True)
class Effect:
    """What one event type does: the event to store (``None``: none) and the cart change."""

    event: EventIn | None
    cart: CartChange | None = None


def _event(kind: str, props: BaseModel, context: dict[str, Any]) -> EventIn:
    return EventIn(type=kind, properties=properties_of(props), context=context)


def _add(props: BaseModel, context: dict[str, Any]) -> Effect:
    assert isinstance(props, AddToCart)
    return Effect(_event("add_to_cart", props, context), CartChange("add", (_item(props),)))


def _remove(props: BaseModel, context: dict[str, Any]) -> Effect:
    assert isinstance(props, RemoveFromCart)
    line = CartItem(props.product_id, props.qnt)
    return Effect(_event("remove_from_cart", props, context), CartChange("remove", (line,)))


def _update(props: BaseModel, context: dict[str, Any]) -> Effect:
    assert isinstance(props, UpdateCart)
    items = tuple(_item(line) for line in props.items)
    return Effect(_event("update_cart", props, context), CartChange("replace", items))


def _purchase(props: BaseModel, context: dict[str, Any]) -> Effect:
    """The order is the event, stored once per order id; the cart it was bought from is emptied."""
    assert isinstance(props, Purchase)
    event = _event("purchase", props, context)
    event.dedup_key = f"order:{props.order_id}"
    return Effect(event, CartChange("clear"))


def _update_info(_props: BaseModel, _context: dict[str, Any]) -> Effect:
    """No event: the traits are the state, and an event would copy the visitor's PII into the log."""
    return Effect(None)


def _plain_event(kind: str) -> Callable[[BaseModel, dict[str, Any]], Effect]:
    def effect(props: BaseModel, context: dict[str, Any]) -> Effect:
        return Effect(_event(kind, props, context))

    return effect


#: Seed 003's event types: the model checking ``properties``, and what the event does.
EVENT_TYPES: dict[str, tuple[type[_Properties], Callable[[BaseModel, dict[str, Any]], Effect]]] = {
    "add_to_cart": (AddToCart, _add),
    "remove_from_cart": (RemoveFromCart, _remove),
    "update_cart": (UpdateCart, _update),
    "purchase": (Purchase, _purchase),
    "view_product": (ViewProduct, _plain_event("view_product")),
    "link": (Link, _plain_event("link")),
    "file": (File, _plain_event("file")),
    "mailto": (Mailto, _plain_event("mailto")),
    "custom": (Custom, _plain_event("custom")),
    "update_info": (UpdateInfo, _update_info),
}


# --- the call, validated --------------------------------------------------------------------


@dataclass
class Call:
    """One ``/watch/event`` request, validated: who, what, and the visitor's new traits."""

    visitor_uid: str | None
    guest_uid: str | None
    data: Data
    properties: _Properties
    traits: dict[str, Any] = field(default_factory=dict)
    email: str | None = None


def _uid(params: Params, name: str, errors: list[dict[str, Any]]) -> str | None:
    found = params.get(name)
    if found is None:
        return None
    loc, value = found
    if len(value) > MAX_UID:
        errors.append({"loc": list(loc), "msg": f"At most {MAX_UID} characters.", "type": "string_too_long"})
    elif (problem := string_problem(value)) is not None:
        errors.append({"loc": list(loc), "msg": problem, "type": "value_error"})
    return value


def _uids(params: Params, errors: list[dict[str, Any]]) -> tuple[str | None, str | None]:
    """At least one uid: a guest, a registered visitor, or both (the guest has just registered)."""
    visitor, guest = _uid(params, "visitor_uid", errors), _uid(params, "guest_uid", errors)
    if visitor is None and guest is None:
        msg = "visitor_uid or guest_uid is required."
        errors.extend(
            {"loc": [params.where, name], "msg": msg, "type": "missing"}
            for name in ("visitor_uid", "guest_uid")
        )
    return visitor, guest


def _validate(model: type[BaseModel], value: Any, loc: Loc) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValidationFailed(pydantic_errors(exc, prefix=loc)) from None


def parse_data(params: Params) -> tuple[Data, _Properties, Loc]:
    """``data``: JSON, storable, an object of the known shape, with the properties its type needs.

    Returns the data, its checked properties, and its loc (``["body", "data"]`` or the query's).
    """
    found = params.get("data")
    if found is None:
        raise ValidationFailed.field((params.where, "data"), "Field required", "missing")
    loc, text = found
    raw = parse_json(text, loc)
    if not isinstance(raw, dict):
        raise ValidationFailed.field(loc, "Must be a JSON string holding an object.", "dict_type")
    # What no database could store (NUL, a lone surrogate, a huge integer, too deep): a 422.
    # ``data`` is the envelope around the values: ``properties`` gets the depth every dialect allows.
    problem = value_problem(raw, loc, MAX_DEPTH + 1)
    if problem is not None:
        raise ValidationFailed([problem])
    data: Data = _validate(Data, raw, loc)
    kind = EVENT_TYPES.get(data.type)
    if kind is None:
        known = ", ".join(EVENT_TYPES)
        raise ValidationFailed.field((*loc, "type"), f"Unknown event type; expected one of {known}.", "enum")
    properties: _Properties = _validate(kind[0], data.properties, (*loc, "properties"))
    return data, properties, loc


def _traits(visitor_info: dict[str, Any], loc: Loc) -> tuple[dict[str, Any], str | None]:
    """``visitor_info`` as traits to set, and its email once validated (it becomes an identity).

    ``null`` and ``""`` say "not known here", not "forget it": they change nothing.
    """
    traits = {key: plain(value) for key, value in visitor_info.items() if value is not None and value != ""}
    email = traits.get("email")
    if email is None:
        return traits, None
    problem = "Must be a string: an email address."
    if isinstance(email, str):
        try:
            # Form fields often carry a stray space: trimmed, as the identity hash trims it too.
            validate_email(email.strip(), check_deliverability=False)
        except EmailNotValidError as exc:
            problem = f"Not a valid email address: {exc}"
        else:
            traits["email"] = email.strip()
            return traits, traits["email"]
    raise ValidationFailed.field((*loc, "visitor_info", "email"), problem)


def parse_call(params: Params) -> Call:
    """Everything a 422 can be about, checked before anything is written."""
    errors: list[dict[str, Any]] = []
    visitor, guest = _uids(params, errors)
    try:
        data, properties, data_loc = parse_data(params)
    except ValidationFailed as exc:
        raise ValidationFailed([*errors, *exc.detail]) from None
    if errors:
        raise ValidationFailed(errors)
    traits, email = _traits(data.visitor_info, data_loc)
    return Call(visitor, guest, data, properties, traits, email)


# --- the batch ------------------------------------------------------------------------------


def visitor_ref(source_id: str, uid: str) -> IdentityRef:
    """A registered visitor of one site: uids are the site's own, so they are scoped to the source."""
    return IdentityRef("visitor", uid, scope=source_id)


def guest_ref(source_id: str, uid: str) -> IdentityRef:
    return IdentityRef("guest", uid, scope=source_id)


def page_context(data: Data) -> dict[str, Any]:
    """The page the event happened on, as the event's context (seeds/README.md's ``data`` fields)."""
    context: dict[str, Any] = {}
    page = {name: getattr(data, name) for name in PAGE_FIELDS if getattr(data, name) is not None}
    if page:
        context["page"] = page
    if data.attributes is not None:
        context["attributes"] = plain(data.attributes)
    if data.model_extra:
        context["extra"] = plain(data.model_extra)
    return context


def session_context(data: Data) -> dict[str, Any]:
    """What a visit keeps from its first event: landing page, page referrer, UTM of the landing URL."""
    captured: dict[str, Any] = {}
    if data.url:
        captured["landing_page"] = data.url
        utm = url_parameters(data.url, ("utm_",))
        if utm:
            captured["utm"] = utm
    if data.referrer:
        captured["page_referrer"] = data.referrer
    return captured


def _identities(call: Call, source_id: str) -> list[IdentityRef]:
    """Strongest first: the registered visitor, the guest, then the email (global: joins other sources)."""
    refs = []
    if call.visitor_uid is not None:
        refs.append(visitor_ref(source_id, call.visitor_uid))
    if call.guest_uid is not None:
        refs.append(guest_ref(source_id, call.guest_uid))
    if call.email is not None:
        refs.append(IdentityRef("email_sha256", email_sha256(call.email)))
    return refs


def _merges(call: Call, source_id: str) -> list[MergeRequest]:
    """Both uids (seed 003): the guest registered. Their profile folds into the visitor's, which survives."""
    if call.visitor_uid is None or call.guest_uid is None:
        return []
    return [
        MergeRequest(
            src=guest_ref(source_id, call.guest_uid),
            dest=visitor_ref(source_id, call.visitor_uid),
            reason="guest-registered",
        )
    ]


def visit_key(call: Call) -> str:
    """InSend sends no session id: the server derives visits from the uid the person is known by."""
    if call.visitor_uid is not None:
        return f"visitor:{call.visitor_uid}"
    return f"guest:{call.guest_uid}"


def to_batch(call: Call, source: SourceRef, meta: RequestMeta, visit_timeout: int) -> IngestBatch:
    _model, effect_of = EVENT_TYPES[call.data.type]
    effect = effect_of(call.properties, page_context(call.data))
    return IngestBatch(
        source=source,
        meta=meta,
        events=[effect.event] if effect.event is not None else [],
        identities=_identities(call, source.id),
        merges=_merges(call, source.id),
        # A registered visitor, or someone who gave their email, is no longer anonymous.
        identified=True if call.visitor_uid is not None or call.email is not None else None,
        # No event, no visit: an ``update_info`` alone must not open an empty one.
        visit_key=visit_key(call) if effect.event is not None else None,
        visit_timeout=visit_timeout,
        session_context=session_context(call.data),
        traits=TraitsPatch(set=call.traits),
        # visitor_info's email is the global email identity: a new one unlinks the old address.
        email_trait="email",
        cart=effect.cart,
    )


# --- the route ------------------------------------------------------------------------------

router = APIRouter(tags=["insend"])


@router.post("/watch/event", summary="InSend event (seed 003): fields in the query string or a form body")
async def watch_event(request: Request) -> Response:
    """Authenticate ``app_key``, validate, ingest; answer with the profile the event landed on."""
    services = services_of(request)
    settings = services.settings
    params = await read_params(request, settings.max_body_bytes)
    info = await services.sources.authenticate(
        params.value("app_key"), DIALECT, origin=request.headers.get("origin")
    )
    call = parse_call(params)
    meta = request_meta(request, masked=settings.mask_ip)
    batch = to_batch(call, SourceRef(info.id, DIALECT), meta, settings.session_timeout)
    (result,) = await services.writer.write([batch])
    return json_response({"profile": {"id": result.profile_id}})
