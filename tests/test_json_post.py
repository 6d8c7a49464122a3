"""Plain JSON POSTs to /graphql, answered below Strawberry's view, answer as the view does."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response

from runcast._graphql_app import GraphQLTransport
from runcast._json_post import is_plain_json_post, json_operation
from runcast.app import create_app
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

RUN_QUERY = "query($w: ID!, $i: ID!) { run(workflowId: $w, instanceId: $i) { instanceId status } }"
PERSISTED = "{ workflows { id } }"
PERSISTED_HASH = hashlib.sha256(PERSISTED.encode()).hexdigest()


def persisted(query: str | None) -> dict[str, Any]:
    """A persisted-query request for PERSISTED, with or without its text."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": PERSISTED_HASH}}
    return {"query": query, "extensions": extensions}


BODIES: list[tuple[str, bytes, str]] = [
    ("read", json.dumps({"query": RUN_QUERY, "variables": {"w": "noop", "i": "x"}}).encode(), ""),
    ("typename", b'{"query": "{ __typename }"}', "application/json; charset=utf-8"),
    ("parse error", b'{"query": "{"}', ""),
    ("validation error", b'{"query": "{ nope }"}', ""),
    ("bad variables", json.dumps({"query": RUN_QUERY, "variables": {"w": 1}}).encode(), ""),
    ("no query", b"{}", ""),
    ("unknown operation", b'{"query": "query A { __typename }", "operationName": "B"}', ""),
    ("operationName not a string", b'{"query": "{ __typename }", "operationName": 5}', ""),
    ("variables not an object", b'{"query": "{ __typename }", "variables": []}', ""),
    ("batch", b'[{"query": "{ __typename }"}]', ""),
    ("not an object", b'"{ __typename }"', ""),
    ("not JSON", b"{query", ""),
    ("NaN", b'{"query": "{ __typename }", "variables": {"a": NaN}}', ""),
    (
        "too deep",
        b'{"query": "{ __typename }", "variables": ' + b'{"a": ' * 80 + b"1" + b"}" * 81,
        "",
    ),
    ("not UTF-8", b'{"query": "\xff"}', ""),
    (
        "big integer",
        b'{"query": "{ __typename }", "variables": {"a": 123456789012345678901234}}',
        "",
    ),
    (
        "subscription",
        json.dumps(
            {"query": 'subscription { runStatus(workflowId: "a", instanceId: "b") { status } }'}
        ).encode(),
        "",
    ),
    (
        "mutation error",
        b'{"query": "mutation { triggerRun(workflowId: \\"nope\\") { instanceId } }"}',
        "",
    ),
    ("too many fields", json.dumps({"query": "{ " + "__typename " * 1200 + "}"}).encode(), ""),
    ("persisted miss", json.dumps(persisted(None)).encode(), ""),
    ("persisted register", json.dumps(persisted(PERSISTED)).encode(), ""),
    ("persisted hit", json.dumps(persisted(None)).encode(), ""),
    ("other content type", b'{"query": "{ __typename }"}', "text/plain"),
]
"""Requests (label, body, content type or "" for application/json), in the order sent."""


def transport_of(app: Any) -> GraphQLTransport:
    """The app's /graphql endpoint."""
    for route in app.routes:
        endpoint = getattr(route, "endpoint", None)
        if isinstance(endpoint, GraphQLTransport):
            return endpoint
    raise AssertionError("no /graphql route")


@asynccontextmanager
async def gateway(
    engine: Engine, *, fast: bool
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """A client of a gateway with the JSON POST path on or off, and the calls of the view."""
    app = create_app(Settings(), upstream=LocalUpstream(engine))
    transport = transport_of(app)
    transport.json_posts.enabled = fast
    view_calls: list[str] = []
    run: Callable[[Request], Awaitable[Response]] = transport.run

    async def counted_run(request: Request) -> Response:
        view_calls.append(request.method)
        return await run(request)

    transport.run = counted_run  # type: ignore[method-assign]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://localhost") as http,
    ):
        yield http, view_calls


async def answers(http: httpx.AsyncClient, accept: str) -> list[tuple[str, int, str, bytes]]:
    """Every request of BODIES sent in order: label, status, content type, body."""
    got = []
    for label, body, content_type in BODIES:
        response = await http.post(
            "/graphql",
            content=body,
            headers={"content-type": content_type or "application/json", "accept": accept},
        )
        got.append(
            (label, response.status_code, response.headers["content-type"], response.content)
        )
    return got


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_the_json_post_path_answers_every_request_as_the_view_does(
    engine: Engine, accept: str
) -> None:
    """Each request gets the same status, content type and body bytes with the path on and off."""
    async with gateway(engine, fast=False) as (http, view_calls):
        expected = await answers(http, accept)
    assert len(view_calls) == len(BODIES)
    async with gateway(engine, fast=True) as (http, view_calls):
        got = await answers(http, accept)
    assert got == expected
    assert len(view_calls) < len(BODIES) // 2


async def test_a_usual_operation_skips_the_view(engine: Engine) -> None:
    """A query, a mutation and a persisted query in a JSON POST never reach Strawberry's view."""
    async with gateway(engine, fast=True) as (http, view_calls):
        for body in (
            {"query": "{ __typename }"},
            {"query": 'mutation { triggerRun(workflowId: "nope") { instanceId } }'},
            persisted(PERSISTED),
            persisted(None),
        ):
            response = await http.post("/graphql", json=body)
            assert response.status_code == 200, response.text
        assert (await http.get("/graphql?query={__typename}")).status_code == 200
    assert view_calls == ["GET"]


@pytest.mark.parametrize(
    ("method", "content_type", "streaming", "plain"),
    [
        ("POST", "application/json", False, True),
        ("POST", "Application/JSON; charset=utf-8", False, True),
        ("POST", "application/json", True, False),
        ("GET", "application/json", False, False),
        ("POST", "application/graphql", False, False),
        ("POST", "multipart/form-data; boundary=x", False, False),
        ("POST", None, False, False),
    ],
)
def test_plain_json_posts_are_told_apart(
    method: str, content_type: str | None, streaming: bool, plain: bool
) -> None:
    """Only a POST of application/json (any parameters) that wants no stream is plain."""
    headers = {} if content_type is None else {"content-type": content_type}
    assert is_plain_json_post(method, headers, streaming) is plain


def test_json_operation_leaves_everything_unusual_to_the_view() -> None:
    """A body that is not one well-typed operation is no operation; one that is keeps its parts."""
    for body in (b"[]", b"1", b"{", b'{"query": 1}', b'{"variables": 2}', b'{"extensions": []}'):
        assert json_operation(body) is None
    operation = json_operation(
        b'{"query": "q", "variables": {"a": 1}, "operationName": "A", "extensions": {}}'
    )
    assert operation is not None
    assert (operation.query, operation.variables, operation.operation_name) == ("q", {"a": 1}, "A")
    assert (operation.extensions, operation.protocol) == ({}, "http")
