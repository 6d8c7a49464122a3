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

from fault_proxy import Fault, fault_proxy
from live_support import (
    FAST,
    RUN_STATUS,
    WORKFLOW_RUNS,
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


async def collect(
    url: str, instance_id: str, into: list[dict[str, Any]], *, token: str | None = None
) -> None:
    """Subscribe to ``runStatus`` of a waiter run on ``url`` and append every update."""
    async with GraphQLSocket.connect(url, token=token) as socket:
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


async def _gauge(url: str, name: str) -> float:
    """One unlabelled sample of a gateway's /metrics (0 when absent)."""
    async with httpx.AsyncClient() as client:
        text = (await client.get(url + "/metrics")).text
    found = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def test_a_new_holder_of_workflow_runs_delivers_what_changed_in_between(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """The next holder of a workflowRuns watch starts from the last one's view, not a new one."""
    settings = cluster_settings(redis_server).replace(cluster_lease_seconds=3.0)
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(tmp_path))
        upstream_url = await stack.enter_async_context(serve(create_engine_app(engine)))
        run = await engine.trigger("waiter", input={})
        urls = []
        for _ in range(2):
            adapter = AwaitStepUpstream(upstream_url, settings=settings)
            stack.push_async_callback(adapter.aclose)
            app = create_app(settings, upstream=adapter)
            urls.append(await stack.enter_async_context(serve(app)))
        first, second = urls
        async with GraphQLSocket.connect(second) as watching:
            async with GraphQLSocket.connect(first) as leaving:
                await leaving.subscribe("1", WORKFLOW_RUNS, {"workflowId": "waiter"})
                await wait_for(lambda: _listed(first), what="the first replica's baseline")
                await watching.subscribe("1", WORKFLOW_RUNS, {"workflowId": "waiter"})
                await wait_for(lambda: _subscribed(second), what="the second subscriber")
            # The first replica's last subscriber left: it hands the watch back; then the run
            # finishes, before the second replica's first poll as the holder.
            await wait_for(lambda: _holds_nothing(first), what="the lease handed back")
            await engine.send_event("waiter", run.instance_id, event_type="go")
            statuses: list[str] = []
            while "COMPLETE" not in statuses:
                async with asyncio.timeout(20):
                    message = await watching.receive()
                assert message["type"] == "next", message
                update = message["payload"]["data"]["workflowRuns"]
                assert update["run"]["instanceId"] == run.instance_id
                statuses.append(update["status"])


async def _listed(url: str) -> bool:
    return await _gauge(url, "runcast_cluster_leases_held") >= 1 and (
        'kind="list",outcome="ok"' in await _metrics(url)
    )


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(url + "/metrics")).text


async def _subscribed(url: str) -> bool:
    return await _gauge(url, "runcast_live_subscribers") >= 1


async def _holds_nothing(url: str) -> bool:
    return await _gauge(url, "runcast_cluster_leases_held") == 0


async def test_retries_after_5xx_take_tokens_of_the_one_cluster_budget(
    tmp_path: Path, serve: Serve, redis_server: RedisServer
) -> None:
    """With most GETs answered 503, polls and their retries on three replicas share one budget."""
    budget = 8.0
    settings = cluster_settings(redis_server).replace(
        request_budget_per_second=budget, upstream_get_retries=3
    )
    failing = False

    def plan(index: int, method: str, path: str) -> Fault:
        return "503" if failing and method == "GET" and index % 4 else "forward"

    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(tmp_path))
        engine_url = await stack.enter_async_context(serve(create_engine_app(engine)))
        proxy = await stack.enter_async_context(fault_proxy(engine_url, plan))
        urls = []
        for _ in range(3):
            adapter = AwaitStepUpstream(proxy.url, settings=settings)
            stack.push_async_callback(adapter.aclose)
            urls.append(
                await stack.enter_async_context(serve(create_app(settings, upstream=adapter)))
            )
        run = await engine.trigger("waiter", input={})
        # One watch per token: twelve watches polled on their own, far more than the budget.
        got: list[list[dict[str, Any]]] = [[] for _ in range(12)]
        tasks = [
            asyncio.create_task(collect(urls[i % 3], run.instance_id, got[i], token=f"token-{i}"))
            for i in range(12)
        ]
        try:
            await wait_for(lambda: all(got), within=30, what="every first state")
            failing = True
            await asyncio.sleep(1.0)
            since = len(proxy.arrivals)
            await asyncio.sleep(3.0)
            window = proxy.arrivals[since:]
            elapsed = window[-1].at - window[0].at
            assert sum(a.fault == "503" for a in window) >= 3  # retried GETs reached the wire
            # Without tokens for retries, each poll would cost up to four requests.
            assert len(window) <= budget * elapsed + budget + 2, (len(window), elapsed)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
