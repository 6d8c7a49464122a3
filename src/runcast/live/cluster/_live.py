"""One replica's part in the cluster: a change bus over Redis, a poll gate, one budget."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry

from runcast.live._bus import ChangeSink, LocalChangeBus, Topic
from runcast.live._change import Observable
from runcast.live._lifetime import Lifetime, OwnedTasks
from runcast.live.cluster._budget import ClusterBudget, cluster_limits
from runcast.live.cluster._bus import ClusterChange, RedisChangeBus
from runcast.live.cluster._keys import ClusterKeys, WatchName, keyed_fingerprint
from runcast.live.cluster._lease import LeaseKeeper
from runcast.live.cluster._link import ClusterUnavailable, RedisLink
from runcast.live.cluster._metrics import ClusterMetrics
from runcast.models import Run
from runcast.readiness import CheckResult
from runcast.settings import Settings
from runcast.upstream import Quota
from runcast.upstream._limiter import CredentialLimits

logger = logging.getLogger(__name__)

PUBLISH_QUEUE = 10_000
"""Publications waiting for Redis at most; beyond, the oldest are dropped (and counted)."""
PUBLISH_RETRY_DELAY = 0.2
"""Seconds before a failed publication is sent again (while this replica holds the lease)."""


@dataclass(frozen=True, slots=True)
class _Publication:
    watch: WatchName
    fence: int
    run: Run
    observed_at: datetime


@dataclass(frozen=True, slots=True)
class _Withdrawal:
    watch: WatchName


@dataclass(frozen=True, slots=True)
class _Baseline:
    watch: WatchName
    fence: int
    runs: tuple[Run, ...]


_Queued = _Publication | _Withdrawal | _Baseline


@dataclass(eq=False)
class _Following:
    """One topic this replica has readers of: its name in Redis and the newest state seen."""

    watch: WatchName
    unfollow: Callable[[], None]
    latest: tuple[Run, datetime] | None = None


class ClusterChangeBus(Lifetime):
    """A :class:`~runcast.live.ChangeBus` shared by every replica through Redis.

    The first local reader of a topic makes this replica follow the topic in Redis
    (starting from its stored state, so a new subscriber gets it without a poll) and
    compete for its lease. What the live layer publishes goes out only while this
    replica holds the topic's lease: to the local readers at once, and through an
    ordered queue to Redis under the lease's fencing number, from where every other
    replica delivers it to its readers. Changes are handed on in the order they were
    observed and each once (the Redis bus dedups by sequence number; a state older than
    the newest one handed on is dropped). While Redis is gone, every replica polls its
    own watches (see :meth:`may_poll`) and this bus delivers locally, like the local bus.

    Args:
        link: the replica's Redis link.
        keeper: the replica's leases.
        bus: the Redis side of the bus.
        secret: the cluster secret that keys the fingerprints in topics.
    """

    def __init__(
        self, link: RedisLink, keeper: LeaseKeeper, bus: RedisChangeBus, *, secret: str
    ) -> None:
        self.link = link
        self.keeper = keeper
        self.redis = bus
        self.local = LocalChangeBus()
        self._secret = secret
        self._following: dict[Topic, _Following] = {}
        # Workflow topics competed for because runs of theirs are followed: name, runs.
        self._leading: dict[Topic, tuple[WatchName, int]] = {}
        self._queue: asyncio.Queue[_Queued] = asyncio.Queue(PUBLISH_QUEUE)
        self._tasks = OwnedTasks()
        self._sending = False

    async def _open(self) -> None:
        """Start the task that sends publications to Redis in order."""
        self._sending = True
        self._tasks.start(self._send(), name="cluster-publisher")

    async def _close(self) -> None:
        """Send what is queued (while Redis answers), then stop."""
        if not self._tasks:
            return
        if self.link.up:
            try:
                async with asyncio.timeout(2.0):
                    await self._queue.join()
            except TimeoutError:
                logger.warning("cluster: %d publications not sent", self._queue.qsize())
        self._sending = False
        await self._tasks.stop()

    def watch_name(self, topic: Topic) -> WatchName:
        """The name in Redis of ``topic`` (its fingerprint keyed with the cluster secret)."""
        fingerprint = keyed_fingerprint(topic[1], self._secret)
        if topic[0] == "run":
            return WatchName(fingerprint, topic[2], topic[3])
        return WatchName(fingerprint, topic[2])

    @property
    def alone(self) -> bool:
        """Whether Redis is gone, so that this replica polls and delivers by itself."""
        return not self.link.up

    def may_poll(self, topics: Iterable[Topic]) -> bool:
        """Whether a watch whose polls serve ``topics`` should poll here now."""
        if self.alone:
            return True
        return any(self.keeper.fence(self.watch_name(topic)) is not None for topic in topics)

    async def prior_states(self, topic: Topic) -> Mapping[str, Observable] | None:
        """What the cluster's holders of workflow ``topic`` knew of each run (see PollGate)."""
        if self.alone:
            return None
        try:
            return await self.redis.prior_states(self.watch_name(topic))
        except ClusterUnavailable:
            return None

    def keep_baseline(self, topic: Topic, runs: Iterable[Run]) -> None:
        """Keep a first poll's view of workflow ``topic`` in Redis, if this replica holds it."""
        watch = self.watch_name(topic)
        fence = self.keeper.fence(watch)
        if not self.alone and fence is not None:
            self._enqueue(_Baseline(watch, fence, tuple(runs)))

    def topics_of(self, watch: WatchName) -> list[Topic]:
        """The local topics named ``watch`` in Redis (one, unless two hash alike)."""
        topics = {topic for topic, f in self._following.items() if f.watch == watch}
        topics.update(topic for topic, (name, _) in self._leading.items() if name == watch)
        return sorted(topics)

    def _wants(self, watch: WatchName) -> bool:
        """Whether this replica still competes for ``watch`` (followed, or leading runs)."""
        return any(f.watch == watch for f in self._following.values()) or any(
            name == watch for name, _ in self._leading.values()
        )

    def _compete(self, topic: Topic, watch: WatchName) -> None:
        """Compete for ``watch``; a run's under the lease of its workflow's list poll."""
        if topic[0] != "run":
            self.keeper.compete(watch)
            return
        leader = ("workflow", *topic[1:3])
        name, runs = self._leading.get(leader) or (self.watch_name(leader), 0)
        self._leading[leader] = (name, runs + 1)
        self.keeper.compete(name)
        self.keeper.compete(watch, leader=name)

    def _stop_leading(self, topic: Topic) -> None:
        if topic[0] != "run":
            return
        leader = ("workflow", *topic[1:3])
        name, runs = self._leading.pop(leader)
        if runs > 1:
            self._leading[leader] = (name, runs - 1)
        else:
            self._enqueue(_Withdrawal(name))

    # ------------------------------------------------------------------ ChangeBus

    def subscribe(self, topic: Topic, sink: ChangeSink) -> None:
        """Deliver the states of ``topic`` to ``sink``, from every replica, from now on."""
        self.local.subscribe(topic, sink)
        following = self._following.get(topic)
        if following is None:
            watch = self.watch_name(topic)
            following = _Following(watch, lambda: None)
            self._following[topic] = following
            following.unfollow = self.redis.follow(
                watch, lambda change: self._from_cluster(topic, following, change)
            )
            self._compete(topic, watch)
        elif following.latest is not None:
            sink.offer(*following.latest)

    def unsubscribe(self, topic: Topic, sink: ChangeSink) -> None:
        """Stop delivering to ``sink``; the last local reader stops following the topic."""
        self.local.unsubscribe(topic, sink)
        if not self.local.readers(topic):
            self._stop_following(topic)

    def publish(self, topic: Topic, run: Run, observed_at: datetime) -> None:
        """Hand ``run`` on if this replica holds ``topic`` (or Redis is gone); else drop it."""
        following = self._following.get(topic)
        if self.alone:
            self._hand_on(topic, following, run, observed_at)
            return
        watch = following.watch if following is not None else self.watch_name(topic)
        fence = self.keeper.fence(watch)
        if fence is None:
            return  # another replica holds it and publishes what it sees
        self._hand_on(topic, following, run, observed_at)
        self._enqueue(_Publication(watch, fence, run, observed_at))

    def end(self, topic: Topic, error: BaseException | None = None) -> None:
        """Close this replica's readers of ``topic`` and stop following it."""
        self.local.end(topic, error)
        self._stop_following(topic)

    # ---------------------------------------------------------------- plumbing

    def _hand_on(
        self, topic: Topic, following: _Following | None, run: Run, observed_at: datetime
    ) -> None:
        if following is not None:
            if following.latest is not None and observed_at < following.latest[1]:
                return  # older than what the readers have (a former holder's, late)
            following.latest = (run, observed_at)
        self.local.publish(topic, run, observed_at)

    def _from_cluster(self, topic: Topic, following: _Following, change: ClusterChange) -> None:
        if change.by == self.link.replica_id:
            return  # handed on when it was published here
        self._hand_on(topic, following, change.run, change.observed_at)

    def _stop_following(self, topic: Topic) -> None:
        following = self._following.pop(topic, None)
        if following is not None:
            following.unfollow()
            self._enqueue(_Withdrawal(following.watch))
            self._stop_leading(topic)

    def _enqueue(self, item: _Queued) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.link.metrics.redis_errors.labels(op="publish_dropped").inc()
        self._queue.put_nowait(item)

    async def _send(self) -> None:
        while self._sending:  # past closing: until what was queued is sent
            item = await self._queue.get()
            try:
                if isinstance(item, _Withdrawal):
                    if not self._wants(item.watch):
                        await self.keeper.withdraw(item.watch)
                elif isinstance(item, _Baseline):
                    if self.keeper.fence(item.watch) == item.fence:
                        await self.redis.keep_baseline(item.watch, item.fence, item.runs)
                else:
                    await self._publish(item)
            except ClusterUnavailable:
                pass  # counted by the link; Redis is gone and every replica polls alone
            finally:
                self._queue.task_done()

    async def _publish(self, item: _Publication) -> None:
        """Publish ``item``, trying again while Redis answers and the lease is still ours.

        A change is observed once: if its publication were lost, the other replicas
        would not see it until the run changed again.
        """
        while not self.alone and self.keeper.fence(item.watch) == item.fence:
            try:
                await self.redis.publish(item.watch, item.fence, item.run, item.observed_at)
                return
            except ClusterUnavailable:
                await asyncio.sleep(PUBLISH_RETRY_DELAY)


