"""RUNCAST_OPERATION_TIMEOUT holds for queries and mutations on every transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from runcast.app import create_app
from runcast.settings import Settings
from runcast.upstream.awaitstep import AwaitStepUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
LIMIT = 0.3
SLOW_QUERY = "{ workflows { id } }"
SLOW_MUTATION = 'mutation { triggerRun(workflowId: "w") { instanceId } }'
RUN_STATUS = 'subscription { runStatus(workflowId: "w", instanceId: "i") { status } }'


def slow_upstream(release: asyncio.Event) -> Starlette:
    """A fake AwaitStep API that answers nothing until ``release``, except the run 'w'/'i'."""

    async def slow(request: Request) -> Response:
        await release.wait()
        return JSONResponse({"error": {"code": "late", "message": "too late"}}, status_code=503)

    async def run(request: Request) -> Response:
        await asyncio.sleep(LIMIT * 2)  # longer than the limit: subscriptions have none
        return JSONResponse({"id": "i", "workflowId": "w", "status": "complete"})

    return Starlette(
        routes=[
            Route("/api/v1/workflows/w/runs/i", run),
            Route("/{path:path}", slow, methods=["GET", "POST"]),
        ]
    )


@asynccontextmanager
async def slow_gateway(serve: Serve) -> AsyncIterator[str]:
    """A gateway with a 0.3 s operation limit over :func:`slow_upstream`; yields its base URL."""
    settings = Settings(operation_timeout=LIMIT, upstream_read_timeout=30)
    release = asyncio.Event()
    async with serve(slow_upstream(release)) as upstream_url:
        upstream = AwaitStepUpstream(upstream_url, settings=settings)
        try:
            async with serve(create_app(settings, upstream=upstream)) as url:
                yield url
        finally:
            release.set()
            await upstream.aclose()


async def answers(ws: ClientConnection, operation_id: str) -> list[dict[str, Any]]:
    """The messages for ``operation_id`` up to and including its ``complete`` (or an error)."""
    found = []
    async with asyncio.timeout(10):
        while True:
            message = json.loads(await ws.recv())
            if message.get("id") != operation_id:
                continue  # keep-alives, acknowledgements
            found.append(message)
            if message["type"] in {"complete", "error"}:
                return found


def timeout_error(message: dict[str, Any]) -> dict[str, Any]:
    """The one error of a result message."""
    [error] = message["payload"]["errors"]
    assert message["payload"]["data"] is None
    return dict(error)


PROTOCOLS = {"graphql-transport-ws": "subscribe", "graphql-ws": "start"}
DATA_TYPES = {"graphql-transport-ws": "next", "graphql-ws": "data"}


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("query", [SLOW_QUERY, SLOW_MUTATION])
async def test_a_slow_operation_over_websockets_times_out_and_the_socket_stays_usable(
    serve: Serve, protocol: str, query: str
) -> None:
    """A slow query or mutation gets one OPERATION_TIMEOUT result, then the socket runs another."""
    async with slow_gateway(serve) as url:
        ws_url = url.replace("http://", "ws://") + "/graphql"
        async with connect(ws_url, subprotocols=[Subprotocol(protocol)]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            send = PROTOCOLS[protocol]
            await ws.send(json.dumps({"type": send, "id": "slow", "payload": {"query": query}}))
            slow = await answers(ws, "slow")
            await ws.send(
                json.dumps({"type": send, "id": "next", "payload": {"query": "{ __typename }"}})
            )
            after = await answers(ws, "next")
    assert [m["type"] for m in slow] == [DATA_TYPES[protocol], "complete"]
    error = timeout_error(slow[0])
    assert error["extensions"]["code"] == "OPERATION_TIMEOUT"
    assert "RUNCAST_OPERATION_TIMEOUT" in error["message"]
    assert after[0]["payload"] == {"data": {"__typename": "Query"}}


async def test_a_slow_query_over_sse_times_out(serve: Serve) -> None:
    """A query sent as an event stream gets one OPERATION_TIMEOUT result and the stream ends."""
    async with slow_gateway(serve) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        response = await http.post(
            "/graphql", json={"query": SLOW_QUERY}, headers={"accept": "text/event-stream"}
        )
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.splitlines() if line.startswith("data: {")]
    [result] = [json.loads(line.removeprefix("data: ")) for line in events]
    assert result["errors"][0]["extensions"]["code"] == "OPERATION_TIMEOUT"


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
async def test_subscriptions_have_no_time_limit(serve: Serve, protocol: str) -> None:
    """A subscription whose first message takes longer than the limit still gets its data."""
    async with slow_gateway(serve) as url:
        ws_url = url.replace("http://", "ws://") + "/graphql"
        async with connect(ws_url, subprotocols=[Subprotocol(protocol)]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            payload = {"query": RUN_STATUS}
            await ws.send(json.dumps({"type": PROTOCOLS[protocol], "id": "s", "payload": payload}))
            messages = await answers(ws, "s")
    assert messages[0]["payload"] == {"data": {"runStatus": {"status": "COMPLETE"}}}
    assert messages[-1]["type"] == "complete"
