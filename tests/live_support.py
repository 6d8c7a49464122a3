"""Shared pieces of the live-layer tests: workflows, an upstream probe, a GraphQL WS client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from starlette.types import ASGIApp, Receive, Scope, Send

from runcast.engine import Engine
from runcast.engine.loader import load_workflows
from runcast.settings import Settings

WORKFLOWS = {
    "approval.yaml": """
id: approval
nodes:
  - step: reserve
    action:
      return: {orderId: input.orderId, reserved: "`true`"}
  - sleep: cool_off
    duration: 200ms
  - wait_for_event: approval
    event_type: user-approval
  - step: finish
    action:
      return: {orderId: reserve.orderId, approved: approval.payload.approved}
""",
    "gated.yaml": """
id: gated
nodes:
  - wait_for_event: submitted
    event_type: submitted
  - step: reserve
    action:
      fail: {message: "stock service busy", times: 1}
    retries: {limit: 2, delay: 400ms, backoff: constant}
  - wait_for_event: approval
    event_type: user-approval
  - step: finish
    action:
      return: {orderId: input.orderId, approved: approval.payload.approved}
""",
    "waiter.yaml": """
id: waiter
nodes:
  - wait_for_event: go
    event_type: go
  - step: done
    action:
      return: {went: "`true`"}
""",
    "napper.yaml": """
id: napper
nodes:
  - sleep: nap
    duration: 1500ms
  - step: done
    action:
      return: {rested: "`true`"}
""",
}

FAST = Settings(
    poll_min_interval=0.05,
    poll_max_interval=0.2,
    request_budget_per_second=500.0,
    upstream_read_timeout=0.5,
    upstream_connect_timeout=2.0,
    upstream_get_retries=0,
    ws_connection_init_timeout=5.0,
    ws_max_operations=1000,
)
"""Settings that make the live layer quick enough for tests."""


def write_workflows(folder: Path) -> Path:
    """Write the test workflows into ``folder`` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in WORKFLOWS.items():
        (folder / name).write_text(text)
    return folder


@asynccontextmanager
async def open_engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """A started engine over the test workflows, with its SQLite file in ``tmp_path``."""
    loaded = load_workflows(write_workflows(tmp_path / "workflows"))
    assert not loaded.problems, loaded.problems
    async with Engine(loaded.definitions, db_path=tmp_path / "runs.db") as engine:
        yield engine


