"""A seeded random walk of request sequences mixing all four dialects (issue #13).

A sequence is a list of ``Step``s; a step is one request, or several sent at once
(``asyncio.gather``: what puts several batches in one group-commit group). Requests are
abstract (``Req``): the player turns them into HTTP calls. A request may name a profile id
learned from an earlier answer (``AnswerRef``), resolved at play time from that play's
own answers, so the same sequence means the same thing under every configuration.

A small pool of people per sequence makes them collide: emails shared by Tracktor, InSend
and Tracify; Tracktor person ids aliased both ways; InSend guests registering; Tracardi
profile ids learned from any dialect's answers (also of profiles merged since), sent with
new and known session ids; unknown profile ids with a known session (lost-profile recovery);
traits set and removed (email null included); carts; resends of the same event ids and order
ids (dedup).

Every event carries a unique marker ``m`` in its properties: the snapshot names events,
sessions and profiles by it instead of by generated ids. Client-given times (Tracardi
``time``, Tracktor ``ts``, Tracify ``datetime``) come from a logical clock in 2024, so visits
the server derives do not depend on the wall clock; only InSend (which sends no time) uses
the receive time, and its visits stay within one session timeout while a sequence plays.

Concurrent steps hold only requests that store events and set no traits, and never resend:
what they leave must not depend on the order the server happens to run them in
(``last_seen_at`` is the latest of its requests' receive times, a trait set twice keeps
whichever came last, a resend's receive time would be a request storing nothing).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

#: The sources every play creates (``player.SOURCES``), by dialect.
TRACARDI = "diff-web"
TRACKTOR = "diff-app"
INSEND = "diff-shop"
TRACIFY = "diff-tracify"
TRACIFY_SECRET = "diff-tracify-secret-0123456789"

#: Client times start here; everything the dialects let a client date is dated by ``Clock``.
EPOCH = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
PRODUCTS = {"p1": "10.50", "p2": "3.25", "p3": "99.00"}


@dataclass(frozen=True)
class AnswerRef:
    """The profile id the answer of step ``step`` (a stable step id), request ``index`` named.

    For a Tracify batch, ``event`` picks the answer's event (its ``profile_id``).
    """

    step: int
    index: int = 0
    event: int = 0


@dataclass
class Req:
    """One request: ``kind`` is tracardi, t_set, t_track, t_alias, insend or tracify."""

    kind: str
    params: dict[str, Any]
    #: The stable step id this request was generated in (``Step.id``), its place in the step.
    origin: tuple[int, int] = (0, 0)
    #: A resend of an earlier request (same event ids, order ids, markers).
    resend_of: tuple[int, int] | None = None

    def describe(self) -> str:
        extra = f" (resend of {self.resend_of})" if self.resend_of else ""
        return f"{self.kind} {self.params}{extra}"


@dataclass
class Step:
    id: int
    requests: list[Req]
    #: Sent at once (``asyncio.gather``) rather than one after the other.
    concurrent: bool = False
    #: What the generator meant (``merged-hint``, ``several-people``...), for reports.
    note: str = ""


@dataclass
class Sequence:
    seed: int
    steps: list[Step]
    #: Email addresses by name, and Tracify visits, for readable labels.
    emails: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        lines = [f"sequence seed={self.seed}:"]
        for step in self.steps:
            how = "concurrent " if step.concurrent else ""
            note = f" [{step.note}]" if step.note else ""
            lines.append(f"  step {step.id} {how}{note}")
            for req in step.requests:
                lines.append(f"    {req.describe()}")
        return "\n".join(lines)

    def without(self, step_ids: set[int]) -> Sequence | None:
        """The sequence without some steps, or ``None`` if a kept step names a dropped one's answer.

        (A resend whose original is dropped stays: it becomes the first send.)
        """
        kept = [s for s in self.steps if s.id not in step_ids]
        for step in kept:
            for req in step.requests:
                if any(ref.step in step_ids for ref in refs_of(req)):
                    return None
        return Sequence(self.seed, kept, self.emails)


def refs_of(req: Req) -> list[AnswerRef]:
    hint = req.params.get("hint")
    return [hint] if isinstance(hint, AnswerRef) else []


class Clock:
    """A logical client clock: each step moves it by a short or a long pause (visits split)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = EPOCH

    def tick(self) -> datetime:
        self.now += timedelta(seconds=self.rng.choice([20, 45, 300, 600, 7200]))
        return self.now


