"""The request budget: a token bucket per upstream, with an upstream-wide pause for 429s."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from runcast.settings import Settings

logger = logging.getLogger("runcast.live")

DEFAULT_BUDGETS: dict[str, float | None] = {
    # Cloudflare allows 1,200 requests per 5 minutes per token (4/s); keep headroom for
    # the queries and mutations that share the token.
    "cloudflare": 3.5,
    # AwaitStep allows about 200 requests per minute per IP.
    "awaitstep": 3.0,
    # The embedded engine pushes its changes and costs nothing to ask.
    "embedded": None,
}
UNKNOWN_UPSTREAM_BUDGET = 3.0
"""Requests per second for an upstream runcast has no figure for: as careful as AwaitStep."""


def budget_for(upstream_name: str, settings: Settings) -> float | None:
    """Requests per second the live layer may send to ``upstream_name`` (``None``: no limit).

    ``settings.request_budget_per_second`` overrides the default; zero or less means no limit.
    """
    if settings.request_budget_per_second is not None:
        rate = settings.request_budget_per_second
        return rate if rate > 0 else None
    return DEFAULT_BUDGETS.get(upstream_name, UNKNOWN_UPSTREAM_BUDGET)


class Budget(Protocol):
    """Hands out one token per upstream request, and holds every request during a 429.

    :class:`RequestBudget` is the one of a single process; cluster mode's budget
    (``runcast.live.cluster.ClusterBudget``) is shared by every replica through Redis.
    """

    rate: float | None

    @property
    def paused_for(self) -> float:
        """Seconds left in the current hold (0 when not held)."""
        ...

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (extends, never shortens, a hold)."""
        ...

    def try_acquire(self) -> bool:
        """Take a token if one is there right now, without waiting."""
        ...

    def refund(self) -> None:
        """Give back a token taken for a request that was not sent."""
        ...

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a token (and for any hold to end), then take it."""
        ...


class RequestBudget:
    """A token bucket of ``rate`` requests per second holding at most ``burst`` tokens.

    Urgent callers (a new subscriber's first GET) go before ordinary ones (scheduled
    polls). :meth:`pause` stops everybody until a time, for an upstream's Retry-After.

    Args:
        rate: tokens added per second; ``None`` for no limit (only pauses apply).
        burst: the most tokens the bucket holds; defaults to one second's worth.
        clock: a monotonic clock in seconds.
        sleep: how to wait that many seconds of ``clock`` (tests pass a fake clock's).
    """

    def __init__(
        self,
        rate: float | None,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else (rate or 1.0))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._paused_until = 0.0
        self._urgent_waiting = 0
        self._exhausted = False

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (extends, never shortens, a pause)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def try_acquire(self) -> bool:
        """Take a token if one is there right now, without waiting."""
        if self.paused_for > 0:
            return False
        if self.rate is None:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def refund(self) -> None:
        """Give back a token taken for a request that was not sent."""
        self._tokens = min(self.burst, self._tokens + 1.0)

    async def acquire(self, *, urgent: bool = False) -> None:
        """Wait for a token (and for any pause to end), then take it."""
        if urgent:
            self._urgent_waiting += 1
        waited = False
        try:
            while True:
                wait = self.paused_for
                if wait <= 0:
                    if not urgent and self._urgent_waiting:
                        wait = 1.0 / self.rate if self.rate else 0.005
                    elif self.rate is None:
                        return
                    else:
                        self._refill()
                        if self._tokens >= 1.0:
                            self._tokens -= 1.0
                            if not waited:  # tokens were to spare: the pressure is over
                                self._note_exhausted(False)
                            return
                        self._note_exhausted(True)
                        wait = (1.0 - self._tokens) / self.rate
                waited = True
                await self._sleep(wait)
        finally:
            if urgent:
                self._urgent_waiting -= 1

    def _note_exhausted(self, exhausted: bool) -> None:
        """Log once when the budget runs out and once when requests flow again."""
        if exhausted == self._exhausted:
            return
        self._exhausted = exhausted
        if exhausted:
            logger.info(
                "request budget exhausted (%g requests/s): polls wait their turn", self.rate
            )
        else:
            logger.debug("request budget available again")

    def _refill(self) -> None:
        now = self._clock()
        if self.rate is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
