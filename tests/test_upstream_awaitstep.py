"""The AwaitStep adapter maps every upstream fault, against a fake AwaitStep on a real socket.

The fake serves the documented AwaitStep shapes (design.md: ``/api/v1/workflows/...``,
errors as ``{"error": {"code", "message"}}``) and answers from a per-route script, so
each test provokes exactly one fault and counts the requests that reached the server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from conftest import free_port
from fake_http import Responder, reply
from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    Forbidden,
    NotTriggerable,
    PayloadTooLarge,
    RateLimited,
    RunFinished,
    RunNotFound,
    Unauthenticated,
    UpstreamProtocolError,
    UpstreamUnavailable,
    WorkflowNotFound,
)
from runcast.models import ANONYMOUS, Credentials, RunStatus, WorkflowKind
from runcast.settings import Settings
from runcast.upstream._http import UpstreamHttpClient, parse_retry_after
from runcast.upstream.awaitstep import AwaitStepUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

RUN = {
    "instanceId": "r1",
    "workflowId": "wf",
    "status": "complete",
    "input": {"a": 1},
    "output": {"ok": True},
    "error": None,
    "createdAt": "2026-01-01T00:00:00+00:00",
    "startedAt": "2026-01-01T00:00:01+00:00",
    "endedAt": "2026-01-01T00:00:02+00:00",
    "steps": [
        {
            "name": "s1",
            "type": "step",
            "status": "complete",
            "attempts": 1,
            "output": {"ok": True},
            "error": None,
            "startedAt": "2026-01-01T00:00:01+00:00",
            "endedAt": "2026-01-01T00:00:02+00:00",
        }
    ],
}


def error(http_status: int, code: str, message: str = "nope", **extra: Any) -> Responder:
    """A responder with an AwaitStep error body."""
    return reply(http_status, {"error": {"code": code, "message": message, **extra}})


@dataclass
class FakeAwaitStep:
    """A scripted AwaitStep server: each route answers from its list, the last entry repeats."""

    script: dict[tuple[str, str], list[Responder]] = field(default_factory=dict)
    calls: list[tuple[str, str, str | None]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def on(self, method: str, path: str, *responders: Responder) -> None:
        """Script the answers of ``method path``."""
        self.script[(method, path)] = list(responders)

    def count(self, method: str, path: str) -> int:
        """How many requests ``method path`` received."""
        return sum(1 for m, p, _ in self.calls if (m, p) == (method, path))

    async def handle(self, request: Request) -> Response:
        key = (request.method, request.url.path)
        self.calls.append((*key, request.headers.get("authorization")))
        responders = self.script.get(key)
        if not responders:
            return JSONResponse({"error": {"code": "NOT_FOUND", "message": "no route"}}, 404)
        responder = responders.pop(0) if len(responders) > 1 else responders[0]
        return await responder(request)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    "/{path:path}", self.handle, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]
                )
            ]
        )


@pytest.fixture
async def fake(serve: Serve) -> AsyncIterator[tuple[FakeAwaitStep, str]]:
    """A fake AwaitStep server on a real socket, and its base URL."""
    server = FakeAwaitStep()
    async with serve(server.app()) as url:
        try:
            yield server, url
        finally:
            server.release.set()


@pytest.fixture
async def client(fake: tuple[FakeAwaitStep, str]) -> AsyncIterator[AwaitStepUpstream]:
    """An AwaitStep adapter with two GET retries, short timeouts and a fast backoff."""
    _, url = fake
    settings = Settings(upstream_get_retries=2, upstream_read_timeout=0.25)
    upstream = AwaitStepUpstream(url, settings=settings, retry_base_delay=0.005)
    try:
        yield upstream
    finally:
        await upstream.aclose()


RUN_PATH = "/api/v1/workflows/wf/runs/r1"
RUNS_PATH = "/api/v1/workflows/wf/runs"


async def test_reads_a_run_in_the_documented_shape(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A run body in the documented shape becomes a Run with its steps and timestamps."""
    server, _ = fake
    server.on("GET", RUN_PATH, reply(200, RUN))
    run = await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert run.status is RunStatus.COMPLETE
    assert run.output == {"ok": True}
    assert run.started_at == datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert run.steps is not None
    assert run.steps[0].name == "s1"
    assert run.steps[0].attempts == 1


