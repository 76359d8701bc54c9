"""Fill a migrated Trackway PostgreSQL database with a realistic history, fast.

About ``profiles`` Tracardi visitors (30 % of them identified by an email, with its
``email_sha256`` identity) and ``events`` events spread over them: the events per profile follow a
log-normal distribution (most profiles have a few dozen, some thousands), grouped into visits of
about ten events (so about ``events / 10`` sessions), over the last year. Events are written in
time order across all profiles, as live traffic writes them, so one profile's events are spread
over the whole table rather than stored side by side. Event rows look like what ``POST /track``
stores from bench/traffic.lua (JSONB properties and context, a client event id as ``dedup_key``,
a time-ordered UUIDv7 ``id``); sessions carry the server's derived id, device and request context.

Rows are generated in Python and sent with ``COPY ... FROM STDIN`` (text format). To make that
quick, the four tables' indexes and constraints are dropped first and recreated afterwards from
their own definitions (``pg_get_indexdef``/``pg_get_constraintdef``), then the database is
VACUUM ANALYZEd and checkpointed; ``schema_signature()`` lets the caller check that the result
matches a freshly migrated database exactly.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar

import asyncpg

TABLES = ("profiles", "identities", "sessions", "events")
DAY = 86_400
IDENTIFIED_SHARE = 0.3
MEAN_VISIT_EVENTS = 10
CHUNK_ROWS = 20_000

PAGES = (
    ("/", "Acme Outdoor - Gear for every trail"),
    ("/collections/tents", "Tents - Acme Outdoor"),
    ("/collections/backpacks", "Backpacks - Acme Outdoor"),
    ("/products/alpine-2p-tent", "Alpine 2P Tent - Acme Outdoor"),
    ("/products/ridge-45l-backpack", "Ridge 45L Backpack - Acme Outdoor"),
    ("/blog/how-to-pick-a-sleeping-bag", "How to pick a sleeping bag - Acme Outdoor Journal"),
    ("/cart", "Your cart - Acme Outdoor"),
)
REFERRERS = ("https://www.google.com/", "https://duckduckgo.com/", "https://www.instagram.com/", "")
CAMPAIGNS = ("spring_sale", "newsletter_w17", "retargeting", "brand")
PRODUCTS = (
    ("Alpine 2P Tent", "tents"),
    ("Ridge 45L Backpack", "backpacks"),
    ("Summit Down Sleeping Bag", "sleeping-bags"),
    ("Trail Runner GTX", "shoes"),
)
_WEBKIT = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
DEVICES = (
    (
        '{"os": "Windows", "device": "Other", "browser": "Chrome", "browser_version": "124"}',
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/124.0.0.0 Safari/537.36",
    ),
    (
        '{"os": "Mac OS X", "device": "Mac", "browser": "Safari", "browser_version": "17"}',
        f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Version/17.4 Safari/605.1.15",
    ),
    (
        '{"os": "iOS", "device": "iPhone", "browser": "Mobile Safari", "browser_version": "17"}',
        f"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) {_WEBKIT} "
        "Version/17.4 Mobile/15E148 Safari/604.1",
    ),
    (
        '{"os": "Linux", "device": "Other", "browser": "Firefox", "browser_version": "125"}',
        "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    ),
)


# --- small fast formatters ---------------------------------------------------------------------


class Clock:
    """``timestamptz`` text for epoch seconds; the date part is cached per day, "HH:MM:SS" built once."""

    _SECONDS: ClassVar[list[str]] = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(DAY)]

    def __init__(self) -> None:
        self._days: dict[int, str] = {}

    def text(self, t: float) -> str:
        sec = int(t)
        day, rest = divmod(sec, DAY)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d ")
            self._days[day] = prefix
        return f"{prefix}{self._SECONDS[rest]}.{int((t - sec) * 1_000_000):06d}+00"


def _dashed(h: str) -> str:
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid4_text(bits: Callable[[int], int]) -> str:
    value = (bits(128) & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    return _dashed(f"{value:032x}")


def uuid7_text(t: float, bits: Callable[[int], int]) -> str:
    """A UUIDv7 for epoch seconds ``t``: what Trackway gives an event received then."""
    value = int(t * 1000) << 80 | 0x7 << 76 | bits(12) << 64 | 0x2 << 62 | bits(62)
    return _dashed(f"{value:032x}")


def session_id_for(source_id: str, client_key: str) -> str:
    """The server's session id for a client session key (``trackway.core.sessions``)."""
    from trackway.core.sessions import session_id_for as derive

    return derive(source_id, client_key)


