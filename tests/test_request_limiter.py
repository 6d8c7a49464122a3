"""One request limiter per upstream credential, asked by the live layer and the adapters alike."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from fault_proxy import Fault as ProxyFault
from fault_proxy import budget_ceiling, fault_proxy
from live_support import FAST, Fault, UpstreamProbe, open_engine, wait_for
from redis_support import RedisServer
from runcast.app import create_app
from runcast.engine import Engine
from runcast.engine.cloudflare_api import create_cloudflare_app
from runcast.engine.server import create_engine_app
from runcast.errors import RateLimited, UpstreamUnavailable
from runcast.live import LiveHub, RunChange
from runcast.live.cluster import (
    ClusterBudget,
    ClusterKeys,
    ClusterMetrics,
    RedisLink,
    cluster_limits,
)
from runcast.metrics import Metrics
from runcast.models import ANONYMOUS, Credentials
from runcast.readiness import BudgetCheck
from runcast.settings import Settings
from runcast.upstream import CLIENT_MAX_WAIT, RequestBudget
from runcast.upstream.awaitstep import AwaitStepUpstream
from runcast.upstream.cloudflare import CloudflareUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

RUN_QUERY = 'query($i: ID!) { run(workflowId: "waiter", instanceId: $i) { status } }'


class FakeClock:
    """A clock that moves only when slept on."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Move the clock on by ``seconds``."""
        self.now += seconds


async def collect(changes: AsyncIterator[RunChange], into: list[RunChange]) -> None:
    """Append every change to ``into`` until the stream ends."""
    async for change in changes:
        into.append(change)


@asynccontextmanager
async def probed(
    tmp_path: Path, serve: Serve, app: Callable[[Engine], ASGIApp]
) -> AsyncIterator[tuple[Engine, UpstreamProbe, str]]:
    """An engine and one of its REST apps behind a probe on a real socket."""
    async with open_engine(tmp_path) as engine:
        probe = UpstreamProbe(app(engine))
        async with serve(probe) as url:
            yield engine, probe, url


async def test_a_caller_that_cannot_wait_long_is_refused_with_retry_after() -> None:
    """``within`` bounds the wait: a longer one raises RateLimited naming the seconds."""
    clock = FakeClock()
    budget = RequestBudget(0.2, clock=clock, sleep=clock.sleep)
    await budget.acquire(within=CLIENT_MAX_WAIT)
    with pytest.raises(RateLimited) as refused:
        await budget.acquire(within=CLIENT_MAX_WAIT)
    assert refused.value.retry_after == 6  # whole seconds past the 5 s wait
    assert clock.now == 0  # refused without waiting
    await budget.acquire()  # a poll waits its turn instead
    assert clock.now == pytest.approx(5)
    budget.pause(30)
    with pytest.raises(RateLimited, match="429") as held:
        await budget.acquire(within=CLIENT_MAX_WAIT)
    assert held.value.retry_after == 31


async def test_a_burst_past_the_budget_gets_rate_limited_at_once(
    tmp_path: Path, serve: Serve
) -> None:
    """Client queries beyond the budget are RATE_LIMITED with retryAfter, never sent upstream."""
    settings = Settings(request_budget_per_second=0.2)
    async with probed(tmp_path, serve, create_engine_app) as (engine, probe, url):
        run = await engine.trigger("waiter")
        upstream = AwaitStepUpstream(url, settings=settings)
        try:
            async with (
                serve(create_app(settings, upstream=upstream)) as gateway,
                httpx.AsyncClient(base_url=gateway, timeout=30) as http,
            ):
                query = {"query": RUN_QUERY, "variables": {"i": run.instance_id}}
                first = await http.post("/graphql", json=query)
                burst = await asyncio.gather(*(http.post("/graphql", json=query) for _ in range(3)))
        finally:
            await upstream.aclose()
    assert first.json()["data"]["run"]["status"] is not None
    for answer in burst:
        (error,) = answer.json()["errors"]
        assert error["extensions"]["code"] == "RATE_LIMITED"
        assert error["extensions"]["retryAfter"] == 5
    assert len(probe.gets(run.instance_id)) == 1


async def test_a_429_to_a_query_holds_the_polls_of_its_credential(
    tmp_path: Path, serve: Serve
) -> None:
    """A Retry-After met by an adapter call holds the live layer's polls: one limiter."""
    async with probed(tmp_path, serve, create_engine_app) as (engine, probe, url):
        upstream = AwaitStepUpstream(url, settings=FAST)
        try:
            async with LiveHub(upstream, FAST, metrics=Metrics()) as hub:
                run = await engine.trigger("waiter")
                probe.faults.append(Fault("429", retry_after=0.6))
                with pytest.raises(RateLimited):
                    await upstream.get_run("waiter", run.instance_id, credentials=ANONYMOUS)
                limited = probe.served[0][0]
                received: list[RunChange] = []
                reader = asyncio.create_task(
                    collect(hub.watch_run("waiter", run.instance_id, ANONYMOUS), received)
                )
                await wait_for(lambda: bool(received), what="the first state")
                reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)
        finally:
            await upstream.aclose()
    polls = probe.gets(run.instance_id, since=limited + 0.001)
    assert polls
    assert min(r.at for r in polls) >= limited + 0.55


