"""The live hub: one shared, budgeted poller (or the upstream's pushes) feeding subscribers."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal, TypeVar

from runcast.errors import (
    Forbidden,
    NotFound,
    RateLimited,
    RuncastError,
    RunNotFound,
    Unauthenticated,
    UpstreamError,
)
from runcast.live._budget import RequestBudget, budget_for
from runcast.live._change import RunChange
from runcast.live._subscriber import Subscriber
from runcast.live._watch import RunKey, RunWatch, Watch, WorkflowKey, WorkflowWatch
from runcast.metrics import Metrics
from runcast.models import Credentials, Run, RunStatus
from runcast.settings import Settings
from runcast.upstream import RunAPI, RunChangeSource

logger = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

LIST_PAGE_SIZE = 100
"""Runs asked for by one list poll of a workflow (the newest ones)."""
PUSH_BUFFER = 256
"""Changes buffered per subscriber when the upstream pushes them (order is kept)."""
WORKFLOW_BUFFER = 256
"""Changes buffered per ``workflowRuns`` subscriber when polling (one per run at most)."""
MAX_CONCURRENT_POLLS = 64
"""Scheduled polls in flight at once (the budget paces them; this bounds slow upstreams)."""
DEFAULT_RATE_LIMIT_PAUSE = 10.0
"""Seconds to hold every request after a 429 that did not say how long to wait."""
WAKE_MARGIN = 0.05
"""Seconds after a paused run's wake time at which it is polled."""
LIST_SHARING_MIN_RUNS = 2
"""Watched runs of one workflow (same credentials) from which one list poll carries them all."""

_Outcome = Literal[
    "ok", "not_found", "unauthenticated", "forbidden", "rate_limited", "unavailable", "error"
]


