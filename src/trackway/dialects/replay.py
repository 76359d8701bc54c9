"""Replay a quarantined request: run it through the app again, as it was or with a corrected body.

A replay is the stored request sent to the app in-process, as an ASGI call: the same route,
dialect, checks and write path as the request itself took, so there is no second way in and
a replay sees today's source settings and Trackway's rules. What differs from the original:
the credentials that were never kept are put back from the source (Tracify's ``X-API-Key``
is the source's secret now: only requests that carried it were kept), ``Content-Length``
follows the body, and the scope is marked (``REPLAY_KEY``) so that a replay rejected again
updates its rejection instead of adding one.

A rejection is claimed before it runs (``db/rejections.claim``): two replays of one
rejection at once run it once, the other answers 409. Accepted (2xx), the rejection is
marked ``replayed`` with when, and kept until retention deletes it; a second replay of it
runs nothing and answers what the first got, so replaying twice never stores twice (events
without an id included). Rejected again (any other status), it stays quarantined with the
new status and body, and says why. Event ids and order ids deduplicate as for any request,
so a replay of something the sender also resent stores nothing twice.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from trackway import jsonutil
from trackway.core.sources import get_source
from trackway.db import rejections as statements
from trackway.dialects import insend, segment, tracify, tracktor
from trackway.dialects._common import media_type_of
from trackway.dialects.quarantine import REPLAY_KEY
from trackway.errors import Conflict, NotFound, ValidationFailed
from trackway.metrics import ASGIApp, Message
from trackway.services import AppServices

#: Dialects whose fields are url-encoded: an object given as a corrected body is sent as a form.
_FORM_DIALECTS = frozenset({tracktor.DIALECT, insend.DIALECT})


@dataclass(slots=True)
class ReplayOutcome:
    id: str
    #: ``replayed`` (accepted, now or before) or ``quarantined`` (rejected again).
    state: str
    #: The status the replay got (the first accepted replay's, when ``ran`` is false).
    status: int | None
    #: The body the replay got: the dialect's answer, or why it was rejected again.
    response: Any
    #: False when the rejection had been replayed already: nothing ran this time.
    ran: bool

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "status": self.status,
            "response": self.response,
            "ran": self.ran,
        }


def parse_response(text: str | None) -> Any:
    """A stored answer as JSON (every error and JSON answer is); anything else as its text."""
    if text is None:
        return None
    try:
        return jsonutil.loads(text)
    except ValueError:
        return text


def _encode(value: Any, as_form: bool, where: str) -> bytes:
    """A correction: a string is sent as it is; an object as a form (form requests) or as JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    try:
        if as_form and isinstance(value, dict):
            return urlencode({str(k): v for k, v in value.items()}, doseq=True).encode()
        return jsonutil.dumps(value)
    except (TypeError, ValueError):  # an integer beyond 64 bits, a lone surrogate
        raise ValidationFailed.field(
            ("body", where),
            "cannot be encoded (a lone surrogate, an integer beyond 64 bits): send it as a string",
        ) from None


def request_parts(
    row: Any, *, body: Any = None, query: Any = None
) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]]:
    """The stored request's query, body and headers, corrected where asked."""
    headers = [(str(name), str(value)) for name, value in row.headers]
    as_form = row.dialect in _FORM_DIALECTS
    sent_body = bytes(row.body) if body is None else _encode(body, as_form, "body")
    sent_query = bytes(row.query) if query is None else _encode(query, True, "query")
    if isinstance(query, str):
        sent_query = sent_query.removeprefix(b"?")
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
    if sent_body:
        raw.append((b"content-length", str(len(sent_body)).encode()))
    return sent_query, sent_body, raw


async def call_app(app: ASGIApp, scope: dict[str, Any], body: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request through the ASGI app in this process: its status, headers and body."""
    status = 500
    headers: dict[str, str] = {}
    chunks: list[bytes] = []
    sent = False
    done = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])
            headers.update(
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                done.set()

    try:
        await app(scope, receive, send)
    except Exception:  # answered 500 by the app's outermost middleware, which re-raises
        if not done.is_set():
            status = 500
    finally:
        done.set()
    return status, headers, b"".join(chunks)


def _answer(status: int, headers: dict[str, str], body: bytes) -> str:
    """What the replay got, as text to keep: JSON as sent, anything else (a pixel) described."""
    if media_type_of(headers.get("content-type", "")) == "application/json":
        return body.decode("utf-8", "replace")
    return jsonutil.dumps_str(
        {"status": status, "content_type": headers.get("content-type"), "bytes": len(body)}
    )


async def replay(
    app: ASGIApp,
    services: AppServices,
    rejection_id: str,
    *,
    body: Any = None,
    query: Any = None,
    metrics: Any = None,
) -> ReplayOutcome:
    """Replay one rejection (``NotFound``, or ``Conflict`` while another replay of it runs)."""
    uow = services.uow
    now = datetime.now(UTC)
    async with uow.transaction() as db:
        row = await statements.get(db, rejection_id)
        if row is None:
            raise NotFound(f"no rejection {rejection_id!r}")
        if row.state == statements.REPLAYED:
            return ReplayOutcome(
                row.id, row.state, row.last_replay_status, parse_response(row.last_replay_response), False
            )
        if row.body_truncated and body is None:
            raise ValidationFailed.field(
                ("body", "body"),
                "the stored body was cut at TRACKWAY_MAX_BODY_BYTES: replay it with a corrected body",
                "missing",
            )
        sent_query, sent_body, headers = request_parts(row, body=body, query=query)
        if not await statements.claim(db, rejection_id, now):
            raise Conflict(f"rejection {rejection_id!r} is being replayed")
    try:
        if row.dialect == tracify.DIALECT:
            source = await get_source(uow, row.source_id)
            if source is not None and source.secret:
                headers.append((b"x-api-key", source.secret.encode("latin-1", "replace")))
        elif row.dialect == segment.DIALECT:
            # The write key travelled as HTTP Basic's user name, a header the quarantine does not
            # keep; it is the source's id, so the replay says it again.
            key = base64.b64encode(f"{row.source_id}:".encode()).decode()
            headers.append((b"authorization", f"Basic {key}".encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": row.method,
            "scheme": "http",
            "path": row.path,
            "raw_path": row.path.encode("utf-8", "replace"),
            "root_path": "",
            "query_string": sent_query,
            "headers": headers,
            "client": (row.client_ip or "127.0.0.1", 0),
            "server": ("trackway-replay", 0),
            "state": {},
            REPLAY_KEY: rejection_id,
        }
        status, response_headers, response_body = await call_app(app, scope, sent_body)
    except BaseException:
        async with uow.transaction() as db:
            await statements.release(db, rejection_id)
        raise
    accepted = 200 <= status < 300
    answer = _answer(status, response_headers, response_body)
    async with uow.transaction() as db:
        await statements.finish(
            db, rejection_id, accepted=accepted, status=status, response=answer, now=datetime.now(UTC)
        )
    if metrics is not None:
        metrics.count_replay(accepted)
    state = statements.REPLAYED if accepted else statements.QUARANTINED
    return ReplayOutcome(rejection_id, state, status, parse_response(answer), True)
