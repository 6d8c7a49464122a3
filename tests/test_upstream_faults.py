"""Upstream faults through a counting proxy: every request is budgeted, controls are idempotent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp

from fault_proxy import Fault, FaultProxy, budget_ceiling, fault_proxy
from runcast.app import create_app
from runcast.engine import Engine
from runcast.engine.cloudflare_api import create_cloudflare_app
from runcast.engine.server import create_engine_app
from runcast.errors import RunFinished
from runcast.models import ANONYMOUS, RunStatus
from runcast.settings import Settings
from runcast.tracing import Tracing
from runcast.upstream import LimitedUpstream, local_limits, prepaid_request
from runcast.upstream.awaitstep import AwaitStepUpstream
from runcast.upstream.cloudflare import CloudflareUpstream
from runcast.upstream.factory import open_upstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
Adapter = AwaitStepUpstream | CloudflareUpstream
FAST_RETRIES = Settings(upstream_get_retries=3)


class CountingLimiter:
    """Request limits (no rate) with one limiter for every credential that counts its tokens."""

    rate = None

    def __init__(self) -> None:
        self.taken = 0
        self.paused_for = 0.0

    def limiter(self, key: str) -> CountingLimiter:
        """The one limiter, whatever the credential."""
        return self

    async def acquire(self, *, urgent: bool = False, within: float | None = None) -> None:
        """Count one token."""
        self.taken += 1


def every(n: int, fault: Fault, *, methods: frozenset[str] = frozenset({"GET"})) -> Callable:
    """A plan: ``fault`` for every ``n``-th request with one of ``methods``, forward the rest."""

    def plan(index: int, method: str, path: str) -> Fault:
        return fault if method in methods and index % n == n - 1 else "forward"

    return plan


@asynccontextmanager
async def awaitstep_via_proxy(
    serve: Serve, engine: Engine, plan: Callable[[int, str, str], Fault]
) -> AsyncIterator[tuple[AwaitStepUpstream, FaultProxy]]:
    """The AwaitStep adapter (its default pooled transport) -> fault proxy -> the engine."""
    async with (
        serve(create_engine_app(engine)) as engine_url,
        fault_proxy(engine_url, plan) as proxy,
    ):
        adapter = AwaitStepUpstream(proxy.url, settings=FAST_RETRIES, retry_base_delay=0.01)
        try:
            yield adapter, proxy
        finally:
            await adapter.aclose()


@asynccontextmanager
async def cloudflare_via_proxy(
    serve: Serve, engine: Engine, plan: Callable[[int, str, str], Fault]
) -> AsyncIterator[tuple[CloudflareUpstream, FaultProxy]]:
    """The Cloudflare adapter -> fault proxy -> the engine's Cloudflare API."""
    app = create_cloudflare_app(engine, account_id="local", api_tokens=())
    async with serve(app) as engine_url, fault_proxy(engine_url, plan) as proxy:
        adapter = CloudflareUpstream(
            "local",
            base_url=proxy.url + "/client/v4",
            settings=FAST_RETRIES,
            retry_base_delay=0.01,
        )
        try:
            yield adapter, proxy
        finally:
            await adapter.aclose()


VIA_PROXY = {"awaitstep": awaitstep_via_proxy, "cloudflare": cloudflare_via_proxy}


def faulty_reads(index: int, method: str, path: str) -> Fault:
    """A plan: reads of one run meet a 503, then a dropped connection, then two answers."""
    if method != "GET" or ("/runs/" not in path and "/instances/" not in path):
        return "forward"
    return ("503", "drop_before", "forward", "forward")[index % 4]


