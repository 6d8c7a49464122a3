"""GraphQL over SSE (the graphql-sse protocol) at /graphql: same guards, credentials, poller."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
from starlette.types import ASGIApp

from gateway_client import GraphQLClient
from node_support import node_script
from runcast.app import create_app
from runcast.engine import Engine
from runcast.metrics import Metrics
from runcast.resolvers import run_node_id
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
KEY = "sse-key"
RUN_STATUS = (
    "subscription ($w: ID!, $i: ID!) { runStatus(workflowId: $w, instanceId: $i) { status } }"
)
SEND_EVENT = (
    'mutation { sendEvent(workflowId: "approval", instanceId: "sse", eventType: "approve",'
    " payload: {approved: true}) { status } }"
)


def sse_events(text: str) -> list[tuple[str, Any]]:
    """The (event, decoded data) pairs of an event stream's text."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(
            line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
            for line in block.splitlines()
            if line and not line.startswith(":")
        )
        if "event" in fields:
            data = fields.get("data") or None
            events.append((fields["event"], None if data is None else json.loads(data)))
    return events


async def test_graphql_sse_client_follows_run_status_to_completion(
    engine: Engine, serve: Serve
) -> None:
    """The graphql-sse npm client gets every status of a run, ending COMPLETE, then completes."""
    settings = Settings(poll_min_interval=0.05)
    app = create_app(settings, upstream=LocalUpstream(engine, api_keys=(KEY,)))
    headers = {"authorization": f"Bearer {KEY}"}
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        client = GraphQLClient(http, headers=headers)
        await client.trigger("approval", {"orderId": "A"}, instance_id="sse")
        await client.wait_for_event_wait("approval", "sse")
        async with node_script(
            "sse_run_status.mjs",
            f"{url}/graphql",
            "approval",
            "sse",
            f"Bearer {KEY}",
            package="graphql-sse",
        ) as script:
            assert (await script.read()) == {"stage": "subscribed", "status": "PAUSED"}
            await client.data(SEND_EVENT)
            await script.send({"sent": True})
            done = await script.read()
            await script.finish()
    assert done["stage"] == "complete"
    assert done["statuses"][0] == "PAUSED"
    assert done["statuses"][-1] == "COMPLETE"
    assert set(done["runIds"]) == {run_node_id("approval", "sse")}


async def test_sse_forwards_credentials_and_codes_refusals(engine: Engine, serve: Serve) -> None:
    """Without the bearer token the graphql-sse client gets UNAUTHENTICATED, as over WebSocket."""
    app = create_app(Settings(), upstream=LocalUpstream(engine, api_keys=(KEY,)))
    async with (
        serve(app) as url,
        node_script(
            "sse_run_status.mjs", f"{url}/graphql", "approval", "nope", package="graphql-sse"
        ) as script,
    ):
        refused = await script.read()
        await script.finish()
    assert refused["stage"] == "error"
    assert refused["error"]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_sse_streams_are_released_when_the_client_goes(engine: Engine, serve: Serve) -> None:
    """Closing an SSE stream ends its subscription: the live layer's subscriber count is 0 again."""
    metrics = Metrics()
    app = create_app(Settings(), upstream=LocalUpstream(engine), metrics=metrics)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        await GraphQLClient(http).trigger("sleepy", {"n": 1}, instance_id="gone")
        body = {"query": RUN_STATUS, "variables": {"w": "sleepy", "i": "gone"}}
        async with http.stream(
            "POST", "/graphql", json=body, headers={"accept": "text/event-stream"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            async for chunk in response.aiter_text():
                if "event: next" in chunk:
                    break
            assert metrics.subscribers._value.get() == 1
        await _until(lambda: metrics.subscribers._value.get() == 0)


async def test_sse_applies_the_query_guards(engine: Engine) -> None:
    """A subscription over SSE deeper than the depth limit is refused before it starts."""
    app = create_app(Settings(max_query_depth=1), upstream=LocalUpstream(engine))
    deep = (
        'subscription { runStatus(workflowId: "a", instanceId: "b") { run { workflow { id } } } }'
    )

    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost") as http,
    ):
        response = await http.post(
            "/graphql", json={"query": deep}, headers={"accept": "text/event-stream"}
        )
    events = sse_events(response.text)
    assert [name for name, _ in events] == ["next", "complete"]
    assert events[0][1]["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def _until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.02)


async def test_clients_that_prefer_json_get_json(engine: Engine) -> None:
    """An Accept listing text/event-stream beside JSON types (urql's) gets JSON, not a stream."""
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    accept = (
        "application/graphql-response+json, application/graphql+json, application/json, "
        "text/event-stream, multipart/mixed"
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost") as http,
    ):
        answer = await http.get(
            "/graphql", params={"query": "{ workflows { id } }"}, headers={"accept": accept}
        )
        streamed = await http.get(
            "/graphql",
            params={"query": "{ workflows { id } }"},
            headers={"accept": "text/event-stream, application/json;q=0.5"},
        )
    assert answer.headers["content-type"].startswith("application/graphql-response+json")
    assert "workflows" in answer.json()["data"]
    assert [name for name, _ in sse_events(streamed.text)] == ["next", "complete"]
    assert "\r" not in streamed.text, "events end with LF, which every client parses"
