"""The Cloudflare adapter against the engine's Cloudflare API and a fake Cloudflare (real sockets).

The first half drives the embedded engine through ``create_cloudflare_app``; the
second feeds the adapter the documented variations (params as a JSON string,
output as a number, steps left out, statuses it has not seen, the rate-limit
headers, failure envelopes) from a scripted fake built from the reference shapes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, aclosing
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
from starlette.types import ASGIApp, Receive, Scope, Send

from fake_http import Responder, reply
from polling import in_status, wait_for_run
from runcast import errors
from runcast.engine import Engine
from runcast.engine.cloudflare_api import create_cloudflare_app
from runcast.engine.definitions import WorkflowDefinition
from runcast.live import LiveHub, RunChange
from runcast.metrics import Metrics
from runcast.models import ANONYMOUS, Credentials, Run, RunStatus, WorkflowKind
from runcast.settings import MIB, Settings
from runcast.upstream import RunAPI, local_limits
from runcast.upstream.cloudflare import CloudflareUpstream, cloudflare_quota, parse_ratelimit
from runcast.wire import cloudflare as wire
from wire_schema import check

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]


def fast_settings(**changes: Any) -> Settings:
    """Settings with one GET retry, so failures surface quickly."""
    return Settings(upstream_get_retries=1, **changes)


# -- against the engine's Cloudflare API ------------------------------------------------


@pytest.fixture
async def local(
    engine: Engine, definitions: dict[str, WorkflowDefinition], serve: Serve
) -> AsyncIterator[CloudflareUpstream]:
    """The adapter talking to the engine's Cloudflare API on a real socket."""
    app = create_cloudflare_app(engine, definitions=definitions)
    async with serve(app) as url:
        upstream = CloudflareUpstream(
            "local", base_url=url + "/client/v4", settings=fast_settings(), retry_base_delay=0.01
        )
        try:
            yield upstream
        finally:
            await upstream.aclose()


async def test_is_a_run_api(local: CloudflareUpstream) -> None:
    """The adapter implements the upstream port and is named ``cloudflare``."""
    assert isinstance(local, RunAPI)
    assert local.name == "cloudflare"


async def test_lists_workflows_as_workflows(local: CloudflareUpstream) -> None:
    """Every Cloudflare workflow is a WORKFLOW named by its Cloudflare name; scripts are absent."""
    workflows = await local.list_workflows(credentials=ANONYMOUS)
    ids = {w.id for w in workflows}
    assert {"three-steps", "approval", "sleepy"} <= ids
    assert "script" not in ids
    assert all(w.kind is WorkflowKind.WORKFLOW and w.name == w.id for w in workflows)
    one = await local.get_workflow("approval", credentials=ANONYMOUS)
    assert one.id == "approval"
    with pytest.raises(errors.WorkflowNotFound):
        await local.get_workflow("nope", credentials=ANONYMOUS)


async def test_triggers_and_reads_a_run_with_steps(local: CloudflareUpstream) -> None:
    """A triggered run completes with its input, output, timestamps and mapped steps."""
    run = await local.trigger(
        "three-steps", input={"orderId": "A"}, instance_id="o-1", credentials=ANONYMOUS
    )
    assert run.instance_id == "o-1"
    assert run.input == {"orderId": "A"}
    done = await wait_for_run(local, "three-steps", "o-1", in_status(RunStatus.COMPLETE))
    assert done.raw_status == "complete"
    assert done.output == {"orderId": "A", "steps": [1, 2, 3]}
    assert done.error is None
    assert done.created_at is not None
    assert done.started_at is not None
    assert done.ended_at is not None
    assert done.steps is not None
    assert [(s.name, s.type, s.status, s.attempts) for s in done.steps] == [
        ("first", "step", "complete", 1),
        ("second", "step", "complete", 1),
        ("third", "step", "complete", 1),
    ]
    assert done.steps[0].output == {"orderId": "A", "step": 1}


@pytest.mark.parametrize("value", ["hello", "42", 42, 1.5, True, [1, "x"], {"a": None}])
async def test_inputs_and_outputs_round_trip(local: CloudflareUpstream, value: Any) -> None:
    """Inputs of every JSON kind come back unchanged as input and (through a step) output."""
    run = await local.trigger("sleepy", input=value, credentials=ANONYMOUS)
    running = await wait_for_run(local, "sleepy", run.instance_id, lambda r: bool(r.steps))
    assert running.input == value
    assert running.steps is not None
    await wait_for_run(
        local,
        "sleepy",
        run.instance_id,
        lambda r: r.steps is not None and r.steps[0].status == "complete",
    )
    read = await local.get_run("sleepy", run.instance_id, credentials=ANONYMOUS)
    assert read.steps is not None
    assert read.steps[0].output == value
    await local.terminate("sleepy", run.instance_id, credentials=ANONYMOUS)


async def test_retries_and_failures(local: CloudflareUpstream) -> None:
    """Attempts are counted, and an errored run carries the failing step's message."""
    flaky = await local.trigger("flaky", credentials=ANONYMOUS)
    done = await wait_for_run(local, "flaky", flaky.instance_id, in_status(RunStatus.COMPLETE))
    assert done.steps is not None
    assert done.steps[0].attempts == 3
    assert done.output is None
    failing = await local.trigger("always-fails", credentials=ANONYMOUS)
    errored = await wait_for_run(
        local, "always-fails", failing.instance_id, in_status(RunStatus.ERRORED)
    )
    assert errored.error == "always fails"
    assert errored.is_terminal
    assert errored.steps is not None
    assert errored.steps[0].status == "errored"
    assert errored.steps[0].error == "always fails"
    assert errored.steps[0].attempts == 2