async def wait_for(
    condition: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, what: str = ""
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        await asyncio.sleep(0.02)


@dataclass
class Fault:
    """What the probe does to one request instead of passing it on."""

    kind: str  # "429", "500" or "slow"
    retry_after: float = 0.0
    delay: float = 0.0


@dataclass
class Request:
    """One request the probe saw."""

    at: float
    method: str
    path: str
    token: str | None
    query: str = ""


@dataclass
class UpstreamProbe:
    """ASGI middleware in front of the engine's REST app: records requests, injects faults.

    ``forbid`` maps a bearer token to instance ids it may not read (answered 403,
    the way an upstream with per-resource permissions refuses); runs in ``gone``
    are answered 404, as if deleted.
    """

    app: ASGIApp
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    forbid: dict[str, set[str]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    served: list[tuple[float, str]] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        auth = headers.get("authorization", "")
        token = auth.removeprefix("Bearer ").strip() or None
        path = scope["path"]
        query = scope.get("query_string", b"").decode()
        self.requests.append(Request(time.monotonic(), scope["method"], path, token, query))
        if token is not None and any(
            path.rstrip("/").endswith(f"/runs/{instance}")
            for instance in self.forbid.get(token, ())
        ):
            await _json(send, 403, {"error": {"code": "FORBIDDEN", "message": "not yours"}})
            return
        if any(path.rstrip("/").endswith(f"/runs/{instance}") for instance in self.gone):
            await _json(send, 404, {"error": {"code": "NOT_FOUND", "message": "no such run"}})
            return
        if self.faults and scope["method"] == "GET":
            fault = self.faults.pop(0)
            self.served.append((time.monotonic(), fault.kind))
            if fault.kind == "429":
                await _json(
                    send,
                    429,
                    {"error": {"code": "RATE_LIMITED", "message": "slow down"}},
                    headers=[(b"retry-after", str(fault.retry_after).encode())],
                )
                return
            if fault.kind == "500":
                await _json(send, 500, {"error": {"code": "INTERNAL", "message": "oops"}})
                return
            await asyncio.sleep(fault.delay)
        await self.app(scope, receive, send)

    def gets(self, instance_id: str | None = None, *, since: float = 0.0) -> list[Request]:
        """GET requests (of one run's detail, if ``instance_id`` is given) after ``since``."""
        return [
            r
            for r in self.requests
            if r.method == "GET"
            and r.at >= since
            and (instance_id is None or r.path.endswith(f"/runs/{instance_id}"))
        ]


async def _json(
    send: Send, status: int, body: object, *, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


RUN_STATUS = """
subscription Watch($workflowId: ID!, $instanceId: ID!) {
  runStatus(workflowId: $workflowId, instanceId: $instanceId) {
    status previousStatus observedAt run { instanceId status output error }
  }
}
"""

WORKFLOW_RUNS = """
subscription Dash($workflowId: ID!, $status: [RunStatus!]) {
  workflowRuns(workflowId: $workflowId, status: $status) {
    status previousStatus run { instanceId status }
  }
}
"""


class GraphQLSocket:
    """A minimal GraphQL WebSocket client (``graphql-transport-ws`` or legacy ``graphql-ws``)."""

    def __init__(self, ws: websockets.ClientConnection, protocol: str) -> None:
        self.ws = ws
        self.protocol = protocol

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        base_url: str,
        *,
        token: str | None = None,
        protocol: str = "graphql-transport-ws",
    ) -> AsyncIterator[GraphQLSocket]:
        """Open ``/graphql`` and finish the connection handshake."""
        url = base_url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(
            url,
            subprotocols=[protocol],
            open_timeout=10,
            ping_interval=None,  # type: ignore[list-item]
        ) as ws:
            init: dict[str, Any] = {"type": "connection_init"}
            if token is not None:
                init["payload"] = {"Authorization": f"Bearer {token}"}
            await ws.send(json.dumps(init))
            socket = cls(ws, protocol)
            while True:
                message = await socket.receive()
                if message["type"] == "connection_ack":
                    break
            yield socket

    async def receive(self) -> dict[str, Any]:
        """The next message (skipping keep-alives and pings); fails after 10 s of silence."""
        while True:
            async with asyncio.timeout(10):
                raw = await self.ws.recv()
            message: dict[str, Any] = json.loads(raw)
            if message["type"] in {"ka", "pong"}:
                continue
            if message["type"] == "ping":
                await self.ws.send(json.dumps({"type": "pong"}))
                continue
            return message

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any]) -> None:
        """Start an operation."""
        kind = "subscribe" if self.protocol == "graphql-transport-ws" else "start"
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"id": op_id, "type": kind, "payload": payload}))

    async def complete(self, op_id: str) -> None:
        """Stop an operation from the client side."""
        kind = "complete" if self.protocol == "graphql-transport-ws" else "stop"
        await self.ws.send(json.dumps({"id": op_id, "type": kind}))

    async def updates(self, op_id: str, field_name: str) -> list[dict[str, Any]]:
        """Every update of ``op_id`` until it completes; raises on an error message."""
        received: list[dict[str, Any]] = []
        while True:
            message = await self.receive()
            assert message.get("id") == op_id, message
            if message["type"] in {"next", "data"}:
                payload = message["payload"]
                if payload.get("errors"):
                    raise GraphQLErrors(payload["errors"])
                received.append(payload["data"][field_name])
            elif message["type"] == "error":
                errors = message["payload"]
                raise GraphQLErrors(errors if isinstance(errors, list) else [errors])
            elif message["type"] == "complete":
                return received


class GraphQLErrors(Exception):
    """The server answered an operation with errors."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors

    @property
    def codes(self) -> list[str | None]:
        """Each error's ``extensions.code``."""
        return [(e.get("extensions") or {}).get("code") for e in self.errors]


def metric(text: str, name: str) -> float:
    """The value of an unlabelled sample ``name`` in Prometheus text ``text``."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)