class Generator:
    """Builds one sequence from a seed. ``features`` switches request families off (see
    ``test_differential.KNOWN_DIVERGENCES``)."""

    def __init__(self, seed: int, length: int, disabled: frozenset[str] = frozenset()) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.length = length
        self.disabled = disabled
        self.clock = Clock(self.rng)
        rng = self.rng
        names = rng.sample(["ann", "bob", "cy", "dee"], 3)
        self.emails = {n: f"{n}@example.com" for n in names}
        self.tracktor_ids = rng.sample(["a-1", "a-2", "a-3"], 2) + rng.sample(["u1", "u2", "u3"], 2)
        self.guests = ["g1", "g2"]
        self.visitors = ["v1", "v2"]
        self.visits = ["10.0.0.1|UA-1", "10.0.0.2|UA-2"]
        self.steps: list[Step] = []
        self.sessions: list[str] = []  # Tracardi session keys used so far
        self.session_counter = 0
        #: Answers that name a profile: (AnswerRef, kind of request), to learn hints from.
        self.answers: list[tuple[AnswerRef, str]] = []
        #: Earlier requests that can be sent again as they were (dedup).
        self.resendable: list[Req] = []
        self.insend_orders = 0
        #: Tracardi answers that name a profile no merge can touch (``note_tracardi``).
        self.native: list[tuple[AnswerRef, str]] = []
        self.foreign_sessions: set[str] = set()
        self.tracify_orders = 0

    # --- helpers -------------------------------------------------------------------------

    def on(self, feature: str) -> bool:
        return feature not in self.disabled

    def marker(self, step: int, index: int, k: int = 0) -> str:
        return f"e{step:02d}.{index}.{k}"

    def new_session(self) -> str:
        self.session_counter += 1
        return f"s{self.session_counter}"

    def pick_session(self, new_bias: float = 0.5) -> str:
        if not self.sessions or self.rng.random() < new_bias:
            key = self.new_session()
        else:
            key = self.rng.choice(self.sessions)
        if key not in self.sessions:
            self.sessions.append(key)
        return key

    def pick_hint(self) -> Any:
        """None, a garbage id, or a profile id some earlier answer gave (of any dialect)."""
        roll = self.rng.random()
        answers = self.answers if self.on("merged-hint") else self.native
        if roll < 0.2 or not answers:
            return None
        if roll < 0.3:
            return f"unknown-{self.rng.randint(1, 3)}"
        # Answers about ids that tend to get merged later (anonymous ids, guests, visit hashes)
        # are as likely as any: they are the hints that name merged profiles.
        return self.rng.choice(answers)[0]

    def note_tracardi(self, req: Req) -> None:
        """Keep track of the Tracardi answers that can only name a Tracardi-made profile (one
        without identities, so never merged): with ``merged-hint`` off, hints come only from them.

        A request hinted with another answer's profile may land on a profile of another
        dialect, and so may one that recovers its profile from a session such a request used.
        """
        hint, session = req.params["hint"], req.params["session"]
        if isinstance(hint, AnswerRef):
            foreign = hint not in {ref for ref, _ in self.native}
        else:
            foreign = session is not None and session in self.foreign_sessions
        if foreign:
            if session is not None:
                self.foreign_sessions.add(session)
            return
        self.native.append((AnswerRef(req.origin[0], req.origin[1]), "tracardi"))

    # --- requests ------------------------------------------------------------------------

    def tracardi(
        self, step: int, index: int, *, session: Any = "pick", hint: Any = "pick", n: int = 0
    ) -> Req:
        rng = self.rng
        known = len(self.sessions)
        if session == "pick":
            session = None if rng.random() < 0.1 else self.pick_session()
        if hint == "pick":
            hint = self.pick_hint()
        at = self.clock.now
        events = []
        for k in range(n or rng.choice([1, 1, 2, 3])):
            events.append(
                {
                    "id": f"ev-{step}-{index}-{k}",
                    "type": rng.choice(["page-view", "product-view", "add-to-cart"]),
                    "time": (at + timedelta(seconds=k)).isoformat(),
                    "m": self.marker(step, index, k),
                }
            )
        if self.on("repeat-in-payload") and rng.random() < 0.1:
            events.append(dict(events[0]))  # one event id twice in one payload: stored once
        params = {"session": session, "hint": hint, "events": events}
        if self.on("no-session") and session is not None and rng.random() < 0.06:
            params["save_session"] = False  # saveSession: false on every event: no visit
            # The session is not opened: a key this request made up is no known session.
            del self.sessions[known:]
        return Req("tracardi", params, (step, index))

    def t_track(self, step: int, index: int, person: str | None = None, ts: datetime | None = None) -> Req:
        person = person or self.rng.choice(self.tracktor_ids)
        ts = ts or self.clock.now
        action = self.rng.choice(["viewed", "rated-product", "signup"])
        params = {"id": person, "action": action, "ts": int(ts.timestamp()), "m": self.marker(step, index)}
        return Req("t_track", params, (step, index))

    def t_set(self, step: int, index: int) -> Req:
        rng = self.rng
        person = rng.choice(self.tracktor_ids)
        data: dict[str, Any] = {}
        roll = rng.random()
        if roll < 0.5 and self.on("email"):
            data["email"] = self.emails[rng.choice(list(self.emails))]
        elif roll < 0.65:
            data["email"] = None
        if rng.random() < 0.6:
            data["plan"] = rng.choice(["free", "gold", None])
        if rng.random() < 0.3:
            data["first_name"] = rng.choice(["Ann", "Bo"])
        if not data:
            data["plan"] = "free"
        return Req("t_set", {"id": person, "data": data}, (step, index))

    def t_alias(self, step: int, index: int) -> Req:
        src, dest = self.rng.sample(self.tracktor_ids, 2)
        if self.rng.random() < 0.1:
            dest = src  # an alias to itself: changes nothing
        return Req("t_alias", {"srcid": src, "destid": dest}, (step, index))

    def insend(self, step: int, index: int, *, kind: str | None = None, who: Any = None) -> Req:
        rng = self.rng
        if who is None:
            roll = rng.random()
            if roll < 0.4:
                who = (None, rng.choice(self.guests))
            elif roll < 0.8 or not self.on("registration"):
                who = (rng.choice(self.visitors), None)
            else:
                who = (rng.choice(self.visitors), rng.choice(self.guests))  # the guest registers
        kinds = ["view_product", "add_to_cart", "add_to_cart", "remove_from_cart", "update_cart", "purchase"]
        kind = kind or rng.choice([*kinds, "update_info"])
        m = self.marker(step, index)
        product = rng.choice(list(PRODUCTS))
        props: dict[str, Any]
        if kind == "view_product":
            props = {"product_id": product, "price": PRODUCTS[product]}
        elif kind == "add_to_cart":
            props = {"product_id": product, "qnt": rng.choice([1, 2]), "price": PRODUCTS[product]}
            props["product_name"] = f"Product {product}"
        elif kind == "remove_from_cart":
            props = {"product_id": product, "qnt": 1}
        elif kind == "update_cart":
            chosen = rng.sample(list(PRODUCTS), rng.choice([0, 1, 2]))
            props = {"items": [{"product_id": p, "qnt": 1, "price": PRODUCTS[p]} for p in chosen]}
        elif kind == "purchase":
            self.insend_orders += 1
            props = {"order_id": f"o{self.insend_orders}", "revenue": "10.50"}
            props["items"] = [{"product_id": "p1", "qnt": 1, "price": "10.50"}]
        else:
            props = {}
        if kind != "update_info":
            props["m"] = m
        visitor_info: dict[str, Any] = {}
        if kind == "update_info" or rng.random() < 0.2:
            if self.on("email") and rng.random() < 0.6:
                visitor_info["email"] = self.emails[rng.choice(list(self.emails))]
            visitor_info["first_name"] = rng.choice(["Ann", "Bo", "Cy"])
        params = {"visitor": who[0], "guest": who[1], "type": kind, "properties": props}
        if visitor_info:
            params["visitor_info"] = visitor_info
        return Req("insend", params, (step, index))

    def tracify(self, step: int, index: int) -> Req:
        rng = self.rng
        events = []
        for k in range(rng.choice([1, 1, 2])):
            email = None
            if self.on("email") and rng.random() < 0.5:
                email = self.emails[rng.choice(list(self.emails))]
            visit = rng.choice(self.visits) if rng.random() < 0.8 or email is None else None
            kind = rng.choice(["pageview", "productview", "addtocart", "purchase", "conversion"])
            event: dict[str, Any] = {
                "type": kind,
                "email": email,
                "visit": visit,
                "at": (self.clock.now + timedelta(seconds=k)).strftime("%Y-%m-%d %H:%M:%S"),
                "m": self.marker(step, index, k),
            }
            if kind == "purchase":
                self.tracify_orders += 1
                event["order_id"] = f"T-{self.tracify_orders}"
            elif kind == "conversion":
                event["conversion_id"] = f"C-{rng.randint(1, 3)}"
            events.append(event)
        return Req("tracify", {"events": events}, (step, index))

    # --- concurrent steps ------------------------------------------------------------------

    def concurrent(self, step: int) -> tuple[list[Req], str]:
        """Requests for one person (or several people) at once; each stores events, none sets traits."""
        reqs, scenario = self._concurrent(step)
        if not self.on("several-people"):
            # A batch storing no event in the group's session still moves its clock on the
            # bulk path (the "several-people" divergence, for one visitor): keep them apart.
            for req in reqs:
                req.params.pop("save_session", None)
        return reqs, scenario

    def _concurrent(self, step: int) -> tuple[list[Req], str]:
        rng = self.rng
        k = rng.choice([2, 3, 4])
        choices = ["one-visit", "tracktor-person", "insend-cart", "mixed"]
        if self.on("several-people"):
            choices.append("several-people")
        scenario = rng.choice(choices)
        if scenario == "one-visit":
            # One visitor's requests racing: a new or known session, one hint for all of them.
            hint = self.pick_hint()
            if isinstance(hint, AnswerRef) or self.on("new-visitor-burst"):
                session = self.pick_session(new_bias=0.6)
                return [self.tracardi(step, i, session=session, hint=hint) for i in range(k)], scenario
            # A burst of first hits of a new visitor (a new session, no live hint) is turned
            # off (``new-visitor-burst``): the visitor is a known session's instead.
            if self.sessions:
                session = self.rng.choice(self.sessions)
                return [self.tracardi(step, i, session=session, hint=hint) for i in range(k)], scenario
            scenario = "tracktor-person"
        if scenario == "several-people":
            # Several people in one group: each its own session and hint.
            reqs = []
            for i in range(k):
                session = self.pick_session(new_bias=0.5)
                reqs.append(self.tracardi(step, i, session=session, hint=self.pick_hint()))
            # Two requests of one session would race for it with different hints: keep one each.
            seen: set[str] = set()
            unique = []
            for req in reqs:
                key = req.params["session"]
                if key not in seen:
                    seen.add(key)
                    unique.append(req)
            return unique, scenario
        if scenario == "tracktor-person":
            person = rng.choice(self.tracktor_ids)
            ts = self.clock.now
            return [self.t_track(step, i, person, ts) for i in range(k)], scenario
        if scenario == "insend-cart":
            who = (rng.choice(self.visitors), None) if rng.random() < 0.5 else (None, rng.choice(self.guests))
            reqs = [self.insend(step, i, kind="add_to_cart", who=who) for i in range(k)]
            for req in reqs:
                req.params.pop("visitor_info", None)
            return reqs, scenario
        # mixed: a Tracktor person and a Tracardi visitor whose hint is that person's profile.
        person = rng.choice(self.tracktor_ids)
        tracktor_answers = [ref for ref, kind in self.answers if kind == "t_track"]
        hint = rng.choice(tracktor_answers) if tracktor_answers and self.on("merged-hint") else None
        session = self.pick_session(new_bias=0.7)
        return [
            self.t_track(step, 0, person, self.clock.now),
            self.tracardi(step, 1, session=session, hint=hint),
        ], scenario

    # --- the walk ---------------------------------------------------------------------------

    def resend(self, step: int) -> Req | None:
        candidates = [r for r in self.resendable if r.kind in ("tracardi", "tracify", "insend")]
        if not candidates:
            return None
        original = self.rng.choice(candidates)
        req = Req(original.kind, copy.deepcopy(original.params), (step, 0), resend_of=original.origin)
        if req.kind == "tracardi" and self.on("resend-elsewhere") and self.rng.random() < 0.4:
            # The same event ids again, in another visit (re-queued after the session rotated).
            req.params["session"] = self.pick_session(new_bias=0.7)
        return req

    def one(self, step: int) -> tuple[Req, str]:
        rng = self.rng
        roll = rng.random()
        if roll < 0.28:
            return self.tracardi(step, 0), "tracardi"
        if roll < 0.36:
            # Lost-profile recovery: an unknown profile id (or none) with a known session.
            if self.sessions:
                hint = rng.choice([None, f"lost-{rng.randint(1, 9)}"])
                return self.tracardi(step, 0, session=rng.choice(self.sessions), hint=hint), "lost-profile"
            return self.tracardi(step, 0), "tracardi"
        if roll < 0.42 and self.on("merged-hint"):
            # A merged profile's id as the hint, with a new or a known session.
            merged = [ref for ref, kind in self.answers if kind != "tracardi"]
            if merged:
                return (
                    self.tracardi(step, 0, session=self.pick_session(0.6), hint=rng.choice(merged)),
                    "hint-of-maybe-merged",
                )
        if roll < 0.52:
            return self.t_track(step, 0), "tracktor"
        if roll < 0.62:
            return self.t_set(step, 0), "tracktor-set"
        if roll < 0.68 and self.on("alias"):
            return self.t_alias(step, 0), "tracktor-alias"
        if roll < 0.84:
            return self.insend(step, 0), "insend"
        if roll < 0.94:
            return self.tracify(step, 0), "tracify"
        resent = self.resend(step) if self.on("resend") else None
        if resent is not None:
            return resent, "resend"
        return self.tracardi(step, 0), "tracardi"

    def learn(self, step: Step) -> None:
        for req in step.requests:
            index = req.origin[1]
            if req.kind == "tracify":
                for k in range(len(req.params["events"])):
                    self.answers.append((AnswerRef(step.id, index, k), "tracify"))
            elif req.kind == "t_alias":
                self.answers.append((AnswerRef(step.id, index), "t_alias"))
            else:
                self.answers.append((AnswerRef(step.id, index), req.kind))
            if req.kind == "tracardi":
                self.note_tracardi(req)
            if (
                req.kind in ("tracardi", "tracify", "insend")
                and req.resend_of is None
                and not step.concurrent
            ):
                self.resendable.append(req)

    def generate(self) -> Sequence:
        for step_id in range(self.length):
            self.clock.tick()
            if step_id > 1 and self.on("concurrent") and self.rng.random() < 0.22:
                reqs, note = self.concurrent(step_id)
                step = Step(step_id, reqs, concurrent=len(reqs) > 1, note=note)
            else:
                req, note = self.one(step_id)
                step = Step(step_id, [req], note=note)
            self.steps.append(step)
            self.learn(step)
        return Sequence(self.seed, self.steps, self.emails)


def generate(seed: int, length: int = 14, disabled: frozenset[str] = frozenset()) -> Sequence:
    return Generator(seed, length, disabled).generate()
