"""GraphQL over WebSockets at /graphql: both subprotocols, credentials, timeouts, caps, origins."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest
import websockets
from starlette.types import ASGIApp
from websockets.asyncio.client import ClientConnection, connect

from runcast.app import create_app
from runcast.engine import Engine
from runcast.models import Credentials, Run
from runcast.resolvers import GraphQLContext
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"
KEY = "ws-key-1"
WORKFLOWS = "{ workflows { id } }"


@asynccontextmanager
async def ws_gateway(
    serve: Serve,
    engine: Engine,
    settings: Settings | None = None,
    *,
    api_keys: tuple[str, ...] = (),
) -> AsyncIterator[str]:
    """Serve a gateway over the test engine on a real socket; yield its ws:// URL of /graphql."""
    app = create_app(settings or Settings(), upstream=LocalUpstream(engine, api_keys=api_keys))
    async with serve(app) as url:
        yield url.replace("http://", "ws://") + "/graphql"


async def receive(ws: ClientConnection) -> dict[str, Any]:
    """The next JSON message, within 5 seconds."""
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return message


async def receive_skipping_keepalives(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a legacy keep-alive ('ka')."""
    while (message := await receive(ws))["type"] == "ka":
        pass
    return message


async def closed_with(ws: ClientConnection) -> int | None:
    """Wait until the server closes the connection; return its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), 5)
    except websockets.ConnectionClosed:
        return ws.close_code


@pytest.mark.parametrize(
    ("payload", "expect_ok"),
    [
        ({"Authorization": f"Bearer {KEY}"}, True),
        ({"authorization": KEY}, True),
        ({}, False),
        ({"Authorization": "Bearer nope"}, False),
    ],
)
async def test_transport_ws_forwards_connection_init_credentials(
    serve: Serve, engine: Engine, payload: dict[str, str], expect_ok: bool
) -> None:
    """The connection_init Authorization (either spelling) is forwarded on graphql-transport-ws."""
    async with (
        ws_gateway(serve, engine, api_keys=(KEY,)) as url,
        connect(url, subprotocols=[TRANSPORT_WS]) as ws,
    ):
        assert ws.subprotocol == TRANSPORT_WS
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert (await receive(ws))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": WORKFLOWS}}))
        message = await receive(ws)
        assert message["type"] == "next"
        if expect_ok:
            assert "errors" not in message["payload"], message
            assert message["payload"]["data"]["workflows"]
        else:
            assert message["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert await receive(ws) == {"id": "1", "type": "complete"}


async def test_legacy_graphql_ws_forwards_credentials(serve: Serve, engine: Engine) -> None:
    """The legacy graphql-ws protocol takes the credentials from connection_init too."""
    locked = LocalUpstream(engine, api_keys=(KEY,))
    run = await locked.trigger("three-steps", input={"orderId": "L"}, credentials=Credentials(KEY))
    query = (
        'subscription($i: ID!) { runStatus(workflowId: "three-steps", instanceId: $i)'
        " { status run { instanceId } } }"
    )
    async with (
        ws_gateway(serve, engine, api_keys=(KEY,)) as url,
        connect(url, subprotocols=[LEGACY_WS]) as ws,
    ):
        assert ws.subprotocol == LEGACY_WS
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {KEY}"}})
        )
        assert (await receive(ws))["type"] == "connection_ack"
        start = {"query": query, "variables": {"i": run.instance_id}}
        await ws.send(json.dumps({"id": "1", "type": "start", "payload": start}))
        message = await receive_skipping_keepalives(ws)
        assert message["type"] == "data", message
        assert "errors" not in message["payload"], message
        assert message["payload"]["data"]["runStatus"]["run"]["instanceId"] == run.instance_id


