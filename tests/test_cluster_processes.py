"""Cluster mode with real processes: `runcast engine`, three `runcast serve --redis`, Redis.

The replicas reach the engine through a counting proxy (replica ``rN`` through the
path prefix ``/rN``), so every upstream request is attributed to the replica that sent it.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from starlette.types import ASGIApp

from cluster_support import CLUSTER_WORKFLOWS, CountingProxy, Process, sample, start
from live_support import RUN_STATUS, GraphQLErrors, GraphQLSocket, wait_for
from redis_support import RedisServer

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
SECRET = "cluster-test-secret"
TOKENS = ("token-alpha-0123456789", "token-bravo-9876543210")


@dataclass
class Deployment:
    """The engine, the proxy in front of it, and the replicas (``r1``, ``r2``, ...)."""

    engine: Process
    proxy: CountingProxy
    replicas: dict[str, Process]

    async def trigger(self, workflow: str = "stepper") -> str:
        """Start a run on the engine directly; returns its instance id."""
        async with httpx.AsyncClient(timeout=10, headers=_auth(TOKENS[0])) as client:
            answer = await client.post(
                f"{self.engine.url}/api/v1/workflows/{workflow}/runs", json={"input": {}}
            )
            answer.raise_for_status()
            return str(answer.json()["instanceId"])

    async def send(self, instance_id: str, event_type: str) -> None:
        """Send an event to a stepper run, on the engine directly."""
        async with httpx.AsyncClient(timeout=10, headers=_auth(TOKENS[0])) as client:
            answer = await client.post(
                f"{self.engine.url}/api/v1/workflows/stepper/runs/{instance_id}/events",
                json={"eventType": event_type, "payload": {}},
            )
            answer.raise_for_status()

    async def holders(self) -> list[str]:
        """The replicas that hold at least one lease now."""
        held = []
        for name, replica in self.replicas.items():
            alive = replica.process.returncode is None
            if alive and await sample(replica.url, "runcast_cluster_leases_held") >= 1:
                held.append(name)
        return held


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def deployment(
    tmp_path: Path,
    serve: Serve,
    redis: RedisServer,
    *,
    replicas: int = 3,
    budget: float = 50.0,
    lease: float = 2.0,
) -> AsyncIterator[Deployment]:
    """Start `runcast engine`, the counting proxy and ``replicas`` gateways in cluster mode."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name, text in CLUSTER_WORKFLOWS.items():
        (folder / name).write_text(text)
    async with AsyncExitStack() as stack:
        keys = [arg for token in TOKENS for arg in ("--api-key", token)]
        engine = await start(
            "engine",
            ["engine", "--workflows", str(folder), "--db", str(tmp_path / "e.db"), *keys],
            tmp_path,
            {},
        )
        stack.push_async_callback(engine.stop)
        proxy = CountingProxy(engine.url)
        proxy_url = await stack.enter_async_context(serve(proxy))
        env = {
            "RUNCAST_CLUSTER_SECRET": SECRET,
            "RUNCAST_CLUSTER_LEASE_SECONDS": str(lease),
            "RUNCAST_POLL_MIN_INTERVAL": "0.1",
            "RUNCAST_POLL_MAX_INTERVAL": "0.1",
            "RUNCAST_REQUEST_BUDGET_PER_SECOND": str(budget),
            "RUNCAST_UPSTREAM_GET_RETRIES": "0",
        }
        started: dict[str, Process] = {}
        for index in range(1, replicas + 1):
            name = f"r{index}"
            args = ["serve", "--upstream", f"{proxy_url}/{name}", "--redis", redis.url]
            started[name] = await start(name, args, tmp_path, env)
            stack.push_async_callback(started[name].stop)
        yield Deployment(engine, proxy, started)


class Watcher:
    """One runStatus subscriber on one replica, collecting its updates as they come."""

    def __init__(self, replica: str, url: str, instance_id: str, token: str = TOKENS[0]) -> None:
        self.replica = replica
        self.updates: list[dict[str, Any]] = []
        self.error: GraphQLErrors | None = None
        self.task = asyncio.create_task(self._run(url, instance_id, token))

    @property
    def statuses(self) -> list[str]:
        """The statuses received so far."""
        return [update["status"] for update in self.updates]

    async def _run(self, url: str, instance_id: str, token: str) -> None:
        variables = {"workflowId": "stepper", "instanceId": instance_id}
        async with GraphQLSocket.connect(url, token=token) as socket:
            await socket.subscribe("1", RUN_STATUS, variables)
            while True:
                async with asyncio.timeout(60):
                    message = await socket.receive()
                if message["type"] == "next":
                    payload = message["payload"]
                    if payload.get("errors"):
                        self.error = GraphQLErrors(payload["errors"])
                        return
                    self.updates.append(payload["data"]["runStatus"])
                elif message["type"] == "error":
                    self.error = GraphQLErrors(message["payload"])
                    return
                else:
                    return

    def assert_in_order_once(self) -> None:
        """Each update links to the one before it, no status twice in a row, ending complete."""
        statuses = self.statuses
        assert statuses[-1] == "COMPLETE", (self.replica, statuses)
        assert all(a != b for a, b in itertools.pairwise(statuses)), statuses
        assert [u["previousStatus"] for u in self.updates] == [None, *statuses[:-1]]
        order = [s for s in statuses if s in {"WAITING", "COMPLETE"}]
        assert order == ["WAITING", "COMPLETE"], (self.replica, statuses)


