"""The load generator: one process, ``--concurrency`` client loops, each with its own keep-alive connection.

Run by ``bench/run.py`` (one or more of these processes at once); prints one JSON object on stdout
and nothing else. Each loop stops by itself: at the shared deadline (``--start-at`` + ``--duration``)
or after its share of ``--max-requests``, whichever comes first; a request that hangs is cut off by
``--timeout``, and the whole run by an outer ``asyncio.timeout``.

Traffic mix, per loop, drawn for every request:

* returning visitor (~70 %): a known profile id and the session key it used last;
* new visit of a known visitor (~20 %): a known profile id, a fresh session key;
* brand-new visitor (~10 %, and whenever the loop knows nobody yet): no profile id, a fresh session.

Profile ids are learned from the responses, as the Tracardi JS tracker keeps them in a cookie.
Every event carries a fresh uuid4 ``id``, so no event is ever a duplicate.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

RETURNING, NEW_SESSION, NEW_VISITOR = "returning", "new_session", "new_visitor"
#: Cumulative thresholds of the mix: below 0.10 a new visitor, below 0.30 a new visit, else returning.
NEW_VISITOR_SHARE, NEW_SESSION_SHARE = 0.10, 0.20
#: Keep at most this many visitors per loop (a random one is forgotten when it is full).
POOL_LIMIT = 5_000

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
)
PAGES = (
    ("/", "Acme Outdoor - Gear for every trail"),
    ("/collections/tents", "Tents - Acme Outdoor"),
    ("/collections/backpacks", "Backpacks - Acme Outdoor"),
    ("/products/alpine-2p-tent", "Alpine 2P Tent - Acme Outdoor"),
    ("/products/ridge-45l-backpack", "Ridge 45L Backpack - Acme Outdoor"),
    ("/blog/how-to-pick-a-sleeping-bag", "How to pick a sleeping bag - Acme Outdoor Journal"),
    ("/cart", "Your cart - Acme Outdoor"),
)
REFERRERS = (
    "https://www.google.com/",
    "https://duckduckgo.com/",
    "https://www.instagram.com/",
    "https://news.ycombinator.com/",
    "",
)
CAMPAIGNS = ("spring_sale", "newsletter_w17", "retargeting", "brand")


@dataclass
class Visitor:
    profile_id: str
    session_key: str


@dataclass
class LoopStats:
    """What one client loop saw; merged into the process totals at the end."""

    requests: int = 0
    acked_events: int = 0
    duplicates: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    status: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    #: A returning visitor answered with another profile id than the one it sent.
    profile_switches: int = 0
    samples: list[str] = field(default_factory=list)

    def sample(self, text: str) -> None:
        if len(self.samples) < 5:
            self.samples.append(text[:300])


def make_payload(
    rng: random.Random, source_id: str, session_key: str, profile_id: str | None
) -> dict[str, Any]:
    """A Tracardi tracker payload of three events, about 1.1 KB as JSON."""
    path, title = rng.choice(PAGES)
    url = f"https://shop.acme-outdoor.example{path}"
    if rng.random() < 0.3:
        url += f"?utm_source=google&utm_medium=cpc&utm_campaign={rng.choice(CAMPAIGNS)}"
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    payload: dict[str, Any] = {
        "source": {"id": source_id},
        "session": {"id": session_key},
        "context": {
            "page": {"url": url, "path": path, "title": title, "referrer": rng.choice(REFERRERS)},
            "browser": {
                "language": "en-US",
                "cookieEnabled": True,
                "timeZone": "Europe/Berlin",
                "platform": "Win32",
            },
            "screen": {"width": 1920, "height": 1080, "colorDepth": 24},
            "tracker": {"name": "tracardi-js", "version": "0.9.1"},
        },
        "events": [
            {
                "id": str(uuid.uuid4()),
                "type": "page-view",
                "time": now,
                "properties": {"title": title, "loadTimeMs": rng.randint(120, 2400)},
            },
            {
                "id": str(uuid.uuid4()),
                "type": "scroll-depth",
                "time": now,
                "properties": {"percent": rng.choice((25, 50, 75, 100)), "visibleMs": rng.randint(1, 90_000)},
            },
            {
                "id": str(uuid.uuid4()),
                "type": "product-view",
                "time": now,
                "properties": {
                    "sku": f"SKU-{rng.randint(10_000, 99_999)}",
                    "name": "Alpine 2P Tent",
                    "category": "tents",
                    "price": round(rng.uniform(19, 499), 2),
                    "currency": "EUR",
                    "inStock": rng.random() < 0.9,
                },
            },
        ],
        "options": {},
    }
    if profile_id is not None:
        payload["profile"] = {"id": profile_id}
    return payload


async def client_loop(
    client: httpx.AsyncClient,
    *,
    source_id: str,
    deadline: float,
    max_requests: int,
    seed: int,
) -> LoopStats:
    """Send one request at a time until the deadline (wall clock) or ``max_requests``."""
    rng = random.Random(seed)
    stats = LoopStats()
    pool: list[Visitor] = []
    user_agent = rng.choice(USER_AGENTS)
    headers = {"User-Agent": user_agent, "Origin": "https://shop.acme-outdoor.example"}
    while stats.requests < max_requests and time.time() < deadline:
        draw = rng.random()
        visitor: Visitor | None = None
        if draw < NEW_VISITOR_SHARE or not pool:
            kind, profile_id, session_key = NEW_VISITOR, None, str(uuid.uuid4())
        elif draw < NEW_VISITOR_SHARE + NEW_SESSION_SHARE:
            visitor = rng.choice(pool)
            kind, profile_id, session_key = NEW_SESSION, visitor.profile_id, str(uuid.uuid4())
        else:
            visitor = rng.choice(pool)
            kind, profile_id, session_key = RETURNING, visitor.profile_id, visitor.session_key
        body = make_payload(rng, source_id, session_key, profile_id)
        stats.requests += 1
        stats.kinds[kind] += 1
        started = time.perf_counter()
        try:
            response = await client.post("/track", json=body, headers=headers)
        except httpx.HTTPError as exc:
            stats.errors[type(exc).__name__] += 1
            stats.sample(f"{type(exc).__name__}: {exc}")
            continue
        stats.latencies_ms.append(round((time.perf_counter() - started) * 1000, 3))
        stats.status[response.status_code] += 1
        if not response.is_success:
            stats.sample(f"HTTP {response.status_code}: {response.text}")
            continue
        try:
            answer = response.json()
            answered_profile = str(answer["profile"]["id"])
            stats.acked_events += len(answer["events"])
            stats.duplicates += len(answer.get("duplicates") or [])
        except (ValueError, KeyError, TypeError) as exc:
            stats.errors["BadResponse"] += 1
            stats.sample(f"bad response body ({exc!r}): {response.text}")
            continue
        if visitor is None:
            if len(pool) >= POOL_LIMIT:
                pool.pop(rng.randrange(len(pool)))
            pool.append(Visitor(answered_profile, session_key))
        else:
            if answered_profile != visitor.profile_id:
                stats.profile_switches += 1
            visitor.profile_id, visitor.session_key = answered_profile, session_key
    return stats


def split(total: int, parts: int) -> list[int]:
    """``total`` spread over ``parts`` as evenly as whole numbers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if urlsplit(args.url).hostname != "127.0.0.1":
        raise SystemExit("load.py: only http://127.0.0.1 is allowed as a target")
    # One client, with one keep-alive connection, per loop: a single AsyncClient shared by many
    # concurrent requests spends several ms of CPU per request in its pool at 64 connections
    # (encode/httpx#3215), which would make the load generator the bottleneck.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    timeout = httpx.Timeout(args.timeout)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=args.url,
                    limits=limits,
                    timeout=timeout,
                    http1=True,
                    http2=False,
                    trust_env=False,
                )
            )
            for _ in range(args.concurrency)
        ]
        delay = args.start_at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        deadline = time.time() + args.duration
        cpu_start, wall_start = cpu_seconds(), time.perf_counter()
        # The outer bound: every loop has stopped by now even if the server stalls.
        async with asyncio.timeout(args.duration + args.timeout + 10):
            loops = await asyncio.gather(
                *(
                    client_loop(
                        client,
                        source_id=args.source,
                        deadline=deadline,
                        max_requests=cap,
                        seed=args.seed * 100_003 + i,
                    )
                    for i, (client, cap) in enumerate(
                        zip(clients, split(args.max_requests, args.concurrency), strict=True)
                    )
                )
            )
        elapsed = time.perf_counter() - wall_start
        cpu = cpu_seconds() - cpu_start
    status: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for loop in loops:
        status.update(loop.status)
        errors.update(loop.errors)
        kinds.update(loop.kinds)
    return {
        "concurrency": args.concurrency,
        "elapsed_s": elapsed,
        "cpu_s": cpu,
        "requests": sum(loop.requests for loop in loops),
        "acked_events": sum(loop.acked_events for loop in loops),
        "duplicates": sum(loop.duplicates for loop in loops),
        "profile_switches": sum(loop.profile_switches for loop in loops),
        "status": {str(code): n for code, n in sorted(status.items())},
        "errors": dict(errors),
        "kinds": dict(kinds),
        "samples": [text for loop in loops for text in loop.samples][:10],
        "latencies_ms": [ms for loop in loops for ms in loop.latencies_ms],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--url", required=True, help="server base URL, http://127.0.0.1:PORT")
    parser.add_argument("--source", required=True, help="tracardi source id")
    parser.add_argument("--concurrency", type=int, default=64, help="client loops = connections (64)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of load (15)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="hard cap on requests (200000)")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout, seconds (10)")
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock time to start at (now)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the traffic mix")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0 or args.max_requests < 1:
        parser.error("--concurrency, --duration and --max-requests must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    result = asyncio.run(run(parse_args(argv)))
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