async def test_a_429_holds_only_the_token_it_was_sent_with(tmp_path: Path, serve: Serve) -> None:
    """Over Cloudflare, a 429 to one token's poll holds that token; another's polls go on."""

    def cloudflare(engine: Engine) -> ASGIApp:
        return create_cloudflare_app(engine, account_id="local", api_tokens=())

    async with probed(tmp_path, serve, cloudflare) as (engine, probe, url):
        upstream = CloudflareUpstream("local", base_url=url + "/client/v4", settings=FAST)
        try:
            async with LiveHub(upstream, FAST, metrics=Metrics()) as hub:
                run = await engine.trigger("waiter")
                received: dict[str, list[RunChange]] = {"a": [], "b": []}
                readers = [
                    asyncio.create_task(
                        collect(hub.watch_run("waiter", run.instance_id, Credentials(t)), into)
                    )
                    for t, into in received.items()
                ]
                await wait_for(lambda: all(received.values()), what="both first states")
                probe.faults.append(Fault("429", retry_after=60))
                await wait_for(lambda: not probe.faults, what="the 429 to be served")
                limited = probe.served[0][0]
                held = [r for r in probe.requests if r.at <= limited][-1].token
                other = "b" if held == "a" else "a"
                await wait_for(
                    lambda: len([r for r in probe.gets(since=limited) if r.token == other]) >= 3,
                    what="the other token's polls",
                )
                for reader in readers:
                    reader.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
        finally:
            await upstream.aclose()
    assert [r for r in probe.gets(since=limited + 0.05) if r.token == held] == []


async def test_the_budget_check_reads_the_cluster_bucket(redis_server: RedisServer) -> None:
    """In cluster mode /readyz's budget entry is Redis's bucket: available, exhausted, paused."""
    links = [
        RedisLink(redis_server.url, keys=ClusterKeys("t"), metrics=ClusterMetrics(reg))
        for reg in (CollectorRegistry(), CollectorRegistry())
    ]
    try:
        for link in links:
            await link.__aenter__()
        first, second = (ClusterBudget(link, "awaitstep", 0.001, burst=1.0) for link in links)
        check = BudgetCheck(second)
        assert (await check.check())["state"] == "available"
        await first.acquire()  # the cluster's one token, taken by the other replica
        assert (await check.check())["state"] == "exhausted"
        first.pause(30)
        await first.aclose()  # the hold is written
        paused = await check.check()
        assert (paused["state"], paused["ok"]) == ("paused", False)
        assert 29 < paused.get("paused_for_s", 0) <= 30
    finally:
        for link in links:
            await link.aclose()


async def test_retries_on_two_replicas_stay_within_one_cluster_budget(
    serve: Serve, engine: Engine, redis_server: RedisServer
) -> None:
    """Reads and their retries after 503s, from two replicas, keep to one budget in Redis."""

    def plan(index: int, method: str, path: str) -> ProxyFault:
        return "503" if method == "GET" and index % 3 == 2 else "forward"

    settings = Settings(upstream_get_retries=3)
    links = [
        RedisLink(redis_server.url, keys=ClusterKeys("t"), metrics=ClusterMetrics(reg))
        for reg in (CollectorRegistry(), CollectorRegistry())
    ]
    async with serve(create_engine_app(engine)) as url, fault_proxy(url, plan) as proxy:
        adapters = [AwaitStepUpstream(proxy.url, settings=settings) for _ in links]
        try:
            run = await adapters[0].trigger("sleepy", credentials=ANONYMOUS)
            for adapter, link in zip(adapters, links, strict=True):
                await link.__aenter__()
                adapter.limit_requests(cluster_limits(link, "awaitstep", 4.0, None, "secret"))

            async def reads(adapter: AwaitStepUpstream) -> None:
                for _ in range(12):
                    with contextlib.suppress(RateLimited, UpstreamUnavailable):
                        await adapter.get_run("sleepy", run.instance_id, credentials=ANONYMOUS)

            await asyncio.gather(*(reads(adapter) for adapter in adapters))
        finally:
            for adapter in adapters:
                await adapter.aclose()
            for link in links:
                await link.aclose()
    assert any(a.fault == "503" for a in proxy.arrivals)
    assert proxy.count("GET") > 8
    # One GCRA bucket of 4/s holding 4 for both: at most 4 + 4 in any second.
    assert proxy.most_in_any_window(1.0) <= budget_ceiling(rate=4, burst=4)
