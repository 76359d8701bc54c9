"""``trackway serve``'s HTTP protocol: uvicorn's, with a deadline on the request headers.

uvicorn closes an idle keep-alive connection (``timeout_keep_alive``) but never one that
opened and sent nothing, or half a request line, or its headers a byte at a time: neither
httptools nor h11 has a header timeout, and uvicorn arms its keep-alive timer only after a
response. A few hundred such connections (slowloris) held every file descriptor of the
process, and every new request failed. This protocol arms a timer when a connection opens
and when the next request's first bytes arrive after an answer; a request whose headers
are not complete when it fires gets a 408 with a JSON body and the connection is closed.
(Half a request pipelined in the same packet as a whole one is left to uvicorn's
keep-alive timer, armed after that answer; a byte more re-arms this deadline.)
Headers are bounded in size as well (uvicorn's httptools parser keeps them all): more than
``MAX_HEADER_BYTES`` before the headers end is a 431.

The body has its own deadline, in the app (``limits.py``); open connections are capped by
uvicorn's ``limit_concurrency`` (a 503 over it), fitted to the open-file limit here.
"""

from __future__ import annotations

import asyncio
import functools
import resource
from typing import Any, Final

from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

from trackway import jsonutil
from trackway.settings import Settings

#: Request line and headers of one request, at most (nginx's large_client_header_buffers is 4 x 8k).
MAX_HEADER_BYTES: Final = 64 * 1024
#: File descriptors kept for everything but client connections: the listening socket, the
#: database (a pool per worker, plus as many overflow), logs, SQLite's files, the event loop.
FD_RESERVE: Final = 64


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = jsonutil.dumps({"detail": detail})
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@functools.cache
def header_timeout() -> float:
    """Read once per process (workers are spawned and read the environment themselves)."""
    return Settings().header_timeout_seconds


class HeaderDeadline:
    """Mixin for uvicorn's HTTP protocols (both keep the current request in ``self.cycle``)."""

    transport: asyncio.Transport
    cycle: Any
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes: int = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        waiting = cycle is None or cycle.response_complete
        super().data_received(data)  # type: ignore[misc]
        if self.cycle is not cycle:  # a request's headers are complete: it is being answered
            self._cancel_header_timer()
            return
        if not waiting or self.transport.is_closing():
            return
        self._header_bytes += len(data)
        if self._header_bytes > MAX_HEADER_BYTES:
            self._refuse(431, "Request Header Fields Too Large", "Request line and headers are too large.")
        elif self._header_timer is None:
            self._arm_header_timer()  # the next request's first bytes after an answer

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]

    def _arm_header_timer(self) -> None:
        self._header_bytes = 0
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(header_timeout(), self._header_timer_fired)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._header_bytes = 0

    def _header_timer_fired(self) -> None:
        self._header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered (its headers completed meanwhile)
        self._refuse(408, "Request Timeout", "The request headers did not arrive in time.")

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(_raw_response(status, reason, detail))
            self.transport.close()


_OVER_LIMIT: Final = jsonutil.dumps({"detail": "Too many open connections, retry later."})


async def over_limit(_scope: Any, _receive: Any, send: Any) -> None:
    """uvicorn's answer past ``limit_concurrency``, in JSON like every other error."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_OVER_LIMIT)).encode("ascii")),
                (b"retry-after", b"1"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _OVER_LIMIT, "more_body": False})


# uvicorn picks its over-the-limit app from a module global of each protocol module: the
# one way to answer that 503 in JSON without re-implementing the limit.
h11_impl.service_unavailable = over_limit  # type: ignore[assignment]


class H11HeaderDeadline(HeaderDeadline, H11Protocol):
    """h11 (pure Python), when httptools is not installed."""


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] installs httptools on CPython
    PROTOCOL: type[asyncio.Protocol] = H11HeaderDeadline
else:
    from uvicorn.protocols.http import httptools_impl

    httptools_impl.service_unavailable = over_limit  # type: ignore[assignment]

    class HttpToolsHeaderDeadline(HeaderDeadline, HttpToolsProtocol):
        """httptools, uvicorn's default where it is installed."""

    PROTOCOL = HttpToolsHeaderDeadline


def fitted_limit_concurrency(settings: Settings) -> int:
    """``limit_concurrency``, lowered so that every connection it admits has a descriptor.

    Past the open-file limit ``accept()`` fails and nobody gets even the 503; the soft
    limit is first raised towards the hard one, as far as the configured limit needs.
    """
    reserve = FD_RESERVE + 2 * settings.db_pool_size
    wanted = settings.limit_concurrency + reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return settings.limit_concurrency
    return max(1, min(settings.limit_concurrency, soft - reserve))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The timeouts and limits ``trackway serve`` hands to ``uvicorn.run``."""
    return {
        "http": f"{PROTOCOL.__module__}:{PROTOCOL.__qualname__}",  # an import string: workers load it
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "limit_concurrency": fitted_limit_concurrency(settings),
        "backlog": settings.backlog,
        "h11_max_incomplete_event_size": MAX_HEADER_BYTES,
    }