async def test_events_reach_a_waiting_run(local: CloudflareUpstream) -> None:
    """An event is delivered as the raw payload; after the run finishes events raise RunFinished."""
    await local.trigger("approval", input={"orderId": 5}, instance_id="ap", credentials=ANONYMOUS)
    waiting = await wait_for_run(
        local,
        "approval",
        "ap",
        lambda r: any(s.type == "waitForEvent" for s in r.steps or ()),
    )
    assert waiting.steps is not None
    kinds = {s.type: s.status for s in waiting.steps}
    assert kinds["sleep"] == "complete"
    assert kinds["waitForEvent"] == "paused"
    await local.send_event(
        "approval",
        "ap",
        event_type="approve",
        payload={"approved": True, "approvedBy": "ada"},
        credentials=ANONYMOUS,
    )
    done = await wait_for_run(local, "approval", "ap", in_status(RunStatus.COMPLETE))
    assert done.output == {"orderId": 5, "approved": True, "by": "ada"}
    with pytest.raises(errors.RunFinished) as finished:
        await local.send_event("approval", "ap", event_type="approve", credentials=ANONYMOUS)
    assert finished.value.status == "complete"
    with pytest.raises(errors.RunNotFound):
        await local.send_event("approval", "nope", event_type="approve", credentials=ANONYMOUS)
    with pytest.raises(errors.WorkflowNotFound):
        await local.send_event("nope", "ap", event_type="approve", credentials=ANONYMOUS)
    with pytest.raises(errors.BadUserInput):
        await local.send_event("approval", "ap", event_type="", credentials=ANONYMOUS)
    with pytest.raises(errors.PayloadTooLarge):
        await local.send_event(
            "approval", "ap", event_type="approve", payload="x" * MIB, credentials=ANONYMOUS
        )


async def test_pause_resume_terminate_restart(local: CloudflareUpstream) -> None:
    """Status changes go through PATCH status and return the run as read back afterwards."""
    await local.trigger("sleepy", instance_id="nap", credentials=ANONYMOUS)
    await wait_for_run(
        local, "sleepy", "nap", lambda r: any(s.type == "sleep" for s in r.steps or ())
    )
    paused = await local.pause("sleepy", "nap", credentials=ANONYMOUS)
    assert paused.status in (RunStatus.PAUSED, RunStatus.WAITING_FOR_PAUSE)
    resumed = await local.resume("sleepy", "nap", credentials=ANONYMOUS)
    assert not resumed.is_terminal
    terminated = await local.terminate("sleepy", "nap", credentials=ANONYMOUS)
    assert terminated.status is RunStatus.TERMINATED
    assert terminated.output is None
    assert terminated.error is None
    assert terminated.steps is not None
    assert all(s.type != "termination" for s in terminated.steps)
    for refused in (local.resume, local.pause, local.terminate):
        with pytest.raises(errors.RunFinished) as caught:
            await refused("sleepy", "nap", credentials=ANONYMOUS)
        assert caught.value.status == "terminated"
    restarted = await local.restart("sleepy", "nap", credentials=ANONYMOUS)
    assert not restarted.is_terminal
    with pytest.raises(errors.RunNotFound):
        await local.pause("sleepy", "nope", credentials=ANONYMOUS)


async def test_duplicate_instance_id(local: CloudflareUpstream) -> None:
    """Triggering with an instance id that exists raises AlreadyExists."""
    await local.trigger("sleepy", instance_id="twice", credentials=ANONYMOUS)
    with pytest.raises(errors.AlreadyExists):
        await local.trigger("sleepy", instance_id="twice", credentials=ANONYMOUS)
    with pytest.raises(errors.WorkflowNotFound):
        await local.trigger("script", credentials=ANONYMOUS)
    with pytest.raises(errors.BadUserInput):
        await local.trigger("sleepy", instance_id="-bad-", credentials=ANONYMOUS)


async def test_lists_runs_by_cursor_and_status(local: CloudflareUpstream) -> None:
    """Runs page newest first by cursor; one status filters upstream, several filter here."""
    for n in range(5):
        await local.trigger("sleepy", instance_id=f"l{n}", credentials=ANONYMOUS)
    done = await local.trigger("three-steps", input={"orderId": 1}, credentials=ANONYMOUS)
    await wait_for_run(local, "three-steps", done.instance_id, in_status(RunStatus.COMPLETE))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await local.list_runs("sleepy", cursor=cursor, limit=2, credentials=ANONYMOUS)
        assert len(page.runs) <= 2
        seen += [r.instance_id for r in page.runs]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["l4", "l3", "l2", "l1", "l0"]
    complete = await local.list_runs(
        "three-steps", statuses=[RunStatus.COMPLETE], credentials=ANONYMOUS
    )
    assert [r.instance_id for r in complete.runs] == [done.instance_id]
    assert complete.runs[0].created_at is not None
    several = await local.list_runs(
        "three-steps",
        statuses=[RunStatus.COMPLETE, RunStatus.ERRORED],
        credentials=ANONYMOUS,
    )
    assert [r.instance_id for r in several.runs] == [done.instance_id]
    unknown = await local.list_runs(
        "three-steps", statuses=[RunStatus.UNKNOWN], credentials=ANONYMOUS
    )
    assert unknown.runs == ()
    with pytest.raises(errors.WorkflowNotFound):
        await local.list_runs("nope", credentials=ANONYMOUS)