# --- the plan: profiles and visits -------------------------------------------------------------


@dataclass(slots=True)
class Visit:
    start: float
    step: float  # seconds between its events
    size: int
    profile: int
    key: str


@dataclass(slots=True)
class ProfilePlan:
    id: str
    created: float
    email: str | None
    visits: int = 0
    last_seen: float = 0.0


@dataclass
class Plan:
    source_id: str
    now: float
    profiles: list[ProfilePlan]
    visits: list[Visit]  # sorted by start
    events: int


def make_plan(source_id: str, n_profiles: int, n_events: int, seed: int) -> Plan:
    rng = random.Random(seed)
    bits = rng.getrandbits
    now = time.time() - 3600  # an hour ago: live traffic comes after the history
    weights = [rng.lognormvariate(0, 1.3) for _ in range(n_profiles)]
    scale = n_events / sum(weights)
    counts = [max(1, int(w * scale)) for w in weights]
    counts[-1] += n_events - sum(counts)  # exact total
    while counts[-1] < 1:  # (only if rounding up overshot: take it back from the biggest)
        biggest = max(range(n_profiles), key=counts.__getitem__)
        counts[biggest] -= 1
        counts[-1] += 1
    profiles: list[ProfilePlan] = []
    visits: list[Visit] = []
    for index, count in enumerate(counts):
        created = now - rng.uniform(1, 365) * DAY
        email = f"visitor{index}@mail.example" if rng.random() < IDENTIFIED_SHARE else None
        profile = ProfilePlan(uuid4_text(bits), created, email)
        remaining = count
        starts: list[float] = []
        sizes: list[int] = []
        while remaining > 0:
            size = min(remaining, 1 + int(rng.expovariate(1 / (MEAN_VISIT_EVENTS - 1))))
            sizes.append(size)
            starts.append(rng.uniform(created, now - 600))
            remaining -= size
        starts.sort()
        for start, size in zip(starts, sizes, strict=True):
            step = rng.uniform(5, 90)
            visits.append(Visit(start, step, size, index, uuid4_text(bits)))
            profile.last_seen = max(profile.last_seen, start + step * (size - 1))
        profile.visits = len(sizes)
        profiles.append(profile)
    visits.sort(key=lambda v: v.start)
    return Plan(source_id, now, profiles, visits, n_events)


# --- rows (COPY text format: tab-separated, \\N for NULL; the JSON here has no tab or backslash) --


def _page_contexts() -> list[str]:
    contexts = []
    for path, title in PAGES:
        for referrer in REFERRERS:
            for campaign in (None, *CAMPAIGNS):
                url = f"https://shop.acme-outdoor.example{path}"
                if campaign:
                    url += f"?utm_source=google&utm_medium=cpc&utm_campaign={campaign}"
                contexts.append(
                    f'{{"page": {{"url": "{url}", "path": "{path}", "title": "{title}", '
                    f'"referrer": "{referrer}"}}, '
                    '"screen": {"width": 1920, "height": 1080, "colorDepth": 24}, '
                    '"browser": {"language": "en-US", "platform": "Win32", "timeZone": "Europe/Berlin", '
                    '"cookieEnabled": true}, "tracker": {"name": "tracardi-js", "version": "0.9.1"}}'
                )
    return contexts


