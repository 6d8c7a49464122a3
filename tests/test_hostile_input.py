"""Hostile input against a real gateway: documents, bytes and frames must not freeze or crash it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from graphql import parse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from runcast.app import create_app
from runcast.engine import Engine
from runcast.schema._cost import query_cost
from runcast.settings import Settings
from runcast.upstream.awaitstep import AwaitStepUpstream
from runcast.upstream.local import LocalUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
GOOD = b'{"query": "{ workflows { id } }"}'


def fan_out(levels: int) -> str:
    """A document whose fragment ``F<n>`` spreads ``F<n-1>`` twice, ``levels`` times over."""
    fragments = ["fragment F0 on Workflow { id name }"]
    fragments += [
        f"fragment F{n} on Workflow {{ ...F{n - 1} ...F{n - 1} }}" for n in range(1, levels + 1)
    ]
    return f"{{ workflows {{ ...F{levels} }} }} " + " ".join(fragments)


@asynccontextmanager
async def gateway(
    serve: Serve, engine: Engine, settings: Settings | None = None
) -> AsyncIterator[str]:
    """A gateway over the test engine on a real uvicorn socket; yields its base URL."""
    app = create_app(settings or Settings(), upstream=LocalUpstream(engine))
    async with serve(app) as url:
        yield url


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Assert that nothing was logged with a traceback or as an ASGI crash."""
    crashes = [
        record
        for record in caplog.records
        if record.exc_info or "Exception in ASGI application" in record.getMessage()
    ]
    assert not crashes, [record.getMessage() for record in crashes]


