"""The HTTP boundary's default transport maps every TCP-level fault, against real loopback sockets.

No transport is injected: each test drives :class:`UpstreamHttpClient` (or the AwaitStep
adapter built on it) through its default :class:`PooledTransport`, against a tiny raw
asyncio server that misbehaves on purpose and counts the requests it received, or a
Starlette app on uvicorn for the cookie test.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from runcast.errors import UpstreamError, UpstreamUnavailable
from runcast.models import Credentials
from runcast.settings import Settings
from runcast.upstream._http import RequestOutcome, UpstreamHttpClient
from runcast.upstream.awaitstep import AwaitStepUpstream

Serve = Callable[[ASGIApp], AbstractAsyncContextManager[str]]
Answer = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

RETRIES = 2
ATTEMPTS = RETRIES + 1
SETTINGS = Settings(
    upstream_get_retries=RETRIES, upstream_connect_timeout=0.3, upstream_read_timeout=0.3
)
CREDENTIALS = Credentials.from_authorization("Bearer caller-token")


@dataclass
class RawServer:
    """A loopback TCP server that reads each HTTP request, records it, then runs ``answer``."""

    answer: Answer
    requests: list[bytes] = field(default_factory=list)
    """The request line and headers of every request received, in order."""
    url: str = ""

    @property
    def methods(self) -> list[str]:
        """The method of every request received."""
        return [head.split(b" ", 1)[0].decode() for head in self.requests]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            await reader.readexactly(int(value.strip()))
    return head


@asynccontextmanager
async def raw_server(answer: Answer) -> AsyncIterator[RawServer]:
    """Serve ``answer`` on a loopback port; every connection is closed and awaited on exit."""
    state = RawServer(answer)
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            state.requests.append(await _read_request(reader))
            await state.answer(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        yield state
    finally:
        server.close()
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Close the connection without answering."""


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer bytes that are not an HTTP response, then close."""
    writer.write(b"\x00\x01 this is not HTTP at all\r\n\r\n")
    await writer.drain()


async def truncated(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Announce a 100-byte body, send 9 bytes of it, then close."""
    writer.write(
        b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"data": '
    )
    await writer.drain()


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Never answer; wait until the client gives up and closes."""
    await reader.read()


@dataclass
class Outcomes:
    """The outcome of every HTTP attempt the client reported."""

    seen: list[RequestOutcome] = field(default_factory=list)

    def __call__(self, upstream: str, outcome: RequestOutcome) -> None:
        self.seen.append(outcome)


@asynccontextmanager
async def client_for(url: str, outcomes: Outcomes) -> AsyncIterator[UpstreamHttpClient]:
    """An ``UpstreamHttpClient`` with its default transport, fast timeouts and backoff."""
    client = UpstreamHttpClient(
        "fake", url, settings=SETTINGS, on_request=outcomes, retry_base_delay=0.001
    )
    try:
        yield client
    finally:
        await client.aclose()


async def test_post_dropped_after_receipt_is_sent_once() -> None:
    """A POST whose connection closes unanswered is sent once and raises UpstreamUnavailable."""
    outcomes = Outcomes()
    async with raw_server(drop) as server, client_for(server.url, outcomes) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.request("POST", "/runs", json={"input": 1})
    assert server.methods == ["POST"]
    assert outcomes.seen == ["connection_error"]


async def test_get_dropped_after_receipt_is_retried() -> None:
    """A GET whose connection closes unanswered is retried, each attempt resent once by aiohttp."""
    outcomes = Outcomes()
    async with raw_server(drop) as server, client_for(server.url, outcomes) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.request("GET", "/runs")
    assert outcomes.seen == ["connection_error"] * ATTEMPTS
    # aio-libs/aiohttp#10790: aiohttp may send each attempt a second time on a new connection.
    assert ATTEMPTS <= len(server.requests) <= 2 * ATTEMPTS
    assert set(server.methods) == {"GET"}


async def test_delete_dropped_after_receipt_is_not_retried_by_runcast() -> None:
    """A DELETE (a mutation) on a dropped connection is one attempt, at most resent by aiohttp."""
    outcomes = Outcomes()
    async with raw_server(drop) as server, client_for(server.url, outcomes) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.request("DELETE", "/runs/r1")
    assert outcomes.seen == ["connection_error"]
    assert 1 <= len(server.requests) <= 2


@pytest.mark.parametrize("answer", [garbage, truncated], ids=["garbage", "truncated"])
async def test_unreadable_answer_to_post_is_unavailable_once(answer: Answer) -> None:
    """A POST answered with non-HTTP bytes or a cut-short body raises UpstreamUnavailable once."""
    outcomes = Outcomes()
    async with raw_server(answer) as server, client_for(server.url, outcomes) as client:
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.request("POST", "/runs", json={"input": 1})
    assert caught.value.code == "UPSTREAM_UNAVAILABLE"
    assert server.methods == ["POST"]
    assert outcomes.seen == ["connection_error"]


@pytest.mark.parametrize("answer", [garbage, truncated], ids=["garbage", "truncated"])
async def test_unreadable_answer_to_get_is_retried(answer: Answer) -> None:
    """A GET answered with non-HTTP bytes or a cut-short body is retried, then is unavailable."""
    outcomes = Outcomes()
    async with raw_server(answer) as server, client_for(server.url, outcomes) as client:
        with pytest.raises(UpstreamError) as caught:
            await client.request("GET", "/runs")
    assert isinstance(caught.value, UpstreamUnavailable)
    assert caught.value.code == "UPSTREAM_UNAVAILABLE"
    assert outcomes.seen == ["connection_error"] * ATTEMPTS
    assert ATTEMPTS <= len(server.requests) <= 2 * ATTEMPTS


async def test_connection_refused_is_retried_even_for_post() -> None:
    """A refused connection (the request never left) is retried, then raises UpstreamUnavailable."""
    outcomes = Outcomes()
    with socket.socket() as bound_not_listening:
        bound_not_listening.bind(("127.0.0.1", 0))
        port = bound_not_listening.getsockname()[1]
        async with client_for(f"http://127.0.0.1:{port}", outcomes) as client:
            with pytest.raises(UpstreamUnavailable):
                await client.request("POST", "/runs", json={"input": 1})
    assert outcomes.seen == ["connection_error"] * ATTEMPTS


async def test_read_timeout_on_get_is_retried_within_bound() -> None:
    """A GET left unanswered times out on every attempt, is retried, then is unavailable."""
    outcomes = Outcomes()
    async with raw_server(hang) as server, client_for(server.url, outcomes) as client:
        with pytest.raises(UpstreamUnavailable, match="ReadTimeout"):
            await client.request("GET", "/runs")
    assert outcomes.seen == ["timeout"] * ATTEMPTS
    assert server.methods == ["GET"] * ATTEMPTS


async def test_read_timeout_on_post_is_not_retried() -> None:
    """A POST left unanswered times out once and is not sent again."""
    outcomes = Outcomes()
    async with raw_server(hang) as server, client_for(server.url, outcomes) as client:
        with pytest.raises(UpstreamUnavailable, match="ReadTimeout"):
            await client.request("POST", "/runs", json={"input": 1})
    assert outcomes.seen == ["timeout"]
    assert server.methods == ["POST"]


@asynccontextmanager
async def full_backlog() -> AsyncIterator[str]:
    """A listening socket that never accepts, its queue filled: new connects time out (Linux)."""
    loop = asyncio.get_running_loop()
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        filler.setblocking(False)
        await loop.sock_connect(filler, address)
        yield f"http://127.0.0.1:{address[1]}"


async def test_connect_timeout_lets_trigger_with_id_retry() -> None:
    """A trigger with a caller-given id whose connection cannot open is retried, then fails."""
    outcomes = Outcomes()
    async with full_backlog() as url:
        upstream = AwaitStepUpstream(
            url, settings=SETTINGS, on_request=outcomes, retry_base_delay=0.001
        )
        try:
            with pytest.raises(UpstreamUnavailable, match="ConnectTimeout"):
                await upstream.trigger("wf", instance_id="run-1", credentials=CREDENTIALS)
        finally:
            await upstream.aclose()
    assert outcomes.seen == ["timeout"] * ATTEMPTS


@pytest.mark.parametrize(
    ("instance_id", "expected"), [("run-1", ATTEMPTS), (None, 1)], ids=["with-id", "no-id"]
)
async def test_dropped_trigger_is_retried_only_with_an_id(
    instance_id: str | None, expected: int
) -> None:
    """A trigger dropped after receipt is sent again only when the caller gave its instance id."""
    outcomes = Outcomes()
    async with raw_server(drop) as server:
        upstream = AwaitStepUpstream(
            server.url, settings=SETTINGS, on_request=outcomes, retry_base_delay=0.001
        )
        try:
            with pytest.raises(UpstreamUnavailable):
                await upstream.trigger("wf", instance_id=instance_id, credentials=CREDENTIALS)
        finally:
            await upstream.aclose()
    assert server.methods == ["POST"] * expected
    assert outcomes.seen == ["connection_error"] * expected


def cookie_app() -> Starlette:
    """An upstream that sets a session cookie on ``/login`` and echoes ``Cookie`` on ``/echo``."""

    async def login(request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.set_cookie("session", "caller-a-secret", path="/")
        response.headers.append("Set-Cookie", "other=x; Domain=127.0.0.1; Path=/")
        return response

    async def echo(request: Request) -> Response:
        return JSONResponse({"cookie": request.headers.get("cookie")})

    return Starlette(routes=[Route("/login", login), Route("/echo", echo)])


async def test_cookie_set_for_one_caller_is_not_sent_for_another(serve: Serve) -> None:
    """A cookie an upstream sets in answer to caller A never goes out with caller B's request."""
    async with serve(cookie_app()) as url, client_for(url, Outcomes()) as client:
        login = await client.request("GET", "/login", headers={"Authorization": "Bearer a"})
        assert "caller-a-secret" in login.headers.get("set-cookie", "")
        echoed = await client.request("GET", "/echo", headers={"Authorization": "Bearer b"})
    assert echoed.json() == {"cookie": None}


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer 200 with an empty JSON object."""
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
    await writer.drain()


async def test_request_headers_join_the_clients_own() -> None:
    """A request's header replaces the client's of that name, in any case; the others stay."""
    async with raw_server(ok) as server:
        client = UpstreamHttpClient("fake", server.url + "/base/", headers={"X-Api-Key": "fixed"})
        try:
            await client.request("GET", "/one", headers={"x-api-key": "mine", "X-Trace": "t"})
            await client.request("GET", "/two", params={"q": "1"})
        finally:
            await client.aclose()
    first, second = (head.decode("latin-1").lower() for head in server.requests)
    assert first.startswith("get /base/one http/1.1")
    assert "x-api-key: mine" in first
    assert "fixed" not in first
    assert "x-trace: t" in first
    assert second.startswith("get /base/two?q=1 http/1.1")
    assert "x-api-key: fixed" in second
    assert "user-agent: runcast" in second
