"""Fixtures shared by the whole suite.

Edit this file only by adding or replacing a fixture in place (several people
work on it); keep fixtures that one test module needs in that module.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_server(app: ASGIApp, *, lifespan: str = "on") -> AsyncIterator[str]:
    """Serve ``app`` with a real uvicorn server on a loopback port; yield its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=free_port(),
        lifespan=lifespan,  # type: ignore[arg-type]
        log_level="warning",
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(15):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before it started")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        try:
            async with asyncio.timeout(15):
                await task
        except TimeoutError:
            server.force_exit = True
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
def serve() -> Callable[[ASGIApp], AbstractAsyncContextManager[str]]:
    """Start an ASGI app on a real uvicorn socket: ``async with serve(app) as url: ...``."""
    return running_server
