"""Builders for test payloads."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> dict[str, Any]:
    """A seed payload from ``tests/fixtures``, as a fresh copy."""
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return copy.deepcopy(data)


def tracker_payload(
    source_id: str,
    *,
    session: str | None = None,
    profile: str | None = None,
    events: int = 3,
    with_ids: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """A Tracardi payload shaped like the browser tracker's: page context and event ids."""
    payload: dict[str, Any] = {
        "source": {"id": source_id},
        "context": {
            "page": {
                "url": "https://shop.example/p/1?utm_source=news&utm_medium=email",
                "path": "/p/1",
                "title": "Product 1",
                "referrer": "https://search.example/",
            }
        },
        "events": [
            {
                "type": ["page-view", "product-view", "add-to-cart"][i % 3],
                "properties": {"n": i, "price": "13.45"},
                **({"id": str(uuid.uuid4())} if with_ids else {}),
            }
            for i in range(events)
        ],
        **extra,
    }
    if session is not None:
        payload["session"] = {"id": session}
    if profile is not None:
        payload["profile"] = {"id": profile}
    return payload


def plain_batch(source_id: str, session: str, profile: str | None = None) -> Any:
    """A plain Tracardi batch: one page view with a fresh event id, a session, maybe a profile id."""
    from datetime import UTC, datetime

    from trackway.core.batch import EventIn, IngestBatch, RequestMeta, SourceRef

    return IngestBatch(
        source=SourceRef(source_id, "tracardi"),
        meta=RequestMeta(received_at=datetime.now(UTC)),
        events=[EventIn("page-view", dedup_key=str(uuid.uuid4()))],
        profile_hint=profile,
        session_key=session,
    )
