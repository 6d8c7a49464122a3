"""Watches: what the live layer keeps per (credentials, run) and per (credentials, workflow).

Each kind of watch owns its polling behaviour (:meth:`Watch.poll`) and what happens
around it (joining, failures, removal); the scheduler and the hub never ask which
kind a watch is.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runcast.errors import NotFound, RunNotFound
from runcast.live._bus import Topic
from runcast.live._change import Observable
from runcast.live._context import LiveContext, now
from runcast.live._registry import WorkflowKey
from runcast.live._selection import covers
from runcast.live._subscriber import Subscriber
from runcast.models import Credentials, Run, RunStatus

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

RunKey = tuple[str, str, str]
"""(credentials fingerprint, workflow id, instance id)."""

LIST_SHARING_MIN_RUNS = 2
"""Watched runs of one workflow (same credentials) from which one list poll carries them all."""
WAKE_MARGIN = 0.05
"""Seconds after a paused run's wake time at which it is polled."""
UNFINISHED_STATUSES = (
    RunStatus.QUEUED,
    RunStatus.RUNNING,
    RunStatus.PAUSED,
    RunStatus.WAITING,
    RunStatus.WAITING_FOR_PAUSE,
)
"""The statuses a listing of the runs that can still change asks the upstream for."""
_UNFINISHED = frozenset(UNFINISHED_STATUSES)


@dataclass(eq=False)
class Watch(ABC):
    """State shared by every subscriber of one watched thing, polled as one.

    Attributes:
        credentials: what the first subscriber presented; every subscriber has the same
            fingerprint, so polling with them shows nobody anything they could not read.
        interval: seconds until the next poll when nothing goes wrong (adaptive).
        due: monotonic time the next poll is due.
        failures: consecutive transient failures (5xx, timeouts), for back-off.
        inflight: the poll being made right now, which late joiners await.
        observed_at: monotonic time of the last successful observation.
        ended: set once the watch is removed; its subscribers were closed or left.
    """

    credentials: Credentials
    interval: float
    subscribers: set[Subscriber] = field(default_factory=set)
    due: float = 0.0
    failures: int = 0
    inflight: asyncio.Task[None] | None = None
    observed_at: float | None = None
    observed_wall: datetime | None = None
    ended: bool = False

    @property
    @abstractmethod
    def topic(self) -> Topic:
        """Where this watch's observations are published on the change bus."""

    @property
    @abstractmethod
    def subject(self) -> tuple[str, ...]:
        """What is watched, whoever watches it: ``(workflow, instance)`` or ``(workflow,)``."""

    @property
    def label(self) -> str:
        """What is watched, for log lines (never the credentials)."""
        return "watch"

    @abstractmethod
    async def poll(self, ctx: LiveContext, *, urgent: bool) -> None:
        """Ask the upstream, publish what changed, and schedule the next poll."""

    def not_found(self, exc: NotFound) -> BaseException:
        """The error this watch's subscribers end with when the upstream says 404."""
        return exc

    @abstractmethod
    def refused(self, ctx: LiveContext) -> None:
        """The upstream refused this watch's poll for good (404, 401, 403); it ends."""

    @abstractmethod
    def failed(self, ctx: LiveContext) -> None:
        """This watch's poll failed for now (5xx, timeout); it backs off."""

    @abstractmethod
    def removed(self, ctx: LiveContext) -> None:
        """This watch has just left the registry."""

    def idle(self, ctx: LiveContext) -> bool:
        """Whether nothing needs this watch any more."""
        return not self.subscribers

    def served_topics(self, ctx: LiveContext) -> tuple[Topic, ...]:
        """The topics this watch's polls serve (in cluster mode, it polls if it holds one)."""
        return (self.topic,)

    @property
    def carried(self) -> bool:
        """Whether another watch's poll observes this one (it needs no poll of its own)."""
        return False

    def mark_observed(self, ctx: LiveContext) -> datetime:
        """Record a successful poll; returns its wall-clock time."""
        self.failures = 0
        self.observed_at = ctx.scheduler.clock()
        self.observed_wall = now()
        return self.observed_wall


def wake_delay(run: Run, delay: float, minimum: float) -> float:
    """``delay``, shortened to just after ``run``'s wake time if it is a paused run with one."""
    if run.status is not RunStatus.PAUSED or run.wake_at is None:
        return delay
    until_wake = (run.wake_at - datetime.now(UTC)).total_seconds() + WAKE_MARGIN
    return max(minimum, min(delay, until_wake))


