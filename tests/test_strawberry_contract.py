"""What the override of Strawberry's execute_single relies on: fails if Strawberry changes it."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import httpx
import pytest
from cross_web import HTTPException
from starlette.types import ASGIApp
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLRequestData
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from runcast._graphql_app import GraphQLTransport
from runcast.app import create_app
from runcast.engine import Engine
from runcast.models import ANONYMOUS
from runcast.resolvers import GraphQLContext
from runcast.schema import build_schema
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
MUTATION = 'mutation { triggerRun(workflowId: "sleepy") { instanceId } }'
SUBSCRIPTION = 'subscription { runStatus(workflowId: "a", instanceId: "b") { status } }'


@dataclass
class _Method:
    """The one member of a request adapter that ``execute_single`` reads."""

    method: str


def test_the_override_keeps_strawberrys_signature() -> None:
    """GraphQLTransport.execute_single takes exactly the parameters of Strawberry's own."""
    ours = inspect.signature(GraphQLTransport.execute_single).parameters
    theirs = inspect.signature(GraphQL.execute_single).parameters
    assert list(ours) == list(theirs)


@pytest.mark.parametrize(
    ("method", "query", "refused"),
    [("GET", MUTATION, OperationType.MUTATION), ("POST", SUBSCRIPTION, OperationType.SUBSCRIPTION)],
)
async def test_strawberry_raises_the_operation_type_refusal_with_its_cause(
    engine: Engine, method: str, query: str, refused: OperationType
) -> None:
    """Strawberry's execute_single raises HTTPException from the InvalidOperationTypeError."""
    view = GraphQL(build_schema())
    context = GraphQLContext(LocalUpstream(engine), ANONYMOUS, Settings())
    data = GraphQLRequestData(query=query, variables=None, operation_name=None, extensions=None)
    with pytest.raises(HTTPException) as raised:
        await GraphQL.execute_single(view, None, _Method(method), None, context, None, data)  # type: ignore[arg-type]
    cause = raised.value.__cause__
    assert isinstance(cause, InvalidOperationTypeError)
    assert cause.operation_type is refused


async def test_a_subscription_over_get_points_to_websockets(engine: Engine, serve: Serve) -> None:
    """A subscription sent as a GET query is a 400 that names WebSocket and SSE, as over POST."""
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/graphql", params={"query": SUBSCRIPTION})
    assert response.status_code == 400
    message = response.json()["errors"][0]["message"]
    assert "WebSocket" in message
    assert "SSE" in message


@pytest.mark.parametrize(
    ("query", "allowed"),
    [("{ __typename }", ()), (SUBSCRIPTION, None), (SUBSCRIPTION, set(OperationType))],
)
async def test_execute_runs_only_single_result_operations_it_is_allowed(
    query: str, allowed: set[OperationType] | None
) -> None:
    """The schema's execute refuses what it is not allowed, and subscriptions always."""
    with pytest.raises(InvalidOperationTypeError):
        await build_schema().execute(query, allowed_operation_types=allowed)
