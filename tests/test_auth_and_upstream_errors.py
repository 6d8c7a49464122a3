"""Credentials pass through to the upstream; upstream refusals become their GraphQL codes."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp

from conftest import free_port
from gateway_client import GraphQLClient, gateway
from runcast.engine import Engine
from runcast.engine.cloudflare_api import create_cloudflare_app
from runcast.engine.server import create_engine_app
from runcast.settings import Settings
from runcast.upstream import RunAPI
from runcast.upstream.awaitstep import AwaitStepUpstream
from runcast.upstream.cloudflare import CloudflareUpstream
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
KEY = "k-123456"
WORKFLOWS = "{ workflows { id } }"


@pytest.fixture
async def locked(engine: Engine) -> AsyncIterator[GraphQLClient]:
    """A gateway over the local adapter of an engine that requires the API key KEY."""
    async with gateway(LocalUpstream(engine, api_keys=(KEY,))) as client:
        yield client


async def test_missing_credentials_are_unauthenticated(locked: GraphQLClient) -> None:
    """Without an Authorization header a locked upstream answers UNAUTHENTICATED."""
    error = await locked.error(WORKFLOWS)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"


async def test_wrong_credentials_are_unauthenticated(locked: GraphQLClient) -> None:
    """A wrong bearer token is UNAUTHENTICATED, and the token never appears in the answer."""
    body = await locked.execute(WORKFLOWS, headers={"Authorization": "Bearer wrong-token"})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "wrong-token" not in str(body)


@pytest.mark.parametrize("header", [f"Bearer {KEY}", f"bearer {KEY}", KEY])
async def test_the_authorization_header_is_forwarded(locked: GraphQLClient, header: str) -> None:
    """The caller's Authorization header reaches the upstream, with or without 'Bearer'."""
    body = await locked.execute(WORKFLOWS, headers={"Authorization": header})
    assert "errors" not in body, body
    assert body["data"]["workflows"]


async def test_credentials_are_forwarded_on_mutations_and_nested_fields(
    locked: GraphQLClient,
) -> None:
    """Mutations and nested lookups (Run.workflow) carry the caller's credentials too."""
    locked.headers["Authorization"] = f"Bearer {KEY}"
    run = await locked.trigger("three-steps", {"orderId": "auth"})
    done = await locked.wait_for_status("three-steps", run["instanceId"], {"COMPLETE"})
    assert done["output"]["orderId"] == "auth"
    data = await locked.data(
        'query($i: ID!) { run(workflowId: "three-steps", instanceId: $i) { workflow { name } } }',
        {"i": run["instanceId"]},
    )
    assert data["run"]["workflow"]["name"] == "Three steps"


async def test_credentials_pass_through_the_awaitstep_adapter(engine: Engine, serve: Serve) -> None:
    """Over the AwaitStep adapter the token reaches the engine's REST API, which checks it."""
    async with serve(create_engine_app(engine, api_keys=(KEY,))) as engine_url:
        upstream = AwaitStepUpstream(engine_url, settings=Settings(upstream_get_retries=0))
        try:
            async with gateway(upstream) as client:
                refused = await client.execute(WORKFLOWS)
                assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
                allowed = await client.execute(
                    WORKFLOWS, headers={"Authorization": f"Bearer {KEY}"}
                )
                assert "errors" not in allowed, allowed
        finally:
            await upstream.aclose()


def awaitstep_service(status: int, headers: dict[str, str], code: str) -> httpx.MockTransport:
    """A stand-in for the AwaitStep service answering every request with one error."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status,
            headers=headers,
            json={"error": {"code": code, "message": f"awaitstep says {code.lower()}"}},
        )

    return httpx.MockTransport(answer)


async def test_forbidden_from_the_upstream() -> None:
    """An upstream 403 becomes FORBIDDEN."""
    upstream = AwaitStepUpstream(
        "https://awaitstep.invalid", transport=awaitstep_service(403, {}, "FORBIDDEN")
    )
    try:
        async with gateway(upstream) as client:
            error = await client.error(WORKFLOWS)
    finally:
        await upstream.aclose()
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_rate_limited_carries_retry_after() -> None:
    """An upstream 429 becomes RATE_LIMITED with extensions.retryAfter from Retry-After."""
    upstream = AwaitStepUpstream(
        "https://awaitstep.invalid",
        transport=awaitstep_service(429, {"Retry-After": "7"}, "RATE_LIMITED"),
    )
    try:
        async with gateway(upstream) as client:
            error = await client.error(WORKFLOWS)
    finally:
        await upstream.aclose()
    assert error["extensions"]["code"] == "RATE_LIMITED"
    assert error["extensions"]["retryAfter"] == 7


async def test_unreachable_upstream_is_upstream_unavailable() -> None:
    """An upstream that refuses connections becomes UPSTREAM_UNAVAILABLE after the retries."""
    upstream = AwaitStepUpstream(
        f"http://127.0.0.1:{free_port()}",
        settings=Settings(upstream_get_retries=1),
        retry_base_delay=0.01,
    )
    try:
        async with gateway(upstream) as client:
            error = await client.error(WORKFLOWS)
    finally:
        await upstream.aclose()
    assert error["extensions"]["code"] == "UPSTREAM_UNAVAILABLE"
    assert "Traceback" not in error["message"]


@pytest.mark.parametrize("adapter", ["awaitstep", "cloudflare"])
async def test_tokens_never_reach_logs_or_error_messages(
    engine: Engine, serve: Serve, caplog: pytest.LogCaptureFixture, adapter: str
) -> None:
    """Passthrough and service tokens appear in no log record and no answer, even on failures."""
    caplog.set_level(logging.DEBUG)
    service, wrong = "svc-token-7f3a", "wrong-token-9c1d"
    if adapter == "awaitstep":
        app: ASGIApp = create_engine_app(engine, api_keys=(KEY,))
    else:
        app = create_cloudflare_app(engine, api_tokens=(KEY, service))
    async with serve(app) as engine_url:
        upstream: RunAPI
        if adapter == "awaitstep":
            upstream = AwaitStepUpstream(engine_url, settings=Settings(upstream_get_retries=0))
        else:
            upstream = CloudflareUpstream(
                "local",
                base_url=engine_url + "/client/v4",
                token=service,
                settings=Settings(upstream_get_retries=0),
            )
        answers: list[dict[str, Any]] = []
        try:
            async with gateway(upstream) as client:
                for token in (KEY, wrong, None):
                    client.headers = {"Authorization": f"Bearer {token}"} if token else {}
                    answers.append(await client.execute(WORKFLOWS))
                    answers.append(
                        await client.execute(
                            'mutation { pauseRun(workflowId: "approval", instanceId: "nope")'
                            " { status } }"
                        )
                    )
                    answers.append(
                        await client.execute(
                            'mutation { triggerRun(workflowId: "approval", input: 1) '
                            "{ instanceId workflow { id } } }"
                        )
                    )
        finally:
            await upstream.aclose()
    codes = {e["extensions"]["code"] for a in answers for e in a.get("errors", ())}
    assert {"UNAUTHENTICATED", "NOT_FOUND"} <= codes
    assert "INTERNAL_SERVER_ERROR" not in codes
    text = json.dumps(answers) + caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    for secret in (KEY, service, wrong):
        assert secret not in text