@dataclass(eq=False)
class RunWatch(Watch):
    """One run watched for one set of credentials (``runStatus``).

    While ``riding``, the run showed up in its workflow's list poll (made for the same
    credentials), so it is not polled on its own: the list poll asks for its detail
    when its summary there (``summary``) changes.
    """

    key: RunKey = ("", "", "")
    run: Run | None = None
    riding: bool = False
    summary: Observable | None = None
    detailed: bool = False
    """Whether ``run`` came from a GET of the run (not from a list item)."""

    @property
    def topic(self) -> Topic:
        """Where this watch's observations are published on the change bus."""
        return ("run", *self.key)

    @property
    def carried(self) -> bool:
        """Whether its workflow's list poll observes it (see ``riding``)."""
        return self.riding

    @property
    def subject(self) -> tuple[str, ...]:
        """What is watched, whoever watches it: ``(workflow, instance)``."""
        return self.key[1:]

    @property
    def label(self) -> str:
        """What is watched, for log lines (never the credentials)."""
        return f"run {self.key[2]} of {self.key[1]}"

    @property
    def workflow_id(self) -> str:
        """The workflow of the watched run."""
        return self.key[1]

    @property
    def instance_id(self) -> str:
        """The instance id of the watched run."""
        return self.key[2]

    @property
    def group(self) -> WorkflowKey:
        """The workflow list poll (same credentials) that may carry this run."""
        return (self.key[0], self.key[1])

    def joined_registry(self, ctx: LiveContext) -> None:
        """Become a rider of the group; start its carrier once enough runs are watched."""
        riders = ctx.registry.add_rider(self.group, self)
        if riders >= LIST_SHARING_MIN_RUNS and self.group not in ctx.registry.unshared:
            carrier, created = ctx.registry.obtain(
                ("workflow", *self.group),
                lambda: WorkflowWatch(
                    credentials=self.credentials, interval=ctx.intervals.minimum, key=self.group
                ),
            )
            if created:
                ctx.scheduler.schedule(carrier, 0.0)

    async def first_state(self, ctx: LiveContext, subscriber: Subscriber) -> None:
        """Give ``subscriber`` the run's state, as cheaply as what it selected allows.

        In order: this watch's state if it is fresh (or the upstream is rate limiting)
        and holds the selection; what its workflow's list poll knows of the run, or reads
        now (one list poll in flight answers every subscriber arriving meanwhile); and
        only when those do not have it, a GET of the run.
        """
        if not self._answers(ctx, subscriber, fresh_only=True):
            await self._from_carrier(ctx, subscriber)
            if not self.ended and not self._answers(ctx, subscriber, fresh_only=False):
                await ctx.scheduler.refresh(self)
        if not subscriber.has_state and self.run is not None and not self.ended:
            subscriber.offer(self.run, self.observed_wall or now())

    def _answers(self, ctx: LiveContext, subscriber: Subscriber, *, fresh_only: bool) -> bool:
        """Whether this watch's state can be ``subscriber``'s first message."""
        run = self.run
        if run is None or not (self.detailed or covers(run, subscriber.fields, ctx.listed)):
            return False
        if not fresh_only or ctx.limiter(self.credentials).paused_for > 0:
            return True
        observed = self.observed_at
        return observed is not None and ctx.scheduler.clock() - observed < ctx.intervals.minimum

    async def _from_carrier(self, ctx: LiveContext, subscriber: Subscriber) -> None:
        carrier = self.carrier(ctx)
        if carrier is None or subscriber.fields is None:
            return
        known = carrier.known.get(self.instance_id)
        if known is None:
            await ctx.scheduler.refresh(carrier)  # its list rides this watch if it shows the run
        elif covers(known, subscriber.fields, ctx.listed) and ctx.polls_for((self.topic,)):
            self.ride(ctx, known, carrier.observed_at, carrier.observed_wall or now())

    def carrier(self, ctx: LiveContext) -> WorkflowWatch | None:
        """The list poll that carries (or may carry) this run, if there is one."""
        found = ctx.registry.find(("workflow", *self.group))
        return found if isinstance(found, WorkflowWatch) else None

    async def poll(self, ctx: LiveContext, *, urgent: bool) -> None:
        """GET the run, publish it if it changed, and schedule the next poll."""
        run = await ctx.call(
            "run",
            ctx.upstream.get_run(self.workflow_id, self.instance_id, credentials=self.credentials),
        )
        self.detailed = True
        self.observe(ctx, run, self.mark_observed(ctx))

    def observe(self, ctx: LiveContext, run: Run, observed_at: datetime) -> None:
        """Take ``run`` as the watched run's state: publish it, end or reschedule."""
        changed = self.run is None or self.run.observable() != run.observable()
        self.run = run
        ctx.bus.publish(self.topic, run, observed_at)
        if run.is_terminal:
            ctx.end(self, None)
            return
        self.interval = ctx.next_interval(self.interval, changed=changed)
        if not self.riding:  # else its workflow's list poll asks again when its summary changes
            ctx.scheduler.schedule(self, wake_delay(run, self.interval, ctx.intervals.minimum))

    def not_found(self, exc: NotFound) -> BaseException:
        """A 404 of this run's GET means the run is gone."""
        return exc if isinstance(exc, RunNotFound) else RunNotFound(*self.subject)

    def refused(self, ctx: LiveContext) -> None:
        """Nothing else to do: the refusal concerns this run and these credentials only."""

    def failed(self, ctx: LiveContext) -> None:
        """Nothing else to do: only this run's own poll backs off."""

    def removed(self, ctx: LiveContext) -> None:
        """Leave the group; end its carrier if it carried only riders and none is left."""
        self._set_riding(ctx, riding=False)
        if ctx.registry.drop_rider(self.group, self):
            return
        carrier = ctx.registry.find(("workflow", *self.group))
        if carrier is not None and carrier.idle(ctx):
            ctx.end(carrier, None)

    def ride(
        self, ctx: LiveContext, summary: Run, observed_at: float | None, observed_wall: datetime
    ) -> bool:
        """Take ``summary`` from the carrier's list; returns whether that was news.

        Where the list item holds what every subscriber selected, a change is delivered
        from it; otherwise the run's detail is asked for (a budgeted GET, soon).
        """
        self._set_riding(ctx, riding=True)
        observable = summary.observable()
        if all(covers(summary, sub.fields, ctx.listed) for sub in self.subscribers):
            self.summary = observable
            if self.run is not None and self.run.observable() == observable:
                return False
            self.detailed = False
            self.observed_at, self.observed_wall = observed_at, observed_wall
            self.observe(ctx, summary, observed_wall)
            return True
        stale = (
            self.run is None
            or self.run.raw_status != summary.raw_status
            or (self.summary is not None and self.summary != observable)
        )
        self.summary = observable
        if stale and self.inflight is None:
            ctx.scheduler.schedule(self, 0.0)
            return True
        return False

    def dismount(self, ctx: LiveContext, delay: float) -> None:
        """Stop riding the list poll: poll on its own again, ``delay`` seconds from now."""
        if self.riding:
            self._set_riding(ctx, riding=False)
            self.summary = None
            ctx.scheduler.schedule(self, delay)

    def _set_riding(self, ctx: LiveContext, *, riding: bool) -> None:
        if riding == self.riding:
            return
        self.riding = riding
        ctx.riding += 1 if riding else -1
        if riding:
            ctx.scheduler.unschedule(self)


