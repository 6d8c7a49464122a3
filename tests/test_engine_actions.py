"""Running step actions (return, http, fail, python) and resolving sleep_until timestamps."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

import engine_probe
from conftest import free_port
from runcast._http_pool import pooled_client
from runcast.engine.actions import ActionFailed, resolve_until, run_action
from runcast.engine.definitions import (
    FailAction,
    HttpAction,
    PythonAction,
    ReturnAction,
    SleepUntilNode,
)

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]

CONTEXT: dict[str, Any] = {
    "input": {
        "orderId": "A-1",
        "items": [{"name": "pen", "price": 2}, {"name": "ink", "price": 5}],
    },
    "reserve": {"orderId": "A-1", "reserved": True},
    "approval": {"eventType": "user-approval", "payload": {"approved": True, "approvedBy": "ada"}},
    "cool_off": None,
}


async def run(action: Any, context: dict[str, Any] = CONTEXT, attempt: int = 1) -> Any:
    async with pooled_client(timeout=None) as client:
        return await run_action(action, context, attempt=attempt, http_client=client)


# --- return -----------------------------------------------------------------------------------


async def test_return_evaluates_strings_anywhere_in_the_value() -> None:
    """Strings in nested dicts and lists are JMESPath expressions over the context."""
    action = ReturnAction(
        value={
            "approved": "approval.payload.approved",
            "by": "approval.payload.approvedBy",
            "nested": {"ids": ["input.orderId", "reserve.orderId"], "slept": "cool_off"},
            "cheap": "input.items[?price < `3`].name",
            "total": "sum(input.items[*].price)",
        }
    )
    assert await run(action) == {
        "approved": True,
        "by": "ada",
        "nested": {"ids": ["A-1", "A-1"], "slept": None},
        "cheap": ["pen"],
        "total": 7,
    }


async def test_return_passes_literals_through() -> None:
    """Numbers, booleans and null are literal; backticks and quotes make literal strings."""
    action = ReturnAction(
        value=[1, 2.5, True, None, "`true`", '`"text"`', "`plain words`", "'raw'", {"k": []}]
    )
    assert await run(action) == [1, 2.5, True, None, True, "text", "plain words", "raw", {"k": []}]


async def test_return_of_a_single_expression_and_missing_fields() -> None:
    """A top-level string is one expression; a missing field gives null."""
    assert await run(ReturnAction(value="input.orderId")) == "A-1"
    assert await run(ReturnAction(value="input.nothing.deeper")) is None
    assert await run(ReturnAction(value="input"), {"input": None}) is None


async def test_return_expression_error_fails_the_attempt() -> None:
    """An expression that fails at run time (a type error) raises ActionFailed naming it."""
    with pytest.raises(ActionFailed, match=r"'length\(input.orderId.n\)' failed") as info:
        await run(ReturnAction(value="length(input.orderId.n)"))
    assert info.value.message.startswith("expression")


# --- fail -------------------------------------------------------------------------------------


async def test_fail_always_fails_with_its_message() -> None:
    """`fail` without `times` fails every attempt with its message."""
    for attempt in (1, 2, 50):
        with pytest.raises(ActionFailed) as info:
            await run(FailAction(message="card declined"), attempt=attempt)
        assert info.value.message == "card declined"


async def test_fail_times_fails_only_the_first_attempts() -> None:
    """`fail` with `times: 2` fails attempts 1 and 2, then returns null."""
    action = FailAction(message="temporary", times=2)
    for attempt in (1, 2):
        with pytest.raises(ActionFailed, match="temporary"):
            await run(action, attempt=attempt)
    assert await run(action, attempt=3) is None
    assert await run(action, attempt=4) is None


# --- http -------------------------------------------------------------------------------------


async def _json(request: Request) -> Response:
    return JSONResponse({"hello": "world", "query": request.query_params.get("q")})


async def _echo(request: Request) -> Response:
    return JSONResponse(
        {
            "method": request.method,
            "body": await request.json(),
            "header": request.headers.get("x-test"),
        }
    )


async def _text(request: Request) -> Response:
    return PlainTextResponse("plain hello")


async def _status(request: Request) -> Response:
    return JSONResponse({"error": "nope"}, status_code=int(request.path_params["code"]))


async def _empty(request: Request) -> Response:
    return Response(status_code=204)


async def _broken_json(request: Request) -> Response:
    return Response("{not json", media_type="application/json")


HTTP_APP = Starlette(
    routes=[
        Route("/json", _json),
        Route("/echo", _echo, methods=["POST", "PUT"]),
        Route("/text", _text),
        Route("/status/{code:int}", _status),
        Route("/empty", _empty, methods=["DELETE"]),
        Route("/broken-json", _broken_json),
    ]
)


@pytest.fixture
async def http_url(serve: Serve) -> AsyncIterator[str]:
    async with serve(HTTP_APP) as url:
        yield url


async def test_http_get_returns_the_response_json(http_url: str) -> None:
    """A GET's result is the response's JSON, through the given pooled client."""
    action = HttpAction(method="GET", url=f"{http_url}/json?q=1")
    async with httpx.AsyncClient() as client:
        result = await run_action(action, CONTEXT, attempt=1, http_client=client)
    assert result == {"hello": "world", "query": "1"}


async def test_http_sends_method_headers_and_json_body(http_url: str) -> None:
    """The request carries the action's method, headers and JSON body."""
    action = HttpAction(
        method="PUT", url=f"{http_url}/echo", headers=(("X-Test", "yes"),), json={"a": [1, 2]}
    )
    assert await run(action) == {"method": "PUT", "body": {"a": [1, 2]}, "header": "yes"}


