"""What a watch's poll works with: the upstream, limiters, bus, registry and scheduler."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, TypeVar

from runcast.errors import Forbidden, NotFound, RateLimited, Unauthenticated, UpstreamError
from runcast.live._bus import ChangeBus, Topic
from runcast.live._gate import PollGate
from runcast.live._registry import WatchRegistry
from runcast.live._subscriber import Subscriber
from runcast.metrics import Metrics
from runcast.models import Credentials
from runcast.upstream import RequestLimiter, RequestLimits, RunAPI, prepaid_request

if TYPE_CHECKING:
    from runcast.live._lister import ListPoller
    from runcast.live._scheduler import PollScheduler
    from runcast.live._watch import Watch

logger = logging.getLogger("runcast.live")

T = TypeVar("T")

Outcome = Literal[
    "ok", "not_found", "unauthenticated", "forbidden", "rate_limited", "unavailable", "error"
]


QUIET_FLOOR = 2.0
"""Seconds a quiet watch may wait between polls even when the budget would allow less."""
QUIET_BUDGET_SHARE = 0.5
"""The part of the budget the polls of quiet watches may use together."""


@dataclass(frozen=True, slots=True)
class Intervals:
    """How often a watch is polled: ``minimum`` while it changes, up to ``maximum`` when quiet.

    ``maximum`` is the ceiling (``poll_max_interval``); the back-off of a quiet watch
    stops earlier when the budget allows (see :meth:`LiveContext.quiet_interval`).
    """

    minimum: float
    maximum: float

    def after_failures(self, failures: int) -> float:
        """The delay after ``failures`` transient failures in a row."""
        return min(self.maximum, self.minimum * 2.0 ** min(failures, 64))


@dataclass(eq=False)
class LiveContext:
    """The live layer's parts, as every watch's poll and every subscription sees them.

    Attributes:
        upstream: the run API polled.
        metrics: where requests and latencies are counted.
        limits: the request limiter of each upstream credential (shared with the adapter).
        limit_key: the key of the limiter that requests with given credentials ask.
        bus: where observed states are published.
        registry: every watch and its subscribers.
        intervals: the poll intervals.
        page_size: runs asked for per list request.
        listed: the ``Run`` fields the upstream's list items carry.
        riding: run watches carried by a list poll right now (they cost no request).
        gate: which watches this process polls (cluster mode); every one when ``None``.
    """

    upstream: RunAPI
    metrics: Metrics
    limits: RequestLimits
    limit_key: Callable[[Credentials], str]
    bus: ChangeBus
    registry: WatchRegistry
    intervals: Intervals
    page_size: int
    scheduler: PollScheduler[Watch]
    lister: ListPoller
    listed: frozenset[str] = frozenset()
    riding: int = 0
    open: bool = False
    gate: PollGate | None = None

    def polls_for(self, topics: Iterable[Topic]) -> bool:
        """Whether this process observes for ``topics`` now (its gate's say, if it has one).

        A watch observed elsewhere (another replica holds it) must not take what this
        process's polls show of it as its state: that replica publishes it, in order.
        """
        return self.gate is None or self.gate.may_poll(topics)

    def quiet_interval(self) -> float:
        """The longest a quiet watch waits between two polls.

        As long as the budget allows: when every watch that polls on its own (riders do
        not) is polled this often, they use ``QUIET_BUDGET_SHARE`` of the budget. Never
        under ``QUIET_FLOOR`` (or ``minimum``), never over ``maximum``.
        """
        polled = len(self.registry) - self.riding
        return quiet_interval(self.limits.rate, polled, self.intervals)

    def limiter(self, credentials: Credentials) -> RequestLimiter:
        """The limiter that requests made with ``credentials`` take their tokens from."""
        return self.limits.limiter(self.limit_key(credentials))

    def next_interval(self, current: float, *, changed: bool) -> float:
        """The interval after a poll: back to the minimum on a change, else doubled."""
        if changed:
            return self.intervals.minimum
        return min(self.quiet_interval(), current * 2)

    async def call(self, kind: str, call: Awaitable[T]) -> T:
        """Await an upstream call, counting it by ``kind`` and outcome.

        Every live call is made after taking its token from its limiter: the HTTP
        boundary is told so, and takes tokens only for the call's retries and resends.
        """
        try:
            with prepaid_request():
                result = await call
        except Exception as exc:
            self._count(kind, outcome(exc))
            raise
        self._count(kind, "ok")
        return result

    def end(self, watch: Watch, error: BaseException | None) -> None:
        """Remove ``watch`` and close its subscribers (after what they have queued)."""
        if not self.registry.remove(watch):
            return
        watch.removed(self)
        self.bus.end(watch.topic, error)
        for subscriber in watch.subscribers:
            subscriber.close(error)

    def leave(self, watch: Watch, subscriber: Subscriber, *, counted: bool) -> None:
        """``subscriber`` is done; end ``watch`` if nothing needs it any more."""
        self.registry.leave(watch, subscriber, counted=counted)
        if watch.idle(self):
            self.end(watch, None)

    def _count(self, kind: str, result: Outcome) -> None:
        name = self.upstream.name
        self.metrics.live_polls.labels(upstream=name, kind=kind, outcome=result).inc()


def quiet_interval(rate: float | None, polled: int, intervals: Intervals) -> float:
    """The longest a quiet watch waits when ``polled`` watches poll on their own at ``rate``/s.

    See :meth:`LiveContext.quiet_interval`.
    """
    allowed = 0.0 if rate is None else max(1, polled) / (rate * QUIET_BUDGET_SHARE)
    return min(intervals.maximum, max(intervals.minimum, QUIET_FLOOR, allowed))


def now() -> datetime:
    """The current wall-clock time, in UTC."""
    return datetime.now(UTC)


def outcome(exc: BaseException) -> Outcome:
    """The metrics label of a failed upstream call."""
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, Unauthenticated):
        return "unauthenticated"
    if isinstance(exc, Forbidden):
        return "forbidden"
    if isinstance(exc, RateLimited):
        return "rate_limited"
    if isinstance(exc, UpstreamError):
        return "unavailable"
    return "error"
