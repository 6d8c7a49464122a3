"""The poll scheduler: a heap of due times, the request limiters, and the polls in flight."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from runcast.upstream import RequestLimiter

MAX_CONCURRENT_POLLS = 64
"""Scheduled polls in flight at once (the limiters pace them; this bounds slow upstreams)."""


class Scheduled(Protocol):
    """What the scheduler reads and writes on a watch."""

    due: float
    """Clock time the next poll is due; an entry of the heap with another time is stale."""
    ended: bool
    inflight: asyncio.Task[None] | None


W = TypeVar("W", bound=Scheduled)
PollCall = Callable[[W, bool], Awaitable[None]]
"""Polls one watch; the flag says whether it is urgent (a new subscriber waits for it)."""


class PollScheduler(Generic[W]):
    """Starts each watch's poll when it is due, earliest due first, one token each.

    A scheduled poll takes its token here, from the limiter of its credential, before it
    starts; a watch whose credential is held (a 429) is moved past the hold, so the
    polls of other credentials go on meanwhile. An urgent one (:meth:`refresh`) takes an
    urgent token, which goes before scheduled ones. At most ``max_concurrent`` scheduled
    polls are in flight. Every task is owned and cancelled by :meth:`aclose`.

    Args:
        limiter_of: the request limiter a watch's polls take their tokens from.
        poll: what polling a watch means (see :data:`PollCall`).
        clock: a monotonic clock in seconds (the budget's clock).
        sleep: how to wait that many seconds of ``clock``.
        on_lag: told how late (seconds) each scheduled poll starts.
    """

    def __init__(
        self,
        limiter_of: Callable[[W], RequestLimiter],
        poll: PollCall[W],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_concurrent: int = MAX_CONCURRENT_POLLS,
        on_lag: Callable[[float], None] | None = None,
    ) -> None:
        self.limiter_of = limiter_of
        self.clock = clock
        self._poll_call = poll
        self._sleep = sleep
        self._on_lag = on_lag
        self._heap: list[tuple[float, int, W]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(max_concurrent)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None
        self._open = False

    def start(self) -> None:
        """Start the loop that runs due polls."""
        self._open = True
        self._loop = asyncio.create_task(self._run(), name="live-poller")

    async def aclose(self) -> None:
        """Stop scheduling, cancel the loop and every poll in flight, and wait for them."""
        self._open = False
        tasks = [*self._tasks, *([self._loop] if self._loop else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._loop = None

    def schedule(self, watch: W, delay: float) -> None:
        """Poll ``watch`` ``delay`` seconds from now (replacing any earlier schedule)."""
        if watch.ended or not self._open:
            return
        watch.due = self.clock() + max(0.0, delay)
        heapq.heappush(self._heap, (watch.due, next(self._order), watch))
        if self._heap[0][2] is watch:
            self._wake.set()

    @staticmethod
    def unschedule(watch: W) -> None:
        """Drop ``watch``'s scheduled poll (its heap entry goes stale)."""
        watch.due = -1.0

    async def refresh(self, watch: W) -> None:
        """Poll ``watch`` now, ahead of scheduled polls, or join its poll in flight."""
        if watch.inflight is None:
            self._start(watch, urgent=True)
        assert watch.inflight is not None
        await asyncio.shield(watch.inflight)

    def next_due(self) -> W | None:
        """The watch whose poll is due first (stale heap entries are dropped)."""
        heap = self._heap
        while heap:
            due, _, watch = heap[0]
            if watch.ended or watch.inflight is not None or watch.due != due:
                heapq.heappop(heap)
                continue
            return watch
        return None

    def pop_due(self) -> W | None:
        """Take the first watch whose poll is due now, if any."""
        top = self.next_due()
        if top is None or top.due > self.clock():
            return None
        heapq.heappop(self._heap)
        return top

    @property
    def in_flight(self) -> int:
        """Polls running right now."""
        return len(self._tasks)

    def _start(self, watch: W, *, urgent: bool) -> None:
        task = asyncio.create_task(self._poll(watch, urgent=urgent))
        watch.inflight = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if not urgent:
            task.add_done_callback(lambda _: self._slots.release())

    async def _poll(self, watch: W, *, urgent: bool) -> None:
        try:
            if urgent:
                await self.limiter_of(watch).acquire(urgent=True)
            if not watch.ended:
                await self._poll_call(watch, urgent)
        finally:
            if watch.inflight is asyncio.current_task():
                watch.inflight = None

    async def _run(self) -> None:
        while True:
            await self._wait_until_due()
            if self._defer_held():
                continue
            await self._slots.acquire()
            try:
                limiter = await self._take_token()
            except BaseException:
                self._slots.release()
                raise
            watch = self.pop_due()
            if watch is None or limiter is None or self.limiter_of(watch) is not limiter:
                self._slots.release()
                if limiter is not None:
                    limiter.refund()
                continue
            if self._on_lag is not None:
                self._on_lag(max(0.0, self.clock() - watch.due))
            self._start(watch, urgent=False)

    def _defer_held(self) -> bool:
        """Move the first due watch past its credential's hold, so others' polls go on."""
        top = self.next_due()
        held = 0.0 if top is None else self.limiter_of(top).paused_for
        if top is None or held <= 0:
            return False
        self.schedule(top, held)
        return True

    async def _take_token(self) -> RequestLimiter | None:
        """Take a token for the first due watch's poll; the limiter it came from."""
        top = self.next_due()
        if top is None:
            return None
        limiter = self.limiter_of(top)
        await limiter.acquire()
        return limiter

    async def _wait_until_due(self) -> None:
        while True:
            top = self.next_due()
            now = self.clock()
            if top is not None and top.due <= now:
                return
            self._wake.clear()
            if top is None:
                await self._wake.wait()
            else:
                await self._sleep_or_wake(top.due - now)

    async def _sleep_or_wake(self, delay: float) -> None:
        sleeper = asyncio.ensure_future(self._sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
            await asyncio.gather(sleeper, waker, return_exceptions=True)
