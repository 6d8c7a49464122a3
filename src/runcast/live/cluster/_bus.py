"""The change bus over Redis: holders publish, every replica delivers, in order, once."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import cast

from redis.asyncio.client import PubSub

from runcast.live._change import Observable
from runcast.live._lifetime import Lifetime, OwnedTasks
from runcast.live.cluster._codec import (
    ChangeWire,
    observable_digest,
    observable_from_digest,
    run_from_wire,
    run_to_wire,
)
from runcast.live.cluster._keys import WatchName
from runcast.live.cluster._link import ClusterUnavailable, RedisLink
from runcast.models import Run

logger = logging.getLogger(__name__)

STREAM_LENGTH = 200
"""Changes kept per watch for replicas catching up after a gap (about; trimmed lazily)."""
STATE_TTL_MS = 24 * 3600 * 1000
"""How long a watch's state and changes stay in Redis after its last publication."""
RECEIVE_TIMEOUT = 1.0
"""Seconds the bus listener waits for a message before checking its connection."""
STALE = -1
"""What :meth:`RedisChangeBus.publish` returns when a newer holder has the watch."""

# KEYS: fence, state, changes, epoch. ARGV: fence, digest field, digest, change JSON without
# epoch and seq, channel, slug, state ttl ms, stream length, a new epoch in case there is
# none (Redis started empty). Returns the new seq, 0 (no news) or -1 (stale fence).
_PUBLISH = """
local epoch = redis.call('GET', KEYS[4])
if not epoch then
  epoch = ARGV[9]
  redis.call('SET', KEYS[4], epoch)
end
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < current then return -1 end
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[3] then return 0 end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local change = '{"epoch":"' .. epoch .. '","seq":' .. seq .. ',' .. string.sub(ARGV[4], 2)
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3], 'change', change, 'fence', ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], seq .. '-0', 'change', change)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('PEXPIRE', KEYS[3], ARGV[7])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. '\\n' .. change)
return seq
"""


# KEYS: fence, state. ARGV: fence, state ttl ms, then digest field and digest pairs.
# Keeps a first poll's view of a workflow's runs, unless a newer holder exists.
_BASELINE = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < current then return -1 end
for i = 3, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1
"""
DIGEST_PREFIX = "digest:"
"""The state hash field of a workflow watch's run: ``digest:<instance id>``."""


@dataclass(frozen=True, slots=True)
class ClusterChange:
    """One change of a watch as the cluster published it.

    Args:
        watch: the watch it belongs to.
        by: the replica that published it.
        epoch: the life of the Redis data it was published in (new after Redis restarts
            empty, when sequence numbers start again at 1).
        seq: its place in the watch's changes (1, 2, ...; the same on every replica).
        run: the run as observed by the holder.
        observed_at: when the holder observed it.
    """

    watch: WatchName
    by: str
    epoch: str
    seq: int
    run: Run
    observed_at: datetime


ChangeSink = Callable[[ClusterChange], None]
"""Where a replica hands the changes of one watch, each once, in sequence order."""


def _text(value: bytes | str) -> str:
    """A Redis reply as text (the client answers bytes)."""
    return value if isinstance(value, str) else value.decode()


def _decode(watch: WatchName, raw: bytes | str) -> ClusterChange:
    wire = cast(ChangeWire, json.loads(raw))
    return ClusterChange(
        watch=watch,
        by=wire["by"],
        epoch=wire["epoch"],
        seq=int(wire["seq"]),
        run=run_from_wire(wire["run"]),
        observed_at=datetime.fromisoformat(wire["observedAt"]),
    )


@dataclass(eq=False)
class _Followed:
    """This replica's readers of one watch, and the last seq handed to them."""

    epoch: str | None = None
    last_seq: int = 0
    newest_heard: int = 0
    sinks: list[ChangeSink] = field(default_factory=list)
    catching_up: asyncio.Task[None] | None = None


