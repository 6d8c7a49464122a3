"""GraphQL over HTTP at /graphql: media types, status codes, GraphiQL, limits, guards, CORS."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from runcast.app import create_app
from runcast.engine import Engine
from runcast.models import Credentials, Run
from runcast.settings import Settings
from runcast.upstream import RunAPI
from runcast.upstream.local import LocalUpstream

GRAPHQL_RESPONSE = "application/graphql-response+json"


@asynccontextmanager
async def http_client(
    upstream: RunAPI, settings: Settings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of a gateway app (lifespan running) over ``upstream``."""
    app = create_app(settings or Settings(), upstream=upstream)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://localhost"
        ) as client,
    ):
        yield client


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of a gateway with default settings over the test engine."""
    async with http_client(LocalUpstream(engine)) as http:
        yield http


async def test_graphql_response_json_when_the_client_accepts_it(client: httpx.AsyncClient) -> None:
    """A client accepting application/graphql-response+json gets that media type in UTF-8."""
    response = await client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == f"{GRAPHQL_RESPONSE}; charset=utf-8"
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/json, */*"])
async def test_application_json_otherwise(client: httpx.AsyncClient, accept: str | None) -> None:
    """Without Accept, with */* or with application/json the answer is application/json."""
    headers = {"accept": accept} if accept else {}
    response = await client.post("/graphql", json={"query": "{ __typename }"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")


async def test_graphql_response_json_preferred_by_weight(client: httpx.AsyncClient) -> None:
    """An Accept header preferring application/json by q-value gets application/json."""
    response = await client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"accept": f"{GRAPHQL_RESPONSE};q=0.5, application/json"},
    )
    assert response.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{", "GRAPHQL_PARSE_FAILED"),
        ("{ noSuchField }", "GRAPHQL_VALIDATION_FAILED"),
        ("query($id: ID!) { workflow(id: $id) { id } }", "BAD_USER_INPUT"),
    ],
)
async def test_request_errors_are_400_without_data_for_graphql_response_json(
    client: httpx.AsyncClient, query: str, code: str
) -> None:
    """Parse, validation and variable failures are 400 without data (graphql-response+json)."""
    response = await client.post(
        "/graphql", json={"query": query, "variables": {}}, headers={"accept": GRAPHQL_RESPONSE}
    )
    assert response.status_code == 400
    body = response.json()
    assert "data" not in body
    assert body["errors"][0]["extensions"]["code"] == code


async def test_request_errors_are_200_for_application_json(client: httpx.AsyncClient) -> None:
    """With application/json a document that fails validation still answers 200."""
    response = await client.post(
        "/graphql", json={"query": "{ noSuchField }"}, headers={"accept": "application/json"}
    )
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_field_errors_keep_200_and_data(client: httpx.AsyncClient) -> None:
    """An error raised while resolving keeps status 200 and the data entry, for both media types."""
    response = await client.post(
        "/graphql",
        json={"query": 'mutation { triggerRun(workflowId: "script") { instanceId } }'},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_TRIGGERABLE"


async def test_get_runs_queries(client: httpx.AsyncClient) -> None:
    """A query sent as GET parameters is executed."""
    response = await client.get(
        "/graphql",
        params={
            "query": "query($id: ID!) { workflow(id: $id) { id } }",
            "variables": '{"id": "sleepy"}',
        },
        headers={"accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"workflow": {"id": "sleepy"}}}


async def test_get_with_variables_that_are_not_json_names_the_parameter(
    client: httpx.AsyncClient,
) -> None:
    """A GET whose variables parameter is not JSON is a 400 naming that parameter, not the body."""
    response = await client.get(
        "/graphql",
        params={"query": "{ workflows { id } }", "variables": "{bad"},
        headers={"Accept": "application/graphql-response+json"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "errors": [
            {
                "message": "The `variables` query parameter is not valid JSON",
                "extensions": {"code": "BAD_REQUEST"},
            }
        ]
    }


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405_with_a_json_error(
    client: httpx.AsyncClient, method: str
) -> None:
    """Methods other than GET and POST get 405, ``Allow: GET, POST`` and a JSON errors body."""
    response = await client.request(method, "/graphql", json={"query": "{ workflows { id } }"})
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["errors"][0]["message"]


async def test_get_refuses_mutations_with_405(client: httpx.AsyncClient) -> None:
    """A mutation sent over GET is refused with 405, Allow: POST and a JSON error."""
    response = await client.get(
        "/graphql",
        params={"query": 'mutation { triggerRun(workflowId: "sleepy") { instanceId } }'},
        headers={"accept": GRAPHQL_RESPONSE},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"].startswith(GRAPHQL_RESPONSE)
    assert "POST" in response.json()["errors"][0]["message"]


async def test_subscriptions_over_http_are_refused(client: httpx.AsyncClient) -> None:
    """A subscription sent over HTTP is a 400 pointing to WebSockets."""
    response = await client.post(
        "/graphql",
        json={"query": 'subscription { runStatus(workflowId: "a", instanceId: "b") { status } }'},
    )
    assert response.status_code == 400
    assert "WebSocket" in response.json()["errors"][0]["message"]


async def test_browser_get_serves_graphiql(client: httpx.AsyncClient) -> None:
    """A browser GET of /graphql without a query serves the GraphiQL page."""
    response = await client.get("/graphql", headers={"accept": "text/html,*/*;q=0.8"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"query": ', {"content-type": "application/json"}),
        (b"", {"content-type": "application/json"}),
        (b'"just a string"', {"content-type": "application/json"}),
        (b'{"query": "{ __typename }"}', {"content-type": "text/plain"}),
        (b'{"query": "{ __typename }", "operationName": 5}', {"content-type": "application/json"}),
        (b'{"notquery": "{ __typename }"}', {"content-type": "application/json"}),
    ],
)
async def test_malformed_requests_are_400_with_a_json_error(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str]
) -> None:
    """Bodies that are not a GraphQL request get 400 with a JSON errors list."""
    response = await client.post("/graphql", content=content, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"]


async def test_body_over_the_limit_is_413(engine: Engine) -> None:
    """A body over max_body_bytes is refused with 413 and a JSON error naming the limit."""
    async with http_client(LocalUpstream(engine), Settings(max_body_bytes=1000)) as http:
        big = {"query": "{ __typename }", "variables": {"pad": "x" * 2000}}
        response = await http.post("/graphql", json=big)
        assert response.status_code == 413
        assert "1000 bytes" in response.json()["errors"][0]["message"]

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(30):
                yield b" " * 100

        streamed = await http.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
        ok = await http.post("/graphql", json={"query": "{ __typename }"})
        assert ok.status_code == 200


async def test_depth_limit(engine: Engine) -> None:
    """A query deeper than max_query_depth fails validation."""
    async with http_client(LocalUpstream(engine), Settings(max_query_depth=3)) as http:
        shallow = await http.post("/graphql", json={"query": "{ workflows { id } }"})
        assert "errors" not in shallow.json()
        deep = await http.post(
            "/graphql",
            json={"query": "{ workflows { runs { edges { node { workflow { id } } } } } }"},
        )
        error = deep.json()["errors"][0]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "depth" in error["message"]


async def test_alias_limit(engine: Engine) -> None:
    """A query with more aliases than max_aliases fails validation."""
    async with http_client(LocalUpstream(engine), Settings(max_aliases=2)) as http:
        query = "{ a: __typename b: __typename c: __typename }"
        error = (await http.post("/graphql", json={"query": query})).json()["errors"][0]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "aliases" in error["message"]


async def test_token_limit(engine: Engine) -> None:
    """A document with more tokens than max_query_tokens is refused while parsing."""
    async with http_client(LocalUpstream(engine), Settings(max_query_tokens=10)) as http:
        query = "{ " + " ".join(["__typename"] * 20) + " }"
        error = (await http.post("/graphql", json={"query": query})).json()["errors"][0]
        assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
        assert "tokens" in error["message"]


async def test_introspection_on_by_default_and_switchable_off(engine: Engine) -> None:
    """Introspection answers by default and fails validation when turned off."""
    query = {"query": "{ __schema { queryType { name } } }"}
    async with http_client(LocalUpstream(engine)) as http:
        assert (await http.post("/graphql", json=query)).json() == {
            "data": {"__schema": {"queryType": {"name": "Query"}}}
        }
    async with http_client(LocalUpstream(engine), Settings(introspection=False)) as http:
        error = (await http.post("/graphql", json=query)).json()["errors"][0]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_cors_allows_only_configured_origins(engine: Engine) -> None:
    """Browser requests from an allowed origin get CORS headers; other origins do not."""
    settings = Settings(allowed_origins=("https://app.example.com",))
    async with http_client(LocalUpstream(engine), settings) as http:
        preflight = await http.options(
            "/graphql",
            headers={
                "origin": "https://app.example.com",
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type, authorization",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        foreign = await http.options(
            "/graphql",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert foreign.status_code == 400
        assert "access-control-allow-origin" not in foreign.headers
        simple = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in simple.headers


class BuggyUpstream(LocalUpstream):
    """The real local adapter with a bug in get_run: it raises a non-runcast exception."""

    async def get_run(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        raise ZeroDivisionError("secret-internal-detail")


async def test_unexpected_errors_are_masked_and_logged(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected exception is INTERNAL_SERVER_ERROR without detail; the log has the detail."""
    caplog.set_level(logging.ERROR, logger="runcast.graphql")
    async with http_client(BuggyUpstream(engine)) as http:
        response = await http.post(
            "/graphql",
            json={"query": '{ run(workflowId: "sleepy", instanceId: "x") { instanceId } }'},
        )
    body: dict[str, Any] = response.json()
    assert response.status_code == 200
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": [{"line": 1, "column": 3}],
            "path": ["run"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]
    assert "secret-internal-detail" not in response.text
    assert "ZeroDivisionError" not in response.text
    assert "secret-internal-detail" in caplog.text


async def test_coded_errors_are_not_logged_as_errors(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A coded error (here NOT_FOUND) passes through unmasked and logs no error."""
    caplog.set_level(logging.INFO)
    response = await client.post(
        "/graphql",
        json={
            "query": 'mutation { terminateRun(workflowId: "sleepy", instanceId: "x") { status } }'
        },
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_response_bodies_are_compact_json_even_where_orjson_refuses() -> None:
    """Bodies are compact JSON; integers beyond 64 bits and non-string keys fall back to json."""
    import json

    from runcast._graphql_app import encode_json_body

    plain = {"data": {"run": {"status": "COMPLETE", "output": [1.5, "é", None, True]}}}
    refused = {"data": {"big": 2**70, 1: "one"}}
    for value in (plain, refused):
        body = encode_json_body(value)
        assert json.loads(body) == json.loads(json.dumps(value))
        assert b", " not in body
        assert b": " not in body