async def test_errors_over_websockets_carry_codes(serve: Serve, engine: Engine) -> None:
    """A mutation over WebSockets gets the same coded errors as over HTTP."""
    async with ws_gateway(serve, engine) as url, connect(url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        await receive(ws)
        query = 'mutation { triggerRun(workflowId: "script") { instanceId } }'
        await ws.send(json.dumps({"id": "m", "type": "subscribe", "payload": {"query": query}}))
        message = await receive(ws)
        assert message["payload"]["errors"][0]["extensions"]["code"] == "NOT_TRIGGERABLE"


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_connection_init_timeout(serve: Serve, engine: Engine, protocol: str) -> None:
    """A connection that never sends connection_init is closed with 4408 after the timeout."""
    settings = Settings(ws_connection_init_timeout=0.2, ws_keepalive_interval=60)
    async with (
        ws_gateway(serve, engine, settings) as url,
        connect(url, subprotocols=[protocol]) as ws,
    ):
        assert await closed_with(ws) == 4408


async def test_legacy_keepalive(serve: Serve, engine: Engine) -> None:
    """The legacy protocol sends 'ka' keep-alives at ws_keepalive_interval after the ack."""
    settings = Settings(ws_keepalive_interval=0.05)
    async with (
        ws_gateway(serve, engine, settings) as url,
        connect(url, subprotocols=[LEGACY_WS]) as ws,
    ):
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert (await receive(ws))["type"] == "connection_ack"
        kinds = [(await receive(ws))["type"] for _ in range(3)]
        assert kinds == ["ka", "ka", "ka"]


RUN_STATUS = 'subscription($i: ID!) { runStatus(workflowId: "sleepy", instanceId: $i) { status } }'


async def test_operations_per_connection_are_capped(serve: Serve, engine: Engine) -> None:
    """Past ws_max_operations live operations, another is refused until one completes."""
    upstream = LocalUpstream(engine)
    runs = [
        (await upstream.trigger("sleepy", credentials=Credentials(None))).instance_id
        for _ in range(2)
    ]
    settings = Settings(ws_max_operations=2)
    async with (
        ws_gateway(serve, engine, settings) as url,
        connect(url, subprotocols=[TRANSPORT_WS]) as ws,
    ):
        await ws.send(json.dumps({"type": "connection_init"}))
        await receive(ws)
        for n, instance_id in enumerate(runs):
            payload = {"query": RUN_STATUS, "variables": {"i": instance_id}}
            await ws.send(json.dumps({"id": str(n), "type": "subscribe", "payload": payload}))
            assert (await receive(ws))["type"] == "next"
        payload = {"query": RUN_STATUS, "variables": {"i": runs[0]}}
        await ws.send(json.dumps({"id": "extra", "type": "subscribe", "payload": payload}))
        refused = await receive(ws)
        assert refused["type"] == "error"
        assert refused["id"] == "extra"
        assert "limit" in refused["payload"][0]["message"]
        await ws.send(json.dumps({"id": "0", "type": "complete"}))
        await ws.send(json.dumps({"id": "again", "type": "subscribe", "payload": payload}))
        accepted = await receive(ws)
        assert accepted["id"] == "again"
        assert accepted["type"] == "next"


async def test_subscription_errors_carry_codes(serve: Serve, engine: Engine) -> None:
    """A subscription to an unknown run ends with a NOT_FOUND error over WebSockets."""
    async with ws_gateway(serve, engine) as url, connect(url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        await receive(ws)
        payload = {"query": RUN_STATUS, "variables": {"i": "no-such-run"}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        message = await receive(ws)
        errors = message["payload"]["errors"] if message["type"] == "next" else message["payload"]
        assert errors[0]["extensions"]["code"] == "NOT_FOUND"


class BuggyUpstream(LocalUpstream):
    """The real local adapter with a bug in get_run: it raises a non-runcast exception."""

    async def get_run(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        raise ZeroDivisionError("secret-internal-detail")


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_unexpected_subscription_errors_are_masked_and_logged(
    serve: Serve, engine: Engine, caplog: pytest.LogCaptureFixture, protocol: str
) -> None:
    """An unexpected exception in a subscription is INTERNAL_SERVER_ERROR; only the log has it."""
    caplog.set_level(logging.ERROR, logger="runcast.graphql")
    app = create_app(Settings(), upstream=BuggyUpstream(engine))
    async with serve(app) as base:
        url = base.replace("http://", "ws://") + "/graphql"
        async with connect(url, subprotocols=[protocol]) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert (await receive_skipping_keepalives(ws))["type"] == "connection_ack"
            start = "subscribe" if protocol == TRANSPORT_WS else "start"
            payload = {"query": RUN_STATUS, "variables": {"i": "any"}}
            await ws.send(json.dumps({"id": "1", "type": start, "payload": payload}))
            message = await receive_skipping_keepalives(ws)
    errors = message["payload"]["errors"] if "errors" in message["payload"] else message["payload"]
    assert [(e["message"], e["extensions"]) for e in errors] == [
        ("Internal server error", {"code": "INTERNAL_SERVER_ERROR"})
    ]
    assert "secret-internal-detail" not in json.dumps(message)
    assert "secret-internal-detail" in caplog.text


async def test_the_context_repr_shows_no_connection_init_token(engine: Engine) -> None:
    """The connection_init payload (which holds the caller's token) is left out of the repr."""
    context = GraphQLContext(
        upstream=LocalUpstream(engine),
        credentials=Credentials("init-token-1"),
        settings=Settings(),
        connection_params={"Authorization": "Bearer init-token-1"},
    )
    assert "init-token-1" not in repr(context)


async def test_foreign_origins_are_rejected(serve: Serve, engine: Engine) -> None:
    """A WebSocket handshake from an origin not allowed is refused; an allowed one connects."""
    settings = Settings(allowed_origins=("https://app.example.com",))
    async with ws_gateway(serve, engine, settings) as url:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(url, subprotocols=[TRANSPORT_WS], origin="https://evil.example"):
                pass
        assert refused.value.response.status_code == 403
        async with connect(
            url, subprotocols=[TRANSPORT_WS], origin="https://app.example.com"
        ) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert (await receive(ws))["type"] == "connection_ack"
        async with connect(url, subprotocols=[TRANSPORT_WS]) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert (await receive(ws))["type"] == "connection_ack"


async def test_foreign_origins_are_rejected_by_default(serve: Serve, engine: Engine) -> None:
    """With no allowed origins configured, a cross-origin handshake is refused (403)."""
    async with ws_gateway(serve, engine) as url:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(url, subprotocols=[TRANSPORT_WS], origin="https://evil.example"):
                pass
    assert refused.value.response.status_code == 403


async def test_handshake_authorization_header_is_used_without_an_init_key(
    serve: Serve, engine: Engine
) -> None:
    """A non-browser client's handshake Authorization header counts when the payload has none."""
    async with (
        ws_gateway(serve, engine, api_keys=(KEY,)) as url,
        connect(
            url,
            subprotocols=[TRANSPORT_WS],
            additional_headers={"Authorization": f"Bearer {KEY}"},
        ) as ws,
    ):
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        assert (await receive(ws))["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": WORKFLOWS}}))
        message = await receive(ws)
        assert "errors" not in message["payload"], message