class ClusterLive(Lifetime):
    """Cluster mode for one replica: the Redis link, leases, change bus and budgets.

    ``on_gained`` is called with each topic whose lease this replica takes, so the live
    layer polls it at once; ``on_alone`` when Redis goes, so it polls every watch.

    Use it as an async context manager; closing hands every lease back.

    Args:
        settings: ``redis_url``, ``cluster_secret``, ``cluster_lease_seconds`` and
            ``cluster_key_prefix``.
        registry: the gateway's metrics registry.
    """

    def __init__(self, settings: Settings, *, registry: CollectorRegistry) -> None:
        if settings.redis_url is None or not settings.cluster_secret:
            raise ValueError("cluster mode needs redis_url and cluster_secret")
        self.metrics = ClusterMetrics(registry)
        self.link = RedisLink(
            settings.redis_url, keys=ClusterKeys(settings.cluster_key_prefix), metrics=self.metrics
        )
        self.on_gained: Callable[[Topic], None] = lambda topic: None
        self.on_alone: Callable[[], None] = lambda: None
        self.keeper = LeaseKeeper(
            self.link,
            ttl=settings.cluster_lease_seconds,
            on_gained=self._gained,
            on_lost=lambda watch: None,
        )
        self.redis_bus = RedisChangeBus(self.link)
        self._secret = settings.cluster_secret
        self.bus = ClusterChangeBus(
            self.link, self.keeper, self.redis_bus, secret=settings.cluster_secret
        )
        self._limits: list[CredentialLimits[ClusterBudget]] = []
        self._stack = AsyncExitStack()

    def limits(
        self, upstream: str, rate: float | None, quota: Quota | None
    ) -> CredentialLimits[ClusterBudget]:
        """The cluster's limiter of each credential of ``upstream`` (closed with this)."""
        limits = cluster_limits(self.link, upstream, rate, quota, self._secret)
        self._limits.append(limits)
        return limits

    async def _open(self) -> None:
        stack = self._stack
        await stack.enter_async_context(self.link)
        await stack.enter_async_context(self.redis_bus)
        await stack.enter_async_context(self.keeper)
        await stack.enter_async_context(self.bus)
        self.link.on_health(self._health_changed)

    async def _close(self) -> None:
        """Send what is queued, hand the leases back, and close the Redis connections."""
        for limits in self._limits:
            for budget in limits.limiters():
                await budget.aclose()
        await self._stack.aclose()

    def _gained(self, watch: WatchName, fence: int) -> None:
        for topic in self.bus.topics_of(watch):
            self.on_gained(topic)

    def _health_changed(self, up: bool) -> None:
        if up:
            self.keeper.wake()
        else:
            self.on_alone()


class ClusterCheck:
    """``/readyz``'s entry for cluster mode: shared through Redis, or polling alone."""

    name = "cluster"
    required = False

    def __init__(self, cluster: ClusterLive) -> None:
        self._cluster = cluster

    async def check(self) -> CheckResult:
        """Never makes the replica unready: without Redis it keeps serving on its own."""
        link = self._cluster.link
        if link.up:
            detail = (
                f"Redis answers; {link.replicas} replicas; "
                f"{self._cluster.keeper.held_count} leases held here"
            )
            return {"ok": True, "state": "shared", "detail": detail}
        detail = (
            f"Redis unreachable; polling alone with 1/{link.replicas} of the budget "
            "until it is back"
        )
        return {"ok": False, "state": "alone", "detail": detail}