async def test_tokens_pass_through_or_fall_back_to_the_service_token(
    engine: Engine, serve: Serve
) -> None:
    """The caller's token wins; without one the service token is sent; with neither, 401."""
    app = create_cloudflare_app(engine, account_id="acct", api_tokens=("good",))
    async with serve(app) as url:
        base = url + "/client/v4"
        service = CloudflareUpstream("acct", base_url=base, token="good")
        bare = CloudflareUpstream("acct", base_url=base, settings=Settings(cloudflare_token=None))
        configured = CloudflareUpstream(
            "acct", base_url=base, settings=Settings(cloudflare_token="good")
        )
        try:
            assert await service.list_workflows(credentials=ANONYMOUS)
            assert await configured.list_workflows(credentials=ANONYMOUS)
            assert await bare.list_workflows(credentials=Credentials("good"))
            with pytest.raises(errors.Unauthenticated):
                await service.list_workflows(credentials=Credentials("bad"))
            with pytest.raises(errors.Unauthenticated):
                await bare.list_workflows(credentials=ANONYMOUS)
            assert "good" not in repr(service)
            assert "good" not in repr(configured)
            await bare.ping()
        finally:
            for upstream in (service, bare, configured):
                await upstream.aclose()


async def test_closed_adapter_refuses_calls(local: CloudflareUpstream) -> None:
    """After aclose every call raises UpstreamUnavailable."""
    await local.ping()
    await local.aclose()
    with pytest.raises(errors.UpstreamUnavailable):
        await local.list_workflows(credentials=ANONYMOUS)


class RequestCounter:
    """An ASGI wrapper counting the HTTP requests without credentials that reach ``app``.

    ``details`` counts those of them that read an instance back with ``simple=true``:
    the adapter's own follow-ups of a listing, sent within one budgeted list call.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.count = 0
        self.details = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers", ()))
        if scope["type"] == "http" and b"authorization" not in headers:
            self.count += 1
            if b"simple=true" in scope.get("query_string", b""):
                self.details += 1
        await self.app(scope, receive, send)

    def reset(self) -> None:
        """Start counting from zero."""
        self.count = self.details = 0


async def collect(changes: AsyncIterator[RunChange], into: list[RunChange]) -> None:
    """Append every change to ``into`` until the stream ends."""
    async with aclosing(changes) as stream:
        async for change in stream:
            into.append(change)


async def test_live_subscriptions_poll_through_the_adapter_within_budget(
    engine: Engine, definitions: dict[str, WorkflowDefinition], serve: Serve
) -> None:
    """Run and workflow subscriptions follow a run to completion, sharing polls, within budget."""
    budget = 10.0
    # Polls wanted every 10 ms: the budget, not the intervals, sets the pace.
    settings = Settings(
        poll_min_interval=0.01,
        poll_max_interval=0.01,
        request_budget_per_second=budget,
        upstream_get_retries=0,
    )
    counter = RequestCounter(create_cloudflare_app(engine, definitions=definitions))
    async with serve(counter) as url:
        upstream = CloudflareUpstream("local", base_url=url + "/client/v4", settings=settings)
        # The test's own calls carry a token, so the counter sees only the hub's polls.
        driver = CloudflareUpstream("local", base_url=url + "/client/v4", token="driver")
        try:
            async with LiveHub(upstream, settings, metrics=Metrics()) as hub:
                run = await driver.trigger("approval", input={"orderId": 3}, credentials=ANONYMOUS)
                first: list[RunChange] = []
                second: list[RunChange] = []
                finished: list[RunChange] = []
                started = time.monotonic()
                counter.reset()
                readers = [
                    asyncio.create_task(
                        collect(hub.watch_run("approval", run.instance_id, ANONYMOUS), first)
                    ),
                    asyncio.create_task(
                        collect(hub.watch_run("approval", run.instance_id, ANONYMOUS), second)
                    ),
                    asyncio.create_task(
                        collect(
                            hub.watch_workflow("approval", {RunStatus.COMPLETE}, ANONYMOUS),
                            finished,
                        )
                    ),
                ]
                try:
                    await until(lambda: bool(first), what="the first state")
                    await wait_for_run(driver, "approval", run.instance_id, waits_for_event)
                    await driver.send_event(
                        "approval",
                        run.instance_id,
                        event_type="approve",
                        payload={"approved": True, "approvedBy": "ada"},
                        credentials=ANONYMOUS,
                    )
                    await until(
                        lambda: readers[0].done() and readers[1].done(), what="both run streams"
                    )
                    await until(lambda: bool(finished), what="the completed run in the listing")
                    # Count first, then read the clock: polls sent after this are not counted.
                    polls = counter.count - counter.details
                    details = counter.details
                    elapsed = time.monotonic() - started
                finally:
                    for reader in readers:
                        reader.cancel()
                    await asyncio.gather(*readers, return_exceptions=True)
                expected = {"orderId": 3, "approved": True, "by": "ada"}
                assert first[-1].run.status is RunStatus.COMPLETE
                assert first[-1].run.output == expected
                assert [c.run.status for c in second][-1] is RunStatus.COMPLETE
                assert first[0].previous_status is None
                assert finished[-1].run.instance_id == run.instance_id
                assert finished[-1].run.output == expected
                # Budgeted polls: the rate plus one burst (the first fetches). The listing
                # read the completed run back once for its output, and cached it.
                assert 0 < polls <= budget * elapsed + budget
                assert details == 1
            assert hub.active_watches == 0
        finally:
            await upstream.aclose()
            await driver.aclose()


def waits_for_event(run: Run) -> bool:
    """Whether ``run`` has entered a waitForEvent step."""
    return any(step.type == "waitForEvent" for step in run.steps or ())


async def until(condition: Callable[[], bool], *, within: float = 10, what: str = "") -> None:
    """Return once ``condition`` holds; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# -- against a fake Cloudflare ---------------------------------------------------------

