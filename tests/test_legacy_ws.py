"""The legacy graphql-ws subprotocol runs queries and mutations too, as its clients send them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.types import ASGIApp
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from node_support import run_script
from runcast.app import create_app
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]


async def test_subscriptions_transport_ws_client_runs_every_operation_type(
    engine: Engine, serve: Serve
) -> None:
    """The real subscriptions-transport-ws client introspects, queries, mutates and subscribes."""
    app = create_app(Settings(poll_min_interval=0.05), upstream=LocalUpstream(engine))
    async with serve(app) as url:
        [report] = await run_script(
            "legacy_ws.mjs", f"{url}/graphql", package="subscriptions-transport-ws"
        )
    assert report["introspection"] == {"__schema": {"queryType": {"name": "Query"}}}
    assert "three-steps" in report["workflows"]
    assert report["triggered"]["id"].startswith("run:")
    assert report["statuses"][-1] == "COMPLETE"


async def test_legacy_operation_errors_are_coded(engine: Engine, serve: Serve) -> None:
    """Over graphql-ws an invalid query gets an error message, and a failing mutation coded data."""
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url:
        ws_url = url.replace("http://", "ws://") + "/graphql"
        invalid = await _first_answer(ws_url, "{ nope }")
        failed = await _first_answer(ws_url, 'mutation { triggerRun(workflowId: "script") { id } }')
    assert invalid["type"] == "error"
    assert invalid["payload"]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert failed["type"] == "data"
    assert failed["payload"]["errors"][0]["extensions"]["code"] == "NOT_TRIGGERABLE"


async def _first_answer(url: str, query: str) -> dict[str, Any]:
    """The first non-keepalive answer to ``query`` sent as a legacy ``start``."""
    async with connect(url, subprotocols=[Subprotocol("graphql-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        await ws.send(json.dumps({"type": "start", "id": "1", "payload": {"query": query}}))
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
            if message["type"] not in {"ka", "connection_ack"}:
                return message
