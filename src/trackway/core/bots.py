"""Bots: which user agents are not people, and what happens to what they send.

A user agent is a bot when ua-parser calls its device a ``Spider`` (its list of crawlers),
when it names a headless browser or a monitoring or audit tool (``HEADLESS``), or when it
is an HTTP library or command line client (``CLIENTS``: curl, wget, python-requests...)
and carries no browser signal (``Mozilla/``). A request that proved who sent it (a signed
Tracktor call, a Tracify batch with its API key) is a backend, never a bot. Each user agent
is classified once per process (cached, with the device description each visit keeps:
``sessions.py``).

``TRACKWAY_BOTS=flag`` (the default): a bot's batch is stored, and the visit it opens and its
events carry ``"bot": true`` in their context; the read side leaves them out of metrics,
funnels and segments unless asked (``include_bots``). The visit is flagged when it opens,
once; every event carries its request's flag. ``drop``: a bot's request is answered as
usual (2xx) and nothing is stored; ``trackway_bots_dropped_total`` counts them.

Decided here, for every dialect, by ``BotPolicy``, which the app's ``Writer`` asks first
for each request: a dialect only describes the request (``RequestMeta.user_agent``).
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Final, Literal, Protocol

from trackway import requestlog
from trackway.core.batch import IngestBatch, IngestResult
from trackway.core.sessions import describe_device

BotMode = Literal["flag", "drop"]

#: Headless browsers, page auditors and uptime monitors: browsers' user agents, driven by no one.
HEADLESS: Final = re.compile(
    r"HeadlessChrome|Lighthouse|PhantomJS|Puppeteer|Playwright|Selenium|GTmetrix|PageSpeed|"
    r"Pingdom|UptimeRobot|StatusCake|Site24x7|Datadog|NewRelicPinger|Uptime-Kuma|Better ?Uptime|"
    r"Checkly|Catchpoint|SpeedCurve|WebPageTest",
    re.IGNORECASE,
)
#: HTTP libraries and command line clients: a bot unless the agent also claims a browser.
CLIENTS: Final = re.compile(
    r"^(curl|wget|python-requests|python-urllib|python-httpx|aiohttp|httpie|go-http-client|"
    r"okhttp|axios|node-fetch|undici|got|libwww-perl|java|apache-httpclient|ruby|php|"
    r"postmanruntime|insomnia)\b",
    re.IGNORECASE,
)
#: The longest user agent classified (as ``describe_device`` reads it).
MAX_USER_AGENT: Final = 512


@functools.lru_cache(maxsize=4096)
def _classify(user_agent: str) -> bool:
    if HEADLESS.search(user_agent):
        return True
    if CLIENTS.match(user_agent) and "Mozilla/" not in user_agent:
        return True
    return describe_device(user_agent).get("device") == "Spider"


def is_bot(user_agent: str | None) -> bool:
    """Whether the user agent is a crawler, a headless browser, a monitor or a bare HTTP client.

    No user agent (a backend's server-side call, Tracify's batches) is not a bot: such calls
    speak for the people they name.
    """
    if not user_agent:
        return False
    return _classify(user_agent[:MAX_USER_AGENT])


class DropCounter(Protocol):
    """Told about each request dropped as a bot's (``trackway.metrics.Metrics``)."""

    def count_bot_dropped(self, dialect: str) -> None: ...


class BotPolicy:
    """What the writers (``core/ingest.py``, ``core/group_commit.py``) do with a bot's request,
    before its batches are checked or queued: flag them, or answer them without storing."""

    def __init__(self, mode: BotMode = "flag", counter: DropCounter | None = None) -> None:
        self.drop = mode == "drop"
        self.counter = counter

    def admit(self, batches: list[IngestBatch]) -> list[IngestResult] | None:
        """``None``: write the batches (flagged if a bot sent them); else the answer to give instead."""
        # One request's batches share its request: one user agent. A verified request (a signed
        # Tracktor call, Tracify's API key) is a backend that proved itself: never a bot.
        if not batches or batches[0].verified or not is_bot(batches[0].meta.user_agent):
            return None
        if self.drop:
            return self._dropped(batches)
        for batch in batches:
            flag(batch)
        return None

    def _dropped(self, batches: list[IngestBatch]) -> list[IngestResult]:
        """Answers as if stored, naming no stored row: the profile the client named, or a new id."""
        requestlog.note_reason("bot_dropped")
        if self.counter is not None:
            self.counter.count_bot_dropped(batches[0].source.dialect)
        return [
            IngestResult(
                profile_id=batch.profile_hint or str(uuid.uuid4()),
                session_id=None,
                stored_event_ids=[],
                duplicate_event_ids=[],
                profile_created=False,
                session_created=False,
                resolved_by="bot",
            )
            for batch in batches
        ]


def flag(batch: IngestBatch) -> None:
    """``"bot": true`` on the context of the visit the batch may open, and on each of its events
    (new dicts: a dialect may share one context between events)."""
    batch.bot = True  # the events' ``bot`` column: what the read side leaves out
    batch.session_context = {**batch.session_context, "bot": True}
    for event in batch.events:
        event.context = {**event.context, "bot": True}