ACCOUNT = "acc"
WF = f"/client/v4/accounts/{ACCOUNT}/workflows"
INSTANCE = f"{WF}/wf/instances/i1"
INSTANCES = f"{WF}/wf/instances"
VERSION = "7d1e0000-0000-4000-8000-000000000001"
WORKFLOW_UUID = "0b6f2c1e-8d3a-4c55-9a7e-2f1d3c4b5a60"


def envelope(result: Any, **extra: Any) -> dict[str, Any]:
    """The documented success envelope (``extra`` such as ``result_info`` added)."""
    return {**wire.success(result), **extra}


failure = wire.failure


def documented_instance(**changes: Any) -> dict[str, Any]:
    """A get-instance result in the documented shape (the reference's example), with changes."""
    body: dict[str, Any] = {
        "status": "errored",
        "queued": "2026-02-01T10:00:00Z",
        "start": "2026-02-01T10:00:01Z",
        "end": "2026-02-01T10:05:00Z",
        "success": False,
        "error": {"name": "Error", "message": "charge failed"},
        "output": "",
        "params": {"orderId": 42},
        "trigger": {"source": "api"},
        "versionId": VERSION,
        "step_count": 4,
        "rollback": None,
        "steps": [
            {
                "type": "step",
                "name": "charge-1",
                "start": "2026-02-01T10:00:01Z",
                "end": "2026-02-01T10:04:59Z",
                "success": False,
                "output": None,
                "attempts": [
                    {
                        "start": "2026-02-01T10:00:01Z",
                        "end": "2026-02-01T10:00:02Z",
                        "success": False,
                        "error": {"name": "Error", "message": "502"},
                    }
                ],
                "config": {
                    "retries": {"limit": 5, "delay": "10 seconds", "backoff": "exponential"},
                    "timeout": "10 minutes",
                },
            },
            {
                "type": "sleep",
                "name": "cool-off-1",
                "start": "2026-02-01T10:01:00Z",
                "end": "2026-02-01T10:02:00Z",
                "finished": True,
                "error": None,
            },
            {
                "type": "waitForEvent",
                "name": "approval-1",
                "start": "2026-02-01T10:02:00Z",
                "end": "2026-02-01T10:03:00Z",
                "finished": False,
                "error": None,
                "event_type": "approval",
            },
            {"type": "termination", "trigger": {"source": "api"}},
        ],
    }
    body.update(changes)
    return body


def list_item(instance_id: str, status: str = "running") -> dict[str, Any]:
    """A list-instances item in the documented shape."""
    item = {
        "id": instance_id,
        "status": status,
        "created_on": "2026-02-01T10:00:00Z",
        "modified_on": "2026-02-01T10:00:09Z",
        "started_on": "2026-02-01T10:00:01Z",
        "ended_on": None,
        "version_id": VERSION,
        "workflow_id": WORKFLOW_UUID,
        "trigger_source": "api",
    }
    return item


@dataclass
class Seen:
    """One request the fake received."""

    method: str
    path: str
    query: dict[str, str]
    authorization: str | None
    body: bytes


@dataclass
class FakeCloudflare:
    """A scripted Cloudflare API: each route answers from its list, the last entry repeats."""

    script: dict[tuple[str, str], list[Responder]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)

    def on(self, method: str, path: str, *responders: Responder) -> None:
        """Script the answers of ``method path``."""
        self.script[(method, path)] = list(responders)

    def count(self, method: str, path: str) -> int:
        """How many requests ``method path`` received."""
        return sum(1 for s in self.seen if (s.method, s.path) == (method, path))

    async def handle(self, request: Request) -> Response:
        key = (request.method, request.url.path)
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                dict(request.query_params),
                request.headers.get("authorization"),
                await request.body(),
            )
        )
        responders = self.script.get(key)
        if not responders:
            return JSONResponse(failure(7000, "No route for that URI"), 404)
        responder = responders.pop(0) if len(responders) > 1 else responders[0]
        return await responder(request)

    def app(self) -> Starlette:
        return Starlette(
            routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "PATCH", "DELETE"])]
        )


@pytest.fixture
async def fake(serve: Serve) -> AsyncIterator[tuple[FakeCloudflare, CloudflareUpstream]]:
    """A fake Cloudflare on a real socket and an adapter (service token ``svc``) pointed at it."""
    server = FakeCloudflare()
    async with serve(server.app()) as url:
        upstream = CloudflareUpstream(
            ACCOUNT,
            base_url=url + "/client/v4",
            token="svc",
            settings=fast_settings(),
            retry_base_delay=0.005,
        )
        try:
            yield server, upstream
        finally:
            await upstream.aclose()


def test_the_documented_example_passes_the_shape_checker() -> None:
    """The fake's canned instance is the documented shape (so the fake is a fair one)."""
    check(envelope(documented_instance()), wire.Success[wire.Instance])
    check(envelope([list_item("a")]), wire.Success[list[wire.ListItem]])


@pytest.mark.parametrize(
    "changes",
    [
        {"undocumented": 1},
        {"step_count": True},
        {"step_count": 4.0},
        {"versionId": "not-a-uuid"},
        {"queued": "yesterday"},
        {"status": "unknown"},
        {"steps": [{"type": "sleep", "name": "s"}]},
    ],
)
def test_the_shape_checker_refuses_what_the_reference_does_not_list(
    changes: dict[str, Any],
) -> None:
    """An undocumented field, a wrong type, format or enum value, or a missing field fails."""
    with pytest.raises(AssertionError):
        check(documented_instance(**changes), wire.Instance)


