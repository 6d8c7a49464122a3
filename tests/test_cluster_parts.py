"""Cluster mode's building blocks against a real redis-server: leases, bus, budget, link."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from functools import partial

import pytest
from prometheus_client import CollectorRegistry

from live_support import wait_for
from redis_support import RedisServer
from runcast.live.cluster import (
    STALE,
    ClusterBudget,
    ClusterChange,
    ClusterKeys,
    ClusterMetrics,
    LeaseKeeper,
    RedisChangeBus,
    RedisLink,
    WatchName,
    cluster_fingerprint,
)
from runcast.models import Credentials, Run, RunStatus, RunWait, RunWaitReason, Step

WATCH = WatchName("f" * 32, "approval", "order-1")

LinkFactory = Callable[..., RedisLink]


@pytest.fixture
async def links(redis_server: RedisServer) -> AsyncIterator[LinkFactory]:
    """Open RedisLinks (one per simulated replica) to the test server, closed after."""
    async with AsyncExitStack() as stack:
        opened: list[RedisLink] = []

        def make(replica_id: str | None = None, heartbeat: float = 0.1) -> RedisLink:
            link = RedisLink(
                redis_server.url,
                keys=ClusterKeys("t"),
                metrics=ClusterMetrics(CollectorRegistry()),
                replica_id=replica_id,
                heartbeat=heartbeat,
            )
            opened.append(link)
            stack.push_async_callback(link.aclose)
            return link

        yield make


def run_in(status: RunStatus, *, output: object = None) -> Run:
    """A run of WATCH in ``status``, with a step, so every field crosses the wire."""
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    return Run(
        workflow_id="approval",
        instance_id="order-1",
        status=status,
        raw_status=status.value,
        input={"orderId": 1},
        output=output,
        created_at=now,
        steps=(Step("reserve", "step", "complete", 1, {"ok": True}, None, now, now),),
        workflow_version="v-1",
        wait=RunWait(RunWaitReason.EVENT, "approval", now),
    )


def test_fingerprints_are_keyed_and_reveal_no_token() -> None:
    """The cluster fingerprint depends on the secret, is stable, and does not contain the token."""
    token = "sk-live-abcdef123456"
    credentials = Credentials(token)
    one = cluster_fingerprint(credentials, "secret-1")
    assert one == cluster_fingerprint(Credentials(token), "secret-1")
    assert one != cluster_fingerprint(credentials, "secret-2")
    assert one != cluster_fingerprint(Credentials(token, scheme="Basic"), "secret-1")
    assert token not in one
    assert credentials.fingerprint not in one
    assert cluster_fingerprint(Credentials(None), "secret-1") == "anonymous"


def test_watch_names_survive_their_slug() -> None:
    """A watch's slug names it alone, even when ids hold the separator."""
    for watch in (WATCH, WatchName("x", "a:b", "c/d:e"), WatchName("x", "a:b")):
        assert WatchName.from_slug(watch.slug) == watch
    assert WatchName("x", "a:b").slug != WatchName("x", "a", "b").slug
    with pytest.raises(ValueError, match="not a watch name"):
        WatchName.from_slug("lease:nothing")


async def test_one_replica_holds_a_lease_and_fences_rise(links: LinkFactory) -> None:
    """Of two competitors one holds the lease; after it lapses the other takes it, fence 2."""
    a, b = await links("a").__aenter__(), await links("b").__aenter__()
    gained: list[tuple[str, int]] = []
    keeper_a = LeaseKeeper(
        a,
        ttl=0.3,
        on_gained=lambda w, f: gained.append(("a", f)),
        on_lost=lambda w: gained.append(("a-lost", 0)),
    )
    keeper_b = LeaseKeeper(
        b, ttl=0.3, on_gained=lambda w, f: gained.append(("b", f)), on_lost=lambda w: None
    )
    keeper_a.compete(WATCH)
    keeper_b.compete(WATCH)
    await keeper_a.round()
    await keeper_b.round()
    assert gained == [("a", 1)]
    assert keeper_a.fence(WATCH) == 1
    assert keeper_b.fence(WATCH) is None
    await keeper_a.round()  # renewed: still a's, same fence
    assert keeper_a.fence(WATCH) == 1

    async def b_took_over() -> bool:
        await keeper_b.round()
        return keeper_b.fence(WATCH) is not None

    await wait_for(b_took_over, what="the lease to lapse to b")  # a stopped renewing
    assert keeper_b.fence(WATCH) == 2
    assert b.metrics.takeovers._value.get() == 1
    await keeper_a.round()  # a notices it lost the lease
    assert keeper_a.fence(WATCH) is None
    assert gained == [("a", 1), ("b", 2), ("a-lost", 0)]