@pytest.mark.parametrize("adapter_name", list(VIA_PROXY))
async def test_every_request_on_the_wire_takes_one_token(
    serve: Serve, engine: Engine, adapter_name: str
) -> None:
    """Under 5xx and dropped connections, tokens taken equal requests that reached the proxy."""
    limiter = CountingLimiter()
    async with VIA_PROXY[adapter_name](serve, engine, faulty_reads) as (adapter, proxy):
        adapter.limit_requests(limiter)
        run = await adapter.trigger("sleepy", credentials=ANONYMOUS)
        for _ in range(8):
            await adapter.get_run("sleepy", run.instance_id, credentials=ANONYMOUS)
        await adapter.terminate("sleepy", run.instance_id, credentials=ANONYMOUS)
    assert any(a.fault == "drop_before" for a in proxy.arrivals)
    assert any(a.fault == "503" for a in proxy.arrivals)
    assert proxy.count("GET") > 8
    assert limiter.taken == proxy.count()


@pytest.mark.parametrize("scheme", ["http", "cloudflare"])
async def test_with_tracing_on_every_request_on_the_wire_takes_one_token(
    serve: Serve, engine: Engine, scheme: str
) -> None:
    """With a span per attempt, the pooled transport's own resends still take their tokens."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(SimpleSpanProcessor(exporter))
    app = (
        create_engine_app(engine)
        if scheme == "http"
        else create_cloudflare_app(engine, account_id="local", api_tokens=())
    )
    limiter = CountingLimiter()
    async with serve(app) as engine_url, fault_proxy(engine_url, faulty_reads) as proxy:
        settings = Settings(
            upstream=proxy.url if scheme == "http" else "cloudflare://local",
            cloudflare_base_url=proxy.url + "/client/v4",
            upstream_get_retries=3,
        )
        async with open_upstream(settings, tracing=tracing) as adapter:
            assert isinstance(adapter, LimitedUpstream)
            adapter.limit_requests(limiter)
            run = await adapter.trigger("sleepy", credentials=ANONYMOUS)
            for _ in range(8):
                await adapter.get_run("sleepy", run.instance_id, credentials=ANONYMOUS)
    await tracing.aclose()
    # aiohttp resends a read whose connection dropped unanswered: more requests than spans.
    spans = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert any(a.fault == "drop_before" for a in proxy.arrivals)
    assert len(spans) < proxy.count()
    assert limiter.taken == proxy.count()


async def test_a_prepaid_request_takes_tokens_only_for_its_retries(
    serve: Serve, engine: Engine
) -> None:
    """A request the caller already budgeted takes no token, but its retry and resend do."""
    limiter = CountingLimiter()
    async with awaitstep_via_proxy(serve, engine, every(1, "forward")) as (adapter, proxy):
        adapter.limit_requests(limiter)
        run = await adapter.trigger("sleepy", credentials=ANONYMOUS)
        assert (limiter.taken, proxy.count()) == (1, 1)
        with prepaid_request():
            await adapter.get_run("sleepy", run.instance_id, credentials=ANONYMOUS)
        assert (limiter.taken, proxy.count()) == (1, 2)
    async with awaitstep_via_proxy(serve, engine, every(1, "503")) as (adapter, proxy):
        adapter.limit_requests(limiter)
        with prepaid_request(), pytest.raises(Exception, match="503"):
            await adapter.get_run("sleepy", run.instance_id, credentials=ANONYMOUS)
        assert proxy.count() == 4  # the first attempt and three retries
        assert limiter.taken == 1 + 3


async def test_gateway_traffic_and_retries_stay_within_the_budget(
    serve: Serve, engine: Engine
) -> None:
    """Queries, retries and resends through the gateway never exceed the budget's rate."""
    settings = Settings(request_budget_per_second=4, upstream_get_retries=3)
    async with awaitstep_via_proxy(serve, engine, every(3, "503")) as (adapter, proxy):
        run = await adapter.trigger("sleepy", credentials=ANONYMOUS)
        async with (
            serve(create_app(settings, upstream=adapter)) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
        ):
            query = {
                "query": 'query($i: ID!) { run(workflowId: "sleepy", instanceId: $i) { status } }',
                "variables": {"i": run.instance_id},
            }
            answers = await asyncio.gather(*(http.post("/graphql", json=query) for _ in range(16)))
    # A query whose every attempt met a 503 is UPSTREAM_UNAVAILABLE; most get through.
    assert all(a.status_code == 200 for a in answers)
    assert any((a.json().get("data") or {}).get("run") for a in answers)
    assert any(a.fault == "503" for a in proxy.arrivals)
    # A token bucket of 4/s holding 4 lets at most 4 + 4 through in any second.
    assert proxy.most_in_any_window(1.0) <= budget_ceiling(rate=4, burst=4)


