"""Connection guards for the HTTP server: header size, header and idle timeouts, a connection cap.

uvicorn bounds none of these by itself: a request head may grow without limit
(with httptools) or is refused with a plain 400 (h11), a client may take forever
to send its head (slowloris), and every accepted connection is held. The
protocol classes built by :func:`guarded_protocol` add, around uvicorn's own
HTTP/1.1 protocols:

- ``max_header_bytes``: a request head (request line and headers) larger than
  this is answered ``431 Request Header Fields Too Large`` and the connection closed;
- ``header_timeout``: a connection that has not sent a whole head this many
  seconds after it opened (or after it sent the head's first byte, on a kept-alive
  connection) is closed;
- ``max_connections``: a connection beyond this many open ones (HTTP and
  WebSocket together) is answered ``503`` with ``Retry-After`` and closed.

The idle timeout between requests is uvicorn's ``timeout_keep_alive``. This module
imports nothing from runcast, so the gateway and the engine can both use it.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_END = b"\r\n\r\n"
PARSERS: dict[str, type[asyncio.Protocol]] = {"h11": H11Protocol, "httptools": HttpToolsProtocol}
"""uvicorn's HTTP/1.1 protocols by the name the ``http_parser`` setting gives them."""


@dataclass(frozen=True)
class ConnectionLimits:
    """What one server holds its connections to (see the module docstring)."""

    max_header_bytes: int
    header_timeout: float
    max_connections: int


def error_response(status: int, reason: str, message: str, *, retry_after: int | None) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a coded JSON errors body."""
    code = {431: "HEADERS_TOO_LARGE", 503: "TOO_MANY_CONNECTIONS"}.get(status, "BAD_REQUEST")
    body = json.dumps({"errors": [{"message": message, "extensions": {"code": code}}]}).encode()
    extra = f"retry-after: {retry_after}\r\n" if retry_after is not None else ""
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n"
    )
    return head.encode("ascii") + body


class _HeadGuard:
    """Per-connection state: bytes of the current head so far, and its deadline."""

    def __init__(self) -> None:
        self.head_bytes = 0
        self.tail = b""
        self.complete = False
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop, timeout: float, transport: Any) -> None:
        """Close ``transport`` in ``timeout`` seconds unless the head is complete by then."""

        def timed_out() -> None:
            self.timer = None
            if not self.complete and not transport.is_closing():
                transport.close()

        self.timer = loop.call_later(timeout, timed_out)

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def feed(self, data: bytes) -> bool:
        """Count ``data`` into the current head; ``True`` once its end has been seen."""
        if self.complete:
            return True
        window = self.tail + data
        end = window.find(HEAD_END)
        if end >= 0:
            self.head_bytes += end + len(HEAD_END) - len(self.tail)
            self.complete = True
            return True
        self.head_bytes += len(data)
        self.tail = window[-(len(HEAD_END) - 1) :]
        return False

    def next_request(self) -> None:
        self.head_bytes, self.tail, self.complete = 0, b"", False

    def refuse(self, transport: Any, status: int, reason: str, message: str) -> None:
        """Answer ``status`` with a coded JSON body and close: nothing more is read."""
        self.cancel_timer()
        self.complete = True
        if not transport.is_closing():
            retry_after = 1 if status == 503 else None
            transport.write(error_response(status, reason, message, retry_after=retry_after))
            transport.close()


def guarded_protocol(parser: str, limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """A subclass of uvicorn's ``parser`` protocol (``h11`` or ``httptools``) holding to ``limits``.

    Raises:
        KeyError: ``parser`` is not one of :data:`PARSERS`.
    """
    base: Any = PARSERS[parser]

    class Guarded(base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            self._guard = _HeadGuard()
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self._guard.refuse(
                    transport,
                    503,
                    "Service Unavailable",
                    f"Too many connections: the limit is {limits.max_connections}",
                )
                return
            self._guard.arm(self.loop, limits.header_timeout, transport)

        def data_received(self, data: bytes) -> None:
            guard: _HeadGuard = self._guard
            if not guard.complete:
                if guard.timer is None:
                    guard.arm(self.loop, limits.header_timeout, self.transport)
                done = guard.feed(data)
                if guard.head_bytes > limits.max_header_bytes:
                    guard.refuse(
                        self.transport,
                        431,
                        "Request Header Fields Too Large",
                        f"The request head is over the limit of {limits.max_header_bytes} bytes",
                    )
                    return
                if done:
                    guard.cancel_timer()
            super().data_received(data)

        def on_response_complete(self) -> None:
            self._guard.next_request()
            super().on_response_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._guard.cancel_timer()
            super().connection_lost(exc)

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{base.__name__}"
    return Guarded