class LiveHub:
    """Feeds ``runStatus`` and ``workflowRuns`` subscribers from one shared poller.

    There is one watch per (credentials fingerprint, workflow, run) and one per
    (credentials fingerprint, workflow) for run lists; every subscriber of a watch
    shares its polls, and subscribers with other credentials never share it. Polls
    go through a token bucket per upstream (:func:`~runcast.live._budget.budget_for`),
    longest-waiting watch first, so when watches outnumber the budget every interval
    stretches evenly. A run that changes is polled every ``poll_min_interval``; one
    that does not is polled half as often each time, down to ``poll_max_interval``;
    a paused run with a known wake time is polled just after it; a finished run is
    not polled again. Where several runs of one workflow are watched with the same
    credentials, one list poll of that workflow carries them all, and a run's detail
    is fetched only when its summary in the list changed. A 429 holds every request
    to the upstream for its Retry-After; 5xx and timeouts back a watch off while its
    subscribers stay connected.

    When the upstream is a :class:`~runcast.upstream.RunChangeSource` (the embedded
    engine), nothing is polled: subscribers get every pushed change, in order.

    Use it as an async context manager; it owns its tasks and cancels them on exit,
    and cannot be reopened.

    Args:
        upstream: the run API to watch.
        settings: intervals and the request budget.
        metrics: where requests, watches, subscribers and latencies are counted.
    """

    def __init__(self, upstream: RunAPI, settings: Settings, *, metrics: Metrics) -> None:
        self.upstream = upstream
        self.settings = settings
        self.metrics = metrics
        self.pushes = isinstance(upstream, RunChangeSource)
        self.budget = RequestBudget(None if self.pushes else budget_for(upstream.name, settings))
        self._min = max(0.001, settings.poll_min_interval)
        self._max = max(self._min, settings.poll_max_interval)
        self._runs: dict[RunKey, RunWatch] = {}
        self._workflows: dict[WorkflowKey, WorkflowWatch] = {}
        self._runs_by_id: dict[tuple[str, str], set[RunWatch]] = {}
        self._workflows_by_id: dict[str, set[WorkflowWatch]] = {}
        self._groups: dict[WorkflowKey, set[RunWatch]] = {}
        self._unshared: set[WorkflowKey] = set()
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_POLLS)
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._unlisten: Callable[[], None] | None = None
        self._subscriber_count = 0
        self._state: Literal["new", "open", "closed"] = "new"

    # ----------------------------------------------------------------- lifetime

    async def __aenter__(self) -> LiveHub:
        if self._state != "new":
            raise RuntimeError("a LiveHub can be opened only once")
        self._state = "open"
        if isinstance(self.upstream, RunChangeSource):
            self._unlisten = self.upstream.add_run_listener(self._on_pushed)
        else:
            self._scheduler = asyncio.create_task(self._schedule_polls(), name="live-poller")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop polling, end every subscription, and wait for the hub's tasks to finish."""
        if self._state == "closed":
            return
        self._state = "closed"
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for watch in [*self._runs.values(), *self._workflows.values()]:
            self._end(watch, None)
        tasks = [*self._tasks, *([self._scheduler] if self._scheduler else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scheduler = None

    @property
    def active_watches(self) -> int:
        """Watches kept right now (runs and workflows)."""
        return len(self._runs) + len(self._workflows)

    @property
    def subscriber_count(self) -> int:
        """Subscriptions being fed right now."""
        return self._subscriber_count

    # ------------------------------------------------------------ subscriptions

    async def watch_run(
        self, workflow_id: str, instance_id: str, credentials: Credentials
    ) -> AsyncGenerator[RunChange, None]:
        """The run's current state, then each observed change, ending after a terminal one.

        The first state is fetched with ``credentials`` (or shared from a fetch made
        just now with the same credentials), so a refusal reaches this subscriber.

        Raises:
            RunNotFound: the run does not exist (at once, or when it disappears).
            Unauthenticated, Forbidden: the credentials cannot read the run.
            RateLimited, UpstreamError: the upstream failed the first fetch (push mode).
        """
        self._check_open()
        key: RunKey = (credentials.fingerprint, workflow_id, instance_id)
        subscriber = Subscriber(capacity=PUSH_BUFFER if self.pushes else 1, metrics=self.metrics)
        watch = self._runs.get(key)
        if watch is None:
            watch = RunWatch(credentials=credentials, interval=self._min, key=key)
            self._runs[key] = watch
            self._runs_by_id.setdefault((workflow_id, instance_id), set()).add(watch)
            if not self.pushes:
                group = (credentials.fingerprint, workflow_id)
                self._groups.setdefault(group, set()).add(watch)
                self._carry(group, credentials)
            self._watches_changed()
        watch.subscribers.add(subscriber)
        self._subscribers_changed(+1)
        try:
            if self.pushes:
                run = await self._call(
                    "run", self.upstream.get_run(workflow_id, instance_id, credentials=credentials)
                )
                subscriber.prime(run, _now())
            else:
                await self._first_state(watch, subscriber)
            while True:
                change = await subscriber.next()
                if change is None:
                    return
                self._delivered(change)
                yield change
                if change.run.is_terminal:
                    return
        finally:
            self._leave(watch, subscriber, counted=True)

    async def watch_workflow(
        self,
        workflow_id: str,
        statuses: Collection[RunStatus] | None,
        credentials: Credentials,
    ) -> AsyncGenerator[RunChange, None]:
        """Every observed change of any run of the workflow (optionally only in ``statuses``).

        Runs created after the subscription started are included. Never ends by itself.

        Raises:
            WorkflowNotFound: the workflow does not exist.
            Unauthenticated, Forbidden: the credentials cannot list its runs.
        """
        self._check_open()
        key: WorkflowKey = (credentials.fingerprint, workflow_id)
        subscriber = Subscriber(
            capacity=PUSH_BUFFER if self.pushes else WORKFLOW_BUFFER,
            metrics=self.metrics,
            statuses=statuses,
        )
        watch = self._workflows.get(key)
        if watch is None:
            watch = WorkflowWatch(credentials=credentials, interval=self._min, key=key)
            self._workflows[key] = watch
            self._workflows_by_id.setdefault(workflow_id, set()).add(watch)
            self._watches_changed()
        watch.subscribers.add(subscriber)
        counted = False
        try:
            if self.pushes:
                await self._call(
                    "list",
                    self.upstream.list_runs(workflow_id, limit=1, credentials=credentials),
                )
            elif not watch.baselined:
                await self._refresh(watch)
            # Counted once the baseline exists: every run created from now on is delivered.
            self._subscribers_changed(+1)
            counted = True
            while True:
                change = await subscriber.next()
                if change is None:
                    return
                self._delivered(change)
                yield change
        finally:
            self._leave(watch, subscriber, counted=counted)

    # ------------------------------------------------------------------ pushes

    def _on_pushed(self, run: Run) -> None:
        observed_at = _now()
        for watch in tuple(self._runs_by_id.get((run.workflow_id, run.instance_id), ())):
            for subscriber in watch.subscribers:
                subscriber.offer(run, observed_at)
            if run.is_terminal:
                self._end(watch, None)
        for workflow_watch in self._workflows_by_id.get(run.workflow_id, ()):
            for subscriber in workflow_watch.subscribers:
                subscriber.offer(run, observed_at)

    # ----------------------------------------------------------------- polling

    def _carry(self, group: WorkflowKey, credentials: Credentials) -> None:
        """Start a list poll carrying the runs of ``group`` if enough of them are watched."""
        if group in self._unshared or group in self._workflows:
            return
        if len(self._groups.get(group, ())) < LIST_SHARING_MIN_RUNS:
            return
        carrier = WorkflowWatch(credentials=credentials, interval=self._min, key=group)
        self._workflows[group] = carrier
        self._workflows_by_id.setdefault(group[1], set()).add(carrier)
        self._schedule(carrier, 0.0)

    def _detach_riders(self, carrier: WorkflowWatch) -> None:
        """Let the runs ``carrier`` carried be polled on their own again."""
        for rider in self._groups.get(carrier.key, ()):
            if rider.riding:
                rider.riding = False
                rider.summary = None
                self._schedule(rider, 0.0)

    async def _first_state(self, watch: RunWatch, subscriber: Subscriber) -> None:
        fresh = watch.observed_at is not None and time.monotonic() - watch.observed_at < self._min
        if watch.run is None or not (fresh or self.budget.paused_for > 0):
            await self._refresh(watch)
        if not subscriber.has_state and watch.run is not None and not watch.ended:
            subscriber.offer(watch.run, watch.observed_wall or _now())

    async def _refresh(self, watch: Watch) -> None:
        """Poll ``watch`` now (ahead of scheduled polls), or join the poll in flight."""
        if watch.inflight is None:
            self._start_poll(watch, urgent=True)
        assert watch.inflight is not None
        await asyncio.shield(watch.inflight)

    def _start_poll(self, watch: Watch, *, urgent: bool) -> None:
        task = asyncio.create_task(self._poll(watch, urgent=urgent))
        watch.inflight = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if not urgent:
            task.add_done_callback(lambda _: self._slots.release())

    async def _schedule_polls(self) -> None:
        while True:
            await self._wait_until_due()
            await self._slots.acquire()
            try:
                await self.budget.acquire()
            except BaseException:
                self._slots.release()
                raise
            watch = self._pop_due()
            if watch is None:
                self._slots.release()
                self.budget.refund()
                continue
            self.metrics.poll_lag.observe(max(0.0, time.monotonic() - watch.due))
            self._start_poll(watch, urgent=False)

    async def _wait_until_due(self) -> None:
        while True:
            top = self._peek()
            delay = None if top is None else top.due - time.monotonic()
            if delay is not None and delay <= 0:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    def _peek(self) -> Watch | None:
        heap = self._heap
        while heap:
            due, _, watch = heap[0]
            if watch.ended or watch.inflight is not None or watch.due != due:
                heapq.heappop(heap)
                continue
            return watch
        return None

    def _pop_due(self) -> Watch | None:
        top = self._peek()
        if top is None or top.due > time.monotonic():
            return None
        heapq.heappop(self._heap)
        return top

    def _schedule(self, watch: Watch, delay: float) -> None:
        if watch.ended or self._state != "open":
            return
        watch.due = time.monotonic() + max(0.0, delay)
        heapq.heappush(self._heap, (watch.due, next(self._order), watch))
        if self._heap[0][2] is watch:
            self._wake.set()

    async def _poll(self, watch: Watch, *, urgent: bool) -> None:
        try:
            if urgent:
                await self.budget.acquire(urgent=True)
            if watch.ended:
                return
            await self._poll_once(watch)
        finally:
            if watch.inflight is asyncio.current_task():
                watch.inflight = None

    async def _poll_once(self, watch: Watch) -> None:
        try:
            if isinstance(watch, RunWatch):
                run = await self._call(
                    "run",
                    self.upstream.get_run(
                        watch.workflow_id, watch.instance_id, credentials=watch.credentials
                    ),
                )
            else:
                assert isinstance(watch, WorkflowWatch)
                page = await self._call(
                    "list",
                    self.upstream.list_runs(
                        watch.workflow_id, limit=LIST_PAGE_SIZE, credentials=watch.credentials
                    ),
                )
        except RateLimited as exc:
            wait = DEFAULT_RATE_LIMIT_PAUSE if exc.retry_after is None else exc.retry_after
            self.budget.pause(wait)
            logger.warning("upstream %s is rate limiting; holding polls %.1fs", self._name, wait)
            self._schedule(watch, 0.0)
        except NotFound as exc:
            if isinstance(watch, RunWatch) and not isinstance(exc, RunNotFound):
                exc = RunNotFound(watch.workflow_id, watch.instance_id)
            if isinstance(watch, WorkflowWatch):
                self._unshared.add(watch.key)
            self._end(watch, exc)
        except (Unauthenticated, Forbidden) as exc:
            if isinstance(watch, WorkflowWatch):
                self._unshared.add(watch.key)
            self._end(watch, exc)
        except Exception as exc:
            if not isinstance(exc, RuncastError):
                logger.error("live poll of %s failed", watch.label, exc_info=exc)
            if isinstance(watch, WorkflowWatch):
                self._detach_riders(watch)
            watch.failures += 1
            self._schedule(watch, min(self._max, self._min * 2**watch.failures))
        else:
            watch.failures = 0
            watch.observed_at = time.monotonic()
            watch.observed_wall = _now()
            if isinstance(watch, RunWatch):
                self._observed_run(watch, run)
            else:
                self._observed_list(watch, page.runs)

    def _observed_run(self, watch: RunWatch, run: Run) -> None:
        changed = watch.run is None or watch.run.observable() != run.observable()
        watch.run = run
        observed_at = watch.observed_wall or _now()
        for subscriber in watch.subscribers:
            subscriber.offer(run, observed_at)
        if run.is_terminal:
            self._end(watch, None)
            return
        watch.interval = self._min if changed else min(self._max, watch.interval * 2)
        if watch.riding:
            return  # its workflow's list poll asks again when the run's summary changes
        delay = watch.interval
        if run.status is RunStatus.PAUSED and run.wake_at is not None:
            until_wake = (run.wake_at - datetime.now(UTC)).total_seconds() + WAKE_MARGIN
            delay = max(self._min, min(delay, until_wake))
        self._schedule(watch, delay)

    def _observed_list(self, watch: WorkflowWatch, runs: tuple[Run, ...]) -> None:
        changed = False
        if watch.baselined:
            observed_at = watch.observed_wall or _now()
            for run in reversed(runs):  # oldest first, so new runs arrive in creation order
                if watch.known.get(run.instance_id) != run.observable():
                    changed = True
                    for subscriber in watch.subscribers:
                        subscriber.offer(run, observed_at)
        watch.known = {run.instance_id: run.observable() for run in runs}
        watch.baselined = True
        changed |= self._carried(watch, runs)
        watch.interval = self._min if changed else min(self._max, watch.interval * 2)
        delay = watch.interval
        for run in runs:
            if (
                run.status is RunStatus.PAUSED
                and run.wake_at is not None
                and (watch.subscribers or run.instance_id in self._riders_of(watch))
            ):
                until_wake = (run.wake_at - datetime.now(UTC)).total_seconds() + WAKE_MARGIN
                delay = max(self._min, min(delay, until_wake))
        self._schedule(watch, delay)

    def _riders_of(self, carrier: WorkflowWatch) -> set[str]:
        return {rider.instance_id for rider in self._groups.get(carrier.key, ())}

    def _carried(self, carrier: WorkflowWatch, runs: tuple[Run, ...]) -> bool:
        """Update the runs ``carrier`` carries from its list; fetch those that changed."""
        summaries = {run.instance_id: run for run in runs}
        fetching = False
        for rider in self._groups.get(carrier.key, ()):
            summary = summaries.get(rider.instance_id)
            if summary is None:  # not on the first page: poll it on its own
                if rider.riding:
                    rider.riding = False
                    rider.summary = None
                    self._schedule(rider, rider.interval)
                continue
            observable = summary.observable()
            stale = (
                rider.run is None
                or rider.run.raw_status != summary.raw_status
                or (rider.summary is not None and rider.summary != observable)
            )
            rider.summary = observable
            if not rider.riding:
                rider.riding = True
                rider.due = -1.0  # drops its own scheduled poll
            if stale and rider.inflight is None:
                fetching = True
                self._schedule(rider, 0.0)
        return fetching

    # ---------------------------------------------------------------- plumbing

    async def _call(self, kind: str, call: Awaitable[T]) -> T:
        try:
            result = await call
        except Exception as exc:
            self._count(kind, _outcome(exc))
            raise
        self._count(kind, "ok")
        return result

    def _count(self, kind: str, outcome: _Outcome) -> None:
        self.metrics.live_polls.labels(upstream=self._name, kind=kind, outcome=outcome).inc()

    @property
    def _name(self) -> str:
        return self.upstream.name

    def _end(self, watch: Watch, error: BaseException | None) -> None:
        """Remove ``watch`` and close its subscribers (after what they have queued)."""
        if watch.ended:
            return
        watch.ended = True
        if isinstance(watch, RunWatch):
            if self._runs.get(watch.key) is watch:
                del self._runs[watch.key]
            _discard(self._runs_by_id, (watch.workflow_id, watch.instance_id), watch)
            group = (watch.key[0], watch.workflow_id)
            _discard(self._groups, group, watch)
            carrier = self._workflows.get(group)
            if carrier is not None and not carrier.subscribers and group not in self._groups:
                self._end(carrier, None)
        else:
            assert isinstance(watch, WorkflowWatch)
            if self._workflows.get(watch.key) is watch:
                del self._workflows[watch.key]
            _discard(self._workflows_by_id, watch.workflow_id, watch)
            if self._state == "open":
                self._detach_riders(watch)
        for subscriber in watch.subscribers:
            subscriber.close(error)
        self._watches_changed()

    def _leave(self, watch: Watch, subscriber: Subscriber, *, counted: bool) -> None:
        watch.subscribers.discard(subscriber)
        subscriber.close()
        if counted:
            self._subscribers_changed(-1)
        if watch.subscribers:
            return
        if isinstance(watch, WorkflowWatch) and watch.key in self._groups:
            return  # still carries runStatus watches
        self._end(watch, None)

    def _delivered(self, change: RunChange) -> None:
        latency = (_now() - change.observed_at).total_seconds()
        self.metrics.delivery_latency.observe(max(0.0, latency))

    def _watches_changed(self) -> None:
        self.metrics.active_watches.set(self.active_watches)

    def _subscribers_changed(self, delta: int) -> None:
        self._subscriber_count += delta
        self.metrics.subscribers.set(self._subscriber_count)

    def _check_open(self) -> None:
        if self._state != "open":
            raise RuntimeError("the LiveHub is not open (use it as an async context manager)")


def _now() -> datetime:
    return datetime.now(UTC)


def _outcome(exc: BaseException) -> _Outcome:
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


def _discard(index: dict[K, set[V]], key: K, value: V) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(value)
        if not members:
            del index[key]
