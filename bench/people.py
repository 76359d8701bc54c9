"""Known people for ``run.py``'s per-dialect runs, and the sequential 500-event Tracify client.

``pg-tracify``, ``pg-tracktor``, ``pg-insend`` and ``tracify-500`` send the events of a fixed pool
of people (3,000 by default), the same people every run for a given seed. ``write_people`` writes
them for ``traffic.lua`` (``people_file=``), one line each::

    n tracktor_id insend_field insend_uid email_hash visit_hash ip_hash ua_hash

Person ``n`` has the Tracktor id ``user-n``; in InSend, 7 in 10 are registered visitors
(``visitor_uid=n``) and 3 in 10 guests (``guest_uid=g-...``); in Tracify, real SHA-256 hashes
of an email address (type 1), of ``IP|User-Agent`` (type 2, the visit), of the IP (3) and of
the user agent (4). Every person has their own IP, so no two share a visit hash.

``sequential_batches`` is the ``tracify-500`` measurement: single Tracify batches of 500 events
(100 of these people, five events each), sent one at a time on one keep-alive connection (httpx),
after a few unmeasured ones; each request's latency is timed by the client.
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import httpx

#: The share of InSend's people who are guests (``guest_uid``); the others are registered visitors.
GUEST_EVERY = 10, 3  # n % 10 < 3
#: A person's events in a Tracify batch, in order (as traffic.lua's TRACIFY_STEPS); "last" is a
#: purchase for ``PURCHASE_SHARE`` of the people, else a pageview.
TRACIFY_STEPS = ("pageview", "productview", "productview", "addtocart", "last")
PURCHASE_SHARE = 0.2
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
ORIGIN = "https://shop.acme-outdoor.example"
PAGES = ("/", "/collections/tents", "/products/alpine-2p-tent", "/products/ridge-45l-backpack", "/cart")
PRODUCTS = ("Alpine 2P Tent", "Ridge 45L Backpack", "Summit Down Sleeping Bag", "Trail Runner GTX")
REFERRERS = ("https://www.google.com/", "https://duckduckgo.com/", "https://www.instagram.com/", "")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Person:
    n: int
    tracktor_id: str
    insend_field: str  # "visitor_uid" or "guest_uid"
    insend_uid: str
    email_hash: str
    visit_hash: str
    ip_hash: str
    ua_hash: str

    def line(self) -> str:
        return (
            f"{self.n} {self.tracktor_id} {self.insend_field} {self.insend_uid} "
            f"{self.email_hash} {self.visit_hash} {self.ip_hash} {self.ua_hash}"
        )


def make_people(count: int, seed: int) -> list[Person]:
    people = []
    for n in range(1, count + 1):
        ip = f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"  # unique up to 16 M people
        ua = USER_AGENTS[n % len(USER_AGENTS)]
        guest = n % GUEST_EVERY[0] < GUEST_EVERY[1]
        people.append(
            Person(
                n=n,
                tracktor_id=f"user-{n}",
                insend_field="guest_uid" if guest else "visitor_uid",
                insend_uid=f"g-{_sha256(f'guest-{seed}-{n}')[:12]}" if guest else str(n),
                email_hash=_sha256(f"person-{seed}-{n}@bench.example"),
                visit_hash=_sha256(f"{ip}|{ua}"),
                ip_hash=_sha256(ip),
                ua_hash=_sha256(ua),
            )
        )
    return people


def write_people(path: Path, people: list[Person]) -> None:
    path.write_text("".join(person.line() + "\n" for person in people))


# --- Tracify batches (Python), shaped like traffic.lua's ----------------------------------------


def tracify_event(
    person: Person, kind: str, stamp: str, source_id: str, rng: random.Random, order_id: str | None
) -> dict[str, Any]:
    data: dict[str, Any] = {"origin": "web", "Referer": rng.choice(REFERRERS)}
    product = rng.choice(PRODUCTS)
    if kind == "purchase":
        assert order_id is not None
        amount = f"{19 + rng.random() * 480:.2f}"
        data |= {"order_id": order_id, "currency": "EUR", "amount": amount, "ITEM1": product}
        data |= {"AMT1": amount, "QTY1": "1"}
    elif kind != "pageview":
        data |= {"product_id": f"SKU-{rng.randint(10000, 99999)}", "product_name": product}
    return {
        "url": f"{ORIGIN}{rng.choice(PAGES)}?utm_source=newsletter&trc_click={rng.getrandbits(32):08x}",
        "customer_site_id": source_id,
        "identity_data": {
            person.ip_hash: 3,
            person.ua_hash: 4,
            person.visit_hash: 2,
            person.email_hash: 1,
        },
        "datetime": stamp,
        "type": kind,
        "data": data,
    }


def tracify_batch(
    pool: list[Person], n_people: int, n_events: int, source_id: str, rng: random.Random, order_prefix: str
) -> bytes:
    """``n_events`` events of ``n_people`` distinct people of ``pool``, interleaved as they happened."""
    chosen = rng.sample(pool, n_people)
    last = ["purchase" if rng.random() < PURCHASE_SHARE else "pageview" for _ in chosen]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    events = []
    for step in range(n_events // n_people):
        kind = TRACIFY_STEPS[step % len(TRACIFY_STEPS)]
        for j, person in enumerate(chosen):
            this_kind = last[j] if kind == "last" else kind
            order_id = f"{order_prefix}-{len(events)}" if this_kind == "purchase" else None
            events.append(tracify_event(person, this_kind, stamp, source_id, rng, order_id))
    return json.dumps({"events": events}).encode()


# --- tracify-500: one batch at a time -----------------------------------------------------------


@dataclass
class Sequential:
    """What ``sequential_batches`` measured: the measured batches only, warm-up apart."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    accepted: int = 0  # events acknowledged (``accepted``, duplicates left out), measured batches
    warmup_accepted: int = 0  # the same for the warm-up batches (they are stored too)
    duplicates: int = 0
    ok: int = 0
    errors: int = 0  # no answer (connection errors, timeouts)
    elapsed_s: float = 0.0
    body_bytes: int = 0
    stopped_early: bool = False  # the time limit came before the last batch
    samples: list[str] = field(default_factory=list)
    cpu: tuple[harness.CpuSnapshot, harness.CpuSnapshot] | None = None

    def percentile(self, q: float) -> float | None:
        """Nearest rank: with 30 batches, p99 is the slowest but none (here: the slowest)."""
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]

    @property
    def p50(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None


def sequential_batches(
    base: str,
    *,
    api_key: str,
    source_id: str,
    pool: list[Person],
    server_pid: int,
    count: int,
    warmup: int,
    n_events: int,
    n_people: int,
    seed: int,
    limit_s: float,
    timeout_s: float = harness.REQUEST_TIMEOUT_S,
) -> Sequential:
    """``warmup`` then ``count`` batches, one at a time; the bodies are built before they are timed.

    No batch is sent once the measured ones have taken ``limit_s`` (``Sequential.stopped_early``).
    """
    rng = random.Random(seed)
    run_tag = secrets.token_hex(4)  # order ids unique across runs too
    bodies = [
        tracify_batch(pool, n_people, n_events, source_id, rng, f"bench500-{seed}-{run_tag}-{i}")
        for i in range(warmup + count)
    ]
    out = Sequential(body_bytes=max(len(body) for body in bodies))
    headers = {
        "Content-Type": "application/json",
        "X-API-Key": api_key,
        "User-Agent": "acme-shop-backend/2.3",
    }
    with httpx.Client(base_url=base, timeout=timeout_s, headers=headers) as client:

        def post(i: int, body: bytes) -> tuple[httpx.Response | None, float]:
            t0 = time.perf_counter()
            try:
                response = client.post("/tracify/events", content=body)
            except httpx.HTTPError as exc:
                if len(out.samples) < 3:
                    out.samples.append(f"batch {i}: {type(exc).__name__}: {exc}")
                return None, 0.0
            return response, 1000 * (time.perf_counter() - t0)

        for i, body in enumerate(bodies[:warmup]):
            response, _ = post(i, body)
            if response is not None and response.is_success:
                out.warmup_accepted += int(response.json()["accepted"])
            elif response is not None and len(out.samples) < 3:
                out.samples.append(f"warm-up batch {i}: HTTP {response.status_code}: {response.text[:200]}")
        start_cpu, started = harness.CpuSnapshot.take(server_pid), time.monotonic()
        for i, body in enumerate(bodies[warmup:], start=warmup):
            if time.monotonic() - started > limit_s:
                out.stopped_early = True
                break
            response, latency_ms = post(i, body)
            if response is None:
                out.errors += 1
                continue
            out.latencies_ms.append(latency_ms)
            key = str(response.status_code)
            out.statuses[key] = out.statuses.get(key, 0) + 1
            if response.is_success:
                answer = response.json()
                out.ok += 1
                out.accepted += int(answer["accepted"])
                out.duplicates += int(answer["duplicates"])
            elif len(out.samples) < 3:
                out.samples.append(f"HTTP {response.status_code}: {response.text[:200]}")
        out.elapsed_s = time.monotonic() - started
        out.cpu = (start_cpu, harness.CpuSnapshot.take(server_pid))
    return out
