"""The one internal contract: every dialect turns its wire format into an ``IngestBatch``.

Plain dataclasses, not pydantic models: the dialects validate at the wire; by the time a
batch exists its content is trusted, and building it should cost next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class SourceRef:
    """The authenticated source a batch came from."""

    id: str
    dialect: str


@dataclass(frozen=True, slots=True)
class IdentityRef:
    """A key naming a person. ``scope`` is a source id for source-local kinds, ``""`` for global ones.

    ``strong`` keys merge two profiles that both claim them (an email hash, a person id);
    weak keys (a visit hash) only find a profile and never cause a merge.
    """

    kind: str
    value: str
    scope: str = ""
    strong: bool = True


@dataclass(frozen=True, slots=True)
class MergeRequest:
    """Fold the profile named by ``src`` into the one named by ``dest`` (alias, guest to visitor)."""

    src: IdentityRef
    dest: IdentityRef
    reason: str


@dataclass(slots=True)
class TraitsPatch:
    """Top-level trait changes: ``set`` overwrites keys, ``remove`` deletes them."""

    set: dict[str, Any] = field(default_factory=dict)
    remove: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.set or self.remove)


@dataclass(slots=True)
class EventIn:
    """One event as the core stores it. ``time`` None means "when it was received"."""

    type: str
    properties: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    time: datetime | None = None
    dedup_key: str | None = None


@dataclass(frozen=True, slots=True)
class CartItem:
    """A cart line. ``qnt`` and ``price`` are exact decimals; ``extra`` keeps name, url, image..."""

    product_id: str
    qnt: Decimal
    price: Decimal | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CartChange:
    """What a batch does to the profile's cart in its source.

    ``replace`` sets the whole cart (empty items: the visitor emptied it), ``add`` /
    ``remove`` change quantities line by line, ``clear`` empties it by a purchase; a
    ``clear``'s ``items``, when given, are what was bought (Tracktor's ``purchaseCart``
    names the cart), else the cart's own (``core/carts.py``: the lifecycle's outcome).
    """

    op: Literal["replace", "add", "remove", "clear"]
    items: tuple[CartItem, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """What the HTTP request itself tells about the client."""

    received_at: datetime
    user_agent: str | None = None
    ip: str | None = None
    referer: str | None = None
    origin: str | None = None

    def as_context(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (
                ("user_agent", self.user_agent),
                ("ip", self.ip),
                ("referer", self.referer),
                ("origin", self.origin),
            )
            if v
        }


@dataclass(slots=True)
class IngestBatch:
    """Everything one request asks the core to do, in one transaction."""

    source: SourceRef
    meta: RequestMeta
    events: list[EventIn] = field(default_factory=list)
    #: Keys naming the person, strongest first.
    identities: list[IdentityRef] = field(default_factory=list)
    #: A profile id the client believes is its own (Tracardi's ``profile.id``).
    profile_hint: str | None = None
    #: The client's visit key (Tracardi's ``session.id``); ``None``: no session.
    session_key: str | None = None
    #: Context captured when the session starts (landing page, UTM, device).
    session_context: dict[str, Any] = field(default_factory=dict)
    #: ``False`` keeps the events but records no session (Tracardi ``saveSession: false``).
    save_session: bool = True
    #: For dialects without client sessions: events with this key form one visit until
    #: ``visit_timeout`` seconds of silence (a person id, a Tracify type-2 visit hash).
    visit_key: str | None = None
    visit_timeout: int = 1800
    traits: TraitsPatch = field(default_factory=TraitsPatch)
    #: Identities to detach from the profile.
    unlink: list[IdentityRef] = field(default_factory=list)
    #: The trait that holds the person's email, mirrored as the global email identity: when
    #: the batch's patch replaces or removes it, the address it held is unlinked from the
    #: profile, inside the transaction (so a corrected typo cannot later pull a stranger in).
    email_trait: str | None = None
    #: True: the request names an identified person; None: says nothing about it.
    identified: bool | None = None
    merges: list[MergeRequest] = field(default_factory=list)
    cart: CartChange | None = None
    #: The request proved who it names (a valid Tracktor ``sign``, Tracify's API key). An
    #: unverified batch never lands on, merges into or learns the id of a protected profile.
    verified: bool = False
    #: From a secure (``signed_only``) source, verified: the profile it lands on becomes protected.
    protect: bool = False
    #: Sent by a crawler, a headless browser or a monitor: its events are stored with ``bot``
    #: set, which the read side's metrics, funnels and segments leave out unless asked.
    bot: bool = False


@dataclass(slots=True)
class IngestResult:
    """What the core did, for the dialect to render."""

    profile_id: str
    session_id: str | None
    stored_event_ids: list[str]
    duplicate_event_ids: list[str]
    profile_created: bool
    session_created: bool
    #: How the profile was found: "hint", "identity", "session", "new", or "duplicate" (the
    #: batch only repeated stored events: the profile they belong to, nothing written).
    resolved_by: str
    #: Profiles folded into ``profile_id`` by this batch.
    merged: list[str] = field(default_factory=list)
    #: The batch names an erased person's suppressed key: answered as usual, nothing stored
    #: (``core/suppression.py``); its ids name no stored row.
    suppressed: bool = False
