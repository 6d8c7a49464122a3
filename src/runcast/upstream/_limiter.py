"""The request limiter of one upstream credential: a token bucket with the 429 hold inside.

Every request to an upstream asks the limiter of its credential (see
:class:`~runcast.upstream.RequestLimiter`): the live layer before each poll, the HTTP
client before each attempt on the wire. :class:`RequestBudget` is the one of a single
process; :func:`local_limits` keeps one per credential (a :class:`CredentialLimits`).
Cluster mode's budget (``runcast.live.cluster.ClusterBudget``) has the same interface
over Redis.

Neither ``aiolimiter`` (a leaky bucket on the loop's clock) nor ``limits`` (windows
only, on the wall clock) can hold for a Retry-After, give a token back, put urgent
callers first or run on a test's fake clock, so the bucket is runcast's own, once.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from runcast.errors import RateLimited
from runcast.upstream._port import LimiterState, Quota

logger = logging.getLogger("runcast.live")

CLIENT_MAX_WAIT = 1.0
"""Seconds a client's query or mutation may wait for a token; past that, ``RATE_LIMITED``."""
MAX_CREDENTIALS = 10_000
"""Credentials whose limiters :class:`LocalLimits` keeps; idle ones go first beyond it."""
URGENT_YIELD = 0.005
"""Seconds an ordinary caller waits while an urgent one goes first (no pace)."""


def refused(upstream: str, wait: float, *, held: bool, rate: float | None) -> RateLimited:
    """The error for a caller that cannot wait ``wait`` seconds for a token of ``upstream``."""
    seconds = float(int(wait) + 1)  # whole seconds, rounded up past the wait
    if held:
        reason = "asked for no requests for now (a 429 or its rate-limit headers)"
    elif rate is None:
        reason = "would go over its rate limit for these credentials"
    else:
        reason = f"is paced at {rate:g} requests/s and its budget is spent"
    who = f"upstream {upstream}" if upstream else "the upstream"
    return RateLimited(
        f"{who} {reason}; runcast holds the request back, retry in {seconds:.0f} s",
        retry_after=seconds,
    )


class QuotaWindow:
    """Counts requests in a sliding window and says how long until one more is allowed."""

    def __init__(self, quota: Quota) -> None:
        self.quota = quota
        self._sent: collections.deque[float] = collections.deque(maxlen=max(1, quota.requests))

    def wait(self, now: float) -> float:
        """Seconds before one more request fits the quota (0: it fits now)."""
        sent = self._sent
        while sent and now - sent[0] >= self.quota.window:
            sent.popleft()
        if len(sent) >= max(1, self.quota.requests):
            return max(0.0, sent[0] + self.quota.window - now)
        return 0.0

    def count(self, now: float) -> None:
        """Count one request sent at ``now``."""
        self._sent.append(now)

    def uncount(self) -> None:
        """Forget the last request counted (it was not sent)."""
        if self._sent:
            self._sent.pop()

    def idle(self, now: float) -> bool:
        """Whether nothing counted is still in the window."""
        return not self._sent or now - self._sent[-1] >= self.quota.window


