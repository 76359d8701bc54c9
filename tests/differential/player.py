"""Play a ``Sequence`` against a running app and take a canonical snapshot of what the read API shows.

The snapshot names nothing by a generated id. Events are named by the marker ``m`` every
generated event carries; Tracardi sessions by their source and client key; derived visits by
their first event's marker; live profiles by their smallest identity (else marker, else
Tracardi session); a merged profile's id by the first answer that gave it and its survivor.
Wall-clock times (``received_at``, ``created_at``, ``updated_at``, ``last_seen_at``, receive-time
``started_at`` / ``last_event_at``) become the step they fall in, and, where the rules say what
they must be, their relation to the receive times of the entity's own events (``=last``: the
latest of them, ``>last``: later than every event of it...). Client-given times (2024) are kept.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import ADMIN
from tests.differential.generator import (
    INSEND,
    TRACARDI,
    TRACIFY,
    TRACIFY_SECRET,
    TRACKTOR,
    AnswerRef,
    Req,
    Sequence,
)
from trackway.core import sources as source_service
from trackway.core.identity import email_sha256
from trackway.core.sessions import session_id_for

#: Times before this are client-given (the generator's clock is in 2024); later ones are wall clock.
CLIENT_TIME_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
PERSON_TABLES = ("events", "carts", "sessions", "identities", "profile_merges", "profiles")
TRACARDI_PAGE = {"page": {"url": "https://web.example/home?utm_source=news", "title": "Home"}}
INSEND_PAGE = {
    "url": "https://shop.example/p?utm_source=mail",
    "title": "Shop",
    "referrer": "https://s.example/",
}


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- the app's database --------------------------------------------------------------------


async def ensure_sources(app: FastAPI) -> None:
    """The four sources of every play (kept across resets)."""
    uow = app.state.services.uow
    async with uow.read() as db:
        existing = set((await db.exec_driver_sql("SELECT id FROM sources")).scalars())
    wanted = [
        (TRACARDI, "tracardi", None),
        (TRACKTOR, "tracktor", None),
        (INSEND, "insend", None),
        (TRACIFY, "tracify", TRACIFY_SECRET),
    ]
    for source_id, dialect, secret in wanted:
        if source_id not in existing:
            await source_service.create_source(
                uow, name=source_id, dialect=dialect, source_id=source_id, secret=secret
            )


async def reset(app: FastAPI) -> None:
    """Every person row gone, sources kept: a fresh database for the next sequence."""
    uow = app.state.services.uow
    async with uow.transaction() as db:
        # DELETE, not TRUNCATE: a few dozen rows go faster than PostgreSQL's new table files.
        await db.exec_driver_sql("UPDATE profiles SET merged_into = NULL WHERE merged_into IS NOT NULL")
        for table in PERSON_TABLES:
            await db.exec_driver_sql(f"DELETE FROM {table}")
    await ensure_sources(app)


# --- playing ---------------------------------------------------------------------------------


@dataclass
class PlayLog:
    """What one play did: each request's answer, and when each step ran (wall clock)."""

    answers: dict[tuple[int, int], tuple[int, Any]] = field(default_factory=dict)
    #: (step id, started, ended), in play order.
    steps: list[tuple[int, datetime, datetime]] = field(default_factory=list)

    def profile_of(self, ref: AnswerRef) -> str:
        status, body = self.answers.get((ref.step, ref.index), (0, None))
        if status != 200 or not isinstance(body, dict):
            return f"no-answer-{ref.step}-{ref.index}"
        if "events" in body and "accepted" in body:  # Tracify
            return str(body["events"][ref.event]["profile_id"])
        return str(body["profile"]["id"])

    def answered_ids(self) -> Iterator[tuple[str, str]]:
        """Every profile id an answer named, with where: ``A<step>.<index>[.<event>]``."""
        for (step, index), (status, body) in sorted(self.answers.items()):
            if status != 200 or not isinstance(body, dict):
                continue
            if "accepted" in body:
                for k, event in enumerate(body["events"]):
                    yield str(event["profile_id"]), f"A{step}.{index}.{k}"
            else:
                yield str(body["profile"]["id"]), f"A{step}.{index}"


