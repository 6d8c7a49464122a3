"""runStatus and workflowRuns through the real gateway: uvicorn sockets, WebSocket clients.

The upstream is the engine's REST app on its own socket, reached through the AwaitStep
adapter, behind a probe that counts requests and injects faults.
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
from starlette.types import ASGIApp

from live_support import (
    FAST,
    RUN_STATUS,
    WORKFLOW_RUNS,
    Fault,
    GraphQLErrors,
    GraphQLSocket,
    UpstreamProbe,
    metric,
    open_engine,
    wait_for,
    write_workflows,
)
from runcast.app import create_app
from runcast.engine import Engine
from runcast.engine.server import create_engine_app
from runcast.models import Run, RunStatus
from runcast.settings import Settings
from runcast.upstream.awaitstep import AwaitStepUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]


@dataclass
class Gateway:
    """A gateway on a real socket in front of a probed engine REST API."""

    engine: Engine
    probe: UpstreamProbe
    url: str

    async def metrics(self) -> str:
        """The gateway's ``/metrics`` text."""
        async with httpx.AsyncClient() as client:
            response = await client.get(self.url + "/metrics")
        response.raise_for_status()
        return response.text

    async def live_counts(self) -> tuple[float, float]:
        """(active watches, subscribers) as ``/metrics`` reports them."""
        text = await self.metrics()
        return (
            metric(text, "runcast_live_active_watches"),
            metric(text, "runcast_live_subscribers"),
        )

    async def idle(self) -> bool:
        """Whether the live layer keeps no watch and feeds no subscriber."""
        return await self.live_counts() == (0.0, 0.0)


@asynccontextmanager
async def gateway(
    tmp_path: Path, serve: Serve, settings: Settings = FAST, *, api_keys: tuple[str, ...] = ()
) -> AsyncIterator[Gateway]:
    """Engine, probed REST app and gateway, each on a real socket where they talk HTTP."""
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(open_engine(tmp_path))
        probe = UpstreamProbe(create_engine_app(engine, api_keys=api_keys))
        upstream_url = await stack.enter_async_context(serve(probe))
        adapter = AwaitStepUpstream(upstream_url, settings=settings)
        stack.push_async_callback(adapter.aclose)
        url = await stack.enter_async_context(serve(create_app(settings, upstream=adapter)))
        yield Gateway(engine, probe, url)


async def waiting_for(engine: Engine, run: Run, node: str) -> bool:
    """Whether ``run`` is paused at its wait named ``node``."""
    current = await engine.get_run(run.workflow_id, run.instance_id)
    steps = current.steps or ()
    return current.status is RunStatus.PAUSED and bool(steps) and steps[-1].name == node


def watch_variables(run: Run) -> dict[str, Any]:
    """Variables of RUN_STATUS for ``run``."""
    return {"workflowId": run.workflow_id, "instanceId": run.instance_id}


async def fan_out(g: Gateway, subscribers: int) -> tuple[int, list[list[dict[str, Any]]]]:
    """Drive the gated approval flow past ``subscribers`` sockets.

    Returns the upstream GETs of the run made while the flow ran, and what each socket got.
    """
    run = await g.engine.trigger("gated", input={"orderId": "o-7"})
    async with AsyncExitStack() as stack:
        sockets = await asyncio.gather(
            *(stack.enter_async_context(GraphQLSocket.connect(g.url)) for _ in range(subscribers))
        )
        await asyncio.gather(
            *(ws.subscribe("1", RUN_STATUS, watch_variables(run)) for ws in sockets)
        )
        firsts = await asyncio.gather(*(ws.receive() for ws in sockets))
        assert all(m["type"] == "next" for m in firsts), firsts[0]
        assert await g.live_counts() == (1.0, float(subscribers))
        # From here on every socket is connected: the flow runs the same way for any count.
        start = time.monotonic()
        readers = [asyncio.create_task(ws.updates("1", "runStatus")) for ws in sockets]
        await g.engine.send_event("gated", run.instance_id, event_type="submitted")
        await wait_for(lambda: waiting_for(g.engine, run, "approval"), what="the approval wait")
        await g.engine.send_event(
            "gated", run.instance_id, event_type="user-approval", payload={"approved": True}
        )
        tails = await asyncio.wait_for(asyncio.gather(*readers), 30)
        polls = len(g.probe.gets(run.instance_id, since=start))
    updates = [
        [first["payload"]["data"]["runStatus"], *tail]
        for first, tail in zip(firsts, tails, strict=True)
    ]
    return polls, updates