async def exchange(url: str, requests: list[bytes]) -> list[tuple[int, bytes]]:
    """Send raw HTTP/1.1 POSTs of ``requests`` on ONE connection; return each status and body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    answers = []
    try:
        for body in requests:
            head = (
                f"POST /graphql HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
            status_line = await reader.readline()
            headers = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            payload = await reader.readexactly(int(headers["content-length"]))
            answers.append((int(status_line.split()[1]), payload))
    finally:
        writer.close()
        await writer.wait_closed()
    return answers


def test_query_cost_counts_fragments_once_and_stops_at_the_limit() -> None:
    """The cost of a 40-level fan-out is capped at limit + 1 after a linear pass."""
    assert query_cost(parse("{ workflows { id name runs { edges { cursor } } } }"), limit=99) == 6
    assert query_cost(parse(fan_out(3)), limit=1000) == 17
    assert query_cost(parse(fan_out(40)), limit=1000) == 1001


def test_query_cost_counts_unused_fragments_and_survives_cycles() -> None:
    """An unused expensive fragment counts, and a fragment cycle neither loops nor crashes."""
    unused = "{ workflows { id } } " + fan_out(30).split(" ", 6)[-1]
    assert query_cost(parse(unused), limit=500) == 501
    cycle = (
        "{ workflows { ...A } } fragment A on Workflow { id ...B } fragment B on Workflow { ...A }"
    )
    assert query_cost(parse(cycle), limit=10) == 2


async def test_fragment_fan_out_is_refused_while_healthz_answers(
    serve: Serve, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    """A 40-level fragment fan-out is refused (QUERY_TOO_COMPLEX) while /healthz answers."""
    async with gateway(serve, engine) as url, httpx.AsyncClient(base_url=url) as http:
        attack = asyncio.create_task(http.post("/graphql", json={"query": fan_out(40)}))
        async with asyncio.timeout(10):
            health = await http.get("/healthz")
            response = await attack
        assert health.status_code == 200
        error = response.json()["errors"][0]
        assert error["extensions"] == {"code": "QUERY_TOO_COMPLEX", "limit": 1000}
        assert "RUNCAST_MAX_QUERY_FIELDS" in error["message"]
        ok = await http.post("/graphql", json={"query": fan_out(5)})
        assert len(ok.json()["data"]["workflows"]) > 0
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'{"query": "{ workflows { id } }", "x": "\xff\xfe"}', "not valid UTF-8"),
        ('{"query": "{ workflows { id } }", "x": "café"}'.encode("latin-1"), "not valid UTF-8"),
        (
            b'{"query": "query($v: JSON) { workflows { id } }", "variables": {"v": '
            + b"[" * 1000
            + b"]" * 1000
            + b"}}",
            "nests deeper",
        ),
        (b'{"query": "{ workflows { id } }"', "not valid JSON"),
        (b'{"query": "{ workflows { id } }", "variables": {"v": NaN}}', "not valid JSON"),
        (b"[1, 2, 3]", "Batching"),
        (b"null", "must be a JSON object"),
        (b'{"query": 5}', "query"),
    ],
)
async def test_malformed_bodies_are_coded_400s_on_a_reusable_connection(
    serve: Serve, engine: Engine, caplog: pytest.LogCaptureFixture, body: bytes, needle: str
) -> None:
    """A malformed body is a 400 with code BAD_REQUEST, and the same connection serves next."""
    async with gateway(serve, engine) as url:
        (status, payload), (next_status, next_payload) = await exchange(url, [body, GOOD])
    assert status == 400
    error = json.loads(payload)["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert needle in error["message"]
    assert next_status == 200
    assert json.loads(next_payload)["data"]["workflows"]
    no_tracebacks(caplog)


async def test_a_body_over_the_limit_is_413_with_a_code(serve: Serve, engine: Engine) -> None:
    """A body over max_body_bytes is 413 with code PAYLOAD_TOO_LARGE naming the limit."""
    async with gateway(serve, engine, Settings(max_body_bytes=1000)) as url:
        [(status, payload), (next_status, _)] = await exchange(url, [b" " * 1001 + GOOD, GOOD])
    error = json.loads(payload)["errors"][0]
    assert (status, error["extensions"]["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert "1000 bytes" in error["message"]
    assert next_status == 200


DEEP_SUBSCRIBE = (
    '{"type":"subscribe","id":"1","payload":{"query":"{ workflows { id } }","variables":{"v":'
    + "[" * 900
    + "]" * 900
    + "}}}"
)


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
@pytest.mark.parametrize(
    ("frame", "needle"),
    [
        ("[1,2,3]", "JSON object"),
        ("5", "JSON object"),
        ('{"type": 7}', "string `type`"),
        ("{not json", "not valid JSON"),
        (DEEP_SUBSCRIBE, "nests deeper"),
        ('{"type":"subscribe","id":"1","payload":5}', "object `payload`"),
        ('{"type":"start","id":1,"payload":{"query":"{ workflows { id } }"}}', "string `id`"),
        ('{"type":"subscribe","id":"1","payload":{"query":"{ x }","variables":[]}}', "variables"),
        (b"\xff\xfe", "must be text"),
    ],
)
async def test_unreadable_websocket_frames_close_with_4400(
    serve: Serve,
    engine: Engine,
    caplog: pytest.LogCaptureFixture,
    protocol: str,
    frame: str | bytes,
    needle: str,
) -> None:
    """A frame that is not a usable message closes the socket with 4400 and a reason, no crash."""
    async with gateway(serve, engine) as url:
        ws_url = url.replace("http://", "ws://") + "/graphql"
        async with connect(ws_url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(frame)
            async with asyncio.timeout(10):
                with pytest.raises(ConnectionClosed) as closed:
                    await drain(ws)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4400
        assert needle in closed.value.rcvd.reason
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/healthz")).status_code == 200
    no_tracebacks(caplog)


async def drain(ws: ClientConnection) -> None:
    """Receive until the connection closes."""
    while True:
        await ws.recv()


def slow_upstream_app(delay: float) -> Starlette:
    """A fake AwaitStep API whose workflow listing takes ``delay`` seconds."""

    async def workflows(request: Request) -> Response:
        await asyncio.sleep(delay)
        return JSONResponse({"workflows": []})

    return Starlette(routes=[Route("/api/v1/workflows", workflows)])


async def test_an_operation_over_the_time_limit_is_cancelled_with_a_code(serve: Serve) -> None:
    """A query waiting on a slow upstream is answered OPERATION_TIMEOUT at operation_timeout."""
    settings = Settings(operation_timeout=0.3, upstream_read_timeout=30)
    async with serve(slow_upstream_app(20)) as upstream_url:
        upstream = AwaitStepUpstream(upstream_url, settings=settings)
        try:
            async with (
                serve(create_app(settings, upstream=upstream)) as url,
                httpx.AsyncClient(base_url=url, timeout=15) as http,
            ):
                response = await http.post(
                    "/graphql",
                    json={"query": "{ workflows { id } }"},
                    headers={"accept": "application/graphql-response+json"},
                )
                assert (await http.get("/healthz")).status_code == 200
        finally:
            await upstream.aclose()
    assert response.status_code == 200
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "OPERATION_TIMEOUT"
    assert "RUNCAST_OPERATION_TIMEOUT" in error["message"]
