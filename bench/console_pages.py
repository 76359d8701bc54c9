"""The console's pages' server time on a big PostgreSQL database (issue 16: under 300 ms on 1 M events).

Preloads ``trackway_console_bench`` with ``--events`` events over the last year
(``bench/preload.py``: Tracardi visitors, 30 % identified by email, page views, product views,
scroll depths and purchases), saves a segment, a metric and a funnel through the API, signs in
to the console, then asks each page ``--rounds`` times through the app in-process (ASGI, no
socket: what is timed is the server's work, the console's in-process API calls included) and
prints the median and the slowest answer of each, marking those over 300 ms.

    .venv/bin/python bench/console_pages.py                   # 1 M events (a few minutes to preload)
    .venv/bin/python bench/console_pages.py --events 20000    # a quick look that it works
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from pathlib import Path

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import preload

from trackway.app import create_app
from trackway.settings import Settings

DATABASE = "trackway_console_bench"
TOKEN = "console-bench-token"
BUDGET_MS = 300.0


async def pick(url: str) -> tuple[str, str]:
    """A busy profile (many events) and an identified one's email."""
    conn = await asyncpg.connect(url)
    try:
        busy = await conn.fetchval(
            "SELECT profile_id FROM events WHERE time > now() - interval '7 days' "
            "GROUP BY profile_id ORDER BY count(*) DESC LIMIT 1"
        )
        email = await conn.fetchval("SELECT traits->>'email' FROM profiles WHERE traits ? 'email' LIMIT 1")
    finally:
        await conn.close()
    return str(busy), str(email)


async def measure(database_url: str, url: str, rounds: int) -> list[tuple[str, float, float]]:
    settings = Settings(database_url=database_url, admin_token=TOKEN, cart_outcomes_interval=0)
    app = create_app(settings)
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    busy, email = await pick(url)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=120) as client:
            segment = await client.post(
                "/api/segments",
                headers=bearer,
                json={"name": "Buyers", "condition": {"event": "purchase", "within_days": 30}},
            )
            metric = await client.post(
                "/api/metrics",
                headers=bearer,
                json={"name": "Views", "type": "people_who_did", "event": "page-view"},
            )
            funnel = await client.post(
                "/api/funnels", headers=bearer, json={"name": "Buy", "steps": ["product-view", "purchase"]}
            )
            page = await client.get("/console/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert csrf is not None
            signed = await client.post("/console/sign-in", data={"csrf": csrf.group(1), "token": TOKEN})
            assert signed.status_code == 303, signed.text
            sid, mid, fid = segment.json()["id"], metric.json()["id"], funnel.json()["id"]
            pages = [
                "/console",
                "/console/tail",
                "/console/sources",
                "/console/people",
                f"/console/people?email={email}",
                "/console/people?trait=newsletter&op=eq&value=true",
                f"/console/people/{busy}",
                "/console/segments",
                f"/console/segments/{sid}",
                "/console/metrics",
                f"/console/metrics/{mid}",
                f"/console/metrics/{mid}?range=30",
                "/console/funnels",
                f"/console/funnels/{fid}",
                f"/console/funnels/{fid}/people?step=2",
            ]
            results = []
            for path in pages:
                times = []
                for _ in range(rounds):
                    started = time.perf_counter()
                    answer = await client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    if answer.status_code != 200:
                        raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
                results.append((path, statistics.median(times), max(times)))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pg-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--profiles", type=int, default=0, help="default: events / 30")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    url = harness.pg_url(args.pg_url, DATABASE)
    database_url = harness.pg_url(args.pg_url, DATABASE, "postgresql+asyncpg")
    asyncio.run(harness.pg_recreate(args.pg_url, DATABASE))
    harness.create_source(harness.trackway_env(database_url, TOKEN), "tracardi")
    asyncio.run(
        preload.preload(
            url,
            harness.SOURCE_IDS["tracardi"],
            n_profiles=args.profiles or max(args.events // 30, 10),
            n_events=args.events,
            seed=args.seed,
            log=print,
        )
    )
    results = asyncio.run(measure(database_url, url, args.rounds))
    print(f"\n{args.events} events; server time per page over {args.rounds} rounds (ms)")
    print(f"{'page':<60} {'median':>8} {'max':>8}")
    slow = 0
    for path, median, worst in results:
        mark = "  OVER 300 ms" if median > BUDGET_MS else ""
        slow += bool(mark)
        shown = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", path)
        print(f"{shown:<60} {median:8.1f} {worst:8.1f}{mark}")
    return 1 if slow else 0


if __name__ == "__main__":
    raise SystemExit(main())