@asynccontextmanager
async def open_sockets(url: str, count: int) -> AsyncIterator[list[GraphQLSocket]]:
    """``count`` graphql-transport-ws connections to ``url``, opened one after the other."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(GraphQLSocket.connect(url)) for _ in range(count)]


async def test_hundreds_of_subscribers_cost_the_polls_of_one(tmp_path: Path, serve: Serve) -> None:
    """300 sockets on one run get every observed transition in order for the polls of one socket."""
    async with gateway(tmp_path, serve) as g:
        alone, [single] = await fan_out(g, 1)
        await wait_for(g.idle, what="the live layer to go idle")
        crowd, updates = await fan_out(g, 300)
        await wait_for(g.idle, what="the live layer to go idle")
    print(f"upstream GETs of the run: 1 subscriber {alone}, 300 subscribers {crowd}")
    assert crowd <= alone + 3, (alone, crowd)
    for received in [single, *updates]:
        assert received[0]["status"] == "PAUSED"
        assert received[0]["previousStatus"] is None
        for before, after in itertools.pairwise(received):
            assert after["previousStatus"] == before["status"]
        assert received[-1]["status"] == "COMPLETE"
        assert received[-1]["run"]["output"] == {"orderId": "o-7", "approved": True}
        assert "WAITING" in [u["status"] for u in received]
    sequences = {tuple(u["status"] for u in received) for received in updates}
    assert len(sequences) == 1, sequences


async def test_unknown_run_is_not_found(tmp_path: Path, serve: Serve) -> None:
    """Subscribing to a run that does not exist fails with NOT_FOUND and leaves nothing behind."""
    async with gateway(tmp_path, serve) as g, GraphQLSocket.connect(g.url) as ws:
        await ws.subscribe("1", RUN_STATUS, {"workflowId": "waiter", "instanceId": "nope"})
        with pytest.raises(GraphQLErrors) as caught:
            await ws.updates("1", "runStatus")
        assert caught.value.codes == ["NOT_FOUND"]
        await wait_for(g.idle, what="the live layer to go idle")


@pytest.mark.parametrize("ending", ["disconnect", "complete"])
async def test_counters_return_to_zero(tmp_path: Path, serve: Serve, ending: str) -> None:
    """Disconnecting or sending complete unregisters subscribers and stops polling the run."""
    async with gateway(tmp_path, serve) as g:
        run = await g.engine.trigger("waiter")
        async with open_sockets(g.url, 3) as sockets:
            for ws in sockets:
                await ws.subscribe("a", RUN_STATUS, watch_variables(run))
                await ws.subscribe("b", WORKFLOW_RUNS, {"workflowId": "waiter"})
            for ws in sockets:
                assert (await ws.receive())["type"] == "next"
            await wait_for(lambda: _counts_are(g, (2.0, 6.0)), what="6 subscribers on 2 watches")
            if ending == "complete":
                for ws in sockets:
                    await ws.complete("a")
                    await ws.complete("b")
                await wait_for(g.idle, what="the live layer to go idle")
        await wait_for(g.idle, what="the live layer to go idle")
        stopped = time.monotonic()
        await asyncio.sleep(FAST.poll_max_interval * 2)  # a window for a poll that must not come
        assert g.probe.gets(since=stopped) == []


async def _counts_are(g: Gateway, expected: tuple[float, float]) -> bool:
    return await g.live_counts() == expected


async def test_workflow_runs_sees_new_runs_with_status_filter(tmp_path: Path, serve: Serve) -> None:
    """workflowRuns reports runs created after subscribing, and the status filter applies."""
    async with gateway(tmp_path, serve) as g, GraphQLSocket.connect(g.url) as ws:
        await ws.subscribe("all", WORKFLOW_RUNS, {"workflowId": "waiter"})
        await ws.subscribe("done", WORKFLOW_RUNS, {"workflowId": "waiter", "status": ["COMPLETE"]})
        await wait_for(lambda: _counts_are(g, (1.0, 2.0)), what="both subscriptions")
        run = await g.engine.trigger("waiter")
        first = await ws.receive()
        assert first["id"] == "all"
        assert first["payload"]["data"]["workflowRuns"]["run"]["instanceId"] == run.instance_id
        assert first["payload"]["data"]["workflowRuns"]["previousStatus"] is None
        await g.engine.send_event("waiter", run.instance_id, event_type="go")
        got: dict[str, list[str]] = {"all": [], "done": []}
        while "COMPLETE" not in got["done"] or "COMPLETE" not in got["all"]:
            message = await ws.receive()
            got[message["id"]].append(message["payload"]["data"]["workflowRuns"]["status"])
        assert got["done"] == ["COMPLETE"]


async def test_legacy_graphql_ws_protocol(tmp_path: Path, serve: Serve) -> None:
    """The legacy graphql-ws protocol carries runStatus to the end of the run."""
    async with (
        gateway(tmp_path, serve) as g,
        GraphQLSocket.connect(g.url, protocol="graphql-ws") as ws,
    ):
        run = await g.engine.trigger("waiter")
        await ws.subscribe("1", RUN_STATUS, watch_variables(run))
        first = await ws.receive()
        assert first["type"] == "data"
        await g.engine.send_event("waiter", run.instance_id, event_type="go")
        rest = await ws.updates("1", "runStatus")
        assert rest[-1]["status"] == "COMPLETE"
        await wait_for(g.idle, what="the live layer to go idle")


async def test_isolation_between_credentials(tmp_path: Path, serve: Serve) -> None:
    """Two credentials never share a watch; the one refused gets FORBIDDEN and never the data."""
    async with gateway(tmp_path, serve, api_keys=("alpha", "beta")) as g:
        secret = await g.engine.trigger("waiter")
        g.probe.forbid["beta"] = {secret.instance_id}
        async with (
            GraphQLSocket.connect(g.url, token="alpha") as alpha,
            GraphQLSocket.connect(g.url, token="beta") as beta,
            GraphQLSocket.connect(g.url) as anonymous,
        ):
            await alpha.subscribe("1", RUN_STATUS, watch_variables(secret))
            await beta.subscribe("1", RUN_STATUS, watch_variables(secret))
            await anonymous.subscribe("1", RUN_STATUS, watch_variables(secret))
            first = await alpha.receive()
            assert first["payload"]["data"]["runStatus"]["run"]["instanceId"] == secret.instance_id
            with pytest.raises(GraphQLErrors) as refused:
                await beta.updates("1", "runStatus")
            assert refused.value.codes == ["FORBIDDEN"]
            assert "data" not in str(refused.value.errors)
            with pytest.raises(GraphQLErrors) as nobody:
                await anonymous.updates("1", "runStatus")
            assert nobody.value.codes == ["UNAUTHENTICATED"]
            tokens = {r.token for r in g.probe.gets(secret.instance_id)}
            assert tokens == {"alpha", "beta", None}
            await g.engine.send_event("waiter", secret.instance_id, event_type="go")
            rest = await alpha.updates("1", "runStatus")
            assert rest[-1]["status"] == "COMPLETE"
        await wait_for(g.idle, what="the live layer to go idle")


async def test_faults_keep_subscribers_and_states_right(tmp_path: Path, serve: Serve) -> None:
    """After a 429, a 500 and a timeout the subscribers are all still there and end COMPLETE."""
    async with gateway(tmp_path, serve) as g:
        run = await g.engine.trigger("waiter")
        async with open_sockets(g.url, 20) as sockets:
            for ws in sockets:
                await ws.subscribe("1", RUN_STATUS, watch_variables(run))
            firsts = [await ws.receive() for ws in sockets]
            assert {m["payload"]["data"]["runStatus"]["status"] for m in firsts} == {"PAUSED"}
            readers = [asyncio.create_task(ws.updates("1", "runStatus")) for ws in sockets]
            faults_from = time.monotonic()
            g.probe.faults[:] = [
                Fault("429", retry_after=0.3),
                Fault("500"),
                Fault("slow", delay=FAST.upstream_read_timeout + 0.3),
            ]
            await wait_for(lambda: not g.probe.faults, what="every fault to be served")
            await g.engine.send_event("waiter", run.instance_id, event_type="go")
            tails = await asyncio.wait_for(asyncio.gather(*readers), 20)
            assert await g.live_counts() == (0.0, 0.0)
        gets = g.probe.gets(run.instance_id, since=faults_from)
        after_429 = [r.at for r in gets]
        assert after_429[1] - after_429[0] >= 0.25  # the Retry-After held every poll
        for tail in tails:
            assert [u["status"] for u in tail] == ["COMPLETE"]
            assert tail[-1]["previousStatus"] == "PAUSED"
            assert tail[-1]["run"]["output"] == {"went": True}
        text = await g.metrics()
        assert 'outcome="rate_limited"' in text
        assert 'outcome="unavailable"' in text


async def test_embedded_engine_pushes_every_transition(tmp_path: Path, serve: Serve) -> None:
    """With the embedded engine, runStatus carries every transition in order and polls nothing."""
    settings = FAST.replace(
        workflows_dir=write_workflows(tmp_path / "workflows"), db_path=tmp_path / "runs.db"
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:

        async def graphql(query: str, **variables: Any) -> dict[str, Any]:
            response = await http.post("/graphql", json={"query": query, "variables": variables})
            body: dict[str, Any] = response.json()
            assert "errors" not in body, body
            return body["data"]

        triggered = await graphql(
            'mutation { triggerRun(workflowId: "gated", input: {orderId: "o-9"}) { instanceId } }'
        )
        instance_id = triggered["triggerRun"]["instanceId"]
        await wait_for(lambda: _paused_at(graphql, instance_id, "submitted"), what="the gate")
        send = """mutation Send($id: ID!, $type: String!, $payload: JSON) {
            sendEvent(workflowId: "gated", instanceId: $id, eventType: $type, payload: $payload)
            { status } }"""
        async with GraphQLSocket.connect(url) as ws:
            await ws.subscribe("1", RUN_STATUS, {"workflowId": "gated", "instanceId": instance_id})
            first = await ws.receive()
            assert first["payload"]["data"]["runStatus"]["status"] == "PAUSED"
            reader = asyncio.create_task(ws.updates("1", "runStatus"))
            await graphql(send, id=instance_id, type="submitted")
            await wait_for(lambda: _paused_at(graphql, instance_id, "approval"), what="approval")
            await graphql(send, id=instance_id, type="user-approval", payload={"approved": True})
            rest = await asyncio.wait_for(reader, 10)
        text = (await http.get("/metrics")).text
    assert [u["status"] for u in rest] == [
        "RUNNING",
        "WAITING",
        "RUNNING",
        "PAUSED",
        "RUNNING",
        "COMPLETE",
    ]
    assert rest[-1]["run"]["output"] == {"orderId": "o-9", "approved": True}
    polls = [line for line in text.splitlines() if line.startswith("runcast_live_polls_total{")]
    assert polls == ['runcast_live_polls_total{kind="run",outcome="ok",upstream="embedded"} 1.0'], (
        polls
    )  # the first state only


async def _paused_at(graphql: Callable[..., Any], instance_id: str, node: str) -> bool:
    query = (
        'query($id: ID!) { run(workflowId: "gated", instanceId: $id) { status steps { name } } }'
    )
    run = (await graphql(query, id=instance_id))["run"]
    steps = run["steps"] or []
    return bool(run["status"] == "PAUSED" and steps and steps[-1]["name"] == node)
