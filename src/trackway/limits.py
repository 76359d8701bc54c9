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
    """Pure ASGI middleware: a deadline on reading the body, and hang-ups as ``ClientClosedRequest``.

    Requests whose body is being read are kept in arrival order, and so in deadline order
    (one timeout for all); one sweep, every ``timeout / 4`` seconds at most and only while
    some request is reading, expires the overdue ones. A timer or ``asyncio.timeout`` per
    request cost 6-10 µs a request on this machine (most bodies arrive with their headers:
    ``receive`` returns at once); the sweep costs a dictionary insert and delete. A request
    that expires while it waits in ``receive`` has that wait cancelled, which becomes the
    408; one that expires while the app handles a chunk gets it from its next ``receive``.
    """

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout
        self._reading: dict[_GuardedReceive, None] = {}
        self._sweep_handle: asyncio.TimerHandle | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guarded = _GuardedReceive(receive, self)
        try:
            await self.app(scope, guarded, send)
        finally:
            guarded.finish()  # a body left unread (a 413, a GET) is no longer watched

    def watch(self, guarded: _GuardedReceive) -> None:
        self._reading[guarded] = None
        if self._sweep_handle is None:
            loop = asyncio.get_running_loop()
            self._sweep_handle = loop.call_later(min(1.0, self.timeout / 4), self._sweep)

    def unwatch(self, guarded: _GuardedReceive) -> None:
        self._reading.pop(guarded, None)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = asyncio.get_running_loop().time()
        for guarded in list(self._reading):
            if guarded.deadline > now:
                break  # the rest arrived later: not yet due
            del self._reading[guarded]
            guarded.expire()
        if self._reading:
            self._sweep_handle = asyncio.get_running_loop().call_later(
                min(1.0, self.timeout / 4), self._sweep
            )


class _GuardedReceive:
    """The ``receive`` of one request, until its body is complete (see ``BodyDeadline``)."""

    __slots__ = ("_owner", "_receive", "_state", "_task", "deadline")

    _FRESH, _PENDING, _WAITING, _EXPIRED, _COMPLETE = range(5)

    def __init__(self, receive: Receive, owner: BodyDeadline) -> None:
        self._receive = receive
        self._owner = owner
        self.deadline = asyncio.get_running_loop().time() + owner.timeout
        self._task: asyncio.Task[object] | None = None
        self._state = self._FRESH

    def expire(self) -> None:
        """The deadline passed: cancel the wait in ``receive``, or fail the next one."""
        if self._state == self._WAITING and self._task is not None:
            self._task.cancel()
        if self._state != self._COMPLETE:
            self._state = self._EXPIRED

    def _timed_out(self) -> RequestTimeout:
        return RequestTimeout(f"The request body did not arrive within {self._owner.timeout:g} seconds.")

    async def __call__(self) -> Message:
        state = self._state
        if state == self._COMPLETE:
            return await self._receive()
        if state == self._EXPIRED:
            raise self._timed_out()
        if state == self._FRESH:
            self._task = asyncio.current_task()
            self._owner.watch(self)
        self._state = self._WAITING
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            if self._state != self._EXPIRED or self._task is None:
                raise  # not ours: the server is shutting down, say
            if self._task.uncancel() > 0:
                raise  # cancelled by someone else as well
            raise self._timed_out() from None
        if message["type"] == "http.disconnect":
            self.finish()
            raise ClientClosedRequest()
        if message["type"] == "http.request" and not message.get("more_body", False):
            self.finish()
        elif self._state == self._WAITING:
            self._state = self._PENDING
        return message

    def finish(self) -> None:
        if self._state != self._FRESH:
            self._owner.unwatch(self)
        self._state = self._COMPLETE
