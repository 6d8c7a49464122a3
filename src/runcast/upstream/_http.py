"""The HTTP boundary shared by every HTTP adapter (AwaitStep, Cloudflare).

One :class:`UpstreamHttpClient` per upstream owns one pooled ``httpx.AsyncClient``
and is the only place where httpx errors are seen: everything leaves it either as
an ``httpx.Response`` the adapter reads, or as an error of ``runcast.errors``.

What it promises:

- Timeouts: connect and read timeouts from :class:`~runcast.settings.Settings`
  (``upstream_connect_timeout``, ``upstream_read_timeout``).
- Retries: as :class:`~runcast.upstream._retry.RetryPolicy` decides, at most
  ``settings.upstream_get_retries`` times: ``GET``/``HEAD`` (and calls made with
  ``idempotent=True``) on connection errors, timeouts and 502/503/504; other calls
  (mutations) only when the connection could not be opened at all (the request never
  left), which is always safe. Below these retries, the default transport resends a
  ``GET``, ``HEAD``, ``OPTIONS``, ``PUT`` or ``DELETE`` once by itself when its
  connection drops before an answer (see :class:`~runcast.upstream._transport.PooledTransport`),
  so an upstream may see up to twice as many such requests as attempts are observed;
  ``POST`` never.
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
  middleware, also under layers such as tracing's spans). A caller that took the
  token for a request already (the live layer's scheduled polls) says so with
  :func:`prepaid_request`, so that request is counted once. A request that would
  wait more than ``CLIENT_MAX_WAIT`` for its token (a 429's hold included) raises
  ``RateLimited`` without being sent. A 429 holds that limiter for its
  ``Retry-After`` (else what ``rate_headers`` read, else ``hold_after_429``); a
  success whose ``rate_headers`` say nothing remains holds it too.
- Attempts: :meth:`UpstreamHttpClient.request_with_attempts` says how many times
  a request went on the wire (resends included), so adapters can tell their own
  earlier attempt from someone else's call (idempotent terminate, pause, resume).
- Observation: ``on_request(upstream_name, outcome)`` is called once per HTTP
  attempt (retries count), with an outcome from :data:`RequestOutcome`, so the
  live layer can count requests against its budget and export metrics. A
  failing observer is logged and never breaks a request.
- Cookies: none are stored or sent (:func:`runcast._http_pool.pooled_client`). One
  client serves every caller, so a cookie an upstream sets in answer to one caller must
  never go out with another's request.
- Lifetime: :meth:`UpstreamHttpClient.aclose` closes the pool; later calls raise
  ``UpstreamUnavailable``.
- Transport: by default :class:`~runcast.upstream._transport.PooledTransport`,
  aiohttp's connection pool behind the httpx API, raising the same httpx exceptions as
  httpx's own transport; ``layers`` wrap it (a span per attempt, Cloudflare's rate-limit
  gate); tests inject an ``httpx`` transport instead (then each attempt is counted).

Typical adapter use::

    http = UpstreamHttpClient("awaitstep", base_url, settings=settings, transport=transport)
    response = await http.request("GET", "/api/v1/workflows", headers=creds.authorization_header())
    body = decode_json(response, upstream="awaitstep")
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TypeAlias

import httpx

from runcast._http_pool import pooled_client
from runcast.errors import (
    Forbidden,
    RateLimited,
    RuncastError,
    Unauthenticated,
    UpstreamProtocolError,
    UpstreamUnavailable,
)
from runcast.models import JSON
from runcast.settings import Settings
from runcast.upstream._limiter import CLIENT_MAX_WAIT
from runcast.upstream._port import RequestLimiter, RequestLimits
from runcast.upstream._retry import Attempt, RequestOutcome, RetryPolicy, safe_to_repeat
from runcast.upstream._transport import PooledTransport
from runcast.wire.times import parse_http_date

__all__ = [
    "ErrorMessageReader",
    "RequestObserver",
    "RequestOutcome",
    "TransportLayer",
    "UpstreamHttpClient",
    "decode_json",
    "parse_retry_after",
    "prepaid_request",
]

logger = logging.getLogger(__name__)

RequestObserver: TypeAlias = Callable[[str, RequestOutcome], None]
"""Called as ``observer(upstream_name, outcome)`` after every HTTP attempt."""

ErrorMessageReader: TypeAlias = Callable[[httpx.Response], str | None]
"""Extracts the upstream's own error message from an error response, if it has one."""

TransportLayer: TypeAlias = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]
"""Wraps a transport in another that adds to every attempt (a span, a rate-limit gate)."""

Params: TypeAlias = Mapping[str, str] | Sequence[tuple[str, str]]

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


def _query(params: Params | None) -> httpx.QueryParams | None:
    """``params`` as httpx takes them; ``None`` when empty (an empty list drops a URL's query)."""
    if not params:
        return None
    return httpx.QueryParams(params if isinstance(params, Mapping) else list(params))


