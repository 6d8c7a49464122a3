"""The cluster's request limiters: one GCRA bucket in Redis per credential, for every replica."""

from __future__ import annotations

import asyncio
import contextlib
import time

from runcast.errors import RateLimited
from runcast.live._lifetime import Lifetime, OwnedTasks
from runcast.live.cluster._keys import keyed_fingerprint
from runcast.live.cluster._link import ClusterUnavailable, RedisLink
from runcast.upstream import LimiterState, Quota, RequestBudget
from runcast.upstream._limiter import URGENT_YIELD, CredentialLimits, QuotaWindow, refused

# GCRA in one script, on Redis's clock. KEYS: the budget hash. ARGV: op (take, peek,
# refund, hold), emission interval ms, capacity ms (burst * interval), hold ms (for hold).
# Returns {taken 0/1, wait ms, hold ms left, tokens left} (numbers as strings).
_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local op, interval, capacity = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat') or '0')
local hold = tonumber(redis.call('HGET', KEYS[1], 'hold') or '0')
if tat < now then tat = now end
local function tokens(at)
  if interval <= 0 then return '-1' end
  return tostring((capacity - (at - now)) / interval)
end
local function keep()
  redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(hold - now, 0) + capacity) + 60000)
end
if op == 'hold' then
  hold = math.max(hold, now + tonumber(ARGV[4]))
  redis.call('HSET', KEYS[1], 'hold', tostring(hold))
  keep()
  return {0, '0', tostring(hold - now), tokens(tat)}
end
if op == 'refund' then
  tat = math.max(now, tat - interval)
  redis.call('HSET', KEYS[1], 'tat', tostring(tat))
  keep()
  return {0, '0', '0', tokens(tat)}
end
if hold > now then
  return {0, tostring(hold - now), tostring(hold - now), tokens(tat)}
end
local after = tat + interval
if after - now > capacity then
  return {0, tostring(after - now - capacity), '0', tokens(tat)}
end
if op == 'peek' then
  return {1, '0', '0', tokens(tat)}
