"""Scripted answers for the tests' fakes of outside HTTP services (AwaitStep, Cloudflare)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

Responder = Callable[[Request], Awaitable[Response]]
"""Answers one request of a fake."""


def reply(status: int = 200, body: Any = None, headers: dict[str, str] | None = None) -> Responder:
    """A responder that answers ``status`` with ``body`` as JSON."""

    async def respond(request: Request) -> Response:
        return JSONResponse(body, status_code=status, headers=headers)

    return respond
