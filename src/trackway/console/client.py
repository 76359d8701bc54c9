"""The console's way into the admin and read API: ``/api`` called in-process, with the bearer.

The console is a client of the API, not a second implementation: a page asks ``/api`` what
``curl`` would, through the same app (ASGI, no socket), so the same validation, the same
queries and the same error messages apply. The admin token is added here, on the server;
the browser never has it, and ``/api`` itself accepts nothing but the bearer (no cookie),
so it needs no CSRF defence of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from starlette.requests import Request

from trackway import jsonutil


@dataclass(slots=True)
class Answer:
    """What the API answered: its status and its JSON body (``None`` for a 204)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def problems(self) -> list[str]:
        """The error's ``detail`` as lines a person reads: ``field: message``."""
        if self.ok:
            return []
        detail = self.body.get("detail") if isinstance(self.body, dict) else None
        if isinstance(detail, list):
            lines = []
            for item in detail:
                loc = [str(part) for part in item.get("loc", []) if part not in ("body", "query")]
                lines.append(f"{'.'.join(loc)}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            return lines
        return [str(detail or f"the API answered {self.status}")]


class ApiClient:
    """One request's calls to ``/api``; the underlying client is shared by the app's requests."""

    def __init__(self, request: Request) -> None:
        app = request.app
        client: httpx.AsyncClient | None = getattr(app.state, "console_client", None)
        if client is None:
            client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://console.internal",
                trust_env=False,
                timeout=30,
            )
            app.state.console_client = client
        self._client = client
        token = app.state.services.settings.admin_token or ""
        self._headers = {"Authorization": f"Bearer {token}"}

    async def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None
    ) -> Answer:
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        headers = dict(self._headers)
        content = None
        if json is not None:
            content = jsonutil.dumps(json)
            headers["Content-Type"] = "application/json"
        response = await self._client.request(method, path, params=clean, content=content, headers=headers)
        body = jsonutil.loads(response.content) if response.content else None
        return Answer(response.status_code, body)

    async def get(self, path: str, **params: Any) -> Answer:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, body: Any) -> Answer:
        return await self.call("POST", path, json=body)

    async def patch(self, path: str, body: Any) -> Answer:
        return await self.call("PATCH", path, json=body)

    async def delete(self, path: str) -> Answer:
        return await self.call("DELETE", path)
