"""Keeping a Cloudflare token clear of Cloudflare's rate limit (part of the ``cloudflare`` adapter).

Cloudflare allows 1,200 requests per 5 minutes per token and locks a token out
for five minutes after a 429. :class:`RateLimitGate` counts every request per
token and refuses locally before the budget is spent, and while Cloudflare has
said to wait; :class:`GatedTransport` puts every HTTP attempt through it.
"""

from __future__ import annotations

import collections
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from runcast.errors import (
    RateLimited,
)
from runcast.upstream._http import (
    parse_retry_after,
)
from runcast.wire.times import parse_http_date

RATE_LIMIT_REQUESTS = 1200
RATE_LIMIT_WINDOW_SECONDS = 300.0
RATE_LIMIT_HEADROOM = 0.9
LOCKOUT_SECONDS = 300.0
MAX_TRACKED_TOKENS = 10_000


def token_key(authorization: str | None) -> str:
    """A short non-reversible name for an ``Authorization`` value (``anonymous`` for none)."""
    if not authorization:
        return "anonymous"
    return hashlib.sha256(authorization.encode()).hexdigest()[:16]


def parse_ratelimit(headers: httpx.Headers, *, now: datetime | None = None) -> float | None:
    """Seconds until requests are allowed again according to the rate-limit headers.

    Reads ``Ratelimit`` (``"default";r=0;t=30``: nothing remaining for 30 s) and
    the older ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset`` (an RFC 1123
    date or seconds). Returns ``None`` while requests remain (or without headers).
    """
    wait: float | None = None
    for item in headers.get_list("ratelimit", split_commas=True):
        params = dict(
            (key.strip().lower(), value.strip())
            for key, _, value in (part.partition("=") for part in item.split(";")[1:])
        )
        try:
            remaining = float(params.get("r", "1"))
            reset = float(params.get("t", "0"))
        except ValueError:
            continue
        if remaining <= 0:
            wait = max(wait or 0.0, reset)
    remaining_header = headers.get("x-ratelimit-remaining")
    if remaining_header is not None and remaining_header.strip() in ("0", "0.0"):
        reset_header = (headers.get("x-ratelimit-reset") or "").strip()
        seconds: float | None
        try:
            seconds = float(reset_header)
        except ValueError:
            when = parse_http_date(reset_header)
            current = now or datetime.now(UTC)
            seconds = (when - current).total_seconds() if when is not None else None
        wait = max(wait or 0.0, seconds if seconds is not None else LOCKOUT_SECONDS, 0.0)
    return wait


class RateLimitGate:
    """Counts requests per token in a sliding window and refuses those that would overspend.

    Args:
        limit: requests allowed per token per ``window`` seconds (before headroom).
        window: the window in seconds.
        headroom: the share of ``limit`` runcast allows itself.
        clock: a monotonic clock (tests pass their own).
    """

    def __init__(
        self,
        *,
        limit: int = RATE_LIMIT_REQUESTS,
        window: float = RATE_LIMIT_WINDOW_SECONDS,
        headroom: float = RATE_LIMIT_HEADROOM,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allowed = max(1, int(limit * headroom))
        self.window = window
        self._clock = clock
        self._sent: dict[str, collections.deque[float]] = {}
        self._blocked_until: dict[str, float] = {}

    def acquire(self, key: str) -> None:
        """Count one request for ``key``; raises ``RateLimited`` instead when it must wait."""
        now = self._clock()
        wait = self.wait_for(key, now=now)
        if wait > 0:
            raise RateLimited(
                f"upstream cloudflare: runcast holds requests back for {wait:.0f} s so that "
                "the token is not locked out by Cloudflare's rate limit",
                retry_after=float(int(wait) + 1),
            )
        sent = self._sent.get(key)
        if sent is None:
            if len(self._sent) >= MAX_TRACKED_TOKENS:
                self._prune(now)
            sent = self._sent[key] = collections.deque(maxlen=self.allowed)
        sent.append(now)

    def wait_for(self, key: str, *, now: float | None = None) -> float:
        """Seconds before ``key`` may send again (0 when it may send now)."""
        now = self._clock() if now is None else now
        wait = self._blocked_until.get(key, 0.0) - now
        sent = self._sent.get(key)
        if sent is not None:
            while sent and now - sent[0] >= self.window:
                sent.popleft()
            if len(sent) >= self.allowed:
                wait = max(wait, sent[0] + self.window - now)
        return max(0.0, wait)

    def block(self, key: str, seconds: float) -> None:
        """Hold ``key`` back for ``seconds`` (Cloudflare said so)."""
        until = self._clock() + max(0.0, seconds)
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def observe(self, key: str, response: httpx.Response) -> None:
        """Learn from a response's status and rate-limit headers."""
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is None:
                retry_after = parse_ratelimit(response.headers)
            self.block(key, LOCKOUT_SECONDS if retry_after is None else retry_after)
            return
        wait = parse_ratelimit(response.headers)
        if wait is not None and wait > 0:
            self.block(key, wait)

    def _prune(self, now: float) -> None:
        for key in list(self._sent):
            sent = self._sent[key]
            if not sent or now - sent[-1] >= self.window:
                del self._sent[key]
        for key in [k for k, until in self._blocked_until.items() if until <= now]:
            del self._blocked_until[key]


class GatedTransport(httpx.AsyncBaseTransport):
    """Puts every HTTP attempt (retries included) through the :class:`RateLimitGate`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, gate: RateLimitGate) -> None:
        self._inner = inner
        self._gate = gate

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        key = token_key(request.headers.get("authorization"))
        self._gate.acquire(key)
        response = await self._inner.handle_async_request(request)
        self._gate.observe(key, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
