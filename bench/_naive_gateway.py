"""A naive Strawberry gateway: what a user writes by hand over the engine's REST API.

Only for ``bench/http.py``: one Strawberry query and one mutation, each resolver one
httpx call on one shared client, no caches, Strawberry's ASGI app on
uvicorn. Usage: ``python bench/_naive_gateway.py PORT ENGINE_URL``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# As in bench/http.py: this file's folder must not shadow the standard library's ``http``.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import httpx
import strawberry
import uvicorn
from strawberry.asgi import GraphQL
from strawberry.scalars import JSON

ENGINE_URL = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:8080"
CLIENT = httpx.AsyncClient()


@strawberry.type
class Run:
    """A run as the engine's REST API sends it."""

    instance_id: strawberry.ID
    status: str
    output: JSON | None


def as_run(body: dict[str, Any]) -> Run:
    """The engine's run body as a ``Run``."""
    return Run(
        instance_id=strawberry.ID(body["instanceId"]),
        status=str(body["status"]).upper(),
        output=body.get("output"),
    )


@strawberry.type
class Query:
    """Reads."""

    @strawberry.field
    async def run(self, workflow_id: strawberry.ID, instance_id: strawberry.ID) -> Run | None:
        """One run, by a GET to the engine."""
        response = await CLIENT.get(
            f"{ENGINE_URL}/api/v1/workflows/{workflow_id}/runs/{instance_id}"
        )
        response.raise_for_status()
        return as_run(response.json())


@strawberry.type
class Mutation:
    """Writes."""

    @strawberry.mutation
    async def trigger_run(self, workflow_id: strawberry.ID, input: JSON | None = None) -> Run:
        """Start a run, by a POST to the engine."""
        response = await CLIENT.post(
            f"{ENGINE_URL}/api/v1/workflows/{workflow_id}/runs", json={"input": input}
        )
        response.raise_for_status()
        return as_run(response.json())


app = GraphQL(strawberry.Schema(query=Query, mutation=Mutation))

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