class RequestBudget:
    """A token bucket of ``rate`` requests per second holding at most ``burst`` tokens.

    Urgent callers (a new subscriber's first GET, a client's request) go before ordinary
    ones (scheduled polls). :meth:`pause` holds everybody until a time, for an upstream's
    Retry-After. With a ``quota``, no more than its requests go out in any of its windows.

    Args:
        rate: tokens added per second; ``None`` for no limit (only holds and the quota apply).
        burst: the most tokens the bucket holds; defaults to one second's worth.
        quota: the upstream's limit per credential, kept on top of the pace.
        name: the upstream's label, for messages.
        clock: a monotonic clock in seconds.
        sleep: how to wait that many seconds of ``clock`` (tests pass a fake clock's).
    """

    def __init__(
        self,
        rate: float | None,
        *,
        burst: float | None = None,
        quota: Quota | None = None,
        name: str = "",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else (rate or 1.0))
        self.name = name
        self._window = QuotaWindow(quota) if quota is not None else None
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()
        self._paused_until = 0.0
        self._urgent_waiting = 0
        self._exhausted = False

    @property
    def paused_for(self) -> float:
        """Seconds left in the current hold (0 when not held)."""
        return max(0.0, self._paused_until - self._clock())

    def pause(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now (extends, never shortens, a hold)."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def refund(self) -> None:
        """Give back a token taken for a request that was not sent."""
        self._tokens = min(self.burst, self._tokens + 1.0)
        if self._window is not None:
            self._window.uncount()

    @property
    def idle(self) -> bool:
        """Whether forgetting this limiter changes nothing (full, not held, quota clear)."""
        now = self._clock()
        self._refill()
        return (
            self._paused_until <= now
            and not self._urgent_waiting
            and self._tokens >= self.burst
            and (self._window is None or self._window.idle(now))
        )

    async def state(self) -> LimiterState:
        """What a request asked for now would meet; takes nothing."""
        paused = self.paused_for
        self._refill()
        if paused > 0:
            return LimiterState("paused", paused, self.rate)
        blocked = self._quota_wait() > 0 or (self.rate is not None and self._tokens < 1.0)
        return LimiterState("exhausted" if blocked else "available", 0.0, self.rate)

    async def acquire(self, *, urgent: bool = False, within: float | None = None) -> None:
        """Wait for a token (and for any hold to end), then take it.

        With ``within``, raise ``RateLimited`` instead when that would take longer.
        """
        if urgent:
            self._urgent_waiting += 1
        started = self._clock()
        waited = False
        try:
            while True:
                wait = self._take(urgent, note=True, waited=waited)
                if wait <= 0:
                    return
                if within is not None and self._clock() - started + wait > within:
                    raise self.refusal(wait)
                waited = True
                await self._sleep(wait)
        finally:
            if urgent:
                self._urgent_waiting -= 1

    def take_now(self, *, urgent: bool = False) -> float:
        """Take a token if one may go now and return 0; else the seconds to wait (takes none)."""
        return self._take(urgent, note=False, waited=True)

    def refusal(self, wait: float) -> RateLimited:
        """The error for a caller that cannot wait ``wait`` seconds."""
        held = self.paused_for > 0
        rate = None if not held and self._quota_wait() > 0 else self.rate
        return refused(self.name, wait, held=held, rate=rate)

    def _take(self, urgent: bool, *, note: bool, waited: bool) -> float:
        """Take a token if one may go now (returns 0), else the seconds to wait."""
        wait = max(self.paused_for, self._quota_wait())
        if wait > 0:
            return wait
        if not urgent and self._urgent_waiting:
            return 1.0 / self.rate if self.rate else URGENT_YIELD
        if self.rate is not None:
            self._refill()
            if self._tokens < 1.0:
                if note:
                    self._note_exhausted(True)
                return (1.0 - self._tokens) / self.rate
            self._tokens -= 1.0
            if note and not waited:  # tokens were to spare: the pressure is over
                self._note_exhausted(False)
        if self._window is not None:
            self._window.count(self._clock())
        return 0.0

    def _quota_wait(self) -> float:
        return 0.0 if self._window is None else self._window.wait(self._clock())

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


class Forgettable(Protocol):
    """A limiter that can say when forgetting it changes nothing."""

    @property
    def idle(self) -> bool:
        """Whether it holds nothing a new one would not (full, not held, nothing pending)."""
        ...


L = TypeVar("L", bound=Forgettable)


class CredentialLimits(Generic[L]):
    """One limiter per credential of one upstream, made by ``make(key)`` on first use.

    At most :data:`MAX_CREDENTIALS` are kept; beyond it the idle ones are forgotten.
    """

    def __init__(self, rate: float | None, make: Callable[[str], L]) -> None:
        self.rate = rate
        self._make = make
        self._limiters: dict[str, L] = {}

    def limiter(self, key: str) -> L:
        """The limiter of credential ``key``."""
        found = self._limiters.get(key)
        if found is None:
            if len(self._limiters) >= MAX_CREDENTIALS:
                for idle in [k for k, limiter in self._limiters.items() if limiter.idle]:
                    del self._limiters[idle]
            found = self._limiters[key] = self._make(key)
        return found

    def limiters(self) -> list[L]:
        """Every limiter made so far (and not forgotten)."""
        return list(self._limiters.values())


LocalLimits = CredentialLimits[RequestBudget]
"""One :class:`RequestBudget` per credential, in this process (see :func:`local_limits`)."""


def local_limits(
    rate: float | None,
    *,
    quota: Quota | None = None,
    name: str = "",
    clock: Callable[[], float] = time.monotonic,
) -> LocalLimits:
    """A :class:`RequestBudget` of ``rate`` per second (and ``quota``) for each credential."""
    return CredentialLimits(
        rate, lambda key: RequestBudget(rate, quota=quota, name=name, clock=clock)
    )
