"""The shared uvicorn fixture serves a tiny app over a real socket."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import ASGIApp


async def test_serve_answers_over_loopback(
    serve: Callable[[ASGIApp], AbstractAsyncContextManager[str]],
) -> None:
    """A request to the served app's URL reaches the app through uvicorn."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello " + request.url.path)

    app = Starlette(routes=[Route("/x", hello)])
    async with serve(app) as url, httpx.AsyncClient() as client:
        response = await client.get(f"{url}/x")
    assert response.text == "hello /x"
