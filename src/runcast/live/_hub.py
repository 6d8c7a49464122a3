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
from runcast.live._watch import (
    Observable,
    RunKey,
    RunWatch,
    Watch,
    WorkflowKey,
    WorkflowWatch,
)
from runcast.metrics import Metrics
from runcast.models import Credentials, Run, RunPage, RunStatus
from runcast.settings import Settings
from runcast.upstream import RunAPI, RunChangeSource

logger = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")

MAX_LIST_REQUESTS_PER_POLL = 10
"""Requests one poll of a workflow's runs may send (pages and final states); each is budgeted."""
UNFINISHED_STATUSES = (
    RunStatus.QUEUED,
    RunStatus.RUNNING,
    RunStatus.PAUSED,
    RunStatus.WAITING,
    RunStatus.WAITING_FOR_PAUSE,
)
"""The statuses a listing of the runs that can still change asks the upstream for."""
_UNFINISHED = frozenset(UNFINISHED_STATUSES)
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
    is fetched only when its summary in the list changed. A list poll reads the newest
    page of runs, and older runs only while some are unfinished (one listing of the
    unfinished runs, every request budgeted; see :meth:`_list`), so a change to an old
    run is seen without reading its workflow's whole history. A 429 holds every request
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
        self._page_size = max(1, settings.live_list_page_size)
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
            elif not watch.baselined or self._list_filter(watch) != watch.listed_with:
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
            await self._poll_once(watch, urgent=urgent)
        finally:
            if watch.inflight is asyncio.current_task():
                watch.inflight = None

    async def _poll_once(self, watch: Watch, *, urgent: bool) -> None:
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
                statuses = self._list_filter(watch)
                seen, unreached = await self._list(watch, statuses, urgent=urgent)
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
                self._observed_list(watch, seen, unreached, statuses)

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

    def _list_filter(self, watch: WorkflowWatch) -> tuple[RunStatus, ...] | None:
        """The statuses ``watch``'s polls ask the upstream for (``None``: every run).

        Only when every subscriber wants nothing but unfinished statuses and no
        ``runStatus`` watch rides the list: the listing of those statuses then holds
        every run that matters, however old. A run reaching a terminal status, by
        contrast, sits at its age in a listing of that status, so such filters are
        applied here, to a listing of every run.
        """
        if not watch.subscribers or self._groups.get(watch.key):
            return None
        wanted: set[RunStatus] = set()
        for subscriber in watch.subscribers:
            if subscriber.statuses is None or not subscriber.statuses <= _UNFINISHED:
                return None
            wanted |= subscriber.statuses
        return tuple(status for status in UNFINISHED_STATUSES if status in wanted)

    async def _list(
        self, watch: WorkflowWatch, statuses: tuple[RunStatus, ...] | None, *, urgent: bool
    ) -> tuple[dict[str, Run], dict[str, Observable]]:
        """Read what may have changed among ``watch``'s runs: one page, unless more is needed.

        With ``statuses`` (see :meth:`_list_filter`), the upstream's listing of those
        statuses is read to its end. Without, the newest page of every run is read, and
        the next ones only while runs created since the last poll fill them. Terminal
        runs never change, so older pages are not read;
        the unfinished runs older than what was read (known to the watch, or not yet
        discovered) are looked for in a listing of unfinished runs, and those that have
        left it are fetched one by one for their final state. Every request after the
        first waits for the budget, and a poll sends at most
        ``MAX_LIST_REQUESTS_PER_POLL``; what it could not reach waits for the next poll.

        Returns:
            The runs seen, by instance id, newest first; and the known entries of the
            unfinished runs this poll did not reach.
        """
        requests = 0

        async def page(statuses: tuple[RunStatus, ...] | None, cursor: str | None) -> RunPage:
            nonlocal requests
            if requests:  # the poll's first request was budgeted by whoever started it
                await self.budget.acquire(urgent=urgent)
            requests += 1
            return await self._call(
                "list",
                self.upstream.list_runs(
                    watch.workflow_id,
                    statuses=statuses,
                    cursor=cursor,
                    limit=self._page_size,
                    credentials=watch.credentials,
                ),
            )

        async def final_state(instance_id: str) -> Run | None:
            nonlocal requests
            await self.budget.acquire(urgent=urgent)
            requests += 1
            try:
                return await self._call(
                    "run",
                    self.upstream.get_run(
                        watch.workflow_id, instance_id, credentials=watch.credentials
                    ),
                )
            except (NotFound, Forbidden):
                return None  # deleted, or not this caller's to read: nothing more to report

        seen: dict[str, Run] = {}
        cursor: str | None = None
        if statuses is not None:
            watch.discover = True  # unfinished runs in other statuses go unseen meanwhile
            while requests < MAX_LIST_REQUESTS_PER_POLL:
                listed = await page(statuses, cursor)
                for run in listed.runs:
                    seen.setdefault(run.instance_id, run)
                cursor = listed.next_cursor
                if cursor is None:
                    return seen, {}
            unreached = {
                instance_id: observable
                for instance_id, observable in watch.known.items()
                if instance_id not in seen and observable[0] in statuses
            }
            return seen, unreached
        switched = statuses != watch.listed_with
        while True:
            listed = await page(None, cursor)
            for run in listed.runs:
                seen.setdefault(run.instance_id, run)
            cursor = listed.next_cursor
            if cursor is None or not watch.baselined or switched or not listed.runs:
                break
            if listed.runs[-1].instance_id in watch.known:
                break  # the runs created since the last poll are all read
            if requests >= MAX_LIST_REQUESTS_PER_POLL:
                watch.discover = True  # new runs were left unread: look for unfinished ones
                break
        if cursor is None:
            watch.discover = False  # every run of the workflow was read
            return seen, {}
        pending = {
            instance_id
            for instance_id, observable in watch.known.items()
            if instance_id not in seen and not observable[0].is_terminal
        }
        if not pending and not watch.discover:
            return seen, {}
        cursor = None
        finished = False
        while requests < MAX_LIST_REQUESTS_PER_POLL:
            listed = await page(UNFINISHED_STATUSES, cursor)
            for run in listed.runs:
                seen.setdefault(run.instance_id, run)
                pending.discard(run.instance_id)
            cursor = listed.next_cursor
            if cursor is None:
                finished = True
                break
            if not pending and not watch.discover:
                break
        if finished:
            watch.discover = False
            # Not unfinished any more: they finished (or went) since they were last seen.
            for instance_id in sorted(pending):
                if requests >= MAX_LIST_REQUESTS_PER_POLL:
                    break
                final = await final_state(instance_id)
                if final is not None:
                    seen[instance_id] = final
                pending.discard(instance_id)
        return seen, {instance_id: watch.known[instance_id] for instance_id in pending}

    def _observed_list(
        self,
        watch: WorkflowWatch,
        seen: dict[str, Run],
        unreached: dict[str, Observable],
        statuses: tuple[RunStatus, ...] | None,
    ) -> None:
        runs = tuple(seen.values())
        changed = False
        if watch.baselined:
            # After a change of listing, runs it shows for the first time are not news.
            switched = statuses != watch.listed_with
            observed_at = watch.observed_wall or _now()
            for run in reversed(runs):  # oldest first, so new runs arrive in creation order
                known = watch.known.get(run.instance_id)
                if known is None and switched:
                    continue
                if known != run.observable():
                    changed = True
                    for subscriber in watch.subscribers:
                        subscriber.offer(run, observed_at)
        watch.known = {**unreached, **{run.instance_id: run.observable() for run in runs}}
        watch.baselined = True
        watch.listed_with = statuses
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