async def test_http_text_and_empty_responses(http_url: str) -> None:
    """A non-JSON response gives its text; an empty one gives null; unreadable JSON its text."""
    assert await run(HttpAction(method="GET", url=f"{http_url}/text")) == "plain hello"
    assert await run(HttpAction(method="DELETE", url=f"{http_url}/empty")) is None
    assert await run(HttpAction(method="GET", url=f"{http_url}/broken-json")) == "{not json"


@pytest.mark.parametrize(("code", "reason"), [(404, "Not Found"), (500, "Internal Server Error")])
async def test_http_non_2xx_fails_the_attempt_naming_the_status(
    http_url: str, code: int, reason: str
) -> None:
    """A non-2xx status fails the attempt with a message naming it (and no query string)."""
    action = HttpAction(method="GET", url=f"{http_url}/status/{code}?key=secret")
    with pytest.raises(ActionFailed) as info:
        await run(action)
    assert info.value.message == f"GET {http_url}/status/{code} returned HTTP {code} {reason}"


async def test_http_transport_error_fails_the_attempt() -> None:
    """A refused connection becomes ActionFailed, not an httpx error."""
    action = HttpAction(method="GET", url=f"http://127.0.0.1:{free_port()}/nothing")
    with pytest.raises(ActionFailed, match=r"^GET http://127\.0\.0\.1:\d+/nothing failed: "):
        await run(action)


async def test_http_failure_messages_hide_credentials_in_the_url() -> None:
    """A failed request's message drops user:password@, the query and the fragment of its URL."""
    port = free_port()
    action = HttpAction(method="GET", url=f"http://bot:s3cret@127.0.0.1:{port}/x?key=k3y#frag")
    with pytest.raises(ActionFailed) as info:
        await run(action)
    assert info.value.message.startswith(f"GET http://127.0.0.1:{port}/x failed: ")
    for secret in ("s3cret", "bot", "k3y", "frag"):
        assert secret not in info.value.message


# --- python -----------------------------------------------------------------------------------


async def test_python_sync_callable_runs_in_a_worker_thread() -> None:
    """A sync callable gets the context and runs off the event loop's thread."""
    result = await run(PythonAction(target="workflow_actions:add"), {"input": {"a": 2, "b": 3}})
    assert result["sum"] == 5
    assert result["thread"] != threading.get_ident()