class RedisChangeBus(Lifetime):
    """Publishes changes of the watches this replica holds; follows those it serves.

    A holder's :meth:`publish` is one script: it refuses a fencing number older than
    the watch's (a stalled former holder), skips a state equal to the last one (so a
    new holder's first poll repeats nothing), gives the change the watch's next sequence
    number, keeps it as the watch's state and in its stream, and publishes it. Every
    replica hears every change on one channel and hands those of the watches it
    follows to their sinks, each seq once and in order; on a gap (a reconnection, a
    message lost) it reads the missed ones back from the watch's stream first.

    Use it as an async context manager; it cannot be reopened.

    Args:
        link: the replica's Redis link.
    """

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._publish = link.client.register_script(_PUBLISH)
        self._baseline = link.client.register_script(_BASELINE)
        self._followed: dict[WatchName, _Followed] = {}
        self._tasks = OwnedTasks()  # the listener and the catch-ups
        self._listening = asyncio.Event()

    async def _open(self) -> None:
        self._tasks.start(self._listen(), name="cluster-bus")

    async def _close(self) -> None:
        """Stop listening and end every catch-up in flight."""
        await self._tasks.stop()
        self._followed.clear()

    async def listening(self) -> None:
        """Return once the bus has subscribed to the channel (for a clean start)."""
        await self._listening.wait()

    # --------------------------------------------------------------- publishing

    async def publish(self, watch: WatchName, fence: int, run: Run, observed_at: datetime) -> int:
        """Publish ``run`` as the newest state of ``watch`` under lease ``fence``.

        Returns:
            The change's seq; 0 when ``run`` shows nothing new; :data:`STALE` when a
            newer holder has the watch (nothing was published).

        Raises:
            ClusterUnavailable: Redis is gone.
        """
        keys = self.link.keys
        digest_field = DIGEST_PREFIX + run.instance_id if watch.instance_id is None else "digest"
        body = json.dumps(
            {
                "by": self.link.replica_id,
                "observedAt": observed_at.isoformat(),
                "run": run_to_wire(run),
            },
            separators=(",", ":"),
        )
        seq = int(
            await self.link.call(
                "publish",
                lambda: self._publish(
                    keys=[
                        keys.fence(watch),
                        keys.state(watch),
                        keys.changes(watch),
                        keys.epoch,
                    ],
                    args=[
                        fence,
                        digest_field,
                        observable_digest(run),
                        body,
                        keys.channel,
                        watch.slug,
                        STATE_TTL_MS,
                        STREAM_LENGTH,
                        uuid.uuid4().hex[:12],
                    ],
                ),
            )
        )
        if seq > 0:
            self.link.metrics.changes_published.inc()
        elif seq == STALE:
            self.link.metrics.changes_stale.inc()
        return seq

    async def keep_baseline(self, watch: WatchName, fence: int, runs: Iterable[Run]) -> None:
        """Keep ``runs`` as what the holder of workflow ``watch`` knows, without news.

        Raises:
            ClusterUnavailable: Redis is gone.
        """
        args: list[str | int] = [fence, STATE_TTL_MS]
        for run in runs:
            args += [DIGEST_PREFIX + run.instance_id, observable_digest(run)]
        keys = [self.link.keys.fence(watch), self.link.keys.state(watch)]
        await self.link.call("baseline", lambda: self._baseline(keys=keys, args=args))

    async def prior_states(self, watch: WatchName) -> dict[str, Observable] | None:
        """What the holders of workflow ``watch`` knew of each run (``None``: nothing).

        Raises:
            ClusterUnavailable: Redis is gone.
        """
        stored = await self.link.call(
            "prior", lambda: self.link.client.hgetall(self.link.keys.state(watch))
        )
        states = {
            _text(name).removeprefix(DIGEST_PREFIX): observable_from_digest(_text(value))
            for name, value in stored.items()
            if _text(name).startswith(DIGEST_PREFIX)
        }
        return states or None

    async def snapshot(self, watch: WatchName) -> ClusterChange | None:
        """The last published state of ``watch`` (``None`` if nothing was published).

        Raises:
            ClusterUnavailable: Redis is gone.
        """
        raw = await self.link.call(
            "snapshot", lambda: self.link.client.hget(self.link.keys.state(watch), "change")
        )
        return None if raw is None else _decode(watch, raw)

    # ---------------------------------------------------------------- following

    def follow(
        self, watch: WatchName, sink: ChangeSink, *, since: ClusterChange | None = None
    ) -> Callable[[], None]:
        """Hand every change of ``watch`` after ``since`` to ``sink``, each once, in order.

        ``since`` is the state the caller already has (from :meth:`snapshot`); the
        changes after it that were published meanwhile are read back at once. Without
        ``since``, the watch's current state (if any) comes first, then what follows.

        Returns:
            The function that stops following.
        """

        def guarded(change: ClusterChange) -> None:
            if since is None or change.epoch != since.epoch or change.seq > since.seq:
                sink(change)

        followed = self._followed.get(watch)
        if followed is None:
            followed = self._followed[watch] = _Followed()
            if since is not None:
                followed.epoch, followed.last_seq = since.epoch, since.seq
            self._catch_up(watch, followed)
        followed.sinks.append(guarded)

        def unfollow() -> None:
            if guarded in followed.sinks:
                followed.sinks.remove(guarded)
            if not followed.sinks and self._followed.get(watch) is followed:
                del self._followed[watch]
                if followed.catching_up is not None:
                    followed.catching_up.cancel()

        return unfollow

    def _deliver(self, followed: _Followed, change: ClusterChange) -> None:
        self._enter_epoch(followed, change.epoch)
        if change.seq <= followed.last_seq:
            return  # heard twice: live and read back
        followed.last_seq = change.seq
        for sink in tuple(followed.sinks):
            sink(change)

    def _heard(self, watch: WatchName, change: ClusterChange) -> None:
        followed = self._followed.get(watch)
        if followed is None:
            return
        self.link.metrics.changes_received.labels(source="live").inc()
        self._enter_epoch(followed, change.epoch)
        followed.newest_heard = max(followed.newest_heard, change.seq)
        if followed.catching_up is None and change.seq == followed.last_seq + 1:
            self._deliver(followed, change)
        elif change.seq > followed.last_seq:
            self._catch_up(watch, followed)

    @staticmethod
    def _enter_epoch(followed: _Followed, epoch: str) -> None:
        """After Redis restarted empty, sequence numbers start again: so does the follower."""
        if followed.epoch != epoch:
            if followed.epoch is not None:
                followed.last_seq = followed.newest_heard = 0
            followed.epoch = epoch

    def _catch_up(self, watch: WatchName, followed: _Followed) -> None:
        if followed.catching_up is None and self.is_open:
            followed.catching_up = self._tasks.start(self._read_back(watch, followed))

    async def _read_back(self, watch: WatchName, followed: _Followed) -> None:
        """Deliver the changes of ``watch`` after ``last_seq`` from its stream, in order."""
        try:
            while self.is_open:
                epoch = await self.link.call(
                    "catch_up", partial(self.link.client.get, self.link.keys.epoch)
                )
                if epoch is not None:
                    self._enter_epoch(followed, _text(epoch))
                if followed.last_seq == 0:  # a new follower starts from the current state
                    snapshot = await self.snapshot(watch)
                    if snapshot is not None:
                        self._enter_epoch(followed, snapshot.epoch)
                        self._deliver(followed, snapshot)
                entries = await self.link.call(
                    "catch_up",
                    partial(
                        self.link.client.xrange,
                        self.link.keys.changes(watch),
                        min=f"{followed.last_seq + 1}-0",
                    ),
                )
                for _, fields in entries or ():
                    if fields is None:
                        continue
                    self.link.metrics.changes_received.labels(source="catch_up").inc()
                    self._deliver(followed, _decode(watch, fields[b"change"]))
                if followed.newest_heard <= followed.last_seq:
                    return
        except ClusterUnavailable:
            return  # the listener catches up again once Redis answers
        finally:
            followed.catching_up = None

    async def _listen(self) -> None:
        while self.is_open:
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await self.link.call(
                    "subscribe", partial(pubsub.subscribe, self.link.keys.channel), queued=False
                )
                for watch, followed in self._followed.items():
                    self._catch_up(watch, followed)  # what was published while away
                self._listening.set()
                await self._receive(pubsub)
            except ClusterUnavailable:
                await asyncio.sleep(self.link.heartbeat)
            finally:
                self._listening.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _receive(self, pubsub: PubSub) -> None:
        while self.is_open:
            message = await self.link.call(
                "receive", lambda: pubsub.get_message(timeout=RECEIVE_TIMEOUT), queued=False
            )
            if message is None or message.get("type") != "message":
                continue
            slug, _, raw = bytes(message["data"]).partition(b"\n")
            try:
                watch = WatchName.from_slug(slug.decode())
            except ValueError:
                continue
            if watch in self._followed:
                self._heard(watch, _decode(watch, raw))