async def test_stopping_gracefully_hands_leases_back_at_once(links: LinkFactory) -> None:
    """A keeper that closes releases its leases, so the next round elsewhere takes them."""
    a, b = await links("a").__aenter__(), await links("b").__aenter__()
    lost: list[WatchName] = []
    keeper_a = LeaseKeeper(a, ttl=60.0, on_gained=lambda w, f: None, on_lost=lost.append)
    keeper_b = LeaseKeeper(b, ttl=60.0, on_gained=lambda w, f: None, on_lost=lambda w: None)
    async with keeper_a:
        keeper_a.compete(WATCH)
        await wait_for(lambda: keeper_a.fence(WATCH) is not None, what="a to hold")
        keeper_b.compete(WATCH)
        await keeper_b.round()
        assert keeper_b.fence(WATCH) is None
    assert lost == [WATCH]
    await keeper_b.round()  # long before the 60 s lease would have expired
    assert keeper_b.fence(WATCH) == 2


async def test_a_run_goes_to_the_holder_of_its_workflow(links: LinkFactory) -> None:
    """A run's lease goes to the holder of its workflow's; another takes it only if unwanted."""
    a, b = await links("a").__aenter__(), await links("b").__aenter__()
    leader, alone = WatchName("f" * 32, "approval"), WatchName("f" * 32, "approval", "order-2")
    keeper_a = LeaseKeeper(a, ttl=0.4, on_gained=lambda w, f: None, on_lost=lambda w: None)
    keeper_b = LeaseKeeper(b, ttl=0.4, on_gained=lambda w, f: None, on_lost=lambda w: None)
    for keeper in (keeper_a, keeper_b):
        keeper.compete(leader)
        keeper.compete(WATCH, leader=leader)
    await keeper_a.round()  # takes the workflow; only looks at the run
    assert (keeper_a.fence(leader), keeper_a.fence(WATCH)) == (1, None)
    await keeper_b.round()  # the run is free, but b defers to the workflow's holder
    await keeper_a.round()
    assert keeper_a.fence(WATCH) == 1
    await asyncio.sleep(0.2)  # past b's deferral
    await keeper_b.round()
    assert (keeper_b.fence(leader), keeper_b.fence(WATCH)) == (None, None)
    keeper_b.compete(alone, leader=leader)  # a run only b watches: b takes it after deferring
    await keeper_b.round()
    assert keeper_b.fence(alone) is None

    async def b_took_it() -> bool:
        await keeper_b.round()
        return keeper_b.fence(alone) is not None

    await wait_for(b_took_it, what="b to take the run a does not watch")


async def test_a_burst_of_commands_waits_its_turn(links: LinkFactory) -> None:
    """Hundreds of commands at once wait for a connection instead of making Redis look gone."""
    link = await links("a").__aenter__()
    counts = await asyncio.gather(
        *(link.call("burst", partial(link.client.incr, "t:burst")) for _ in range(300))
    )
    assert sorted(counts) == list(range(1, 301))
    assert link.up


async def test_withdrawn_watch_is_released(links: LinkFactory) -> None:
    """Withdrawing a held watch releases its lease for the other replicas."""
    a, b = await links("a").__aenter__(), await links("b").__aenter__()
    keeper_a = LeaseKeeper(a, ttl=60.0, on_gained=lambda w, f: None, on_lost=lambda w: None)
    keeper_b = LeaseKeeper(b, ttl=60.0, on_gained=lambda w, f: None, on_lost=lambda w: None)
    keeper_a.compete(WATCH)
    await keeper_a.round()
    await keeper_a.withdraw(WATCH)
    assert keeper_a.held_count == 0
    keeper_b.compete(WATCH)
    await keeper_b.round()
    assert keeper_b.fence(WATCH) == 2


