"""aiohttp's connection pool behind the httpx API: the transport of every HTTP adapter.

:class:`PooledTransport` is httpx-aiohttp's transport with the failures httpx's own
transport raises (so the retry policy can tell whether a request may have left), cookies
left to the ``httpx.AsyncClient``, large bodies sent in pieces, and a hook awaited before
every request that goes on the wire, aiohttp's own resends included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from runcast._http_pool import POOL_LIMITS

AttemptHook = Callable[[], Awaitable[None]]
"""Awaited before each request goes on the wire; may raise to keep it from being sent."""

LARGE_BODY_BYTES = 1024 * 1024
"""Above this size aiohttp warns about a body given as ``bytes``; such bodies go in pieces."""


def _httpx_error(exc: Exception, request: httpx.Request) -> Exception:
    """The exception httpx's own transport raises for the aiohttp failure behind ``exc``.

    httpx-aiohttp maps aiohttp's exceptions coarsely (a refused connection becomes
    ``ConnectTimeout``, a dropped one too, and some pass through unmapped); the
    retry rules need to know exactly whether a request can have left. ``exc`` is
    returned unchanged when no aiohttp failure is behind it.
    """
    cause = exc if isinstance(exc, aiohttp.ClientError) else exc.__cause__
    if not isinstance(cause, aiohttp.ClientError):
        return exc
    error_type: type[httpx.TransportError]
    if isinstance(cause, aiohttp.ConnectionTimeoutError):
        error_type = httpx.ConnectTimeout  # no connection within the connect/pool timeout
    elif isinstance(cause, aiohttp.ServerTimeoutError):
        error_type = httpx.ReadTimeout  # sock_read: no byte within the read timeout
    elif isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ServerFingerprintMismatch):
        error_type = httpx.ConnectError  # refused, DNS, TLS: the request never left
    elif isinstance(cause, aiohttp.ClientOSError):
        error_type = httpx.ReadError  # reset or broken pipe on an open connection
    elif isinstance(cause, aiohttp.InvalidURL):
        error_type = httpx.UnsupportedProtocol
    else:
        # Disconnected without an answer, a truncated body, a response aiohttp cannot parse.
        error_type = httpx.RemoteProtocolError
    return error_type(str(cause) or type(cause).__name__, request=request)


class _MappedStream(httpx.AsyncByteStream):
    """A response body whose read errors are the ones httpx's own transport raises."""

    def __init__(self, stream: httpx.AsyncByteStream, request: httpx.Request) -> None:
        self._stream = stream
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                yield chunk
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, self._request) from exc

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, self._request) from exc


class _ChunkedBody(httpx.AsyncByteStream):
    """A request body handed to aiohttp in pieces rather than as one ``bytes`` object."""

    CHUNK_BYTES = 64 * 1024

    def __init__(self, content: bytes) -> None:
        self._content = content

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._content), self.CHUNK_BYTES):
            yield self._content[start : start + self.CHUNK_BYTES]


class PooledTransport(AiohttpTransport):
    """httpx-aiohttp's transport: aiohttp's connection pool behind the httpx API.

    Per request it costs a fraction of httpcore's pool, which re-checks every
    pooled connection through anyio on each request (encode/httpx#3215). Two
    things differ from httpx-aiohttp's own transport: failures raise exactly the
    httpx exceptions httpx's own transport raises (see :func:`_httpx_error`), and
    cookies are left to the ``httpx.AsyncClient`` alone, as with httpx's transport.

    One aiohttp behaviour stays, with no public switch (aio-libs/aiohttp#10790):
    a request with an idempotent method (GET, HEAD, OPTIONS, TRACE, PUT, DELETE)
    whose connection drops before an answer (reset, or closed without a status
    line) is sent again once on a fresh connection, as RFC 9112 section 9.3.1
    allows; the httpx layer sees one attempt. A POST is sent once. Timeouts and
    refused connections are not resent by aiohttp.

    Every request on the wire, those resends included, first awaits ``on_attempt``
    (an aiohttp client middleware sees each one), which is how the budget counts them.

    Args:
        limits: the pool size and keep-alive expiry.
        on_attempt: awaited before each request goes on the wire.
    """

    def __init__(
        self, *, limits: httpx.Limits = POOL_LIMITS, on_attempt: AttemptHook | None = None
    ) -> None:
        super().__init__(limits=limits)
        self._on_attempt = on_attempt

    def get_client(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self.limits.max_connections or 0,
            keepalive_timeout=self.limits.keepalive_expiry,
            ssl=self.ssl_context,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            middlewares=(self._each_attempt,) if self._on_attempt is not None else (),
        )

    async def _each_attempt(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        if self._on_attempt is not None:
            await self._on_attempt()
        return await handler(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if isinstance(request.stream, httpx.ByteStream) and len(request.content) > LARGE_BODY_BYTES:
            request = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                stream=_ChunkedBody(request.content),
                extensions=request.extensions,
            )
        try:
            response = await super().handle_async_request(request)
        except (httpx.TransportError, aiohttp.ClientError) as exc:
            raise _httpx_error(exc, request) from exc
        if isinstance(response.stream, httpx.AsyncByteStream):
            response.stream = _MappedStream(response.stream, request)
        return response