async def test_credentials_are_forwarded_as_a_bearer_token(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """The caller's token reaches the upstream in an Authorization bearer header."""
    server, _ = fake
    server.on("GET", RUN_PATH, reply(200, RUN))
    await client.get_run("wf", "r1", credentials=Credentials("s3cret"))
    await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert [auth for _, _, auth in server.calls] == ["Bearer s3cret", None]


async def test_429_raises_rate_limited_with_retry_after_seconds(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A 429 becomes RateLimited carrying the Retry-After seconds, and is not retried."""
    server, _ = fake
    server.on("GET", RUN_PATH, reply(429, {"error": "slow down"}, {"Retry-After": "7"}))
    with pytest.raises(RateLimited) as caught:
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert caught.value.retry_after == 7
    assert server.count("GET", RUN_PATH) == 1


async def test_429_with_an_http_date_retry_after(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A Retry-After given as an HTTP date becomes the seconds until that date."""
    server, _ = fake
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    server.on("GET", RUN_PATH, reply(429, None, {"Retry-After": when}))
    with pytest.raises(RateLimited) as caught:
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert caught.value.retry_after is not None
    assert 100 < caught.value.retry_after <= 120


def test_parse_retry_after_handles_every_form() -> None:
    """Retry-After parses as seconds or an HTTP date, never negative, None when unreadable."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_retry_after("3") == 3
    assert parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now=now) == 30
    assert parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now=now) == 0
    assert parse_retry_after("-5") == 0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize("status", [502, 503, 504])
async def test_gets_are_retried_on_gateway_errors(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream, status: int
) -> None:
    """A GET that meets 502/503/504 is retried and succeeds when the upstream recovers."""
    server, _ = fake
    server.on("GET", RUN_PATH, reply(status, None), reply(status, None), reply(200, RUN))
    run = await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert run.instance_id == "r1"
    assert server.count("GET", RUN_PATH) == 3


async def test_gets_give_up_after_the_retry_bound(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A GET that keeps meeting 503 raises UpstreamUnavailable after 1 + retries attempts."""
    server, _ = fake
    server.on("GET", RUN_PATH, reply(503, {"error": {"message": "Traceback: secret internals"}}))
    with pytest.raises(UpstreamUnavailable) as caught:
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert caught.value.status_code == 503
    assert "internals" not in caught.value.message
    assert server.count("GET", RUN_PATH) == 3


async def test_500_is_unavailable_without_retry(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A 500 raises UpstreamUnavailable at once: it is not a transient gateway error."""
    server, _ = fake
    server.on("GET", RUN_PATH, reply(500, None))
    with pytest.raises(UpstreamUnavailable):
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert server.count("GET", RUN_PATH) == 1


async def test_mutations_are_never_retried_blindly(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A POST without an idempotency key meets 503 once and raises; it is not sent twice.

    Terminate is idempotent (a repeat of an applied terminate is a success), so its
    502 is retried like a read.
    """
    server, _ = fake
    server.on("POST", RUNS_PATH, reply(503, None))
    server.on("POST", f"{RUN_PATH}/events", reply(503, None))
    server.on("POST", f"{RUN_PATH}/restart", reply(503, None))
    server.on("DELETE", RUN_PATH, reply(502, None))
    with pytest.raises(UpstreamUnavailable):
        await client.trigger("wf", input={}, credentials=ANONYMOUS)
    with pytest.raises(UpstreamUnavailable):
        await client.send_event("wf", "r1", event_type="x", credentials=ANONYMOUS)
    with pytest.raises(UpstreamUnavailable):
        await client.restart("wf", "r1", credentials=ANONYMOUS)
    with pytest.raises(UpstreamUnavailable):
        await client.terminate("wf", "r1", credentials=ANONYMOUS)
    assert server.count("POST", RUNS_PATH) == 1
    assert server.count("POST", f"{RUN_PATH}/events") == 1
    assert server.count("POST", f"{RUN_PATH}/restart") == 1
    assert server.count("DELETE", RUN_PATH) > 1


async def test_trigger_with_an_instance_id_is_retried(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A trigger naming its instance id is idempotent, so a 503 is retried."""
    server, _ = fake
    server.on(
        "POST", RUNS_PATH, reply(503, None), reply(201, {"instanceId": "r1", "status": "queued"})
    )
    run = await client.trigger("wf", input={"a": 1}, instance_id="r1", credentials=ANONYMOUS)
    assert (run.instance_id, run.status, run.input) == ("r1", RunStatus.QUEUED, {"a": 1})
    assert server.count("POST", RUNS_PATH) == 2


async def test_retried_trigger_that_already_got_through_returns_the_run(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """When the first attempt created the run but its answer was lost, the 409 is read back."""
    server, _ = fake
    server.on("POST", RUNS_PATH, reply(502, None), error(409, "ALREADY_EXISTS"))
    server.on("GET", RUN_PATH, reply(200, {**RUN, "status": "running"}))
    run = await client.trigger("wf", input={"a": 1}, instance_id="r1", credentials=ANONYMOUS)
    assert run.status is RunStatus.RUNNING
    assert server.count("GET", RUN_PATH) == 1


async def test_first_attempt_409_is_already_exists(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A 409 on the first attempt of a trigger is a real duplicate: AlreadyExists."""
    server, _ = fake
    server.on("POST", RUNS_PATH, error(409, "ALREADY_EXISTS"))
    with pytest.raises(AlreadyExists):
        await client.trigger("wf", input={"a": 1}, instance_id="r1", credentials=ANONYMOUS)


async def test_read_timeout_is_unavailable_after_retries(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A GET whose answer never comes times out, is retried, then raises UpstreamUnavailable."""
    server, _ = fake

    async def hang(request: Request) -> Response:
        await asyncio.wait_for(server.release.wait(), 10)
        return JSONResponse(RUN)

    server.on("GET", RUN_PATH, hang)
    outcomes: list[str] = []
    client.http.on_request = lambda name, outcome: outcomes.append(outcome)
    with pytest.raises(UpstreamUnavailable, match="timed out"):
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert server.count("GET", RUN_PATH) == 3
    assert outcomes == ["timeout"] * 3


async def test_hanging_mutation_is_not_retried(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A POST whose answer never comes times out once: it may have happened, so no retry."""
    server, _ = fake

    async def hang(request: Request) -> Response:
        await asyncio.wait_for(server.release.wait(), 10)
        return JSONResponse(RUN, status_code=201)

    server.on("POST", RUNS_PATH, hang)
    with pytest.raises(UpstreamUnavailable, match="timed out"):
        await client.trigger("wf", input={}, credentials=ANONYMOUS)
    assert server.count("POST", RUNS_PATH) == 1


async def test_connection_refused_is_unavailable() -> None:
    """An upstream nobody listens on raises UpstreamUnavailable after retrying, even a POST.

    A refused connection means the request never left, so retrying a mutation is safe.
    """
    outcomes: list[str] = []
    upstream = AwaitStepUpstream(
        f"http://127.0.0.1:{free_port()}",
        settings=Settings(upstream_get_retries=1),
        on_request=lambda name, outcome: outcomes.append(outcome),
        retry_base_delay=0.005,
    )
    try:
        with pytest.raises(UpstreamUnavailable, match="could not be reached"):
            await upstream.list_workflows(credentials=ANONYMOUS)
        with pytest.raises(UpstreamUnavailable, match="could not be reached"):
            await upstream.trigger("wf", credentials=ANONYMOUS)
        with pytest.raises(UpstreamUnavailable):
            await upstream.ping()
    finally:
        await upstream.aclose()
    assert outcomes[:4] == ["connection_error"] * 4


@pytest.mark.parametrize(("status", "expected"), [(401, Unauthenticated), (403, Forbidden)])
async def test_auth_failures_are_mapped(
    fake: tuple[FakeAwaitStep, str],
    client: AwaitStepUpstream,
    status: int,
    expected: type[Exception],
) -> None:
    """401 becomes Unauthenticated and 403 Forbidden, with the upstream's message."""
    server, _ = fake
    server.on("GET", "/api/v1/workflows", error(status, "AUTH", "key revoked"))
    with pytest.raises(expected, match="key revoked"):
        await client.list_workflows(credentials=Credentials("k"))
    await client.ping()  # a server that refuses the caller is still up


@pytest.mark.parametrize(
    "body",
    [b"<html>Bad gateway</html>", b'{"instanceId": ', b"[1, 2]", b'{"status": "running"}'],
)
async def test_unreadable_bodies_are_protocol_errors(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream, body: bytes
) -> None:
    """A 200 whose body is not JSON or not a run raises UpstreamProtocolError."""
    server, _ = fake

    async def garbage(request: Request) -> Response:
        return Response(body, media_type="application/json")

    server.on("GET", RUN_PATH, garbage)
    server.on("GET", RUNS_PATH, garbage)
    server.on("GET", "/api/v1/workflows", garbage)
    with pytest.raises(UpstreamProtocolError):
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    with pytest.raises(UpstreamProtocolError):
        await client.list_runs("wf", credentials=ANONYMOUS)
    with pytest.raises(UpstreamProtocolError):
        await client.list_workflows(credentials=ANONYMOUS)


async def test_unknown_status_is_kept_raw(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """A status string runcast does not know reads as UNKNOWN with the raw string kept."""
    server, _ = fake
    odd = {**RUN, "status": "hibernating", "steps": "n/a", "createdAt": "yesterday", "extra": 1}
    server.on("GET", RUN_PATH, reply(200, odd))
    server.on("GET", RUNS_PATH, reply(200, {"data": [odd], "nextCursor": None}))
    run = await client.get_run("wf", "r1", credentials=ANONYMOUS)
    assert (run.status, run.raw_status, run.steps, run.created_at) == (
        RunStatus.UNKNOWN,
        "hibernating",
        None,
        None,
    )
    page = await client.list_runs("wf", credentials=ANONYMOUS)
    assert page.runs[0].raw_status == "hibernating"
    assert page.next_cursor is None


async def test_error_bodies_map_to_the_error_tree(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """Each documented 4xx error becomes its runcast error, with the context attached."""
    server, _ = fake
    server.on("GET", RUN_PATH, error(404, "RUN_NOT_FOUND"))
    server.on("GET", "/api/v1/workflows/nope", error(404, "WORKFLOW_NOT_FOUND"))
    server.on("POST", f"{RUN_PATH}/events", error(409, "RUN_FINISHED", status="complete"))
    server.on("POST", f"{RUN_PATH}/pause", error(413, "PAYLOAD_TOO_LARGE", limit=1024))
    server.on("POST", RUNS_PATH, error(400, "NOT_TRIGGERABLE", url="https://w.example"))
    server.on("POST", f"{RUN_PATH}/resume", error(400, "BAD_USER_INPUT", "bad id"))
    server.on("POST", f"{RUN_PATH}/restart", reply(418, None))
    with pytest.raises(RunNotFound):
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    with pytest.raises(WorkflowNotFound):
        await client.get_workflow("nope", credentials=ANONYMOUS)
    with pytest.raises(RunFinished) as finished:
        await client.send_event("wf", "r1", event_type="x", credentials=ANONYMOUS)
    assert finished.value.status == "complete"
    with pytest.raises(PayloadTooLarge) as large:
        await client.pause("wf", "r1", credentials=ANONYMOUS)
    assert large.value.limit == 1024
    with pytest.raises(NotTriggerable) as script:
        await client.trigger("wf", credentials=ANONYMOUS)
    assert script.value.url == "https://w.example"
    with pytest.raises(BadUserInput, match="bad id"):
        await client.resume("wf", "r1", credentials=ANONYMOUS)
    with pytest.raises(UpstreamProtocolError):
        await client.restart("wf", "r1", credentials=ANONYMOUS)


async def test_bare_error_statuses_still_map(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """Errors without a code are mapped from the status and the operation alone."""
    server, _ = fake
    server.on("GET", RUN_PATH, reply(404, None))
    server.on("POST", RUNS_PATH, reply(409, "conflict"))
    server.on("POST", f"{RUN_PATH}/events", reply(409, None))
    with pytest.raises(RunNotFound):
        await client.get_run("wf", "r1", credentials=ANONYMOUS)
    with pytest.raises(AlreadyExists):
        await client.trigger("wf", instance_id="r2", credentials=ANONYMOUS)
    with pytest.raises(RunFinished):
        await client.send_event("wf", "r1", event_type="x", credentials=ANONYMOUS)


async def test_workflows_parse_tolerantly(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """Workflow listings accept scripts, missing names and unknown kinds."""
    server, _ = fake
    server.on(
        "GET",
        "/api/v1/workflows",
        reply(
            200,
            {
                "data": [
                    {"id": "a", "name": "A", "kind": "workflow"},
                    {"id": "s", "kind": "script", "url": "https://s.example"},
                    {"id": "z", "kind": "durable-object"},
                ]
            },
        ),
    )
    workflows = await client.list_workflows(credentials=ANONYMOUS)
    assert [(w.id, w.name, w.kind, w.url) for w in workflows] == [
        ("a", "A", WorkflowKind.WORKFLOW, None),
        ("s", "s", WorkflowKind.SCRIPT, "https://s.example"),
        ("z", "z", WorkflowKind.WORKFLOW, None),
    ]


async def test_list_runs_sends_filters_and_reads_the_cursor(
    fake: tuple[FakeAwaitStep, str], client: AwaitStepUpstream
) -> None:
    """Status filters, cursor and limit go out as query parameters; nextCursor comes back."""
    server, _ = fake
    seen: list[str] = []

    async def listing(request: Request) -> Response:
        seen.append(str(request.query_params))
        return JSONResponse({"data": [RUN], "nextCursor": "c2"})

    server.on("GET", RUNS_PATH, listing)
    page = await client.list_runs(
        "wf",
        statuses=[RunStatus.PAUSED, RunStatus.WAITING_FOR_PAUSE],
        cursor="c1",
        limit=5,
        credentials=ANONYMOUS,
    )
    assert page.next_cursor == "c2"
    assert seen == ["limit=5&status=paused&status=waitingForPause&cursor=c1"]


async def test_ids_are_escaped_in_paths() -> None:
    """An instance id with a slash is percent-encoded, so it cannot reach another route."""
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path)
        return httpx.Response(404, json={"error": {"code": "RUN_NOT_FOUND", "message": "no"}})

    upstream = AwaitStepUpstream("http://awaitstep.invalid", transport=httpx.MockTransport(handler))
    try:
        with pytest.raises(RunNotFound):
            await upstream.get_run("wf", "r1/events", credentials=ANONYMOUS)
    finally:
        await upstream.aclose()
    assert seen == [b"/api/v1/workflows/wf/runs/r1%2Fevents"]


async def test_observer_sees_every_attempt(fake: tuple[FakeAwaitStep, str]) -> None:
    """The on_request hook is told the outcome of every HTTP attempt, retries included."""
    server, url = fake
    outcomes: list[tuple[str, str]] = []
    upstream = AwaitStepUpstream(
        url,
        settings=Settings(upstream_get_retries=2),
        on_request=lambda name, outcome: outcomes.append((name, outcome)),
        retry_base_delay=0.005,
    )
    server.on("GET", RUN_PATH, reply(503, None), reply(200, RUN))
    server.on("GET", RUNS_PATH, reply(429, None))
    server.on("GET", "/api/v1/workflows/x", reply(404, None))
    try:
        await upstream.get_run("wf", "r1", credentials=ANONYMOUS)
        with pytest.raises(RateLimited):
            await upstream.list_runs("wf", credentials=ANONYMOUS)
        with pytest.raises(WorkflowNotFound):
            await upstream.get_workflow("x", credentials=ANONYMOUS)
    finally:
        await upstream.aclose()
    assert outcomes == [
        ("awaitstep", "server_error"),
        ("awaitstep", "ok"),
        ("awaitstep", "rate_limited"),
        ("awaitstep", "client_error"),
    ]


async def test_a_failing_observer_does_not_break_requests(
    fake: tuple[FakeAwaitStep, str],
) -> None:
    """An observer that raises is logged and the request still succeeds."""
    server, url = fake

    def broken(name: str, outcome: str) -> None:
        raise RuntimeError("metrics down")

    upstream = AwaitStepUpstream(url, on_request=broken)
    server.on("GET", RUN_PATH, reply(200, RUN))
    try:
        run = await upstream.get_run("wf", "r1", credentials=ANONYMOUS)
    finally:
        await upstream.aclose()
    assert run.instance_id == "r1"


async def test_closed_adapter_refuses_calls(client: AwaitStepUpstream) -> None:
    """After aclose every call raises UpstreamUnavailable."""
    await client.aclose()
    with pytest.raises(UpstreamUnavailable, match="closed"):
        await client.get_run("wf", "r1", credentials=ANONYMOUS)


async def test_injected_transport_replaces_the_network() -> None:
    """A transport given to the HTTP boundary is used instead of opening sockets."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [], "path": request.url.path})

    http = UpstreamHttpClient(
        "test", "http://upstream.invalid", transport=httpx.MockTransport(handler)
    )
    try:
        response = await http.request("GET", "/api/v1/workflows")
    finally:
        await http.aclose()
    assert response.json()["path"] == "/api/v1/workflows"


async def test_base_url_may_include_the_api_prefix(
    fake: tuple[FakeAwaitStep, str],
) -> None:
    """A base URL ending in /api/v1 is accepted and not doubled."""
    server, url = fake
    server.on("GET", "/api/v1/workflows", reply(200, {"data": []}))
    upstream = AwaitStepUpstream(f"{url}/api/v1/")
    try:
        assert await upstream.list_workflows(credentials=ANONYMOUS) == []
    finally:
        await upstream.aclose()