async def test_changes_reach_followers_in_order_once(links: LinkFactory) -> None:
    """Published changes reach every follower once, in seq order; repeats publish nothing."""
    holder, reader = await links("h").__aenter__(), await links("r").__aenter__()
    async with RedisChangeBus(holder) as out, RedisChangeBus(reader) as bus:
        await bus.listening()
        got: list[ClusterChange] = []
        unfollow = bus.follow(WATCH, got.append)
        now = datetime.now(UTC)
        assert await out.publish(WATCH, 1, run_in(RunStatus.QUEUED), now) == 1
        assert await out.publish(WATCH, 1, run_in(RunStatus.QUEUED), now) == 0
        assert await out.publish(WATCH, 1, run_in(RunStatus.RUNNING), now) == 2
        assert await out.publish(WATCH, 1, run_in(RunStatus.COMPLETE, output={"a": 1}), now) == 3
        await wait_for(lambda: len(got) == 3, what="three changes")
        assert [c.seq for c in got] == [1, 2, 3]
        assert got[2].run == run_in(RunStatus.COMPLETE, output={"a": 1})
        assert got[0].observed_at == now
        unfollow()
        assert holder.metrics.changes_published._value.get() == 3


async def test_new_follower_gets_the_snapshot_and_what_followed(links: LinkFactory) -> None:
    """A late follower starts from the stored state and receives only the changes after it."""
    holder, reader = await links("h").__aenter__(), await links("r").__aenter__()
    async with RedisChangeBus(holder) as out, RedisChangeBus(reader) as bus:
        now = datetime.now(UTC)
        assert await bus.snapshot(WATCH) is None
        for status in (RunStatus.QUEUED, RunStatus.RUNNING):
            await out.publish(WATCH, 1, run_in(status), now)
        snapshot = await bus.snapshot(WATCH)
        assert snapshot is not None
        assert snapshot.seq == 2
        assert snapshot.run.status is RunStatus.RUNNING
        await out.publish(WATCH, 1, run_in(RunStatus.PAUSED), now)  # before following
        got: list[ClusterChange] = []
        bus.follow(WATCH, got.append, since=snapshot)
        await bus.listening()
        await wait_for(lambda: [c.seq for c in got] == [3], what="the missed change read back")
        await out.publish(WATCH, 1, run_in(RunStatus.COMPLETE), now)
        await wait_for(lambda: [c.seq for c in got] == [3, 4], what="the live change")


async def test_stale_holder_publications_are_refused(links: LinkFactory) -> None:
    """After a new holder took the lease, the old holder's fence publishes nothing."""
    a, b = await links("a").__aenter__(), await links("b").__aenter__()
    keeper_a = LeaseKeeper(a, ttl=0.2, on_gained=lambda w, f: None, on_lost=lambda w: None)
    keeper_b = LeaseKeeper(b, ttl=0.2, on_gained=lambda w, f: None, on_lost=lambda w: None)
    keeper_a.compete(WATCH)
    keeper_b.compete(WATCH)
    await keeper_a.round()

    async def b_holds() -> bool:
        await keeper_b.round()
        return keeper_b.fence(WATCH) is not None

    await wait_for(b_holds, what="b to take over")
    async with RedisChangeBus(a) as old, RedisChangeBus(b) as new:
        now = datetime.now(UTC)
        assert await new.publish(WATCH, 2, run_in(RunStatus.RUNNING), now) == 1
        assert await old.publish(WATCH, 1, run_in(RunStatus.ERRORED), now) == STALE
        snapshot = await new.snapshot(WATCH)
        assert snapshot is not None
        assert snapshot.run.status is RunStatus.RUNNING
        assert a.metrics.changes_stale._value.get() == 1


async def test_followers_survive_a_redis_restart(
    links: LinkFactory, redis_server: RedisServer
) -> None:
    """When Redis restarts empty, followers reconnect and take the new sequence from 1."""
    holder, reader = await links("h").__aenter__(), await links("r").__aenter__()
    async with RedisChangeBus(holder) as out, RedisChangeBus(reader) as bus:
        await bus.listening()
        got: list[ClusterChange] = []
        bus.follow(WATCH, got.append)
        now = datetime.now(UTC)
        # One at a time: a follower whose first read-back comes after both would start from
        # the current state (RUNNING) alone, as a new follower should.
        await out.publish(WATCH, 1, run_in(RunStatus.QUEUED), now)
        await wait_for(lambda: len(got) == 1, what="the first change")
        await out.publish(WATCH, 1, run_in(RunStatus.RUNNING), now)
        await wait_for(lambda: len(got) == 2, what="two changes")
        await redis_server.kill()
        await wait_for(lambda: not reader.up, what="the reader to see Redis gone")
        await redis_server.start()
        await wait_for(lambda: reader.up and holder.up, what="both links back")
        await bus.listening()
        await out.publish(WATCH, 1, run_in(RunStatus.COMPLETE), now)
        await wait_for(lambda: len(got) == 3, what="the change after the restart")
        assert got[2].seq == 1
        assert got[2].epoch != got[1].epoch
        assert got[2].run.status is RunStatus.COMPLETE