async def test_reads_the_documented_instance(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """The reference example maps to an errored Run: error message, no output, steps typed."""
    server, upstream = fake
    server.on("GET", INSTANCE, reply(200, envelope(documented_instance())))
    run = await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert run.status is RunStatus.ERRORED
    assert run.raw_status == "errored"
    assert run.error == "charge failed"
    assert run.output is None
    assert run.input == {"orderId": 42}
    assert run.created_at == datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    assert run.ended_at == datetime(2026, 2, 1, 10, 5, tzinfo=UTC)
    assert run.steps is not None
    assert [(s.name, s.type, s.status, s.attempts, s.error) for s in run.steps] == [
        ("charge-1", "step", "errored", 1, "502"),
        ("cool-off-1", "sleep", "complete", 0, None),
        ("approval-1", "waitForEvent", "paused", 0, None),
    ]
    assert server.seen[0].authorization == "Bearer svc"


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (42, 42),
        (1.5, 1.5),
        ('{"receipt":"r_9"}', {"receipt": "r_9"}),
        ("plain text", "plain text"),
        ('"quoted"', "quoted"),
        ("", None),
        ({"already": "json"}, {"already": "json"}),
    ],
)
async def test_output_forms(
    fake: tuple[FakeCloudflare, CloudflareUpstream], sent: Any, expected: Any
) -> None:
    """Output given as a number, JSON text, plain text or "" maps to JSON (see module doc)."""
    server, upstream = fake
    server.on(
        "GET",
        INSTANCE,
        reply(
            200,
            envelope(documented_instance(status="complete", success=True, error=None, output=sent)),
        ),
    )
    run = await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert run.status is RunStatus.COMPLETE
    assert run.output == expected


async def test_params_as_a_json_string_and_steps_left_out(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """Params sent back as JSON text decode to JSON; an instance without steps has steps None."""
    server, upstream = fake
    body = documented_instance(params='{"orderId":7}')
    del body["steps"]
    server.on("GET", INSTANCE, reply(200, envelope(body)))
    run = await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert run.input == {"orderId": 7}
    assert run.steps is None


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("queued", RunStatus.QUEUED),
        ("running", RunStatus.RUNNING),
        ("paused", RunStatus.PAUSED),
        ("waiting", RunStatus.WAITING),
        ("waitingForPause", RunStatus.WAITING_FOR_PAUSE),
        ("errored", RunStatus.ERRORED),
        ("terminated", RunStatus.TERMINATED),
        ("complete", RunStatus.COMPLETE),
        ("rollingBack", RunStatus.UNKNOWN),
        ("unknown", RunStatus.UNKNOWN),
        ("hibernating", RunStatus.UNKNOWN),
    ],
)
async def test_every_status_maps(
    fake: tuple[FakeCloudflare, CloudflareUpstream], raw: str, status: RunStatus
) -> None:
    """Each InstanceStatus maps to its RunStatus; rollingBack and unseen values are UNKNOWN."""
    server, upstream = fake
    server.on("GET", INSTANCE, reply(200, envelope(documented_instance(status=raw))))
    run = await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert run.status is status
    assert run.raw_status == raw
    assert not (raw == "rollingBack" and run.is_terminal)


async def test_step_variants(fake: tuple[FakeCloudflare, CloudflareUpstream]) -> None:
    """Rollback steps, retry waits, waitForEvent outputs and step outputs as text all map."""
    server, upstream = fake
    steps = [
        {
            "type": "step",
            "name": "retrying",
            "start": "2026-02-01T10:00:01Z",
            "end": None,
            "success": None,
            "output": None,
            "attempts": [
                {
                    "start": "2026-02-01T10:00:01Z",
                    "end": "2026-02-01T10:00:02Z",
                    "success": False,
                    "error": {"name": "Error", "message": "try again"},
                }
            ],
            "config": {"retries": {"limit": 3, "delay": "[dynamic]"}, "timeout": 30000},
        },
        {
            "type": "rollback",
            "name": "undo",
            "start": "2026-02-01T10:00:01Z",
            "end": "2026-02-01T10:00:03Z",
            "success": True,
            "output": '{"undone":true}',
            "attempts": [
                {
                    "start": "2026-02-01T10:00:01Z",
                    "end": "2026-02-01T10:00:03Z",
                    "success": True,
                    "error": None,
                }
            ],
            "config": {"retries": {"limit": 0, "delay": 0}, "timeout": "1 minute"},
        },
        {
            "type": "waitForEvent",
            "name": "ok",
            "start": "2026-02-01T10:00:03Z",
            "end": "2026-02-01T10:00:04Z",
            "finished": True,
            "error": None,
            "output": '{"approved":true}',
        },
        {
            "type": "sleep",
            "name": "broken",
            "start": "2026-02-01T10:00:04Z",
            "end": "2026-02-01T10:00:05Z",
            "finished": True,
            "error": {"name": "Error", "message": "sleep failed"},
        },
    ]
    body = documented_instance(status="waiting", success=None, error=None, steps=steps)
    check(body, wire.Instance)
    server.on("GET", INSTANCE, reply(200, envelope(body)))
    run = await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert run.steps is not None
    retrying, undo, event, broken = run.steps
    assert (retrying.status, retrying.attempts, retrying.error) == ("waiting", 1, "try again")
    assert retrying.ended_at is None
    assert (undo.type, undo.status, undo.output, undo.error) == (
        "rollback",
        "complete",
        {"undone": True},
        None,
    )
    assert (event.status, event.output) == ("complete", {"approved": True})
    assert (broken.status, broken.error) == ("errored", "sleep failed")