end
redis.call('HSET', KEYS[1], 'tat', tostring(after))
keep()
return {1, '0', '0', tokens(after)}
"""


class ClusterBudget(Lifetime):
    """The request limiter of one credential for the whole cluster: ``rate`` per second,
    a :class:`~runcast.upstream.RequestLimiter` like the local ``RequestBudget``.

    Every token comes from one GCRA bucket in Redis (one script call, on Redis's clock),
    so however many replicas run, together they send at most ``rate`` requests per
    second (plus ``burst``). :meth:`pause` (a 429's Retry-After) is written to the same
    bucket and holds every replica. While Redis is gone, each replica takes tokens from
    a local bucket of ``rate / replicas`` (the replicas last seen), so the cluster stays
    within the budget during the outage too; it returns to the shared bucket as soon as
    Redis answers again. It takes tokens from its creation on; once closed, it writes
    nothing more to Redis.

    Args:
        link: the replica's Redis link.
        name: the budget's name in Redis (the upstream, and for Cloudflare the token's
            fingerprint).
        rate: requests per second; ``None`` for no limit (holds still apply).
        burst: the most tokens the bucket holds; defaults to one second's worth.
        quota: the upstream's limit per credential, counted by this replica.
    """

    def __init__(
        self,
        link: RedisLink,
        name: str,
        rate: float | None,
        *,
        burst: float | None = None,
        quota: Quota | None = None,
    ) -> None:
        self.link = link
        self.name = name
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else (rate or 1.0))
        self._window = QuotaWindow(quota) if quota is not None else None
        self._interval_ms = 1000.0 / rate if rate else 0.0
        self._key = link.keys.budget(name)
        self._script = link.client.register_script(_GCRA)
        self._credit = 0.0
        self._paused_until = 0.0
        self._urgent_waiting = 0
        self._local: RequestBudget | None = None
        self._tasks = OwnedTasks()  # holds and refunds being written to Redis

    async def _close(self) -> None:
        """Wait for the holds being written to Redis (a closed budget writes no more)."""
        await self._tasks.wait()

    @property
    def idle(self) -> bool:
        """Whether forgetting it loses nothing: no write pending, no kept token, no hold."""
        return not self._tasks and self._credit < 1.0 and self.paused_for <= 0

    @property
    def paused_for(self) -> float:
        """Seconds left in the hold this replica knows of (0 when not held)."""
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        """Hold every replica for ``seconds`` from now (extends, never shortens, a hold)."""
        seconds = max(0.0, seconds)
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        if self._local is not None:
            self._local.pause(seconds)
        if not self.closed:
            self._tasks.start(self._write_hold(seconds))

    def refund(self) -> None:
        """Give back a token taken for a request that was not sent (to the whole cluster)."""
        if self._window is not None:
            self._window.uncount()
        if self._local is not None and not self.link.up:
            self._local.refund()
        elif not self.closed:
            self._tasks.start(self._give_back())

    async def acquire(self, *, urgent: bool = False, within: float | None = None) -> None:
        """Wait for a token of the cluster (and for any hold to end), then take it.

        With ``within``, raise ``RateLimited`` instead when that would take longer.
        """
        if urgent:
            self._urgent_waiting += 1
        started = time.monotonic()
        try:
            while True:
                wait = await self._try_take(urgent)
                if wait <= 0:
                    if self._window is not None:
                        self._window.count(time.monotonic())
                    return
                if within is not None and time.monotonic() - started + wait > within:
                    raise self._refusal(wait)
                await asyncio.sleep(wait)
        finally:
            if urgent:
                self._urgent_waiting -= 1

    def _refusal(self, wait: float) -> RateLimited:
        held = self.paused_for > 0
        over = self._quota_wait() > 0
        rate = None if over and not held else self.rate
        return refused(self.name.partition(":")[0], wait, held=held, rate=rate)

    async def state(self) -> LimiterState:
        """What a request asked for now would meet, in the cluster's bucket; takes nothing."""
        if not self.link.up:
            return await self._share().state()
        try:
            taken, _, hold_ms, _ = await self._run("peek")
        except ClusterUnavailable:
            return await self._share().state()
        held = max(hold_ms / 1000, self.paused_for)
        if held > 0:
            return LimiterState("paused", held, self.rate)
        if taken and self._quota_wait() <= 0:
            return LimiterState("available", 0.0, self.rate)
        return LimiterState("exhausted", 0.0, self.rate)

    def _quota_wait(self) -> float:
        return 0.0 if self._window is None else self._window.wait(time.monotonic())

    async def _try_take(self, urgent: bool) -> float:
        """Take a token if there is one (returns 0), or return the seconds to wait."""
        quota_wait = self._quota_wait()
        if self.paused_for > 0 or quota_wait > 0:
            return max(self.paused_for, quota_wait)
        if not urgent and self._urgent_waiting:
            return URGENT_YIELD
        if self._credit >= 1.0:
            self._credit -= 1.0
            return 0.0
        if not self.link.up:
            return self._share().take_now()
        try:
            taken, wait_ms, hold_ms, _ = await self._run("take")
        except ClusterUnavailable:
            return self._share().take_now()
        if hold_ms > 0:
            self._paused_until = max(self._paused_until, time.monotonic() + hold_ms / 1000)
        if not taken:
            return max(wait_ms / 1000, 0.001)
        # Spent from this replica's share too, so that falling back to it (Redis gone)
        # starts from what was just used instead of a full bucket.
        self._share().take_now()
        return 0.0

    def _share(self) -> RequestBudget:
        replicas = max(1, self.link.replicas)
        rate = self.rate / replicas if self.rate else None
        if self._local is None or self._local.rate != rate:
            self._local = RequestBudget(rate, burst=max(1.0, self.burst / replicas), name=self.name)
            self._local.pause(self.paused_for)
        return self._local

    async def _give_back(self) -> None:
        try:
            await self._run("refund")
        except ClusterUnavailable:
            self._credit = min(self.burst, self._credit + 1.0)  # this replica reuses it

    async def _write_hold(self, seconds: float) -> None:
        # If Redis is gone this replica is held meanwhile; the others hold on their own 429s.
        with contextlib.suppress(ClusterUnavailable):
            await self._run("hold", seconds * 1000)

    async def _run(self, op: str, hold_ms: float = 0.0) -> tuple[bool, float, float, float]:
        capacity = self.burst * self._interval_ms
        result = await self.link.call(
            "budget",
            lambda: self._script(keys=[self._key], args=[op, self._interval_ms, capacity, hold_ms]),
        )
        taken, wait_ms, held_ms, tokens = (float(value) for value in result)
        if tokens >= 0:
            self.link.metrics.budget_tokens.labels(budget=self.name).set(tokens)
        return bool(taken), wait_ms, held_ms, tokens


def cluster_limits(
    link: RedisLink, upstream: str, rate: float | None, quota: Quota | None, secret: str
) -> CredentialLimits[ClusterBudget]:
    """One :class:`ClusterBudget` per credential of ``upstream``, shared by every replica.

    A credential's budget is named in Redis by the upstream and the credential's keyed
    fingerprint (never a token); the upstream's own credential (no token) by the upstream.
    """

    def make(key: str) -> ClusterBudget:
        name = upstream
        if key not in ("", "anonymous"):
            name = f"{upstream}:{keyed_fingerprint(key, secret)}"
        return ClusterBudget(link, name, rate, quota=quota)

    return CredentialLimits(rate, make)
