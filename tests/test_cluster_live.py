"""Cluster mode in one process: several gateway apps over one Redis share polls and budget."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp

from live_support import (
    FAST,
    RUN_STATUS,
    GraphQLSocket,
    UpstreamProbe,
    open_engine,
    wait_for,
)
from redis_support import RedisServer
from runcast.app import create_app
from runcast.engine import Engine
from runcast.engine.server import create_engine_app
from runcast.settings import Settings
from runcast.upstream.awaitstep import AwaitStepUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]


@dataclass
class Cluster:
    """An engine behind a counting probe, and gateway replicas sharing one Redis."""

    engine: Engine
    probe: UpstreamProbe
    urls: list[str]


def cluster_settings(redis: RedisServer) -> Settings:
    """Quick live-layer settings in cluster mode on ``redis``."""
    return FAST.replace(
        redis_url=redis.url,
        cluster_secret="test-cluster-secret",
        cluster_lease_seconds=1.0,
        request_budget_per_second=50.0,
    )


@asynccontextmanager
async def cluster(
    tmp_path: Path, serve: Serve, redis: RedisServer, *, replicas: int = 3
) -> AsyncIterator[Cluster]:
    """Start the engine, its probe, and ``replicas`` gateways in cluster mode."""
    settings = cluster_settings(redis)
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(tmp_path))
        probe = UpstreamProbe(create_engine_app(engine))
        upstream_url = await stack.enter_async_context(serve(probe))
        urls = []
        for _ in range(replicas):
            adapter = AwaitStepUpstream(upstream_url, settings=settings)
            stack.push_async_callback(adapter.aclose)
            urls.append(
                await stack.enter_async_context(serve(create_app(settings, upstream=adapter)))
            )
        yield Cluster(engine, probe, urls)


async def collect(url: str, instance_id: str, into: list[dict[str, Any]]) -> None:
    """Subscribe to ``runStatus`` of a waiter run on ``url`` and append every update."""
    async with GraphQLSocket.connect(url) as socket:
        await socket.subscribe("1", RUN_STATUS, {"workflowId": "waiter", "instanceId": instance_id})
        while True:
            message = await socket.receive()
            if message["type"] != "next":
                assert message["type"] == "complete", message
                return
            into.append(message["payload"]["data"]["runStatus"])


async def test_subscribers_on_three_replicas_cost_one_poller(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """Subscribers spread over three replicas all get the run's changes; one replica polls."""
    async with cluster(tmp_path, serve, redis_server) as c:
        run = await c.engine.trigger("waiter", input={})
        got: list[list[dict[str, Any]]] = [[] for _ in c.urls]
        tasks = [
            asyncio.create_task(collect(u, run.instance_id, g))
            for u, g in zip(c.urls, got, strict=True)
        ]
        await wait_for(lambda: all(got), what="every replica's first state")
        assert all(g[0]["status"] == "PAUSED" for g in got)
        async with httpx.AsyncClient() as client:
            holders = []
            for url in c.urls:
                text = (await client.get(url + "/metrics")).text
                held = re.search(r"^runcast_cluster_leases_held (\S+)$", text, re.MULTILINE)
                assert held is not None
                holders.append(float(held.group(1)) >= 1)  # the run's, and its workflow's
        assert sum(holders) == 1
        await c.engine.send_event("waiter", run.instance_id, event_type="go")
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=20)
        for updates in got:
            statuses = [u["status"] for u in updates]
            assert statuses in (["PAUSED", "COMPLETE"], ["PAUSED", "RUNNING", "COMPLETE"])
            assert [u["previousStatus"] for u in updates] == [None, *statuses[:-1]]