async def test_trigger_sends_instance_id_and_params(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """Trigger posts {instance_id, params}; a string input is sent JSON-encoded; None omits it."""
    server, upstream = fake
    created = envelope(
        {"id": "i1", "status": "queued", "version_id": VERSION, "workflow_id": WORKFLOW_UUID}
    )
    check(created, wire.Success[wire.Created])
    server.on("POST", INSTANCES, reply(200, created))
    server.on("GET", INSTANCE, reply(200, envelope(documented_instance(status="queued"))))
    await upstream.trigger("wf", input={"a": 1}, instance_id="i1", credentials=ANONYMOUS)
    await upstream.trigger("wf", input="hi", credentials=ANONYMOUS)
    await upstream.trigger("wf", credentials=ANONYMOUS)
    bodies = [json.loads(s.body) for s in server.seen if s.method == "POST"]
    assert bodies == [{"instance_id": "i1", "params": {"a": 1}}, {"params": '"hi"'}, {}]


async def test_trigger_falls_back_to_the_create_result(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """When the new instance cannot be read back yet, trigger returns what create said."""
    server, upstream = fake
    created = envelope(
        {"id": "i1", "status": "queued", "version_id": VERSION, "workflow_id": WORKFLOW_UUID}
    )
    server.on("POST", INSTANCES, reply(200, created))
    server.on("GET", INSTANCE, reply(404, failure(10400, "workflows.api.error.instance.not_found")))
    run = await upstream.trigger("wf", input={"a": 1}, credentials=ANONYMOUS)
    assert (run.instance_id, run.status, run.input) == ("i1", RunStatus.QUEUED, {"a": 1})


async def test_a_retried_create_returns_the_run_it_made(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """A create with an id is retried after a 503; the 409 that follows returns our own run."""
    server, upstream = fake
    unavailable = reply(503, failure(10001, "workflows.api.error.internal_server"))
    duplicate = reply(409, failure(10405, "workflows.api.error.instance.already_exists"))
    server.on("POST", INSTANCES, unavailable, duplicate)
    server.on("GET", INSTANCE, reply(200, envelope(documented_instance(status="running"))))
    run = await upstream.trigger(
        "wf", input={"orderId": 42}, instance_id="i1", credentials=ANONYMOUS
    )
    assert (run.instance_id, run.status) == ("i1", RunStatus.RUNNING)
    assert server.count("POST", INSTANCES) == 2
    server.on("POST", INSTANCES, unavailable, duplicate)
    with pytest.raises(errors.AlreadyExists):
        await upstream.trigger("wf", input={"other": 1}, instance_id="i1", credentials=ANONYMOUS)


async def test_no_route_is_a_configuration_problem(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """A 404 "no route" (a wrong base URL or account) is not mistaken for a missing run."""
    _, upstream = fake
    with pytest.raises(errors.UpstreamProtocolError) as caught:
        await upstream.get_run("wf", "unscripted", credentials=ANONYMOUS)
    assert "base URL" in str(caught.value)
    with pytest.raises(errors.UpstreamProtocolError):
        await upstream.list_workflows(credentials=ANONYMOUS)


async def test_events_post_the_raw_payload(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """send_event posts the payload itself (not wrapped) to events/{event_type}."""
    server, upstream = fake
    path = f"{INSTANCE}/events/approval%20v2"
    server.on("POST", f"{INSTANCE}/events/approval v2", reply(200, envelope({"instanceId": "i1"})))
    server.on("GET", INSTANCE, reply(200, envelope(documented_instance(status="running"))))
    await upstream.send_event(
        "wf", "i1", event_type="approval v2", payload={"ok": [1]}, credentials=ANONYMOUS
    )
    posted = [s for s in server.seen if s.method == "POST"]
    assert len(posted) == 1, path
    assert json.loads(posted[0].body) == {"ok": [1]}


async def test_list_sends_one_status_and_filters_several(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """One status goes upstream as ?status=; several are filtered from an unfiltered page."""
    server, upstream = fake
    page = envelope(
        [list_item("a", "running"), list_item("b", "complete"), list_item("c", "rollingBack")],
        result_info={"count": 3, "per_page": 50, "total_count": 9, "cursor": "next-1"},
    )
    check(page, wire.Listing[list[wire.ListItem]])
    server.on("GET", INSTANCES, reply(200, page))
    gone = reply(404, failure(10400, "workflows.api.error.instance.not_found"))
    server.on("GET", f"{INSTANCES}/b", gone)
    one = await upstream.list_runs("wf", statuses=[RunStatus.RUNNING], credentials=ANONYMOUS)
    listed = [s for s in server.seen if s.path == INSTANCES]
    assert listed[-1].query == {"per_page": "50", "direction": "desc", "status": "running"}
    assert one.next_cursor == "next-1"
    several = await upstream.list_runs(
        "wf",
        statuses=[RunStatus.COMPLETE, RunStatus.UNKNOWN],
        cursor="next-1",
        limit=500,
        credentials=ANONYMOUS,
    )
    listed = [s for s in server.seen if s.path == INSTANCES]
    assert listed[-1].query == {"per_page": "100", "direction": "desc", "cursor": "next-1"}
    assert [(r.instance_id, r.raw_status) for r in several.runs] == [
        ("b", "complete"),
        ("c", "rollingBack"),
    ]
    last = envelope([], result_info={"count": 0, "per_page": 50, "total_count": 9, "cursor": ""})
    server.on("GET", INSTANCES, reply(200, last))
    assert (await upstream.list_runs("wf", credentials=ANONYMOUS)).next_cursor is None


async def test_finished_list_items_are_read_back_once(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """Complete and errored list items get their output from get-instance, cached per token."""
    server, upstream = fake
    done = {**list_item("b", "complete"), "ended_on": "2026-02-01T10:00:09Z"}
    page = envelope(
        [list_item("a", "running"), done],
        result_info={"count": 2, "per_page": 50, "total_count": 2},
    )
    server.on("GET", INSTANCES, reply(200, page))
    detail = documented_instance(
        status="complete",
        success=True,
        error=None,
        output='{"n":1}',
        end="2026-02-01T10:00:09Z",
    )
    del detail["steps"]
    server.on("GET", f"{INSTANCES}/b", reply(200, envelope(detail)))
    for _ in range(2):
        runs = (await upstream.list_runs("wf", credentials=ANONYMOUS)).runs
        assert [(r.instance_id, r.output) for r in runs] == [("a", None), ("b", {"n": 1})]
        assert runs[1].input == {"orderId": 42}
    assert server.count("GET", f"{INSTANCES}/b") == 1
    assert server.seen[1].query == {"simple": "true"}
    await upstream.list_runs("wf", credentials=Credentials("other"))
    assert server.count("GET", f"{INSTANCES}/b") == 2
    with pytest.raises(errors.BadUserInput):
        await upstream.list_runs("wf", limit=0, credentials=ANONYMOUS)


async def test_a_failed_read_back_fails_the_list_with_its_own_error(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """A 5xx on reading a finished list item back is UpstreamUnavailable, not an error group."""
    server, upstream = fake
    done = {**list_item("b", "complete"), "ended_on": "2026-02-01T10:00:09Z"}
    server.on("GET", INSTANCES, reply(200, envelope([list_item("a"), done])))
    server.on("GET", f"{INSTANCES}/b", reply(503, failure(10001, "internal")))
    with pytest.raises(errors.UpstreamUnavailable):
        await upstream.list_runs("wf", credentials=ANONYMOUS)


async def test_lists_every_workflow_page(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """list_workflows follows page-based result_info to the last page."""
    server, upstream = fake

    def workflow(name: str) -> dict[str, Any]:
        return {
            "id": WORKFLOW_UUID,
            "name": name,
            "class_name": "W",
            "script_name": "s",
            "created_on": "2026-01-05T10:00:00Z",
            "modified_on": "2026-02-01T09:30:00Z",
            "triggered_on": None,
            "instances": {"running": 2},
            "schedules": [{"cron": "0 * * * *", "next_instance": "2026-02-01T10:00:00Z"}],
        }

    info = {"per_page": 100, "count": 1, "total_count": 2, "total_pages": 2}
    server.on(
        "GET",
        WF,
        reply(200, envelope([workflow("a")], result_info={**info, "page": 1})),
        reply(200, envelope([workflow("b")], result_info={**info, "page": 2})),
    )
    workflows = await upstream.list_workflows(credentials=ANONYMOUS)
    assert [w.id for w in workflows] == ["a", "b"]
    assert [s.query["page"] for s in server.seen] == ["1", "2"]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (400, failure(10002, "per_page must be between 1 and 100"), errors.BadUserInput),
        (401, failure(10000, "Authentication error"), errors.Unauthenticated),
        (403, failure(10000, "Authentication error"), errors.Forbidden),
        (404, failure(10400, "workflows.api.error.instance.not_found"), errors.RunNotFound),
        (404, failure(10400, "workflows.api.error.workflow.not_found"), errors.WorkflowNotFound),
        (200, failure(10001, "workflows.api.error.internal_server"), errors.UpstreamProtocolError),
        (418, failure(1, "teapot"), errors.UpstreamProtocolError),
    ],
)
async def test_failure_envelopes_map_to_errors(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
    status: int,
    body: dict[str, Any],
    error: type[Exception],
) -> None:
    """Each documented failure status becomes its runcast error (messages kept where useful)."""
    server, upstream = fake
    server.on("GET", INSTANCE, reply(status, body))
    with pytest.raises(error) as caught:
        await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    if status == 400:
        assert "per_page must be between 1 and 100 (code 10002)" in str(caught.value)
    assert "svc" not in str(caught.value)


async def test_conflicts(fake: tuple[FakeCloudflare, CloudflareUpstream]) -> None:
    """409 means AlreadyExists on create, RunFinished on a finished run, else BadUserInput."""
    server, upstream = fake
    server.on("POST", INSTANCES, reply(409, failure(10405, "instance.already_exists")))
    with pytest.raises(errors.AlreadyExists):
        await upstream.trigger("wf", instance_id="i1", credentials=ANONYMOUS)
    server.on("PATCH", f"{INSTANCE}/status", reply(409, failure(10409, "cannot resume")))
    server.on(
        "GET",
        INSTANCE,
        reply(200, envelope(documented_instance(status="complete", success=True, error=None))),
        reply(200, envelope(documented_instance(status="running", success=None, error=None))),
    )
    with pytest.raises(errors.RunFinished) as finished:
        await upstream.resume("wf", "i1", credentials=ANONYMOUS)
    assert finished.value.status == "complete"
    with pytest.raises(errors.BadUserInput) as refused:
        await upstream.resume("wf", "i1", credentials=ANONYMOUS)
    assert "running" in str(refused.value)
    server.on("POST", f"{INSTANCE}/events/go", reply(413, failure(10413, "too large")))
    with pytest.raises(errors.PayloadTooLarge):
        await upstream.send_event("wf", "i1", event_type="go", payload=1, credentials=ANONYMOUS)


async def test_429_honours_retry_after_and_holds_the_token_back(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """A 429 raises RateLimited with retry-after; later calls with that token stay in runcast."""
    server, upstream = fake
    headers = {
        "retry-after": "7",
        "Ratelimit": '"default";r=0;t=7',
        "Ratelimit-Policy": '"burst";q=100;w=60',
    }
    server.on(
        "GET", INSTANCE, reply(429, failure(971, "Please wait and consider throttling"), headers)
    )
    with pytest.raises(errors.RateLimited) as caught:
        await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert caught.value.retry_after == 7
    with pytest.raises(errors.RateLimited) as held:
        await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert held.value.retry_after is not None
    assert 0 < held.value.retry_after <= 8
    assert server.count("GET", INSTANCE) == 1
    server.on("GET", INSTANCE, reply(200, envelope(documented_instance())))
    other = await upstream.get_run("wf", "i1", credentials=Credentials("someone-else"))
    assert other.status is RunStatus.ERRORED


async def test_429_without_retry_after_uses_ratelimit_or_the_lockout(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """Without retry-after the Ratelimit reset is used, and failing that the 5-minute lockout."""
    server, upstream = fake
    server.on(
        "GET", INSTANCE, reply(429, failure(971, "slow"), {"Ratelimit": '"default";r=0;t=42'})
    )
    with pytest.raises(errors.RateLimited) as caught:
        await upstream.get_run("wf", "i1", credentials=Credentials("a"))
    assert caught.value.retry_after is not None
    assert 41 <= caught.value.retry_after <= 43
    server.on("GET", INSTANCE, reply(429, failure(971, "slow")))
    with pytest.raises(errors.RateLimited) as lockout:
        await upstream.get_run("wf", "i1", credentials=Credentials("b"))
    assert lockout.value.retry_after is not None
    assert 299 <= lockout.value.retry_after <= 301


async def test_exhausted_ratelimit_header_holds_the_next_call(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """A success saying nothing remains (Ratelimit r=0) makes the next call wait locally."""
    server, upstream = fake
    server.on(
        "GET",
        INSTANCE,
        reply(200, envelope(documented_instance()), {"Ratelimit": '"default";r=0;t=30'}),
    )
    await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    with pytest.raises(errors.RateLimited) as held:
        await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert held.value.retry_after is not None
    assert 29 <= held.value.retry_after <= 31
    assert server.count("GET", INSTANCE) == 1


async def test_5xx_is_retried_for_reads_only(
    fake: tuple[FakeCloudflare, CloudflareUpstream],
) -> None:
    """A 503 read is retried then UpstreamUnavailable; so is an idempotent pause, not a restart."""
    server, upstream = fake
    server.on("GET", INSTANCE, reply(503, failure(10001, "workflows.api.error.internal_server")))
    with pytest.raises(errors.UpstreamUnavailable) as caught:
        await upstream.get_run("wf", "i1", credentials=ANONYMOUS)
    assert caught.value.status_code == 503
    assert server.count("GET", INSTANCE) == 2
    server.on("PATCH", f"{INSTANCE}/status", reply(503, failure(10001, "internal")))
    with pytest.raises(errors.UpstreamUnavailable):
        await upstream.restart("wf", "i1", credentials=ANONYMOUS)
    assert server.count("PATCH", f"{INSTANCE}/status") == 1
    with pytest.raises(errors.UpstreamUnavailable):
        await upstream.pause("wf", "i1", credentials=ANONYMOUS)
    assert server.count("PATCH", f"{INSTANCE}/status") == 3


async def test_a_body_that_is_not_json(fake: tuple[FakeCloudflare, CloudflareUpstream]) -> None:
    """A 200 whose body is not JSON raises UpstreamProtocolError."""
    server, upstream = fake

    async def html(request: Request) -> Response:
        return Response("<html>", media_type="text/html")

    server.on("GET", INSTANCE, html)
    with pytest.raises(errors.UpstreamProtocolError):
        await upstream.get_run("wf", "i1", credentials=ANONYMOUS)


# -- the rate-limit gate ---------------------------------------------------------------


async def test_gate_keeps_each_token_under_its_budget() -> None:
    """The limiter allows 90% of the limit per window per token, then refuses until it slides."""
    now = [0.0]
    limits = local_limits(None, quota=cloudflare_quota(limit=10, window=300), clock=lambda: now[0])
    for _ in range(9):
        await limits.limiter("t").acquire(within=0)
    with pytest.raises(errors.RateLimited) as caught:
        await limits.limiter("t").acquire(within=0)
    assert caught.value.retry_after == 301
    await limits.limiter("other").acquire(within=0)
    now[0] = 300.0
    await limits.limiter("t").acquire(within=0)


def test_parse_ratelimit_headers() -> None:
    """Ratelimit r=0 gives its t; old x-ratelimit-remaining 0 gives the reset date; else None."""
    assert parse_ratelimit(httpx.Headers({"Ratelimit": '"default";r=50;t=30'})) is None
    assert parse_ratelimit(httpx.Headers({"Ratelimit": '"default";r=0;t=30'})) == 30
    now = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)
    reset = format_datetime(now + timedelta(seconds=90), usegmt=True)
    old = httpx.Headers({"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})
    assert parse_ratelimit(old, now=now) == 90
    assert parse_ratelimit(httpx.Headers({"x-ratelimit-remaining": "3"})) is None
    assert parse_ratelimit(httpx.Headers({})) is None