def profile_rows(plan: Plan) -> tuple[list[str], list[str]]:
    """(profiles, identities) as COPY lines."""
    clock = Clock()
    profiles, identities = [], []
    for p in plan.profiles:
        created, seen = clock.text(p.created), clock.text(p.last_seen)
        traits = "{}"
        if p.email:
            traits = f'{{"email": "{p.email}", "first_name": "Alex", "newsletter": true}}'
            digest = hashlib.sha256(p.email.encode()).hexdigest()
            identities.append(f"\temail_sha256\t{digest}\t{p.id}\t{created}\n")
        anonymous = "f" if p.email else "t"
        profiles.append(f"{p.id}\t{traits}\t{anonymous}\t{p.visits}\t{created}\t{seen}\t{seen}\t\\N\n")
    return profiles, identities


PROFILE_COLUMNS = (
    "id",
    "traits",
    "anonymous",
    "visits",
    "created_at",
    "updated_at",
    "last_seen_at",
    "merged_into",
)
IDENTITY_COLUMNS = ("scope", "kind", "value", "profile_id", "created_at")
SESSION_COLUMNS = (
    "id",
    "source_id",
    "client_key",
    "profile_id",
    "started_at",
    "last_event_at",
    "event_count",
    "context",
    "visit_key",
)
EVENT_COLUMNS = (
    "id",
    "source_id",
    "profile_id",
    "session_id",
    "type",
    "time",
    "received_at",
    "properties",
    "context",
    "dedup_key",
)


async def session_lines(plan: Plan, rng: random.Random) -> AsyncIterator[bytes]:
    clock = Clock()
    chunk: list[str] = []
    for v in plan.visits:
        device, user_agent = DEVICES[hash(v.key) % len(DEVICES)]
        path = PAGES[hash(v.key) % len(PAGES)][0]
        referrer = REFERRERS[hash(v.key) % len(REFERRERS)]
        context = (
            f'{{"device": {device}, "request": {{"ip": "203.0.113.{rng.randrange(1, 255)}", '
            f'"origin": "https://shop.acme-outdoor.example", "user_agent": "{user_agent}"}}, '
            f'"landing_page": "https://shop.acme-outdoor.example{path}", "page_referrer": "{referrer}"}}'
        )
        session_id, profile_id = session_id_for(plan.source_id, v.key), plan.profiles[v.profile].id
        started, ended = clock.text(v.start), clock.text(v.start + v.step * (v.size - 1))
        chunk.append(
            f"{session_id}\t{plan.source_id}\t{v.key}\t{profile_id}\t{started}\t{ended}\t{v.size}\t{context}\t\\N\n"
        )
        if len(chunk) >= CHUNK_ROWS:
            yield "".join(chunk).encode()
            chunk = []
    if chunk:
        yield "".join(chunk).encode()


def _properties(rng: random.Random, kind: str) -> str:
    draw = rng.random
    if kind == "page-view":
        return (
            f'{{"title": "{PAGES[int(draw() * len(PAGES))][1]}", "loadTimeMs": {120 + int(draw() * 2280)}}}'
        )
    if kind == "scroll-depth":
        return f'{{"percent": {25 + 25 * int(draw() * 4)}, "visibleMs": {1 + int(draw() * 90_000)}}}'
    price = f"{19 + draw() * 480:.2f}"
    if kind == "purchase":
        order = f"ORD-{rng.getrandbits(40):010x}"
        return f'{{"orderId": "{order}", "total": {price}, "currency": "EUR", "items": 1}}'
    product, category = PRODUCTS[int(draw() * len(PRODUCTS))]
    return (
        f'{{"sku": "SKU-{10_000 + int(draw() * 90_000)}", "name": "{product}", "price": {price}, '
        f'"inStock": {"true" if draw() < 0.9 else "false"}, "category": "{category}", "currency": "EUR"}}'
    )


EVENT_TYPES = ("page-view", "scroll-depth", "product-view")


