"""One operator's scenario against a real gateway, recording what it sent and what was logged.

Importable as ``observability_support`` (pytest puts ``tests/`` on ``sys.path``). The
gateway runs on uvicorn over the embedded engine (the test workflows, a SQLite file),
with an API key; the scenario triggers runs that complete, retry, fail and wait for an
event, and sends queries that a guard refuses or the upstream rejects.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from runcast.app import create_app
from runcast.logs import ContextFilter
from runcast.settings import Settings
from runcast.tracing import Tracing

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

API_KEY = "sk-test-7f3a9c-secret"
"""The bearer token the scenario authenticates with: it must never be logged."""
WRONG_KEY = "wrong-key-55d1e0"
"""A token the engine refuses: it must never be logged either."""
PAYLOAD_MARK = "payload-4b1d-private"
"""A value inside run inputs and event payloads: never at info."""

TRIGGER = """mutation Trigger($w: ID!, $in: JSON, $i: ID) {
  triggerRun(workflowId: $w, input: $in, instanceId: $i) { instanceId status }
}"""
POLL = "query Poll($w: ID!, $i: ID!) { run(workflowId: $w, instanceId: $i) { status } }"
APPROVE = """mutation Approve($i: ID!, $p: JSON) {
  sendEvent(workflowId: "approval", instanceId: $i, eventType: "approve", payload: $p) { status }
}"""
DEEP = """query Deep { workflows { runs { edges { node { workflow { runs { edges { node {
  workflow { id } } } } } } } } } }"""
STOP_UNKNOWN = 'mutation Stop { terminateRun(workflowId: "flaky", instanceId: "nope") { status } }'
WORKFLOWS = "query Workflows { workflows { id } }"
ANONYMOUS = "{ workflows { id } }"

TERMINAL = {"COMPLETE", "ERRORED", "TERMINATED"}


@dataclass
class Scenario:
    """What the scenario sent, and what came back.

    ``operations`` counts each operation sent by ``(type, name or None, code)``.
    """

    url: str
    http: httpx.AsyncClient
    operations: Counter[tuple[str, str | None, str]] = field(default_factory=Counter)

    async def send(
        self,
        kind: str,
        name: str | None,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        key: str = API_KEY,
    ) -> dict[str, Any]:
        """POST one operation and count it by its outcome code."""
        response = await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {key}"},
        )
        body: dict[str, Any] = response.json()
        errors = body.get("errors") or []
        code = (errors[0].get("extensions") or {}).get("code") if errors else "ok"
        self.operations[(kind, name, code)] += 1
        return body

    async def trigger(self, workflow_id: str, instance_id: str, input: Any = None) -> None:
        """Trigger a run that must be accepted."""
        body = await self.send(
            "mutation", "Trigger", TRIGGER, {"w": workflow_id, "i": instance_id, "in": input}
        )
        assert "errors" not in body, body

    async def wait(self, workflow_id: str, instance_id: str, statuses: set[str]) -> None:
        """Poll (named ``Poll``) until the run is in ``statuses``."""
        deadline = time.monotonic() + 15
        while True:
            body = await self.send("query", "Poll", POLL, {"w": workflow_id, "i": instance_id})
            if body["data"]["run"]["status"] in statuses:
                return
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.02)

    async def scrape(self) -> str:
        """The ``/metrics`` text."""
        response = await self.http.get("/metrics")
        assert response.status_code == 200
        return response.text


def scenario_settings(workflows_dir: Path, tmp_path: Path) -> Settings:
    """The embedded engine over the test workflows, with an API key and a depth guard of 6."""
    return Settings(
        workflows_dir=workflows_dir,
        db_path=tmp_path / "observed.db",
        engine_api_keys=(API_KEY,),
        max_query_depth=6,
    )


async def play(scenario: Scenario) -> None:
    """Runs that complete, retry then complete, fail, and wait for an event; refusals."""
    await scenario.send("query", "Workflows", WORKFLOWS)
    await scenario.trigger("three-steps", "three-1", {"orderId": PAYLOAD_MARK})
    await scenario.trigger("flaky", "flaky-1")
    await scenario.trigger("always-fails", "fails-1")
    await scenario.trigger("approval", "approval-1", {"orderId": 7})
    body = await scenario.send("mutation", "Trigger", TRIGGER, {"w": "script"})
    assert body["errors"][0]["extensions"]["code"] == "NOT_TRIGGERABLE"
    await scenario.wait("approval", "approval-1", {"PAUSED"})
    await scenario.send(
        "mutation", "Approve", APPROVE, {"i": "approval-1", "p": {"approvedBy": PAYLOAD_MARK}}
    )
    for workflow_id, instance_id in [
        ("three-steps", "three-1"),
        ("flaky", "flaky-1"),
        ("always-fails", "fails-1"),
        ("approval", "approval-1"),
    ]:
        await scenario.wait(workflow_id, instance_id, TERMINAL)
    await scenario.send("query", None, ANONYMOUS)
    await scenario.send("query", None, ANONYMOUS)
    assert (await scenario.send("query", "Deep", DEEP))["errors"]
    assert (await scenario.send("mutation", "Stop", STOP_UNKNOWN))["errors"]
    refused = await scenario.send("query", "Workflows", WORKFLOWS, key=WRONG_KEY)
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


class RecordCollector(logging.Handler):
    """Keeps every record it is given, after the context fields were added."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(ContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def collected_records(*names: str) -> Iterator[RecordCollector]:
    """Collect every record (debug and up) of the loggers ``names`` inside the block."""
    collector = RecordCollector()
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(collector)
        logger.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(collector)
            logger.setLevel(level)


@asynccontextmanager
async def observed_gateway(
    serve: Serve, settings: Settings, *, tracing: Tracing | None = None
) -> AsyncIterator[Scenario]:
    """Serve the gateway for ``settings`` and yield a scenario client bound to it."""
    app = create_app(settings, tracing=tracing)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        yield Scenario(url, http)


WATCH = """subscription Watch($i: ID!) {
  runStatus(workflowId: "three-steps", instanceId: $i) { status }
}"""


async def subscribe(url: str, instance_id: str, *, until_complete: bool) -> None:
    """Subscribe to a run over graphql-transport-ws; read to the end or leave after one update."""
    ws_url = url.replace("http://", "ws://") + "/graphql"
    async with connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(
            json.dumps(
                {"type": "connection_init", "payload": {"Authorization": f"Bearer {API_KEY}"}}
            )
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": WATCH, "variables": {"i": instance_id}},
                }
            )
        )
        while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "complete":
            if not until_complete:
                return