@dataclass(eq=False)
class WorkflowWatch(Watch):
    """The run list of one workflow watched for one set of credentials (``workflowRuns``).

    ``known`` holds what the last poll said of each run it saw, and keeps every run
    not yet seen in a terminal status (however old); a run whose entry changes (or
    appears) is a change to deliver. The first poll only sets ``known``. ``discover``
    is set while the unfinished runs older than the first page have not all been
    listed yet (at the start, or after a burst of new runs longer than a poll reads).
    ``listed_with`` is the status filter the last poll sent upstream (``None``: none).
    The same list poll carries the ``runStatus`` watches of that workflow and
    credentials (see ``RunWatch.riding``), so it lives on without subscribers while
    such watches exist.
    """

    key: WorkflowKey = ("", "")
    known: dict[str, Run] = field(default_factory=dict)
    baselined: bool = False
    discover: bool = True
    listed_with: tuple[RunStatus, ...] | None = None

    @property
    def topic(self) -> Topic:
        """Where this watch's observations are published on the change bus."""
        return ("workflow", *self.key)

    @property
    def subject(self) -> tuple[str, ...]:
        """What is watched, whoever watches it: ``(workflow,)``."""
        return (self.key[1],)

    @property
    def label(self) -> str:
        """What is watched, for log lines (never the credentials)."""
        return f"runs of {self.key[1]}"

    @property
    def workflow_id(self) -> str:
        """The watched workflow."""
        return self.key[1]

    def riders(self, ctx: LiveContext) -> set[RunWatch]:
        """The run watches this list poll carries (or may)."""
        return ctx.registry.riders(self.key)

    def idle(self, ctx: LiveContext) -> bool:
        """Nothing needs it once it has neither subscribers nor runs to carry."""
        return not self.subscribers and not self.riders(ctx)

    def served_topics(self, ctx: LiveContext) -> tuple[Topic, ...]:
        """Its own topic and those of the runs it carries."""
        return (self.topic, *(rider.topic for rider in self.riders(ctx)))

    def needs_refresh(self, ctx: LiveContext) -> bool:
        """Whether a new subscriber must wait for a poll (no baseline, or another filter)."""
        return not self.baselined or self.list_filter(ctx) != self.listed_with

    def list_filter(self, ctx: LiveContext) -> tuple[RunStatus, ...] | None:
        """The statuses this watch's polls ask the upstream for (``None``: every run).

        Only when every subscriber wants nothing but unfinished statuses and no
        ``runStatus`` watch rides the list: the listing of those statuses then holds
        every run that matters, however old. A run reaching a terminal status, by
        contrast, sits at its age in a listing of that status, so such filters are
        applied here, to a listing of every run.
        """
        if not self.subscribers or self.riders(ctx):
            return None
        wanted: set[RunStatus] = set()
        for subscriber in self.subscribers:
            if subscriber.statuses is None or not subscriber.statuses <= _UNFINISHED:
                return None
            wanted |= subscriber.statuses
        return tuple(status for status in UNFINISHED_STATUSES if status in wanted)

    async def poll(self, ctx: LiveContext, *, urgent: bool) -> None:
        """List what may have changed, publish the changes, update the riders, reschedule.

        The next poll is due ``interval`` after this one started: a poll that took long
        (many pages, each waiting for the budget) is followed at once while runs change.
        """
        started = ctx.scheduler.clock()
        statuses = self.list_filter(ctx)
        prior = None
        if not self.baselined and ctx.gate is not None:
            prior = await ctx.gate.prior_states(self.topic)  # polled elsewhere until now
        seen, unreached = await ctx.lister.read(ctx, self, statuses, urgent=urgent)
        observed_at = self.mark_observed(ctx)
        runs = tuple(seen.values())
        changed = self._publish(ctx, runs, statuses, observed_at, prior)
        self.known = {**unreached, **{run.instance_id: run for run in runs}}
        self.baselined = True
        self.listed_with = statuses
        changed |= self._carry(ctx, runs, observed_at)
        self.interval = ctx.next_interval(self.interval, changed=changed)
        delay = self.interval - (ctx.scheduler.clock() - started)
        riders = {rider.instance_id for rider in self.riders(ctx)}
        for run in runs:
            if self.subscribers or run.instance_id in riders:
                delay = wake_delay(run, delay, ctx.intervals.minimum)
        ctx.scheduler.schedule(self, delay)

    def _publish(
        self,
        ctx: LiveContext,
        runs: tuple[Run, ...],
        statuses: tuple[RunStatus, ...] | None,
        observed_at: datetime,
        prior: Mapping[str, Observable] | None,
    ) -> bool:
        """Publish the runs that changed since the last poll (here, or where ``prior`` is from).

        Without either, this first poll only learns what is there (and, in cluster mode,
        keeps it for the next holder).
        """
        if not self.baselined and prior is None:
            if ctx.gate is not None:
                ctx.gate.keep_baseline(self.topic, runs)
            return False
        changed = False
        # After a change of listing, runs it shows for the first time are not news.
        switched = self.baselined and statuses != self.listed_with
        for run in reversed(runs):  # oldest first, so new runs arrive in creation order
            was = self._was(run.instance_id, prior)
            if was is None and switched:
                continue
            if was != run.observable():
                changed = True
                ctx.bus.publish(self.topic, run, observed_at)
        return changed

    def _was(self, instance_id: str, prior: Mapping[str, Observable] | None) -> Observable | None:
        """What the last poll (here, or else ``prior``) saw of run ``instance_id``."""
        if prior is not None and not self.baselined:
            return prior.get(instance_id)
        known = self.known.get(instance_id)
        return None if known is None else known.observable()

    def _carry(self, ctx: LiveContext, runs: Iterable[Run], observed_wall: datetime) -> bool:
        """Update the riders from the list; returns whether any of them had news."""
        summaries = {run.instance_id: run for run in runs}
        news = False
        for rider in tuple(self.riders(ctx)):  # riders that finish leave the set
            if not ctx.polls_for((rider.topic,)):
                continue  # observed by the replica that holds it, which publishes it in order
            summary = summaries.get(rider.instance_id)
            if summary is None:  # not in what this poll read: poll it on its own
                rider.dismount(ctx, rider.interval)
            else:
                news |= rider.ride(ctx, summary, self.observed_at, observed_wall)
        return news

    def refused(self, ctx: LiveContext) -> None:
        """The list is not this caller's to read: its runs are polled alone from now on."""
        ctx.registry.unshared.add(self.key)

    def failed(self, ctx: LiveContext) -> None:
        """While the list poll fails, its riders poll on their own."""
        self._dismount_all(ctx)

    def removed(self, ctx: LiveContext) -> None:
        """Its riders poll on their own again (unless the whole layer is closing)."""
        if ctx.open:
            self._dismount_all(ctx)

    def _dismount_all(self, ctx: LiveContext) -> None:
        for rider in self.riders(ctx):
            rider.dismount(ctx, 0.0)
