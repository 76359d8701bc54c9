"""The request body's deadline and the client's hang-up, for every route: an ASGI middleware.

The collector routes read their bodies in ``dialects/_common.read_body``; FastAPI reads the
admin API's bodies itself, before any dependency (the bearer check included) runs. Both read
through ``receive``, so the limit is kept there, once, for both:

* the whole body must arrive within ``timeout`` seconds of the request's headers, or the
  read raises ``RequestTimeout`` (a 408 with a JSON body): a client that stalls or trickles
  its upload holds its connection no longer than that;
* a client that hangs up before its body is complete raises ``ClientClosedRequest`` (a quiet
  499: one log line, counted, no traceback) instead of Starlette's ``ClientDisconnect``,
  which reached the catch-all handler as a 500 with tracebacks.

FastAPI wraps any error while it reads a body in a 400 ("There was an error parsing the
body") raised ``from`` it; ``api/errors.py`` looks at that cause to answer 408 or 499 there too.
Once the body is complete, ``receive`` is passed through untouched.
"""

from __future__ import annotations

import asyncio

from trackway.errors import ClientClosedRequest, RequestTimeout
from trackway.metrics import ASGIApp, Message, Receive, Scope, Send


class BodyDeadline:
    """Pure ASGI middleware: a deadline on reading the body, and hang-ups as ``ClientClosedRequest``."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        complete = False

        async def receive_before_deadline() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise RequestTimeout(
                    f"The request body did not arrive within {self.timeout:g} seconds."
                ) from None
            if message["type"] == "http.disconnect":
                raise ClientClosedRequest()
            if message["type"] == "http.request" and not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, receive_before_deadline, send)
