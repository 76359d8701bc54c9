"""JSON responses rendered with orjson: faster than the default encoder on the hot path."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from trackway import jsonutil


def json_response(content: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        jsonutil.dumps(content),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )
