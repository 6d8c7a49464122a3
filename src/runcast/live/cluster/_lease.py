"""Leases: which replica polls a watch for the whole cluster, with a rising fencing number."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript

from runcast.live._lifetime import Lifetime, OwnedTasks
from runcast.live.cluster._keys import WatchName
from runcast.live.cluster._link import ClusterUnavailable, RedisLink

logger = logging.getLogger(__name__)

FENCE_TTL_MS = 7 * 24 * 3600 * 1000
"""How long a watch's fencing number outlives its last holder (milliseconds)."""
DEFER_SHARE = 0.25
"""Of the lease time: how long a watch whose leader another replica holds must have been
free before this replica takes it (the leader's holder takes it first, see ``compete``)."""

# KEYS: lease, fence. ARGV: replica, ttl ms, fence ttl ms. Returns the fence held, or 0.
_ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder then
  local sep = string.find(holder, ':', 1, true)
  if sep and string.sub(holder, 1, sep - 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(holder, sep + 1))
  end
  return 0
end
local fence = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. fence, 'NX', 'PX', ARGV[2])
return fence
"""
# Check-and-extend. KEYS: lease. ARGV: REPLICA:FENCE, ttl ms. Returns 1 if still held.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS: lease. ARGV: REPLICA:FENCE. Deletes the lease only if it is still this holder's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Held:
    """A lease this replica holds: the watch, its fencing number, when it was last renewed."""

    watch: WatchName
    fence: int
    renewed_at: float


class LeaseKeeper(Lifetime):
    """Competes for the leases of the watches this replica has subscribers for.

    A replica competes only for watches with a local subscriber (whose credentials it
    therefore has). Every ``ttl / 3`` seconds it renews what it holds (check and extend)
    and tries to take what it does not (``SET NX PX`` in a script that also raises the
    watch's fencing number). ``on_gained(watch, fence)`` and ``on_lost(watch)`` tell the
    live layer when to start and stop polling a watch for the cluster. A lease not
    renewed within ``ttl`` counts as lost here too, since another replica may take it.
    If Redis is gone every lease counts as lost. :meth:`aclose` hands every lease back.

    Args:
        link: the replica's Redis link.
        ttl: seconds a lease lasts unless renewed.
        on_gained: called when this replica becomes a watch's holder.
        on_lost: called when it stops being one (lost, withdrawn or handed back).
    """

    def __init__(
        self,
        link: RedisLink,
        *,
        ttl: float,
        on_gained: Callable[[WatchName, int], None],
        on_lost: Callable[[WatchName], None],
    ) -> None:
        self.link = link
        self.ttl = ttl
        self._on_gained = on_gained
        self._on_lost = on_lost
        self._ttl_ms = max(1, int(ttl * 1000))
        self._wanted: set[WatchName] = set()
        self._leaders: dict[WatchName, WatchName] = {}
        self._free_since: dict[WatchName, float] = {}  # deferred watches seen free, since
        self._defer = ttl * DEFER_SHARE
        self._held: dict[WatchName, Held] = {}
        self._gained: set[WatchName] = set()  # told to on_gained and not yet to on_lost
        self._wake = asyncio.Event()
        self._tasks = OwnedTasks()
        self._acquire = link.client.register_script(_ACQUIRE)
        self._renew = link.client.register_script(_RENEW)
        self._release = link.client.register_script(_RELEASE)

    async def _open(self) -> None:
        self._tasks.start(self._keep(), name="cluster-leases")

    async def _close(self) -> None:
        """Stop competing and hand every held lease back at once."""
        await self._tasks.stop()
        await self._hand_back(list(self._held))
        self._wanted.clear()

    def fence(self, watch: WatchName) -> int | None:
        """The fencing number of ``watch`` if this replica holds its lease."""
        held = self._held.get(watch)
        return held.fence if held is not None else None

    @property
    def held_count(self) -> int:
        """Leases held right now."""
        return len(self._held)

    def compete(self, watch: WatchName, *, leader: WatchName | None = None) -> None:
        """Try to hold ``watch`` from now on (at once, then at every round).

        With a ``leader`` (a run's workflow, whose list poll carries the run), the watch
        goes to the leader's holder: this replica takes it at once while it holds the
        leader, and otherwise only once the watch has been free for ``DEFER_SHARE`` of
        the lease time (the leader's holder does not want it). So the runs of one
        workflow are polled by one replica, with one list poll, wherever they are watched.
        """
        if leader is not None:
            self._leaders[watch] = leader
        if watch not in self._wanted:
            self._wanted.add(watch)
            self._wake.set()

    def wake(self) -> None:
        """Run a round now (Redis is back: take the watches again without waiting)."""
        self._wake.set()

    async def withdraw(self, watch: WatchName) -> None:
        """Stop competing for ``watch``; hand its lease back if held."""
        self._wanted.discard(watch)
        self._leaders.pop(watch, None)
        self._free_since.pop(watch, None)
        if watch in self._held:
            await self._hand_back([watch])

    async def _keep(self) -> None:
        while self.is_open:
            try:
                async with asyncio.timeout(self._next_round_in()):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.round()
            except ClusterUnavailable:
                self._lose(list(self._held))

    async def round(self) -> None:
        """Renew what is held and try to take what is wanted, in one pipeline.

        Raises:
            ClusterUnavailable: Redis is gone (the caller drops every lease).
        """
        now = time.monotonic()
        self._lose([w for w, h in self._held.items() if now - h.renewed_at >= self.ttl])
        watches = sorted(self._wanted, key=lambda w: w.slug)
        if not watches:
            return
        pipe = self.link.client.pipeline(transaction=False)
        looks = {watch for watch in watches if self._defers(watch, now)}
        for watch in watches:
            self._queue_for(watch, pipe, look=watch in looks)
        results = await self.link.call("lease", pipe.execute)
        taking = []
        for watch, result in zip(watches, results, strict=True):
            if watch not in looks:
                taking.append((watch, int(result)))
            elif int(result):
                self._free_since.pop(watch, None)  # held elsewhere
            else:
                self._free_since.setdefault(watch, now)
        self._settle(taking, now)
        strays = [watch for watch in self._held if watch not in self._wanted]
        if strays:  # withdrawn while this round was in flight
            await self._hand_back(strays)

    def _next_round_in(self) -> float:
        """Seconds until the next round: a third of the lease time, or a deferral's end."""
        wait = self.ttl / 3
        if self._free_since:
            ends = min(self._free_since.values()) + self._defer
            wait = min(wait, max(0.01, ends - time.monotonic()))
        return wait

    def _defers(self, watch: WatchName, now: float) -> bool:
        """Whether this round only looks at ``watch`` (its leader's holder may take it)."""
        leader = self._leaders.get(watch)
        if leader is None or watch in self._held or leader in self._held:
            return False
        free_since = self._free_since.get(watch)
        return free_since is None or now - free_since < self._defer

    def _queue_for(self, watch: WatchName, pipe: Pipeline, *, look: bool) -> None:
        keys = self.link.keys
        held = self._held.get(watch)
        if look:
            pipe.exists(keys.lease(watch))
        elif held is not None:
            token = f"{self.link.replica_id}:{held.fence}"
            _queue(self._renew, keys=[keys.lease(watch)], args=[token, self._ttl_ms], client=pipe)
        else:
            _queue(
                self._acquire,
                keys=[keys.lease(watch), keys.fence(watch)],
                args=[self.link.replica_id, self._ttl_ms, FENCE_TTL_MS],
                client=pipe,
            )

    def _settle(self, results: list[tuple[WatchName, int]], now: float) -> None:
        for watch, result in results:
            held = self._held.get(watch)
            if held is not None:
                if result:
                    self._held[watch] = Held(watch, held.fence, now)
                else:
                    self._lose([watch])
            elif result:
                self._gain(watch, result, now)
            else:
                self._free_since.pop(watch, None)  # another replica was first

    def _gain(self, watch: WatchName, fence: int, now: float) -> None:
        self._held[watch] = Held(watch, fence, now)
        self._free_since.pop(watch, None)
        if fence > 1:
            self.link.metrics.takeovers.inc()
        self.link.metrics.leases_held.set(len(self._held))
        if watch in self._leaders.values():
            self._wake.set()  # take the watches it leads now, before other replicas do
        if watch in self._wanted:
            self._gained.add(watch)
            self._on_gained(watch, fence)

    def _lose(self, watches: Iterable[WatchName]) -> None:
        for watch in list(watches):
            if self._held.pop(watch, None) is not None:
                self.link.metrics.leases_held.set(len(self._held))
                if watch in self._gained:
                    self._gained.discard(watch)
                    self._on_lost(watch)

    async def _hand_back(self, watches: list[WatchName]) -> None:
        held = [self._held[w] for w in watches if w in self._held]
        self._lose(watches)
        if not held or not self.link.up:
            return
        pipe = self.link.client.pipeline(transaction=False)
        for lease in held:
            token = f"{self.link.replica_id}:{lease.fence}"
            _queue(
                self._release, keys=[self.link.keys.lease(lease.watch)], args=[token], client=pipe
            )
        try:
            await self.link.call("release", pipe.execute)
        except ClusterUnavailable:
            logger.debug("cluster: could not hand %d leases back; they expire", len(held))


def _queue(
    script: AsyncScript, *, keys: list[str], args: list[str | int], client: Pipeline
) -> None:
    """Add a script call to ``client``'s pipeline (its result comes with ``execute``)."""
    client.scripts.add(script)  # type: ignore[arg-type]  # loaded by execute() if missing
    client.evalsha(script.sha, len(keys), *keys, *args)
