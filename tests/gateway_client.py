"""Helpers for gateway tests: a small GraphQL client and a call-counting upstream wrapper.

Importable as ``gateway_client``: pytest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx

from runcast.app import create_app
from runcast.settings import Settings
from runcast.upstream import RunAPI

RUN_FIELDS = """
instanceId workflowId status rawStatus isTerminal input output error
createdAt startedAt endedAt
steps { name type status attempts output error startedAt endedAt }
"""


class GraphQLClient:
    """Posts GraphQL operations to ``/graphql`` and unpacks the answers."""

    def __init__(self, http: httpx.AsyncClient, *, headers: Mapping[str, str] | None = None):
        self.http = http
        self.headers = dict(headers or {})

    async def execute(
        self,
        query: str,
        variables: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """The whole JSON answer of a POST (which must be 200)."""
        response = await self.http.post(
            "/graphql",
            json={"query": query, "variables": dict(variables or {})},
            headers={**self.headers, **(headers or {})},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(self, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        """The ``data`` of an answer that must have no errors."""
        body = await self.execute(query, variables)
        assert "errors" not in body, body
        return body["data"]

    async def error(self, query: str, variables: Mapping[str, Any] | None = None) -> Any:
        """The only error of an answer that must have exactly one."""
        body = await self.execute(query, variables)
        assert len(body.get("errors") or []) == 1, body
        return body["errors"][0]

    async def run(self, workflow_id: str, instance_id: str) -> Any:
        """The run as ``Query.run`` returns it (or None)."""
        data = await self.data(
            f"query($w: ID!, $i: ID!) {{ run(workflowId: $w, instanceId: $i) {{ {RUN_FIELDS} }} }}",
            {"w": workflow_id, "i": instance_id},
        )
        return data["run"]

    async def wait_for_event_wait(
        self, workflow_id: str, instance_id: str, *, within: float = 10.0
    ) -> Any:
        """Poll until the run is PAUSED at a ``wait_for_event`` (not at an earlier sleep)."""
        query = (
            "query($w: ID!, $i: ID!) { run(workflowId: $w, instanceId: $i)"
            " { status wait { reason eventType } } }"
        )
        deadline = time.monotonic() + within
        while True:
            run = (await self.data(query, {"w": workflow_id, "i": instance_id}))["run"]
            if run and run["status"] == "PAUSED" and (run["wait"] or {}).get("reason") == "EVENT":
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run never reached its event wait: {run}")
            await asyncio.sleep(0.02)

    async def wait_for_status(
        self,
        workflow_id: str,
        instance_id: str,
        statuses: Collection[str],
        *,
        within: float = 10.0,
    ) -> Any:
        """Poll ``Query.run`` until the run is in one of ``statuses``; fail after ``within`` s."""
        deadline = time.monotonic() + within
        while True:
            run = await self.run(workflow_id, instance_id)
            if run is not None and run["status"] in statuses:
                return run
            if time.monotonic() > deadline:
                raise AssertionError(f"run never reached {sorted(statuses)}: {run}")
            await asyncio.sleep(0.02)

    async def trigger(
        self, workflow_id: str, input: Any = None, instance_id: str | None = None
    ) -> Any:
        """Trigger a run through ``triggerRun`` and return it."""
        data = await self.data(
            "mutation($w: ID!, $in: JSON, $i: ID) {"
            f" triggerRun(workflowId: $w, input: $in, instanceId: $i) {{ {RUN_FIELDS} }} }}",
            {"w": workflow_id, "in": input, "i": instance_id},
        )
        return data["triggerRun"]


class CountingUpstream:
    """Wraps a real adapter and counts the calls made to it, by method name."""

    def __init__(self, inner: RunAPI) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: Counter[str] = Counter()

    def __getattr__(self, attribute: str) -> Any:
        target = getattr(self.inner, attribute)
        if not inspect.iscoroutinefunction(target):
            return target

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[attribute] += 1
            return await target(*args, **kwargs)

        return counted


@asynccontextmanager
async def gateway(
    upstream: Any, settings: Settings | None = None, *, headers: Mapping[str, str] | None = None
) -> AsyncIterator[GraphQLClient]:
    """The gateway app over ``upstream``, lifespan running, driven through httpx.ASGITransport."""
    app = create_app(settings or Settings(), upstream=upstream)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost") as http,
    ):
        yield GraphQLClient(http, headers=headers)