async def test_a_hung_redis_counts_as_gone_and_back(
    links: LinkFactory, redis_server: RedisServer
) -> None:
    """Redis that stops answering (SIGSTOP) is gone after two silent heartbeats; back after."""
    link = await links("a").__aenter__()
    assert link.up
    process = redis_server.process
    assert process is not None
    process.send_signal(signal.SIGSTOP)
    try:
        await wait_for(lambda: not link.up, within=30, what="the link to see Redis hung")
    finally:
        process.send_signal(signal.SIGCONT)
    await wait_for(lambda: link.up, within=30, what="the link to see Redis answer again")


async def test_cluster_budget_is_shared_by_every_replica(links: LinkFactory) -> None:
    """Three replicas drawing from one budget get together what one bucket allows."""
    replicas = [await links(name).__aenter__() for name in "abc"]
    budgets = [ClusterBudget(link, "awaitstep", 20.0, burst=5.0) for link in replicas]
    taken = 0
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def draw(budget: ClusterBudget) -> None:
        nonlocal taken
        while loop.time() - started < 1.0:
            await budget.acquire()
            taken += 1

    await asyncio.gather(*(draw(budget) for budget in budgets))
    elapsed = loop.time() - started
    assert taken <= 5 + 20.0 * elapsed + 1, taken
    assert taken >= 10, taken  # and they did share it, not starve
    assert replicas[0].metrics.budget_tokens.labels(budget="awaitstep")._value.get() >= 0


async def test_a_hold_from_one_replica_holds_all(links: LinkFactory) -> None:
    """A 429's Retry-After given to one replica's budget stops the others' requests too."""
    a, b = await links("a").__aenter__(), await links("b").__aenter__()
    first = ClusterBudget(a, "cloudflare", None)
    second = ClusterBudget(b, "cloudflare", None)
    await second.acquire()  # no limit: a token at once
    first.pause(0.5)
    await first.aclose()  # the hold is written
    waiting = asyncio.create_task(second.acquire())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    assert second.paused_for > 0
    await asyncio.wait_for(waiting, timeout=5)


async def test_budget_without_redis_is_an_even_share(
    links: LinkFactory, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis gone each replica takes its share (rate / replicas seen), logged once."""
    a, _b = await links("a").__aenter__(), await links("b").__aenter__()
    await wait_for(lambda: a.replicas == 2, what="both replicas counted")
    budget = ClusterBudget(a, "awaitstep", 10.0, burst=1.0)
    with caplog.at_level(logging.WARNING, logger="runcast.live.cluster._link"):
        await redis_server.kill()
        await wait_for(lambda: not a.up, what="Redis seen gone")
        loop = asyncio.get_running_loop()
        started = loop.time()
        taken = 0
        while loop.time() - started < 1.0:
            await budget.acquire()
            taken += 1
        elapsed = loop.time() - started
    assert taken <= 1 + 5.0 * elapsed + 1, taken  # 10/s shared by 2 replicas
    said = [
        r.getMessage()
        for r in caplog.records
        if f"replica {a.replica_id}:" in r.getMessage() and "unreachable" in r.getMessage()
    ]
    assert len(said) == 1
    assert "1/2 of the budget" in said[0]
    assert a.metrics.redis_up._value.get() == 0
    await redis_server.start()
    await wait_for(lambda: a.up, what="the link to rejoin")
    assert a.metrics.redis_up._value.get() == 1


async def test_a_refunded_token_goes_back_to_the_cluster(links: LinkFactory) -> None:
    """A token given back by one replica can be taken by another at once."""
    a, b = await links("a").__aenter__(), await links("b").__aenter__()
    first = ClusterBudget(a, "slow", 0.01, burst=1.0)  # the next token is 100 s away
    second = ClusterBudget(b, "slow", 0.01, burst=1.0)
    await first.acquire()
    first.refund()
    await first.aclose()  # the refund has reached Redis
    await asyncio.wait_for(second.acquire(), timeout=30)