class UpstreamHttpClient:
    """One pooled HTTP client for one upstream, with retries and error mapping.

    Args:
        name: the upstream's label (``awaitstep``, ``cloudflare``) for messages and metrics.
        base_url: prefix of every request path.
        settings: timeouts and the retry bound.
        transport: an httpx transport to use instead of the pooled one (tests).
        layers: wrap the transport, innermost first (a span per attempt, a gate); each
            attempt goes through them, and a resend of the pooled transport below them.
        headers: headers sent with every request (e.g. a fixed API token).
        on_request: observer told the outcome of every attempt.
        error_message: reads the upstream's error message from a 401/403/429 body.
        retry_base_delay: ceiling of the first backoff in seconds (see ``RetryPolicy``).
    """

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        layers: Sequence[TransportLayer] = (),
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
        self._policy = RetryPolicy(max(0, settings.upstream_get_retries), retry_base_delay)
        self._closed = False
        # An injected transport is not seen on the wire: each httpx attempt is counted instead.
        self._counts_attempts = transport is not None
        wire = transport or PooledTransport(on_attempt=self._take_attempt)
        for layer in layers:
            wire = layer(wire)
        self._client = pooled_client(
            base_url=base_url,
            transport=wire,
            timeout=httpx.Timeout(
                connect=settings.upstream_connect_timeout,
                read=settings.upstream_read_timeout,
                write=settings.upstream_read_timeout,
                pool=settings.upstream_connect_timeout,
            ),
            headers={"User-Agent": "runcast", **(headers or {})},
        )
        # Built once: each request joins its path to the base URL's text and adds its own
        # headers to these, instead of httpx parsing and merging both on every request.
        self._base_url = str(self._client.base_url).rstrip("/")
        self._headers = self._client.headers.multi_items()  # names in lower case
        self._header_names = frozenset(name for name, _ in self._headers)

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
        params: Params | None = None,
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
        params: Params | None = None,
        json: JSON = None,
        idempotent: bool | None = None,
    ) -> tuple[httpx.Response, int]:
        """Like :meth:`request`, and also say how many times the request went on the wire.

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
        if self._closed:
            raise UpstreamUnavailable(f"upstream {self.name}: the client has been closed")
        method = method.upper()
        counter = [0]
        reset = _wire_attempts.set(counter)
        limits = self.limits
        limiter = None if limits is None else limits.limiter(self.limit_key(headers or {}))
        reset_limiter = _limiter.set(limiter)
        try:
            attempt, number = await self._send(
                httpx.Request(
                    method,
                    self._base_url + path,
                    headers=self._request_headers(headers),
                    params=_query(params),
                    json=json,
                ),
                repeatable=safe_to_repeat(method, idempotent),
            )
            response = self._result(attempt, method, path)  # a 429 holds the limiter
        finally:
            _limiter.reset(reset_limiter)
            _wire_attempts.reset(reset)
        return response, max(number, counter[0])

    def _request_headers(self, headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
        """The client's headers with ``headers`` added (one of the same name replaces it)."""
        if not headers:
            return self._headers
        replaced = {name.lower() for name in headers}
        kept = self._headers
        if not replaced.isdisjoint(self._header_names):
            kept = [item for item in self._headers if item[0] not in replaced]
        return [*kept, *headers.items()]

    async def _send(self, request: httpx.Request, *, repeatable: bool) -> tuple[Attempt, int]:
        """Send ``request`` until the retry policy stops; the last attempt and their number."""
        number = 1
        while True:
            attempt = await self._attempt(request)
            if not self._policy.should_retry(attempt, number=number, repeatable=repeatable):
                return attempt, number
            await asyncio.sleep(self._policy.delay(number))
            number += 1

    async def _attempt(self, request: httpx.Request) -> Attempt:
        """Send ``request`` once and observe how it ended."""
        if self._counts_attempts:
            await self._take_attempt()
        try:
            response = await self._client.send(request)
        except httpx.HTTPError as exc:
            attempt = Attempt(error=exc)
        except RuntimeError as exc:
            # httpx raises RuntimeError when the client was closed concurrently.
            if self._closed:
                raise UpstreamUnavailable(
                    f"upstream {self.name}: the client has been closed"
                ) from exc
            raise
        else:
            self._learn_rate(response)
            attempt = Attempt(response=response)
        self._observe(attempt.outcome)
        return attempt

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

    def _result(self, attempt: Attempt, method: str, path: str) -> httpx.Response:
        """The last attempt's response, or the error of ``runcast.errors`` it amounts to."""
        if attempt.error is not None:
            raise self._failure(attempt.error, method, path) from attempt.error
        assert attempt.response is not None
        response = attempt.response
        status = response.status_code
        if status >= 500:
            # The body of a 5xx is not passed on: it may hold the upstream's internals.
            raise UpstreamUnavailable(
                f"upstream {self.name} answered {status} on {method} {path}", status_code=status
            )
        if status == 429:
            raise self._rate_limited(response, method, path)
        if status == 401:
            raise Unauthenticated(
                self._describe(response, f"upstream {self.name} refused the credentials (401)")
            )
        if status == 403:
            raise Forbidden(
                self._describe(
                    response, f"upstream {self.name} does not allow this with these credentials"
                )
            )
        return response

    def _failure(self, error: httpx.HTTPError, method: str, path: str) -> RuncastError:
        kind = type(error).__name__
        if isinstance(error, httpx.TimeoutException):
            where = f"{method} {path}"
            return UpstreamUnavailable(f"upstream {self.name} timed out ({kind}) on {where}")
        if isinstance(error, httpx.TransportError):
            return UpstreamUnavailable(
                f"upstream {self.name} could not be reached ({kind}) on {method} {path}"
            )
        return UpstreamProtocolError(
            f"upstream {self.name} sent a response runcast cannot read ({kind}) on {method} {path}"
        )

    def _rate_limited(self, response: httpx.Response, method: str, path: str) -> RateLimited:
        retry_after = self._hold(response)
        logger.info(
            "upstream %s answered 429 to %s %s; retry after %ss",
            self.name,
            method,
            path,
            "?" if retry_after is None else f"{retry_after:g}",
            extra={"retry_after_s": retry_after},
        )
        return RateLimited(
            self._describe(response, f"upstream {self.name} is rate limiting requests"),
            retry_after=retry_after,
        )

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