async def event_lines(plan: Plan, rng: random.Random, block_visits: int = 4000) -> AsyncIterator[bytes]:
    """Events in time order: visits are taken in start order, a block at a time, and the block's
    events interleaved by time, so a profile's events end up far apart in the table."""
    clock = Clock()
    bits = rng.getrandbits
    contexts = _page_contexts()
    profiles = plan.profiles
    source = plan.source_id
    for first in range(0, len(plan.visits), block_visits):
        block: list[tuple[float, str]] = []
        for v in plan.visits[first : first + block_visits]:
            profile_id = profiles[v.profile].id
            session_id = session_id_for(source, v.key)
            for j in range(v.size):
                t = v.start + v.step * j
                if j == v.size - 1 and v.size > 3 and rng.random() < 0.05:
                    kind = "purchase"
                else:
                    kind = EVENT_TYPES[j % 3]
                context = contexts[(hash(v.key) + j // 3) % len(contexts)]
                received = t + 0.02
                block.append(
                    (
                        t,
                        f"{uuid7_text(received, bits)}\t{source}\t{profile_id}\t{session_id}\t{kind}\t"
                        f"{clock.text(t)}\t{clock.text(received)}\t{_properties(rng, kind)}\t{context}\t"
                        f"{uuid4_text(bits)}\n",
                    )
                )
        block.sort(key=lambda item: item[0])
        for start in range(0, len(block), CHUNK_ROWS):
            yield "".join(line for _, line in block[start : start + CHUNK_ROWS]).encode()


async def _lines(lines: list[str]) -> AsyncIterator[bytes]:
    for start in range(0, len(lines), CHUNK_ROWS):
        yield "".join(lines[start : start + CHUNK_ROWS]).encode()


# --- schema: drop and restore indexes and constraints --------------------------------------------


@dataclass(frozen=True)
class Definitions:
    constraints: list[tuple[str, str, str, str]]  # (table, name, type p/u/f, definition)
    indexes: list[tuple[str, str]]  # (name, CREATE INDEX ...)


async def read_definitions(conn: asyncpg.Connection) -> Definitions:
    constraints = await conn.fetch(
        """
        SELECT c.conrelid::regclass::text AS tbl, c.conname, c.contype::text,
               pg_get_constraintdef(c.oid) AS def
        FROM pg_constraint c
        WHERE c.contype IN ('p', 'u', 'f')
          AND (c.conrelid::regclass::text = ANY($1::text[]) OR c.confrelid::regclass::text = ANY($1::text[]))
        ORDER BY 1, 2
        """,
        list(TABLES),
    )
    indexes = await conn.fetch(
        """
        SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def
        FROM pg_index i
        WHERE i.indrelid::regclass::text = ANY($1::text[])
          AND NOT EXISTS (
            SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x')
          )
        ORDER BY 1
        """,
        list(TABLES),
    )
    return Definitions(
        [(r["tbl"], r["conname"], r["contype"], r["def"]) for r in constraints],
        [(r["name"], r["def"]) for r in indexes],
    )


async def schema_signature(conn: asyncpg.Connection) -> list[str]:
    """Every constraint and index of the four tables, as text: equal lists, equal schemas."""
    found = await read_definitions(conn)
    return sorted([f"{t}.{n} {k} {d}" for t, n, k, d in found.constraints] + [d for _, d in found.indexes])


async def _drop(conn: asyncpg.Connection, found: Definitions) -> None:
    for table, name, kind, _ in found.constraints:
        if kind == "f":
            await conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for table, name, kind, _ in found.constraints:
        if kind != "f":
            await conn.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for name, _ in found.indexes:
        await conn.execute(f'DROP INDEX "{name}"')


async def _restore(conn: asyncpg.Connection, found: Definitions, log: Callable[[str], None]) -> None:
    for table, name, kind, definition in found.constraints:
        if kind != "f":
            started = time.monotonic()
            await conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
            log(f"    {name}: {time.monotonic() - started:.0f} s")
    for name, definition in found.indexes:
        started = time.monotonic()
        await conn.execute(definition)
        log(f"    {name}: {time.monotonic() - started:.0f} s")
    for table, name, kind, definition in found.constraints:
        if kind == "f":
            started = time.monotonic()
            await conn.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
            log(f"    {name}: {time.monotonic() - started:.0f} s")


async def _check_columns(conn: asyncpg.Connection, table: str, columns: tuple[str, ...]) -> None:
    """The columns written exist, and every NOT NULL column without a default is among them."""
    rows = await conn.fetch(
        "SELECT column_name, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_name = $1",
        table,
    )
    existing = {r["column_name"] for r in rows}
    required = {r["column_name"] for r in rows if r["is_nullable"] == "NO" and r["column_default"] is None}
    if missing := set(columns) - existing:
        raise RuntimeError(
            f"preload: {table} has no column {sorted(missing)}: the schema changed, update preload.py"
        )
    if unfilled := required - set(columns):
        raise RuntimeError(
            f"preload: {table}.{sorted(unfilled)} is NOT NULL and not generated: update preload.py"
        )


# --- the whole preload ---------------------------------------------------------------------------


async def preload(
    url: str, source_id: str, *, n_profiles: int, n_events: int, seed: int, log: Callable[[str], None]
) -> dict[str, float]:
    """Fill the (migrated, empty) database at ``url``; returns seconds per phase."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    plan = make_plan(source_id, n_profiles, n_events, seed)
    timings["plan_s"] = time.monotonic() - started
    log(
        f"  plan: {len(plan.profiles)} profiles, {len(plan.visits)} visits, {n_events} events "
        f"({timings['plan_s']:.0f} s)"
    )
    rng = random.Random(seed + 1)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 2")
        await conn.execute("SET synchronous_commit = off")
        for table, columns in (
            ("profiles", PROFILE_COLUMNS),
            ("identities", IDENTITY_COLUMNS),
            ("sessions", SESSION_COLUMNS),
            ("events", EVENT_COLUMNS),
        ):
            await _check_columns(conn, table, columns)
        found = await read_definitions(conn)
        await _drop(conn, found)

        phase = time.monotonic()
        profiles, identities = profile_rows(plan)
        await conn.copy_to_table("profiles", source=_lines(profiles), columns=PROFILE_COLUMNS, format="text")
        await conn.copy_to_table(
            "identities", source=_lines(identities), columns=IDENTITY_COLUMNS, format="text"
        )
        await conn.copy_to_table(
            "sessions", source=session_lines(plan, rng), columns=SESSION_COLUMNS, format="text"
        )
        timings["profiles_sessions_s"] = time.monotonic() - phase
        log(f"  profiles, identities, sessions copied ({timings['profiles_sessions_s']:.0f} s)")

        phase = time.monotonic()
        await conn.copy_to_table(
            "events", source=event_lines(plan, rng), columns=EVENT_COLUMNS, format="text"
        )
        timings["events_s"] = time.monotonic() - phase
        log(
            f"  {n_events} events copied ({timings['events_s']:.0f} s, "
            f"{n_events / max(timings['events_s'], 1e-9):,.0f} rows/s)"
        )

        phase = time.monotonic()
        log("  indexes and constraints:")
        await _restore(conn, found, log)
        timings["indexes_s"] = time.monotonic() - phase

        # VACUUM (ANALYZE): the statistics, and the hint bits and visibility map that autovacuum would
        # have set on a database that grew over a year. Then a checkpoint and a sync, so that the
        # measurements do not pay for writing out the load (the first reads of freshly copied pages
        # dirty them, and writeback of gigabytes of dirty page cache stalls other writes).
        phase = time.monotonic()
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
        os.sync()
        timings["vacuum_analyze_checkpoint_s"] = time.monotonic() - phase
        log(f"  VACUUM (ANALYZE), CHECKPOINT ({timings['vacuum_analyze_checkpoint_s']:.0f} s)")
    finally:
        await conn.close()
    timings["total_s"] = time.monotonic() - started
    return timings