async def watchers_on(d: Deployment, instance_id: str, per_replica: int = 2) -> list[Watcher]:
    """``per_replica`` subscribers on every replica, once each has its first state."""
    watchers = [
        Watcher(name, replica.url, instance_id)
        for name, replica in d.replicas.items()
        for _ in range(per_replica)
    ]
    await wait_for(lambda: all(w.updates for w in watchers), within=30, what="first states")
    return watchers


async def test_subscribers_spread_over_replicas_cost_one_poller(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """Subscribers of one run on three replicas: one replica polls it; all get every change."""
    async with deployment(tmp_path, serve, redis_server) as d:
        instance_id = await d.trigger()
        watchers = await watchers_on(d, instance_id)
        assert all(w.statuses == ["PAUSED"] for w in watchers)
        assert len(await d.holders()) == 1
        since = time.monotonic()
        await d.send(instance_id, "first")
        await wait_for(lambda: all("WAITING" in w.statuses for w in watchers), within=30)
        await wait_for(lambda: all(w.statuses[-1] == "PAUSED" for w in watchers), within=30)
        await d.send(instance_id, "second")
        await asyncio.wait_for(asyncio.gather(*(w.task for w in watchers)), timeout=30)
        for watcher in watchers:
            watcher.assert_in_order_once()
        polled = d.proxy.by_replica(since=since, run=instance_id)
        assert len(polled) == 1, polled  # one replica polled the run for everyone


async def test_cluster_stays_within_one_budget(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """More watches than the budget, over three replicas: the upstream sees one budget's rate."""
    budget = 5.0
    async with deployment(tmp_path, serve, redis_server, budget=budget) as d:
        runs = [await d.trigger() for _ in range(9)]
        watchers = [
            Watcher(name, replica.url, runs[index * 3 + offset])
            for index, (name, replica) in enumerate(d.replicas.items())
            for offset in range(3)
        ]
        await wait_for(lambda: all(w.updates for w in watchers), within=60, what="first states")
        since = time.monotonic()
        await asyncio.sleep(4.0)
        hits = d.proxy.requests(since=since)
        elapsed = time.monotonic() - since
        # 9 watches polled every 0.1 s would be 90 requests/s; the cluster gets 5.
        assert len(hits) <= budget * elapsed + budget + 2, (len(hits), elapsed)
        assert len({h.replica for h in hits}) >= 2  # the budget is shared, not one replica's
        for watcher in watchers:
            watcher.task.cancel()
        await asyncio.gather(*(w.task for w in watchers), return_exceptions=True)


async def test_kill_9_of_the_lease_holder_loses_no_transition(
    tmp_path: Path,
    serve: Serve,
    redis_server: RedisServer,
    record_property: Callable[[str, object], None],
) -> None:
    """After kill -9 of the holder, the others take over and their subscribers miss nothing."""
    async with deployment(tmp_path, serve, redis_server, lease=1.0) as d:
        instance_id = await d.trigger()
        watchers = await watchers_on(d, instance_id)
        (holder,) = await d.holders()
        killed_at = time.monotonic()
        await d.replicas[holder].kill()
        survivors = [w for w in watchers if w.replica != holder]
        await wait_for(lambda: _one_holder(d), within=30, what="a takeover")
        takeover = time.monotonic() - killed_at
        record_property("takeover_seconds", round(takeover, 3))
        print(f"takeover after kill -9 of the holder: {takeover:.2f} s")
        await d.send(instance_id, "first")
        await wait_for(lambda: all("WAITING" in w.statuses for w in survivors), within=30)
        await wait_for(lambda: all(w.statuses[-1] == "PAUSED" for w in survivors), within=30)
        await d.send(instance_id, "second")
        await asyncio.wait_for(asyncio.gather(*(w.task for w in survivors)), timeout=30)
        for watcher in survivors:
            watcher.assert_in_order_once()
        for watcher in watchers:
            watcher.task.cancel()
        await asyncio.gather(*(w.task for w in watchers), return_exceptions=True)


async def _one_holder(d: Deployment) -> bool:
    return len(await d.holders()) == 1


async def test_kill_9_of_a_holder_of_many_runs_loses_no_transition(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """Many runs held across replicas, one holder killed: every survivor sees every change once."""
    async with deployment(tmp_path, serve, redis_server, lease=1.0) as d:
        runs = [await d.trigger() for _ in range(6)]
        names = list(d.replicas)
        watchers: list[Watcher] = []
        for index, instance_id in enumerate(runs):
            # The run's first subscriber (so its holder) is on replica index % 3.
            order = names[index % 3 :] + names[: index % 3]
            for name in order:
                watcher = Watcher(name, d.replicas[name].url, instance_id)
                await wait_for(lambda w=watcher: bool(w.updates), within=30, what="first state")
                watchers.append(watcher)
        assert len(await d.holders()) == 3
        await d.replicas["r1"].kill()
        survivors = [w for w in watchers if w.replica != "r1"]
        await wait_for(lambda: _held_by_survivors(d, len(runs)), within=30, what="a takeover")
        for instance_id in runs:
            await d.send(instance_id, "first")
        await wait_for(lambda: all("WAITING" in w.statuses for w in survivors), within=30)
        await wait_for(lambda: all(w.statuses[-1] == "PAUSED" for w in survivors), within=30)
        for instance_id in runs:
            await d.send(instance_id, "second")
        await asyncio.wait_for(asyncio.gather(*(w.task for w in survivors)), timeout=30)
        for watcher in survivors:
            watcher.assert_in_order_once()


async def _held_by_survivors(d: Deployment, runs: int) -> bool:
    held = 0.0
    for replica in d.replicas.values():
        if replica.process.returncode is None:
            held += await sample(replica.url, "runcast_cluster_leases_held")
    return held >= runs


async def test_redis_killed_and_restarted_mid_run(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """Without Redis, replicas poll alone within their share; subscribers reach the end."""
    budget = 6.0
    async with deployment(tmp_path, serve, redis_server, budget=budget) as d:
        instance_id = await d.trigger()
        watchers = await watchers_on(d, instance_id)
        await redis_server.kill()
        for replica in d.replicas.values():
            await wait_for(lambda r=replica: _alone(r), within=30, what="replicas alone")
        since = time.monotonic()
        await d.send(instance_id, "first")
        await wait_for(lambda: all("WAITING" in w.statuses for w in watchers), within=30)
        await wait_for(lambda: all(w.statuses[-1] == "PAUSED" for w in watchers), within=30)
        hits = d.proxy.requests(since=since)
        elapsed = time.monotonic() - since
        assert len(hits) <= budget * elapsed + budget + 3, (len(hits), elapsed)
        ready = await _readyz(d.replicas["r1"].url)
        assert ready["checks"]["cluster"]["state"] == "alone"
        await redis_server.start()
        for replica in d.replicas.values():
            await wait_for(lambda r=replica: _shared(r), within=30, what="replicas rejoined")
        await d.send(instance_id, "second")
        await asyncio.wait_for(asyncio.gather(*(w.task for w in watchers)), timeout=30)
        for watcher in watchers:
            watcher.assert_in_order_once()
        for replica in d.replicas.values():
            said = replica.output().count("is unreachable; polling alone")
            assert said == 1, replica.output()


async def _alone(replica: Process) -> bool:
    return await sample(replica.url, "runcast_cluster_redis_up") == 0


async def _shared(replica: Process) -> bool:
    return await sample(replica.url, "runcast_cluster_redis_up") == 1


async def _readyz(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as client:
        body: dict[str, Any] = (await client.get(url + "/readyz")).json()
        return body


async def test_credentials_stay_apart_and_no_token_reaches_redis(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """A run one credential may not read never reaches it; Redis holds no token anywhere."""
    async with deployment(tmp_path, serve, redis_server) as d:
        instance_id = await d.trigger()
        d.proxy.forbid[TOKENS[1]] = {instance_id}
        allowed = Watcher("r1", d.replicas["r1"].url, instance_id, TOKENS[0])
        refused = Watcher("r2", d.replicas["r2"].url, instance_id, TOKENS[1])
        await wait_for(lambda: bool(allowed.updates), within=30, what="the allowed first state")
        await asyncio.wait_for(refused.task, timeout=30)
        assert refused.updates == []
        assert refused.error is not None
        assert refused.error.codes == ["FORBIDDEN"]
        await d.send(instance_id, "first")
        await wait_for(lambda: "WAITING" in allowed.statuses, within=30)
        assert refused.updates == []
        client = aioredis.Redis.from_url(redis_server.url)
        try:
            stored = await _everything(client)
        finally:
            await client.aclose()
        assert stored, "cluster mode wrote nothing to Redis"
        for token in TOKENS:
            assert token.encode() not in stored
        allowed.task.cancel()
        await asyncio.gather(allowed.task, return_exceptions=True)


async def _everything(client: aioredis.Redis) -> bytes:
    """Every key and every value in Redis, as one byte string."""
    parts: list[bytes] = []
    async for key in client.scan_iter(count=500):
        parts.append(key)
        kind = (await client.type(key)).decode()
        if kind == "string":
            parts.append(await client.get(key) or b"")
        elif kind == "hash":
            for field, value in (await client.hgetall(key)).items():
                parts += [field, value]
        elif kind == "zset":
            parts += [member for member, _ in await client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _, fields in await client.xrange(key):
                for field, value in fields.items():
                    parts += [field, value]
        else:
            pytest.fail(f"unexpected Redis type {kind} at {key!r}")
    return b"\n".join(parts)
