"""Connection guards of `runcast serve` and `runcast engine`: head size, timeouts, a cap."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import httpx
import pytest
import uvicorn

from conftest import free_port, serving
from runcast._server import connection_options
from runcast.app import create_app
from runcast.engine import Engine
from runcast.settings import Settings
from runcast.upstream.local import LocalUpstream

GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


@asynccontextmanager
async def guarded_gateway(engine: Engine, settings: Settings) -> AsyncIterator[int]:
    """The gateway on uvicorn with the connection options `runcast serve` uses; yields the port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, upstream=LocalUpstream(engine)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **connection_options(settings.server_options()),
    )
    async with serving(config):
        yield port


async def closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    with suppress(ConnectionError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_an_oversized_head_is_431_with_a_code(engine: Engine, parser: str) -> None:
    """Header lines past max_header_bytes get 431 (code HEADERS_TOO_LARGE) and a close."""
    settings = Settings(http_parser=parser, max_header_bytes=4096)
    async with guarded_gateway(engine, settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with suppress(ConnectionError):
            for _ in range(100):
                writer.write(b"X-Pad: " + b"a" * 200 + b"\r\n")
                await writer.drain()
        answer = await closed_by_server(reader)
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 ")
        assert json.loads(body)["errors"][0]["extensions"]["code"] == "HEADERS_TOO_LARGE"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200


@pytest.mark.parametrize("parser", ["h11", "httptools"])
async def test_slow_heads_and_idle_connections_are_closed(engine: Engine, parser: str) -> None:
    """Slowloris connections and connections that never send are closed at header_timeout."""
    settings = Settings(http_parser=parser, header_timeout=0.5, idle_timeout=0.5)
    async with guarded_gateway(engine, settings) as port:
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]
        slow = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]

        async def trickle(writer: asyncio.StreamWriter) -> None:
            with suppress(ConnectionError):
                for byte in GET_HEALTHZ[:-2]:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.1)

        trickles = [asyncio.create_task(trickle(writer)) for _, writer in slow]
        async with asyncio.timeout(10):
            answers = [await closed_by_server(reader) for reader, _ in silent + slow]
        for task in trickles:
            task.cancel()
        await asyncio.gather(*trickles, return_exceptions=True)
        assert answers == [b""] * 40
        for _, writer in silent + slow:
            writer.close()


async def test_a_kept_alive_connection_is_closed_after_idle_timeout(engine: Engine) -> None:
    """After a response, a connection that stays quiet is closed at idle_timeout."""
    settings = Settings(idle_timeout=0.3, header_timeout=60)
    async with guarded_gateway(engine, settings) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(GET_HEALTHZ)
        async with asyncio.timeout(10):
            answer = await closed_by_server(reader)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_connections_over_the_cap_get_503(engine: Engine) -> None:
    """Beyond max_connections a new connection is answered 503 with Retry-After, then served."""
    async with guarded_gateway(engine, Settings(max_connections=5)) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        async with asyncio.timeout(10):
            refused = await closed_by_server(reader)
        writer.close()
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert b"retry-after: 1" in head
        assert json.loads(body)["errors"][0]["extensions"]["code"] == "TOO_MANY_CONNECTIONS"
        for _, held_writer in held:
            held_writer.close()
        async with asyncio.timeout(10):
            while True:
                with suppress(httpx.HTTPError):
                    async with httpx.AsyncClient() as http:
                        if (await http.get(f"http://127.0.0.1:{port}/healthz")).is_success:
                            break
                await asyncio.sleep(0.05)


def rss_bytes(pid: int) -> int:
    """The resident memory of process ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@contextmanager
def runcast_process(
    tmp_path: Path, command: str, *, ready: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`runcast COMMAND` on a free port with its own database, once it printed ``ready``."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    clean.update(RUNCAST_DB_PATH=str(tmp_path / f"{command}.db"), RUNCAST_ACCESS_LOG="false")
    process = subprocess.Popen(
        [sys.executable, "-m", "runcast", command, "--port", str(port)],
        env={**clean, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        while ready not in (line := process.stdout.readline()):
            assert line, f"runcast {command} stopped before it was ready"
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=20)
        if process.stdout is not None:
            process.stdout.close()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`runcast serve` (default settings) on a free port, stopped after the test."""
    with runcast_process(tmp_path, "serve", ready="GraphiQL at") as started:
        yield started


def wait_until_healthy(port: int, path: str = "/healthz") -> None:
    """Poll ``path`` until it answers 200 (at most 15 s)."""
    deadline = time.monotonic() + 15
    while True:
        with suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                return
        assert time.monotonic() < deadline, f"the server did not answer {path}"
        time.sleep(0.05)


def test_a_header_flood_leaves_memory_where_it_was(
    serve_process: tuple[subprocess.Popen[str], int],
) -> None:
    """Streaming 200 MiB of header lines gets 431 early, and RSS stays within 5 MB."""
    process, port = serve_process
    wait_until_healthy(port)
    before = rss_bytes(process.pid)
    line = b"X-Flood: " + b"f" * 1000 + b"\r\n"
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with suppress(OSError):
            while sent < 200 * 1024 * 1024:
                sock.sendall(line * 64)
                sent += len(line) * 64
        sock.settimeout(10)
        with suppress(OSError):
            answer = sock.recv(200)
    assert sent < 200 * 1024 * 1024
    wait_until_healthy(port)
    assert rss_bytes(process.pid) - before < 5 * 1024 * 1024
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431 ")


@pytest.fixture
def engine_process(tmp_path: Path) -> Iterator[int]:
    """`runcast engine` with a 4 KiB head limit and a cap of 5 connections; yields its port."""
    limits = {"RUNCAST_MAX_HEADER_BYTES": "4096", "RUNCAST_MAX_CONNECTIONS": "5"}
    with runcast_process(
        tmp_path, "engine", ready="serving the AwaitStep API", env=limits
    ) as started:
        wait_until_healthy(started[1], "/api/v1/workflows")
        yield started[1]


def test_runcast_engine_answers_a_header_flood_with_431(engine_process: int) -> None:
    """`runcast engine` holds request heads to max_header_bytes too: a flood gets a coded 431."""
    line = b"X-Flood: " + b"f" * 1000 + b"\r\n"
    answer = b""
    with socket.create_connection(("127.0.0.1", engine_process)) as sock:
        sock.sendall(b"GET /api/v1/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with suppress(OSError):
            for _ in range(10_000):
                sock.sendall(line * 16)
        sock.settimeout(10)
        with suppress(OSError):
            while chunk := sock.recv(65536):
                answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "HEADERS_TOO_LARGE"
    assert httpx.get(f"http://127.0.0.1:{engine_process}/api/v1/workflows").status_code == 200


def test_runcast_engine_refuses_connections_over_the_cap(engine_process: int) -> None:
    """`runcast engine` answers a connection beyond max_connections with 503 and Retry-After."""
    held = [socket.create_connection(("127.0.0.1", engine_process)) for _ in range(5)]
    try:
        with socket.create_connection(("127.0.0.1", engine_process)) as sock:
            sock.settimeout(10)
            refused = b""
            with suppress(OSError):
                while chunk := sock.recv(65536):
                    refused += chunk
    finally:
        for connection in held:
            connection.close()
    head, _, body = refused.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"retry-after: 1" in head
    assert json.loads(body)["errors"][0]["extensions"]["code"] == "TOO_MANY_CONNECTIONS"