async def test_python_async_callable_is_awaited() -> None:
    """An async callable is awaited and its return value is the result."""
    assert await run(PythonAction(target="workflow_actions:echo"), {"input": [1, "x"]}) == [1, "x"]


async def test_python_blocking_callable_does_not_block_the_loop() -> None:
    """While a sync callable blocks its thread, the event loop keeps running other tasks."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        action = PythonAction(target="workflow_actions:block")
        assert await run(action, {"input": {"seconds": 0.5}}) == "unblocked"
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
    assert ticks >= 10


async def test_sync_callables_stuck_past_their_timeout_leave_the_default_executor_free() -> None:
    """Sync steps that hang past their timeout do not starve asyncio.to_thread elsewhere."""
    action = PythonAction(target="engine_probe:stuck")
    engine_probe.UNSTICK.clear()
    try:
        for _ in range(40):  # more than the default executor's workers
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await run(action)
        async with asyncio.timeout(5):
            assert await asyncio.to_thread(threading.get_ident) != threading.get_ident()
    finally:
        engine_probe.UNSTICK.set()


async def test_python_result_must_be_json() -> None:
    """A result JSON cannot hold fails the attempt."""
    with pytest.raises(ActionFailed, match="not JSON-serialisable"):
        await run(PythonAction(target="workflow_actions:not_json"))


async def test_python_exception_fails_the_attempt_with_its_type() -> None:
    """An exception from the callable becomes ActionFailed naming its type and message."""
    with pytest.raises(ActionFailed) as info:
        await run(PythonAction(target="workflow_actions:explode"))
    assert info.value.message == "workflow_actions:explode raised ValueError: kaboom"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("workflow_actions:missing", "has no attribute 'missing'"),
        ("workflow_actions:NOT_CALLABLE", "is not callable"),
    ],
)
async def test_python_bad_target_fails_the_attempt(target: str, fragment: str) -> None:
    """A target that cannot be imported or called fails the attempt, saying why."""
    with pytest.raises(ActionFailed, match=fragment):
        await run(PythonAction(target=target))


async def test_python_cancellation_reaches_an_async_callable() -> None:
    """Cancelling the step cancels an async callable at once (terminate mid-step)."""
    task = asyncio.create_task(run(PythonAction(target="workflow_actions:slow_sleep")))
    await asyncio.sleep(0)
    task.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task


# --- sleep_until ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("until", "expected"),
    [
        ("2030-01-02T03:04:05Z", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T03:04:05", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02T05:04:05+02:00", datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)),
        ("2030-01-02", datetime(2030, 1, 2, tzinfo=UTC)),
    ],
)
def test_resolve_until_literal_timestamp(until: str, expected: datetime) -> None:
    """A literal ISO-8601 timestamp resolves to an aware UTC datetime (naive means UTC)."""
    moment = resolve_until(SleepUntilNode(name="u", until=until), CONTEXT)
    assert moment == expected
    assert moment.utcoffset() == timedelta(0)


def test_resolve_until_expression() -> None:
    """An expression giving a timestamp resolves through the context."""
    context = {"input": {"notBefore": "2031-05-06T07:08:09.5+00:00"}}
    moment = resolve_until(SleepUntilNode(name="u", until="input.notBefore"), context)
    assert moment == datetime(2031, 5, 6, 7, 8, 9, 500000, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, 1234, "next tuesday"])
def test_resolve_until_expression_without_a_timestamp_fails(value: object) -> None:
    """An expression that gives no ISO-8601 timestamp raises ActionFailed naming the node."""
    node = SleepUntilNode(name="deadline", until="input.when")
    with pytest.raises(ActionFailed, match=r"sleep_until 'deadline'.*not an ISO-8601 timestamp"):
        resolve_until(node, {"input": {"when": value}})