def cart_lines(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cart lines as they compare: a line keeps the extra properties of the add that came last,
    the marker ``m`` included (for adds sent at once, whichever the server ran last), and lines
    are in the order they were first added, order-dependent too: so by product, without ``m``."""
    return sorted(
        ({k: v for k, v in line.items() if k != "m"} for line in items),
        key=lambda line: str(line.get("product_id")),
    )


def tracardi_body(req: Req, log: PlayLog) -> dict[str, Any]:
    params = req.params
    body: dict[str, Any] = {
        "source": {"id": TRACARDI},
        "context": TRACARDI_PAGE,
        "events": [
            {"id": e["id"], "type": e["type"], "time": e["time"], "properties": {"m": e["m"]}}
            for e in params["events"]
        ],
    }
    if params.get("save_session") is False:
        for event in body["events"]:
            event["options"] = {"saveSession": False}
    if params["session"] is not None:
        body["session"] = {"id": params["session"]}
    hint = params["hint"]
    if isinstance(hint, AnswerRef):
        body["profile"] = {"id": log.profile_of(hint)}
    elif hint is not None:
        body["profile"] = {"id": hint}
    return body


def tracify_event(event: dict[str, Any]) -> dict[str, Any]:
    ip, ua = (event["visit"] or "10.9.9.9|UA-9").split("|")
    identity = {sha(ip): 3, sha(ua): 4}
    if event["email"]:
        identity[email_sha256(event["email"])] = 1
    if event["visit"]:
        identity[sha(event["visit"])] = 2
    data: dict[str, Any] = {"origin": "https://shop.example", "m": event["m"]}
    if event["type"] == "purchase":
        data.update(order_id=event["order_id"], currency="EUR", amount="19.90", ITEM1="Tea", AMT1="19.90")
    elif event["type"] == "conversion":
        data.update(conversion_id=event["conversion_id"], currency="EUR", amount="5")
    return {
        "url": "https://shop.example/checkout?utm_source=fb",
        "customer_site_id": TRACIFY,
        "identity_data": identity,
        "datetime": event["at"],
        "type": event["type"],
        "data": data,
    }


async def send(client: httpx.AsyncClient, req: Req, log: PlayLog) -> tuple[int, Any]:
    params = req.params
    if req.kind == "tracardi":
        response = await client.post("/track", json=tracardi_body(req, log))
    elif req.kind == "t_track":
        query = {
            "sid": TRACKTOR,
            "id": params["id"],
            "action": params["action"],
            "ts": str(params["ts"]),
            "data": json.dumps({"m": params["m"]}),
        }
        response = await client.get("/track", params=query)
    elif req.kind == "t_set":
        query = {"sid": TRACKTOR, "id": params["id"], "data": json.dumps(params["data"])}
        response = await client.get("/set", params=query)
    elif req.kind == "t_alias":
        query = {"sid": TRACKTOR, "srcid": params["srcid"], "destid": params["destid"]}
        response = await client.get("/alias", params=query)
    elif req.kind == "insend":
        data: dict[str, Any] = {"type": params["type"], **INSEND_PAGE, "properties": params["properties"]}
        if params.get("visitor_info"):
            data["visitor_info"] = params["visitor_info"]
        form = {"app_key": INSEND, "data": json.dumps(data)}
        if params["visitor"]:
            form["visitor_uid"] = params["visitor"]
        if params["guest"]:
            form["guest_uid"] = params["guest"]
        response = await client.post("/watch/event", data=form)
    elif req.kind == "tracify":
        body = {"events": [tracify_event(e) for e in params["events"]]}
        response = await client.post("/tracify/events", json=body, headers={"X-API-Key": TRACIFY_SECRET})
    else:
        raise ValueError(req.kind)
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    return response.status_code, answer


async def play(client: httpx.AsyncClient, sequence: Sequence) -> PlayLog:
    log = PlayLog()
    for step in sequence.steps:
        started = datetime.now(UTC)
        if step.concurrent:
            results = await asyncio.gather(*(send(client, req, log) for req in step.requests))
        else:
            results = [await send(client, req, log) for req in step.requests]
        for req, result in zip(step.requests, results, strict=True):
            log.answers[(step.id, req.origin[1])] = result
        log.steps.append((step.id, started, datetime.now(UTC)))
    return log


# --- the snapshot ------------------------------------------------------------------------------


def parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class Snapshotter:
    """Reads what the API shows after a play and names everything by its content."""

    def __init__(self, client: httpx.AsyncClient, app: FastAPI, sequence: Sequence, log: PlayLog) -> None:
        self.client = client
        self.app = app
        self.sequence = sequence
        self.log = log
        self.views: dict[str, dict[str, Any]] = {}  # by any requested id
        self.events: dict[str, list[dict[str, Any]]] = {}  # by live id
        self.sessions: dict[str, dict[str, Any] | None] = {}
        self.marker_of: dict[str, str] = {}
        self.profile_label: dict[str, str] = {}
        self.session_label: dict[str, str] = {}
        self.readable: dict[str, str] = {}
        for name, email in sequence.emails.items():
            self.readable[email_sha256(email)] = f"email:{name}"
        self.starts = [started for _, started, _ in log.steps]

    async def get(self, path: str, **params: Any) -> tuple[int, Any]:
        response = await self.client.get(path, params=params, headers=ADMIN)
        return response.status_code, response.json()

    async def view(self, profile_id: str) -> dict[str, Any] | None:
        if profile_id not in self.views:
            status, body = await self.get(f"/api/profiles/{profile_id}")
            self.views[profile_id] = body if status == 200 else None  # type: ignore[assignment]
        return self.views[profile_id]

    async def session(self, session_id: str) -> dict[str, Any] | None:
        if session_id not in self.sessions:
            status, body = await self.get(f"/api/sessions/{session_id}")
            self.sessions[session_id] = body if status == 200 else None
        return self.sessions[session_id]

    def identity_queries(self) -> list[tuple[str, str, str | None]]:
        """(label, identity query, source) for every identity the sequence used."""
        found: dict[str, tuple[str, str, str | None]] = {}
        for step in self.sequence.steps:
            for req in step.requests:
                p = req.params
                if req.kind in ("t_track", "t_set"):
                    found[f"person:{p['id']}"] = (f"person:{p['id']}", f"person:{p['id']}", TRACKTOR)
                elif req.kind == "t_alias":
                    for key in ("srcid", "destid"):
                        found[f"person:{p[key]}"] = (f"person:{p[key]}", f"person:{p[key]}", TRACKTOR)
                elif req.kind == "insend":
                    if p["visitor"]:
                        found[f"visitor:{p['visitor']}"] = (
                            f"visitor:{p['visitor']}",
                            f"visitor:{p['visitor']}",
                            INSEND,
                        )
                    if p["guest"]:
                        found[f"guest:{p['guest']}"] = (f"guest:{p['guest']}", f"guest:{p['guest']}", INSEND)
                elif req.kind == "tracify":
                    for e in p["events"]:
                        if e["visit"]:
                            label = f"visit:{e['visit']}"
                            self.readable[sha(e["visit"])] = label
                            found[label] = (label, f"visit_hash:{sha(e['visit'])}", TRACIFY)
        for name, email in self.sequence.emails.items():
            found[f"email:{name}"] = (f"email:{name}", f"email:{email}", None)
        return [found[key] for key in sorted(found)]

    def tracardi_sessions(self) -> list[str]:
        keys = {
            req.params["session"]
            for step in self.sequence.steps
            for req in step.requests
            if req.kind == "tracardi" and req.params["session"] is not None
        }
        return sorted(keys)

    def step_of(self, moment: datetime) -> str:
        index = bisect_right(self.starts, moment) - 1
        if index < 0:
            return "@before"
        step_id, _started, ended = self.log.steps[index]
        return f"@{step_id}" if moment <= ended else f"@after{step_id}"

    def outcome_properties(self, properties: dict[str, Any]) -> dict[str, Any]:
        """A cart outcome event's properties without what the server generates: its lifecycle's
        id (a UUID, kept as present) and start (a receive time, as its step)."""
        if "lifecycle_id" not in properties:
            return properties
        return {
            **properties,
            "lifecycle_id": "<lifecycle>",
            "started_at": self.wall(properties.get("started_at"), [], "step"),
            "items": cart_lines(properties.get("items") or []),
        }

    def wall(self, value: str | None, own: list[datetime], rel: str) -> str | None:
        """A wall-clock time as its step and, for ``rel`` ``last`` / ``span``, its relation to
        the receive times of the entity's own events."""
        moment = parse_time(value)
        if moment is None:
            return None
        if moment < CLIENT_TIME_BEFORE:
            return moment.isoformat()
        where = self.step_of(moment)
        if rel == "step":
            return where
        if not own:
            return f"{where} no-events"
        first, last = min(own), max(own)
        if rel == "last":
            relation = "=last" if moment == last else (">last" if moment > last else "<last")
        else:  # span: between the first and the last event, inclusive (which one is order-dependent)
            relation = "<first" if moment < first else (">last" if moment > last else "within")
        return f"{where} {relation}"

    def ident(self, identity: dict[str, Any]) -> str:
        kind, value, scope = identity["kind"], identity["value"], identity["scope"]
        if kind in ("email_sha256", "visit_hash"):
            return self.readable.get(value, f"{kind}:{value}")
        return f"{kind}:{value}@{scope}"

    async def read_events(self, profile_id: str) -> None:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
            status, body = await self.get(f"/api/profiles/{profile_id}/events", **params)
            assert status == 200, body
            items.extend(body["items"])
            cursor = body["next_cursor"]
            if not cursor:
                break
        self.events[profile_id] = items
        for event in items:
            self.marker_of[event["id"]] = str(event["properties"].get("m", "?"))

    async def take(self) -> dict[str, Any]:
        # 1. Every profile any answer named, any identity finds, any Tracardi session belongs to.
        # (Reads run at once: nothing writes meanwhile, and the order of reads changes nothing.)
        answered = sorted({profile_id for profile_id, _where in self.log.answered_ids()})
        await asyncio.gather(*(self.view(profile_id) for profile_id in answered))
        live = {view["id"] for view in (self.views[p] for p in answered) if view is not None}
        queries = self.identity_queries()
        found = await asyncio.gather(
            *(
                self.get("/api/profiles", identity=query, **({"source": source} if source else {}))
                for _label, query, source in queries
            )
        )
        lookups: dict[str, list[str]] = {}
        for (label, _query, _source), (status, body) in zip(queries, found, strict=True):
            ids = [item["id"] for item in body["items"]] if status == 200 else [f"status {status}"]
            lookups[label] = ids
            live.update(i for i in ids if not i.startswith("status"))
        keys = self.tracardi_sessions()
        for session in await asyncio.gather(*(self.session(session_id_for(TRACARDI, k)) for k in keys)):
            if session is not None:
                live.add(session["profile_id"])
        await asyncio.gather(*(self.view(profile_id) for profile_id in sorted(live)))
        for profile_id in live:
            view = self.views[profile_id]
            assert view is not None and view["id"] == profile_id, (profile_id, view)
        # 2. Their events, all pages, and the sessions the events name.
        await asyncio.gather(*(self.read_events(profile_id) for profile_id in sorted(live)))
        named = {e["session_id"] for items in self.events.values() for e in items if e["session_id"]}
        await asyncio.gather(*(self.session(session_id) for session_id in sorted(named)))
        # 3. Labels: sessions, then profiles.
        markers_in: dict[str, list[str]] = {}
        for items in self.events.values():
            for event in items:
                if event["session_id"]:
                    markers_in.setdefault(event["session_id"], []).append(self.marker_of[event["id"]])
        for session_id, session in self.sessions.items():
            if session is None:
                continue
            if session["client_key"].startswith("visit:"):
                first = min(markers_in.get(session_id, ["empty"]))
                self.session_label[session_id] = f"V<{session['source_id']}:{first}>"
            else:
                self.session_label[session_id] = f"S<{session['source_id']}:{session['client_key']}>"
        tracardi_sessions_of: dict[str, list[str]] = {}
        for session_id, session in self.sessions.items():
            if session is not None:
                tracardi_sessions_of.setdefault(session["profile_id"], []).append(
                    self.session_label[session_id]
                )
        for profile_id in live:
            view = self.views[profile_id]
            assert view is not None
            idents = sorted(self.ident(i) for i in view["identities"])
            markers = sorted(self.marker_of[e["id"]] for e in self.events[profile_id])
            sessions = sorted(tracardi_sessions_of.get(profile_id, []))
            name = (idents or markers or sessions or ["empty"])[0]
            self.profile_label[profile_id] = f"P<{name}>"
        first_answer: dict[str, str] = {}
        for profile_id, where in self.log.answered_ids():
            first_answer.setdefault(profile_id, where)
        # 4. Merge audit: no API shows reasons or merges into since-merged profiles, read the table.
        uow = self.app.state.services.uow
        async with uow.read() as db:
            audit_rows = (
                await db.execute(
                    text("SELECT from_profile_id, into_profile_id, reason, source_id FROM profile_merges")
                )
            ).all()
            totals = {}
            for table in PERSON_TABLES:
                totals[table] = int((await db.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar_one())
            totals["live profiles"] = int(
                (
                    await db.exec_driver_sql("SELECT count(*) FROM profiles WHERE merged_into IS NULL")
                ).scalar_one()
            )
        merged_ids = {row[0] for row in audit_rows} | {row[1] for row in audit_rows}
        for view in list(self.views.values()):
            if view is not None:
                merged_ids.update(view["merged_from"])
        await asyncio.gather(*(self.view(profile_id) for profile_id in sorted(merged_ids)))

        def label(profile_id: str) -> str:
            if profile_id in self.profile_label:
                return self.profile_label[profile_id]
            view = self.views.get(profile_id)
            survivor = self.profile_label.get(view["id"], "?") if view else "missing"
            return f"~{first_answer.get(profile_id, 'unanswered')}->{survivor}"

        # 5. The canonical snapshot.
        entries: list[tuple[str, dict[str, Any]]] = []
        for profile_id in live:
            view = self.views[profile_id]
            assert view is not None
            items = self.events[profile_id]
            own = [parse_time(e["received_at"]) for e in items]
            own_times = [t for t in own if t is not None]
            events = sorted(
                (
                    {
                        "m": self.marker_of[e["id"]],
                        "type": e["type"],
                        "time": self.wall(e["time"], [], "step"),
                        "received_at": self.wall(e["received_at"], [], "step"),
                        "properties": self.outcome_properties(e["properties"]),
                        "context": e["context"],
                        "session": self.session_label.get(e["session_id"]) if e["session_id"] else None,
                        "source": e["source_id"],
                    }
                    for e in items
                ),
                key=lambda e: json.dumps(e, sort_keys=True),
            )
            entry = {
                "traits": view["traits"],
                "anonymous": view["anonymous"],
                "visits": view["visits"],
                "identities": sorted(self.ident(i) for i in view["identities"]),
                "merged_from": sorted(label(m) for m in view["merged_from"]),
                "carts": [
                    {
                        "source": cart["source_id"],
                        "items": cart_lines(cart["items"]),
                        "total": cart["total"],
                        "item_count": cart["item_count"],
                        "updated_at": self.wall(cart["updated_at"], [], "step"),
                    }
                    for cart in view["carts"]
                ],
                "created_at": self.wall(view["created_at"], own_times, "step"),
                "updated_at": self.wall(view["updated_at"], own_times, "step"),
                "last_seen_at": self.wall(view["last_seen_at"], own_times, "last"),
                "events": events,
            }
            entries.append((self.profile_label[profile_id], entry))
        # Two profiles may share a label (no identity, event or session: a Tracardi request
        # without session whose events were all duplicates): ordered by content, then primed.
        profiles: dict[str, Any] = {}
        for key, entry in sorted(entries, key=lambda e: (e[0], json.dumps(e[1], sort_keys=True))):
            while key in profiles:
                key += "'"
            profiles[key] = entry
        sessions: dict[str, Any] = {}
        for session_id, session in sorted(
            self.sessions.items(), key=lambda kv: self.session_label.get(kv[0], "")
        ):
            if session is None:
                continue
            own_times = [
                t
                for t in (
                    parse_time(e["received_at"])
                    for items in self.events.values()
                    for e in items
                    if e["session_id"] == session_id
                )
                if t is not None
            ]
            sessions[self.session_label[session_id]] = {
                "source": session["source_id"],
                "client_key": "visit:*"
                if session["client_key"].startswith("visit:")
                else session["client_key"],
                "profile": label(session["profile_id"]),
                "started_at": self.wall(session["started_at"], own_times, "span"),
                "last_event_at": self.wall(session["last_event_at"], own_times, "last"),
                "event_count": session["event_count"],
                "context": session["context"],
            }
        answers = {}
        for step in self.sequence.steps:
            for req in step.requests:
                status, body = self.log.answers[(step.id, req.origin[1])]
                answers[f"{step.id}.{req.origin[1]} {req.kind}"] = {
                    "status": status,
                    "body": self.answer(body, label),
                }
        return {
            "answers": answers,
            "profiles": profiles,
            "sessions": sessions,
            "identity lookups": {
                k: sorted(label(i) if not i.startswith("status") else i for i in v)
                for k, v in lookups.items()
            },
            "merges (table)": sorted(
                f"{label(row[0])} into {label(row[1])}: {row[2]} in {row[3]}" for row in audit_rows
            ),
            "totals (tables)": totals,
        }

    def answer(self, body: Any, label: Any) -> Any:
        if not isinstance(body, dict):
            return body
        out = dict(body)
        if "accepted" in body:  # Tracify
            out["events"] = [
                {**e, "id": self.marker_of.get(e["id"], "event?"), "profile_id": label(e["profile_id"])}
                for e in body["events"]
            ]
            return out
        if isinstance(body.get("profile"), dict):
            out["profile"] = label(body["profile"]["id"])
        if isinstance(body.get("session"), dict):
            out["session"] = self.session_label.get(body["session"]["id"], "session?")
        for key in ("events", "duplicates"):
            if isinstance(body.get(key), list):
                out[key] = [self.marker_of.get(i, "event?") for i in body[key]]
        return out


async def snapshot(
    client: httpx.AsyncClient, app: FastAPI, sequence: Sequence, log: PlayLog
) -> dict[str, Any]:
    return await Snapshotter(client, app, sequence, log).take()


# --- comparing -------------------------------------------------------------------------------


def first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first path (in a deterministic walk) where two snapshots differ, and both values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                return f"{path}/{key}", a.get(key, "<absent>"), b.get(key, "<absent>")
            found = first_difference(a[key], b[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        if len(a) != len(b):
            return f"{path} (length {len(a)} vs {len(b)})", a, b
        return None
    if a != b:
        return path, a, b
    return None


def all_differences(a: Any, b: Any, path: str = "", out: list[str] | None = None) -> list[str]:
    """Every differing leaf path (for reports)."""
    out = [] if out is None else out
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key not in a or key not in b:
                out.append(
                    f"{path}/{key}: {a.get(key, '<absent>')!r:.200} vs {b.get(key, '<absent>')!r:.200}"
                )
            else:
                all_differences(a[key], b[key], f"{path}/{key}", out)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            all_differences(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {a!r:.300} vs {b!r:.300}")
    return out