async def test_after_a_429_requests_wait_out_the_pause_locally(
    serve: Serve, engine: Engine
) -> None:
    """While the budget is paused for a 429, a request is refused locally, never sent."""
    limits = local_limits(None)
    async with awaitstep_via_proxy(serve, engine, every(1, "forward")) as (adapter, proxy):
        adapter.limit_requests(limits)
        limits.limiter(adapter.limit_key(ANONYMOUS)).pause(60)
        with pytest.raises(Exception, match="429") as refused:
            await adapter.list_workflows(credentials=ANONYMOUS)
    assert getattr(refused.value, "code", None) == "RATE_LIMITED"
    assert proxy.count() == 0


def drop_the_first(method: str) -> Callable[[int, str, str], Fault]:
    """A plan: the first ``method`` request is applied upstream, then its answer is dropped."""
    dropped: list[int] = []

    def plan(index: int, seen: str, path: str) -> Fault:
        if seen == method and not dropped:
            dropped.append(index)
            return "drop_after"
        return "forward"

    return plan


TERMINATE_METHOD = {"awaitstep": "DELETE", "cloudflare": "PATCH"}


@pytest.mark.parametrize("adapter_name", list(VIA_PROXY))
async def test_terminate_is_idempotent_when_the_answer_is_lost(
    serve: Serve, engine: Engine, adapter_name: str
) -> None:
    """A terminate applied upstream whose answer is dropped is a success, not RUN_FINISHED."""
    plan = drop_the_first(TERMINATE_METHOD[adapter_name])
    async with VIA_PROXY[adapter_name](serve, engine, plan) as (adapter, proxy):
        run = await adapter.trigger("sleepy", credentials=ANONYMOUS)
        terminated = await adapter.terminate("sleepy", run.instance_id, credentials=ANONYMOUS)
        assert terminated.status is RunStatus.TERMINATED
        with pytest.raises(RunFinished):
            await adapter.terminate("sleepy", run.instance_id, credentials=ANONYMOUS)
    assert [a.fault for a in proxy.arrivals if a.method == TERMINATE_METHOD[adapter_name]][:2] == [
        "drop_after",
        "forward",
    ]


@pytest.mark.parametrize("adapter_name", list(VIA_PROXY))
async def test_pause_and_resume_are_idempotent_when_the_answer_is_lost(
    serve: Serve, engine: Engine, adapter_name: str
) -> None:
    """Pause and resume applied upstream whose answers are dropped succeed on the retry."""
    dropped: set[str] = set()
    patches: list[str] = []

    def plan(index: int, method: str, path: str) -> Fault:
        action = next((a for a in ("pause", "resume") if a in path), None)
        if method == "PATCH":  # Cloudflare: pause, its retry, resume, its retry
            patches.append(path)
            action = {1: "pause", 3: "resume"}.get(len(patches))
        if action is None or action in dropped:
            return "forward"
        dropped.add(action)
        return "drop_after"

    async with VIA_PROXY[adapter_name](serve, engine, plan) as (adapter, proxy):
        run = await adapter.trigger("sleepy", credentials=ANONYMOUS)
        paused = await adapter.pause("sleepy", run.instance_id, credentials=ANONYMOUS)
        assert paused.status in {RunStatus.PAUSED, RunStatus.WAITING_FOR_PAUSE}
        resumed = await adapter.resume("sleepy", run.instance_id, credentials=ANONYMOUS)
        assert not resumed.is_terminal
        await adapter.terminate("sleepy", run.instance_id, credentials=ANONYMOUS)
    assert len(dropped) == 2
    assert sum(a.fault == "drop_after" for a in proxy.arrivals) == 2
