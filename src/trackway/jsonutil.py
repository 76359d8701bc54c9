"""JSON encoding shared by the database columns and the HTTP responses (orjson, fast)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # Exact decimals (prices, amounts) travel as strings so no float rounding creeps in.
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def dumps_str(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


loads = orjson.loads
