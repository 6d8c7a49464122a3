"""The HTTP boundary shared by every HTTP adapter (AwaitStep, Cloudflare).

One :class:`UpstreamHttpClient` per upstream owns one pooled ``httpx.AsyncClient``
and is the only place where httpx errors are seen: everything leaves it either as
an ``httpx.Response`` the adapter reads, or as an error of ``runcast.errors``.

What it promises:

- Timeouts: connect and read timeouts from :class:`~runcast.settings.Settings`
  (``upstream_connect_timeout``, ``upstream_read_timeout``).
- Retries: ``GET``/``HEAD`` (and calls made with ``idempotent=True``) are retried
  on connection errors, timeouts and 502/503/504, at most
  ``settings.upstream_get_retries`` times, with jittered exponential backoff.
  Other calls (mutations) are never retried blindly: only when the connection
  could not be opened at all (the request never left), which is always safe.
  Below these retries, the default transport resends a ``GET``, ``HEAD``,
  ``OPTIONS``, ``PUT`` or ``DELETE`` once by itself when its connection drops
  before an answer (see :class:`PooledTransport`), so an upstream may see up to
  twice as many such requests as attempts are observed; ``POST`` never.
- Errors: a refused connection, a connection dropped before or during the
  answer, a response that is not HTTP or is cut short, and a timeout all raise
  ``UpstreamUnavailable`` (after retries, when allowed); ``UpstreamProtocolError``
  is for an answer that arrived whole but cannot be read (e.g. not JSON).
- Status mapping (after retries): 429 raises ``RateLimited`` with ``retry_after``
  taken from ``Retry-After`` (seconds or an HTTP date); 401 raises
  ``Unauthenticated``; 403 raises ``Forbidden``; 5xx, timeouts and connection
  errors raise ``UpstreamUnavailable``. Every other response (2xx, 3xx and the
  remaining 4xx) is returned for the adapter to interpret, since each upstream
  spells its errors differently.
- Budget: with :class:`RequestLimits` (``limits``, set by the app to the live
  layer's), every request that goes on the wire takes a token first from the
  limiter of its credential (``limit_key`` of its headers): each retry, and each
  resend the pooled transport makes by itself (it is seen by an aiohttp client
  middleware). A caller that took the token for a request already (the live
  layer's scheduled polls) says so with :func:`prepaid_request`, so that request
  is counted once. A request that would wait more than ``CLIENT_MAX_WAIT`` for its
  token (a 429's hold included) raises ``RateLimited`` without being sent. A 429
  holds that limiter for its ``Retry-After`` (else what ``rate_headers`` read, else
  ``hold_after_429``); a success whose ``rate_headers`` say nothing remains holds it too.
- Attempts: :meth:`UpstreamHttpClient.request_with_attempts` says how many times
  a request went on the wire (resends included), so adapters can tell their own
  earlier attempt from someone else's call (idempotent terminate, pause, resume).
- Observation: ``on_request(upstream_name, outcome)`` is called once per HTTP
  attempt (retries count), with an outcome from :data:`RequestOutcome`, so the
  live layer can count requests against its budget and export metrics. A
  failing observer is logged and never breaks a request.
- Cookies: none are stored or sent. One client serves every caller, so a cookie
  an upstream sets in answer to one caller must never go out with another's request.
- Lifetime: :meth:`UpstreamHttpClient.aclose` closes the pool; later calls raise
  ``UpstreamUnavailable``.
- Transport: by default :class:`PooledTransport`, aiohttp's connection pool behind
  the httpx API (httpx-aiohttp), raising the same httpx exceptions as httpx's own
  transport; tests inject an ``httpx`` transport instead.

Typical adapter use::

    http = UpstreamHttpClient("awaitstep", base_url, settings=settings, transport=transport)
    response = await http.request("GET", "/api/v1/workflows", headers=creds.authorization_header())
    body = decode_json(response, upstream="awaitstep")
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Literal, TypeAlias

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from runcast.errors import (
    Forbidden,
    RateLimited,
    Unauthenticated,
    UpstreamProtocolError,
    UpstreamUnavailable,
)
from runcast.models import JSON
from runcast.settings import Settings
from runcast.upstream._limiter import CLIENT_MAX_WAIT
from runcast.upstream._port import RequestLimiter, RequestLimits
from runcast.wire.times import parse_http_date

logger = logging.getLogger(__name__)

RequestOutcome: TypeAlias = Literal[
    "ok", "client_error", "rate_limited", "server_error", "timeout", "connection_error"
]
"""How one HTTP attempt ended: a 2xx/3xx, another 4xx, a 429, a 5xx, a timeout, no connection."""

RequestObserver: TypeAlias = Callable[[str, RequestOutcome], None]
"""Called as ``observer(upstream_name, outcome)`` after every HTTP attempt."""

ErrorMessageReader: TypeAlias = Callable[[httpx.Response], str | None]
"""Extracts the upstream's own error message from an error response, if it has one."""


