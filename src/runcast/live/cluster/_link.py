"""One replica's connection to the cluster's Redis: timed commands, health and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runcast.errors import RuncastError
from runcast.live._lifetime import Lifetime, OwnedTasks
from runcast.live.cluster._keys import ClusterKeys
from runcast.live.cluster._metrics import ClusterMetrics

logger = logging.getLogger(__name__)

T = TypeVar("T")

COMMAND_TIMEOUT = 1.0
"""Seconds a Redis command may take before Redis counts as gone."""
HEARTBEAT_INTERVAL = 1.0
"""Seconds between a replica's heartbeats (and, while Redis is gone, reconnection tries)."""
REPLICA_SILENCE = 5.0
"""Seconds without a heartbeat after which a replica no longer counts as running."""
MISSED_BEATS = 2
"""Heartbeats in a row that time out before Redis counts as gone (a busy host is slow too)."""
MAX_COMMANDS_IN_FLIGHT = 32
"""Redis commands one replica has in flight at once; more wait their turn for a connection."""
SPARE_CONNECTIONS = 4
"""Connections beyond those for commands: pub/sub, heartbeats, a pub/sub being replaced."""

_HEARTBEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
return redis.call('ZCARD', KEYS[1])
"""


class ClusterUnavailable(RuncastError):
    """Redis did not answer (or failed) a command; callers fall back to working alone."""


def redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"


class RedisLink(Lifetime):
    """The replica's Redis client, its health, and the count of replicas running.

    Every command goes through :meth:`call`, which times it, counts failures, and
    raises :class:`ClusterUnavailable` instead of a Redis error. The first failure
    marks Redis gone (one warning in the log); a background task then tries again
    every ``heartbeat`` seconds and marks it back (one line more). While Redis
    answers, the same task keeps this replica's heartbeat, from which
    :attr:`replicas` counts the replicas running.

    Use it as an async context manager; it cannot be reopened.

    Args:
        url: ``redis://`` URL of the cluster's Redis.
        keys: the key names of the cluster.
        metrics: where latency, errors, health and replicas are reported.
        replica_id: this replica's name in Redis (a random one by default).
        heartbeat: seconds between heartbeats.
    """

    def __init__(
        self,
        url: str,
        *,
        keys: ClusterKeys,
        metrics: ClusterMetrics,
        replica_id: str | None = None,
        heartbeat: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.url = url
        self.keys = keys
        self.metrics = metrics
        self.replica_id = replica_id or uuid.uuid4().hex[:12]
        self.heartbeat = heartbeat
        # A bounded pool that makes a command wait for a connection: an unbounded burst
        # (one catch-up per watch) would otherwise fail as if Redis were gone.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_COMMANDS_IN_FLIGHT + SPARE_CONNECTIONS,
            timeout=COMMAND_TIMEOUT,
            socket_timeout=COMMAND_TIMEOUT,
            socket_connect_timeout=COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        self._slots = asyncio.Semaphore(MAX_COMMANDS_IN_FLIGHT)
        self._health: bool | None = None
        # Rises each time Redis comes back: a failure of a command begun earlier is stale.
        self._up_era = 0
        self._missed_beats = 0
        self.replicas = 1
        self._heartbeat_script = self.client.register_script(_HEARTBEAT)
        self._listeners: list[Callable[[bool], None]] = []
        self._tasks = OwnedTasks()

    async def _open(self) -> None:
        with contextlib.suppress(ClusterUnavailable):  # reported; the heartbeat keeps trying
            await self._beat()
        self._tasks.start(self._keep_beating(), name="cluster-heartbeat")

    async def _close(self) -> None:
        """Stop the heartbeat, leave the replica count, and close the connections."""
        await self._tasks.stop()
        if self.up:
            with contextlib.suppress(ClusterUnavailable):
                await self.call(
                    "leave", lambda: self.client.zrem(self.keys.replicas, self.replica_id)
                )
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT * 2):
                await self.client.aclose()
        except TimeoutError:
            logger.debug("cluster: Redis connections closed by timeout")

    @property
    def up(self) -> bool:
        """Whether Redis answered the last command."""
        return self._health is True

    def on_health(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``listener(up)`` whenever Redis goes or comes back; returns the remover."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def call(self, op: str, command: Callable[[], Awaitable[T]], *, queued: bool = True) -> T:
        """Run ``command()`` against Redis, timed and counted under ``op``.

        ``queued`` commands wait for one of ``MAX_COMMANDS_IN_FLIGHT`` turns (within the
        time limit); the heartbeat and pub/sub use the spare connections instead, so a
        burst of commands never delays them.

        Raises:
            ClusterUnavailable: Redis failed or did not answer in time.
        """
        started = time.perf_counter()
        era = self._up_era
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT * 2):
                if queued:
                    async with self._slots:
                        result = await command()
                else:
                    result = await command()
        except (RedisError, OSError) as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # redis-py may report a cancellation as a connection error: keep it one.
                raise asyncio.CancelledError from exc
            self.metrics.redis_errors.labels(op=op).inc()
            if self._lost(op, exc) and era == self._up_era:
                self._set_up(False)
            raise ClusterUnavailable(f"Redis {op} failed: {type(exc).__name__}") from exc
        self.metrics.redis_latency.labels(op=op).observe(time.perf_counter() - started)
        return result

    def _lost(self, op: str, exc: BaseException) -> bool:
        """Whether ``exc``, failing ``op``, means Redis is gone.

        A failed connection does; a slow answer (a busy host, a busy pool) does not, unless
        ``MISSED_BEATS`` heartbeats in a row time out. (``TimeoutError`` is an ``OSError``.)
        """
        slow = isinstance(exc, TimeoutError | RedisTimeoutError)
        if op == "heartbeat":
            self._missed_beats = self._missed_beats + 1 if slow else MISSED_BEATS
            return self._missed_beats >= MISSED_BEATS
        return not slow and isinstance(exc, RedisConnectionError | OSError)

    async def _keep_beating(self) -> None:
        while self.is_open:
            await asyncio.sleep(self.heartbeat)
            if self._health is False:
                # Connections opened before Redis went are dead; start the return on new ones.
                # (Idle ones only: closing one in use breaks the command on it inside redis-py.)
                await self.client.connection_pool.disconnect(inuse_connections=False)
            try:
                await self._beat()
            except ClusterUnavailable:
                continue

    async def _beat(self) -> None:
        silence_ms = int(max(REPLICA_SILENCE, self.heartbeat * 3) * 1000)
        count = await self.call(
            "heartbeat",
            lambda: self._heartbeat_script(
                keys=[self.keys.replicas], args=[self.replica_id, silence_ms]
            ),
            queued=False,
        )
        self._missed_beats = 0
        self.replicas = max(1, int(count))
        self.metrics.replicas.set(self.replicas)
        self._set_up(True)

    def _set_up(self, up: bool) -> None:
        if up == self._health:
            return
        self._health = up
        if up:
            self._up_era += 1
        self.metrics.redis_up.set(1 if up else 0)
        if up:
            logger.info(
                "cluster: replica %s: Redis at %s answers; sharing the live layer",
                self.replica_id,
                redacted(self.url),
            )
        else:
            logger.warning(
                "cluster: replica %s: Redis at %s is unreachable; polling alone with 1/%d of "
                "the budget until it is back",
                self.replica_id,
                redacted(self.url),
                self.replicas,
            )
        for listener in tuple(self._listeners):
            listener(up)
