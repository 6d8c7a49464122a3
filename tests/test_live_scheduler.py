"""The poll scheduler on a fake clock: order, budget, re-scheduling and urgent polls, counted."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from runcast.live._scheduler import PollScheduler
from runcast.upstream import RequestBudget


class FakeClock:
    """Virtual time: sleepers wait on timers that :meth:`run_until` fires in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` on."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # At least a nanosecond, so that a wait shorter than the float resolution at ``now``
        # still moves the clock (as real time does) instead of waking at the same moment.
        wake = self.now + max(1e-9, seconds)
        heapq.heappush(self._timers, (wake, next(self._order), future))
        await future

    async def run_until(self, condition: Callable[[], bool], *, steps: int = 10_000) -> None:
        """Let every task run, then fire the next timer, until ``condition`` holds."""
        for _ in range(steps):
            for _ in range(10):
                await asyncio.sleep(0)
            if condition():
                return
            while self._timers:
                at, _, future = heapq.heappop(self._timers)
                if not future.done():
                    self.now = max(self.now, at)
                    future.set_result(None)
                    break
            else:
                raise AssertionError("nothing left to wait for")
        raise AssertionError("condition never held")


@dataclass(eq=False)
class FakeWatch:
    """The fields the scheduler uses, and a name."""

    name: str
    due: float = 0.0
    ended: bool = False
    inflight: asyncio.Task[None] | None = None


@dataclass
class Recorder:
    """Polls that record when they ran; each takes ``duration`` of fake time.

    With ``every``, each poll schedules its watch again that many seconds on.
    """

    clock: FakeClock
    duration: float = 0.0
    every: float | None = None
    polls: list[tuple[float, str, bool]] = field(default_factory=list)
    scheduler: PollScheduler[FakeWatch] | None = None

    async def __call__(self, watch: FakeWatch, urgent: bool) -> None:
        self.polls.append((self.clock(), watch.name, urgent))
        if self.duration:
            await self.clock.sleep(self.duration)
        if self.every is not None and self.scheduler is not None:
            self.scheduler.schedule(watch, self.every)


@asynccontextmanager
async def scheduler(
    rate: float | None,
    *,
    burst: float | None = None,
    duration: float = 0.0,
    every: float | None = None,
) -> AsyncIterator[tuple[PollScheduler[FakeWatch], Recorder, FakeClock]]:
    """A started scheduler on a fake clock with a budget of ``rate`` per second."""
    clock = FakeClock()
    budget = RequestBudget(rate, burst=burst, clock=clock, sleep=clock.sleep)
    recorder = Recorder(clock, duration, every)
    polls: PollScheduler[FakeWatch] = PollScheduler(
        lambda _: budget, recorder, clock=clock, sleep=clock.sleep
    )
    recorder.scheduler = polls
    polls.start()
    try:
        yield polls, recorder, clock
    finally:
        await polls.aclose()


async def test_polls_run_in_due_order_at_their_due_time() -> None:
    """Watches scheduled out of order are polled earliest due first, each when it is due."""
    async with scheduler(None) as (polls, recorder, clock):
        for name, delay in [("c", 3.0), ("a", 1.0), ("b", 2.0)]:
            polls.schedule(FakeWatch(name), delay)
        await clock.run_until(lambda: len(recorder.polls) == 3)
        assert recorder.polls == [(1.0, "a", False), (2.0, "b", False), (3.0, "c", False)]


async def test_budget_spaces_polls_that_are_all_due() -> None:
    """Ten watches due at once with 2 tokens per second start half a second apart."""
    async with scheduler(2.0, burst=1.0) as (polls, recorder, clock):
        for index in range(10):
            polls.schedule(FakeWatch(f"w{index}"), 0.0)
        await clock.run_until(lambda: len(recorder.polls) == 10)
        times = [at for at, _, _ in recorder.polls]
        assert times == [index * 0.5 for index in range(10)]
        assert [name for _, name, _ in recorder.polls] == [f"w{index}" for index in range(10)]


async def test_rescheduling_replaces_the_earlier_poll() -> None:
    """A watch scheduled again is polled once, at its newest due time; unscheduled, never."""
    async with scheduler(None) as (polls, recorder, clock):
        moved, dropped, marker = FakeWatch("moved"), FakeWatch("dropped"), FakeWatch("marker")
        polls.schedule(moved, 5.0)
        polls.schedule(moved, 1.0)
        polls.schedule(dropped, 2.0)
        polls.unschedule(dropped)
        polls.schedule(marker, 10.0)
        await clock.run_until(lambda: any(name == "marker" for _, name, _ in recorder.polls))
        assert recorder.polls == [(1.0, "moved", False), (10.0, "marker", False)]


async def test_ended_watch_is_not_polled() -> None:
    """A watch that ends before it is due is skipped."""
    async with scheduler(None) as (polls, recorder, clock):
        gone, kept = FakeWatch("gone"), FakeWatch("kept")
        polls.schedule(gone, 1.0)
        polls.schedule(kept, 2.0)
        gone.ended = True
        await clock.run_until(lambda: bool(recorder.polls))
        assert recorder.polls == [(2.0, "kept", False)]


async def test_urgent_refresh_goes_before_scheduled_polls() -> None:
    """With the budget spent, a refresh gets the next token ahead of the watches already due."""
    async with scheduler(1.0, burst=1.0) as (polls, recorder, clock):
        for index in range(3):
            polls.schedule(FakeWatch(f"due{index}"), 0.0)
        await clock.run_until(lambda: len(recorder.polls) == 1)  # the one token there was
        refresh = asyncio.create_task(polls.refresh(FakeWatch("new subscriber")))
        await clock.run_until(refresh.done)
        assert recorder.polls[1] == (1.0, "new subscriber", True)
        await clock.run_until(lambda: len(recorder.polls) == 4)
        assert [at for at, _, _ in recorder.polls] == [0.0, 1.0, 2.0, 3.0]


async def test_refresh_joins_the_poll_in_flight() -> None:
    """Subscribers arriving while a watch's poll is in flight share it: one poll, not three."""
    async with scheduler(None, duration=1.0) as (polls, recorder, clock):
        watch = FakeWatch("shared")
        joiners = [asyncio.create_task(polls.refresh(watch)) for _ in range(3)]
        await clock.run_until(lambda: all(task.done() for task in joiners))
        assert recorder.polls == [(0.0, "shared", True)]
        assert watch.inflight is None
        assert polls.in_flight == 0


async def test_closed_scheduler_schedules_nothing() -> None:
    """After close, scheduling is a no-op and no task is left."""
    async with scheduler(None) as (polls, recorder, clock):
        pass
    watch = FakeWatch("late")
    polls.schedule(watch, 0.0)
    assert polls.next_due() is None
    assert polls.in_flight == 0
    assert recorder.polls == []
    assert clock() == 0.0


async def test_more_watches_than_budget_share_it_evenly() -> None:
    """Twenty watches wanting 50 polls/s each on 20 tokens/s: 20/s in all, none starves."""
    async with scheduler(20.0, every=0.02) as (polls, recorder, clock):
        watches = [FakeWatch(f"w{index:02}") for index in range(20)]
        for watch in watches:
            polls.schedule(watch, 0.0)
        await clock.run_until(lambda: clock() >= 10.0)
        in_window = [name for at, name, _ in recorder.polls if at < 10.0]
        assert 20 * 10 <= len(in_window) <= 20 * 10 + 20  # the rate, plus one burst
        per_watch = [in_window.count(watch.name) for watch in watches]
        assert max(per_watch) - min(per_watch) <= 1, per_watch