AttemptHook: TypeAlias = Callable[[], Awaitable[None]]
"""Awaited before each request goes on the wire; may raise to keep it from being sent."""

_prepaid: ContextVar[bool] = ContextVar("runcast_prepaid_request", default=False)
_wire_attempts: ContextVar[list[int] | None] = ContextVar("runcast_wire_attempts", default=None)
_limiter: ContextVar[RequestLimiter | None] = ContextVar("runcast_limiter", default=None)

LimitKey: TypeAlias = Callable[[Mapping[str, str]], str]
"""The credential key of a request's headers: which limiter the request asks."""
RateHeaders: TypeAlias = Callable[[httpx.Headers], float | None]
"""Seconds an upstream's rate-limit headers ask to wait (``None``: nothing said)."""
DEFAULT_HOLD_SECONDS = 10.0
"""Seconds a 429 holds its credential's requests when the upstream did not say how long."""


@contextmanager
def prepaid_request() -> Iterator[None]:
    """Within the block, the first request sent has been taken from the budget already.

    The live layer takes a token before it starts a poll (that is how it paces them);
    this keeps the HTTP boundary from taking a second one for the same request.
    Retries and resends of that request still take their own.
    """
    reset = _prepaid.set(True)
    try:
        yield
    finally:
        _prepaid.reset(reset)


