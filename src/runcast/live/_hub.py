"""The live hub: the registry, scheduler, list poller, bus and delivery side, wired together."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, Callable, Collection

from runcast.errors import Forbidden, NotFound, RateLimited, RuncastError, Unauthenticated
from runcast.live._budget import budget_for
from runcast.live._bus import ChangeBus, LocalChangeBus, Topic
from runcast.live._change import RunChange
from runcast.live._context import Intervals, LiveContext, now
from runcast.live._delivery import Delivery
from runcast.live._gate import PollGate
from runcast.live._lifetime import Lifetime
from runcast.live._lister import ListPoller
from runcast.live._registry import WatchRegistry, WorkflowKey
from runcast.live._scheduler import PollScheduler
from runcast.live._selection import RunFields, listed_fields
from runcast.live._watch import RunKey, RunWatch, Watch, WorkflowWatch
from runcast.metrics import Metrics
from runcast.models import ANONYMOUS, Credentials, RunStatus
from runcast.settings import Settings
from runcast.upstream import (
    LimitedUpstream,
    LocalLimits,
    RequestLimiter,
    RequestLimits,
    RunAPI,
    RunChangeSource,
    local_limits,
)

logger = logging.getLogger(__name__)


class LiveHub(Lifetime):
    """Feeds ``runStatus`` and ``workflowRuns`` subscribers from one shared poller.

    There is one watch per (credentials fingerprint, workflow, run) and one per
    (credentials fingerprint, workflow) for run lists; every subscriber of a watch
    shares its polls, and subscribers with other credentials never share it. Polls
    take their tokens from the limiter of their credential, the one the adapter asks
    too (:func:`~runcast.live.budget_for` requests per second each), earliest due
    first, so when watches outnumber the budget every interval stretches evenly. A
    run that changes is polled every ``poll_min_interval``; one that does not is
    polled half as often each time, down to every 2 s while the budget allows and
    never less often than ``poll_max_interval``; a paused run with a known wake time
    is polled just after it; a finished run is not polled again. Where several runs
    of one workflow are watched with the same credentials, one list poll of that
    workflow carries them all (see :class:`~runcast.live._lister.ListPoller`): a
    change seen in a list item is delivered from it when the item holds what every
    subscriber of the run selected (the adapter's ``listed_fields``), else the run is
    read; a new subscriber is answered from what the list poll knows, or from the
    list read in flight. A 429 holds every request of its credential for its
    Retry-After (inside the limiter); 5xx and timeouts back a watch off while its
    subscribers stay connected.

    When the upstream is a :class:`~runcast.upstream.RunChangeSource` (the embedded
    engine), nothing is polled: subscribers get every pushed change, in order.

    Use it as an async context manager; it owns its tasks and cancels them on exit,
    and cannot be reopened.

    Args:
        upstream: the run API to watch.
        settings: intervals and the request budget.
        metrics: where requests, watches, subscribers and latencies are counted.
        bus: where observations travel from pollers to subscribers (in-process by default).
        clock: a monotonic clock in seconds, for the limiters and the scheduler.
        limits: the request limiters to use instead of those of this process alone
            (cluster mode shares them through Redis).
        gate: says which watches this process polls (cluster mode: those whose lease it
            holds); every watch when ``None``.
    """

    def __init__(
        self,
        upstream: RunAPI,
        settings: Settings,
        *,
        metrics: Metrics,
        bus: ChangeBus | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: RequestLimits | None = None,
        gate: PollGate | None = None,
    ) -> None:
        self.upstream = upstream
        self.settings = settings
        self.metrics = metrics
        self.pushes = isinstance(upstream, RunChangeSource)
        if limits is None:
            limits = own_limits(upstream, settings, clock)
        self.limits: RequestLimits = limits
        self.limit_key = _one_key
        if isinstance(upstream, LimitedUpstream):
            # One limiter per credential for every request: polls, operations, retries, resends.
            upstream.limit_requests(self.limits)
            self.limit_key = upstream.limit_key
        self.bus: ChangeBus = bus if bus is not None else LocalChangeBus()
        minimum = max(0.001, settings.poll_min_interval)
        scheduler: PollScheduler[Watch] = PollScheduler(
            lambda watch: self._ctx.limiter(watch.credentials),
            self._poll,
            clock=clock,
            on_lag=metrics.poll_lag.observe,
        )
        self._ctx = LiveContext(
            upstream=upstream,
            metrics=metrics,
            limits=self.limits,
            limit_key=self.limit_key,
            bus=self.bus,
            registry=WatchRegistry(self.bus, metrics),
            intervals=Intervals(minimum, max(minimum, settings.poll_max_interval)),
            page_size=max(1, settings.live_list_page_size),
            scheduler=scheduler,
            lister=ListPoller(),
            listed=listed_fields(upstream),
            gate=gate,
        )
        self._delivery = Delivery(self._ctx, pushes=self.pushes)
        self._unlisten: Callable[[], None] | None = None

    @property
    def budget(self) -> RequestLimiter:
        """The limiter of the upstream's own credential (callers without their own)."""
        return self.limits.limiter(self.limit_key(ANONYMOUS))

    # ----------------------------------------------------------------- lifetime

    async def _open(self) -> None:
        self._ctx.open = True
        if isinstance(self.upstream, RunChangeSource):
            self._unlisten = self.upstream.add_run_listener(self._delivery.on_pushed)
        else:
            self._ctx.scheduler.start()

    async def _close(self) -> None:
        """Stop polling, end every subscription, and wait for the hub's tasks to finish."""
        self._ctx.open = False
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for watch in self._ctx.registry.watches():
            self._ctx.end(watch, None)
        await self._ctx.scheduler.aclose()

    @property
    def active_watches(self) -> int:
        """Watches kept right now (runs and workflows)."""
        return len(self._ctx.registry)

    @property
    def subscriber_count(self) -> int:
        """Subscriptions being fed right now."""
        return self._ctx.registry.subscriber_count

    # ------------------------------------------------------------ subscriptions

    async def watch_run(
        self,
        workflow_id: str,
        instance_id: str,
        credentials: Credentials,
        *,
        fields: RunFields = None,
    ) -> AsyncGenerator[RunChange, None]:
        """The run's current state, then each observed change, ending after a terminal one.

        The first state is read with ``credentials`` (or shared from a read made just
        now with the same credentials), so a refusal reaches this subscriber. Where the
        upstream's list items hold the ``fields`` selected, states come from its
        workflow's list poll; ``None`` (not known) means every state is a GET of the run.

        Raises:
            RunNotFound: the run does not exist (at once, or when it disappears).
            Unauthenticated, Forbidden: the credentials cannot read the run.
            RateLimited, UpstreamError: the upstream failed the first fetch (push mode).
        """
        self._check_open()
        ctx = self._ctx
        key: RunKey = (credentials.fingerprint, workflow_id, instance_id)
        subscriber = self._delivery.run_slot(fields)
        watch, created = ctx.registry.obtain(
            ("run", *key),
            lambda: RunWatch(credentials=credentials, interval=ctx.intervals.minimum, key=key),
        )
        if created and not self.pushes:
            watch.joined_registry(ctx)
        ctx.registry.join(watch, subscriber)
        ctx.registry.count_subscriber(+1)
        try:
            if self.pushes:
                run = await ctx.call(
                    "run", self.upstream.get_run(workflow_id, instance_id, credentials=credentials)
                )
                subscriber.prime(run, now())
            else:
                await watch.first_state(ctx, subscriber)
            async for change in self._delivery.relay(subscriber, until_terminal=True):
                yield change
        finally:
            ctx.leave(watch, subscriber, counted=True)

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
        ctx = self._ctx
        key: WorkflowKey = (credentials.fingerprint, workflow_id)
        subscriber = self._delivery.workflow_slot(statuses)
        watch, _ = ctx.registry.obtain(
            ("workflow", *key),
            lambda: WorkflowWatch(credentials=credentials, interval=ctx.intervals.minimum, key=key),
        )
        ctx.registry.join(watch, subscriber)
        counted = False
        try:
            if self.pushes:
                await ctx.call(
                    "list", self.upstream.list_runs(workflow_id, limit=1, credentials=credentials)
                )
            elif watch.needs_refresh(ctx):
                await ctx.scheduler.refresh(watch)
            # Counted once the baseline exists: every run created from now on is delivered.
            ctx.registry.count_subscriber(+1)
            counted = True
            async for change in self._delivery.relay(subscriber, until_terminal=False):
                yield change
        finally:
            ctx.leave(watch, subscriber, counted=counted)

    # ----------------------------------------------------------------- polling

    def poll_all(self) -> None:
        """Poll every watch now (the poll gate opened for all, e.g. cluster mode alone)."""
        for watch in self._ctx.registry.watches():
            if watch.inflight is None and not watch.carried:
                self._ctx.scheduler.schedule(watch, 0.0)

    def poll_now(self, topic: Topic) -> None:
        """Poll the watch of ``topic`` (or the list poll carrying it) now, if there is one."""
        for key in (topic, ("workflow", *topic[1:3])):
            watch = self._ctx.registry.find(key)
            if watch is not None and watch.inflight is None and not watch.carried:
                self._ctx.scheduler.schedule(watch, 0.0)

    async def _poll(self, watch: Watch, urgent: bool) -> None:
        """One poll of ``watch``, and what its failures mean for it and for the upstream."""
        ctx = self._ctx
        if not ctx.polls_for(watch.served_topics(ctx)):
            # Another process polls it for everyone; the gate says when to start (poll_now).
            ctx.limiter(watch.credentials).refund()
            return
        try:
            await watch.poll(ctx, urgent=urgent)
        except RateLimited:
            # The limiter holds (a 429) or paces these credentials; the next token waits.
            held = ctx.limiter(watch.credentials).paused_for
            if held > 0:
                name = self.upstream.name
                logger.warning("upstream %s is rate limiting; holding polls %.1fs", name, held)
            ctx.scheduler.schedule(watch, 0.0)
        except NotFound as exc:
            watch.refused(ctx)
            ctx.end(watch, watch.not_found(exc))
        except (Unauthenticated, Forbidden) as exc:
            watch.refused(ctx)
            ctx.end(watch, exc)
        except Exception as exc:
            if not isinstance(exc, RuncastError):
                logger.error("live poll of %s failed", watch.label, exc_info=exc)
            watch.failed(ctx)
            watch.failures += 1
            ctx.scheduler.schedule(watch, ctx.intervals.after_failures(watch.failures))

    def _check_open(self) -> None:
        if not self.is_open:
            raise RuntimeError("the LiveHub is not open (use it as an async context manager)")


def own_limits(upstream: RunAPI, settings: Settings, clock: Callable[[], float]) -> LocalLimits:
    """One limiter per credential of ``upstream`` in this process, at its budget's rate."""
    pushes = isinstance(upstream, RunChangeSource)
    rate = None if pushes else budget_for(upstream.name, settings)
    quota = upstream.quota if isinstance(upstream, LimitedUpstream) else None
    return local_limits(rate, quota=quota, name=upstream.name, clock=clock)


def _one_key(credentials: Credentials) -> str:
    """Every caller shares one limiter (an upstream that does not say otherwise)."""
    return ""