RETRYABLE_STATUS = frozenset({502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_BACKOFF_SECONDS = 5.0
LARGE_BODY_BYTES = 1024 * 1024
"""Above this size aiohttp warns about a body given as ``bytes``; such bodies go in pieces."""


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header (delta seconds or HTTP date).

    Returns ``None`` when the header is missing or unreadable, and never a negative number.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    when = parse_http_date(text)
    if when is None:
        return None
    current = now or datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


def decode_json(response: httpx.Response, *, upstream: str) -> JSON:
    """The response body as JSON; raises ``UpstreamProtocolError`` when it is not JSON."""
    try:
        return response.json()
    except ValueError as exc:
        raise UpstreamProtocolError(
            f"upstream {upstream} answered {response.status_code} with a body that is not JSON"
        ) from exc


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

    def __init__(self, *, limits: httpx.Limits, on_attempt: AttemptHook | None = None) -> None:
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


UPSTREAM_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
"""The connection pool of one upstream's client."""


def pooled_transport() -> PooledTransport:
    """The transport an :class:`UpstreamHttpClient` uses by default (to wrap, e.g. for traces)."""
    return PooledTransport(limits=UPSTREAM_LIMITS)


class UpstreamHttpClient:
    """One pooled HTTP client for one upstream, with retries and error mapping.

    Args:
        name: the upstream's label (``awaitstep``, ``cloudflare``) for messages and metrics.
        base_url: prefix of every request path.
        settings: timeouts and the retry bound.
        transport: an httpx transport to use instead of :class:`PooledTransport` (tests).
        headers: headers sent with every request (e.g. a fixed API token).
        on_request: observer told the outcome of every attempt.
        error_message: reads the upstream's error message from a 401/403/429 body.
        retry_base_delay: ceiling of the first backoff in seconds; later ceilings double
            (capped at 5 s) and each wait is drawn between half the ceiling and the ceiling.
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
        on_request: RequestObserver | None = None,
        error_message: ErrorMessageReader | None = None,
        retry_base_delay: float = 0.1,
    ) -> None:
        settings = settings or Settings()
        self.name = name
        self.on_request = on_request
        """The observer of every attempt; may be set after construction (the app's metrics)."""
        self.limits: RequestLimits | None = None
        """Its credential's limiter takes a token for every request on the wire."""
        self.limit_key: LimitKey = lambda headers: ""
        """The key of a request's credential (by default one limiter for every request)."""
        self.rate_headers: RateHeaders | None = None
        """Reads the upstream's own rate-limit headers, where it sends them."""
        self.hold_after_429 = DEFAULT_HOLD_SECONDS
        """Seconds a 429 that says nothing about how long holds its credential."""
        self._error_message = error_message
        self._retries = max(0, settings.upstream_get_retries)
        self._retry_base_delay = retry_base_delay
        self._closed = False
        timeout = httpx.Timeout(
            connect=settings.upstream_connect_timeout,
            read=settings.upstream_read_timeout,
            write=settings.upstream_read_timeout,
            pool=settings.upstream_connect_timeout,
        )
        limits = UPSTREAM_LIMITS
        # An injected transport is not seen on the wire: each httpx attempt is counted instead.
        self._counts_attempts = transport is not None
        # One client serves every caller: a cookie set for one must never reach another.
        cookies = CookieJar(policy=DefaultCookiePolicy(allowed_domains=()))
        self._client = httpx.AsyncClient(
            base_url=base_url,
            transport=(
                PooledTransport(limits=limits, on_attempt=self._take_attempt)
                if transport is None
                else transport
            ),
            timeout=timeout,
            headers={"User-Agent": "runcast", **(headers or {})},
            cookies=cookies,
            limits=limits,
            follow_redirects=False,
        )

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` has been called."""
        return self._closed

    async def aclose(self) -> None:
        """Close the connection pool; later requests raise ``UpstreamUnavailable``."""
        self._closed = True
        await self._client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        json: JSON = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send one logical request, retrying when that is safe, and map failures.

        See :meth:`request_with_attempts` for the arguments and errors.
        """
        response, _ = await self.request_with_attempts(
            method, path, headers=headers, params=params, json=json, idempotent=idempotent
        )
        return response

    async def request_with_attempts(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
        json: JSON = None,
        idempotent: bool | None = None,
    ) -> tuple[httpx.Response, int]:
        """Like :meth:`request`, and also say how many HTTP attempts it took.

        An adapter that retries a mutation made idempotent by a caller-given key
        (a trigger with an instance id) uses the count to tell "it already
        existed" from "our own first attempt got through".

        Args:
            method: the HTTP method.
            path: appended to the base URL.
            headers: per-request headers (the caller's ``Authorization``).
            params: query parameters (pairs may repeat a name).
            json: a JSON body, if any.
            idempotent: whether retrying after an unknown outcome is safe; defaults
                to ``True`` for GET/HEAD/OPTIONS and ``False`` otherwise.

        Returns:
            The response, for any status but 401, 403, 429 and 5xx, and the number
            of times the request went on the wire (1 when there was no retry and no
            resend).

        Raises:
            Unauthenticated, Forbidden, RateLimited, UpstreamUnavailable, UpstreamProtocolError.
        """
        counter = [0]
        reset = _wire_attempts.set(counter)
        limits = self.limits
        limiter = None if limits is None else limits.limiter(self.limit_key(headers or {}))
        reset_limiter = _limiter.set(limiter)
        try:
            response, attempts = await self._send(
                method, path, headers=headers, params=params, json=json, idempotent=idempotent
            )
        finally:
            _limiter.reset(reset_limiter)
            _wire_attempts.reset(reset)
        return response, max(attempts, counter[0])

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str] | None,
        params: Mapping[str, str] | Sequence[tuple[str, str]] | None,
        json: JSON,
        idempotent: bool | None,
    ) -> tuple[httpx.Response, int]:
        if self._closed:
            raise UpstreamUnavailable(f"upstream {self.name}: the client has been closed")
        method = method.upper()
        retry_unknown = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        request_headers = dict(headers or {})
        pairs = list(params.items()) if isinstance(params, Mapping) else list(params or ())
        query = httpx.QueryParams(tuple(pairs)) if pairs else None
        attempt = 0
        while True:
            if self._counts_attempts:
                await self._take_attempt()
            try:
                response = await self._client.request(
                    method, path, headers=request_headers, params=query, json=json
                )
            except httpx.TimeoutException as exc:
                self._observe("timeout")
                never_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                if (retry_unknown or never_sent) and attempt < self._retries:
                    attempt += 1
                    await self._backoff(attempt)
                    continue
                raise UpstreamUnavailable(
                    f"upstream {self.name} timed out ({type(exc).__name__}) on {method} {path}"
                ) from exc
            except httpx.TransportError as exc:
                self._observe("connection_error")
                never_sent = isinstance(exc, httpx.ConnectError)
                if (retry_unknown or never_sent) and attempt < self._retries:
                    attempt += 1
                    await self._backoff(attempt)
                    continue
                raise UpstreamUnavailable(
                    f"upstream {self.name} could not be reached ({type(exc).__name__}) "
                    f"on {method} {path}"
                ) from exc
            except httpx.HTTPError as exc:
                self._observe("connection_error")
                raise UpstreamProtocolError(
                    f"upstream {self.name} sent a response runcast cannot read "
                    f"({type(exc).__name__}) on {method} {path}"
                ) from exc
            except RuntimeError as exc:
                # httpx raises RuntimeError when the client was closed concurrently.
                if self._closed:
                    raise UpstreamUnavailable(
                        f"upstream {self.name}: the client has been closed"
                    ) from exc
                raise

            status = response.status_code
            self._learn_rate(response)
            if status >= 500:
                self._observe("server_error")
                if status in RETRYABLE_STATUS and retry_unknown and attempt < self._retries:
                    attempt += 1
                    await self._backoff(attempt)
                    continue
                # The body of a 5xx is not passed on: it may hold the upstream's internals.
                raise UpstreamUnavailable(
                    f"upstream {self.name} answered {status} on {method} {path}",
                    status_code=status,
                )
            if status == 429:
                self._observe("rate_limited")
                retry_after = self._hold(response)
                logger.info(
                    "upstream %s answered 429 to %s %s; retry after %ss",
                    self.name,
                    method,
                    path,
                    "?" if retry_after is None else f"{retry_after:g}",
                    extra={"retry_after_s": retry_after},
                )
                raise RateLimited(
                    self._describe(response, f"upstream {self.name} is rate limiting requests"),
                    retry_after=retry_after,
                )
            if status >= 400:
                self._observe("client_error")
                if status == 401:
                    raise Unauthenticated(
                        self._describe(
                            response, f"upstream {self.name} refused the credentials (401)"
                        )
                    )
                if status == 403:
                    raise Forbidden(
                        self._describe(
                            response,
                            f"upstream {self.name} does not allow this with these credentials",
                        )
                    )
                return response, attempt + 1
            self._observe("ok")
            return response, attempt + 1

    async def _take_attempt(self) -> None:
        """Count one request going on the wire, and take its token from the limiter."""
        counter = _wire_attempts.get()
        if counter is not None:
            counter[0] += 1
        if _prepaid.get():
            _prepaid.set(False)
            return
        limiter = _limiter.get()
        if limiter is not None:
            await limiter.acquire(urgent=True, within=CLIENT_MAX_WAIT)

    def _learn_rate(self, response: httpx.Response) -> None:
        """Hold the request's limiter when a success says nothing remains for now."""
        limiter = _limiter.get()
        if limiter is None or self.rate_headers is None or response.status_code == 429:
            return
        wait = self.rate_headers(response.headers)
        if wait is not None and wait > 0:
            limiter.pause(wait)

    def _hold(self, response: httpx.Response) -> float | None:
        """Hold the request's limiter for a 429; the seconds held (or asked, unlimited)."""
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is None and self.rate_headers is not None:
            wait = self.rate_headers(response.headers)
        limiter = _limiter.get()
        if limiter is None:
            return wait
        held = self.hold_after_429 if wait is None else wait
        limiter.pause(held)
        return held

    def _describe(self, response: httpx.Response, fallback: str) -> str:
        if self._error_message is None:
            return fallback
        try:
            message = self._error_message(response)
        except Exception:  # a reader must never turn a mapped error into a crash
            logger.debug("error message reader failed for %s", self.name, exc_info=True)
            return fallback
        return f"{fallback}: {message}" if message else fallback

    def _observe(self, outcome: RequestOutcome) -> None:
        if self.on_request is None:
            return
        try:
            self.on_request(self.name, outcome)
        except Exception:
            logger.warning("request observer failed for upstream %s", self.name, exc_info=True)

    async def _backoff(self, attempt: int) -> None:
        ceiling = min(MAX_BACKOFF_SECONDS, self._retry_base_delay * 2 ** (attempt - 1))
        await asyncio.sleep(random.uniform(ceiling / 2, ceiling))
