"""The time limit of one operation (``RUNCAST_OPERATION_TIMEOUT``), on every transport.

A query or mutation still running at the limit is cancelled and answered with one
``OPERATION_TIMEOUT`` error, whether it came over HTTP (``execute``), over either
WebSocket protocol or over SSE (``stream``). Subscriptions are long-lived by design
and have no limit; their resources are bounded per connection instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import TypeVar

from graphql import GraphQLError
from strawberry.types import ExecutionResult

OPERATION_TIMEOUT_CODE = "OPERATION_TIMEOUT"
"""The ``extensions.code`` of an operation cancelled at the time limit."""

T = TypeVar("T")


def timed_out(limit: float) -> ExecutionResult:
    """The result of an operation cancelled after ``limit`` seconds."""
    error = GraphQLError(
        f"The operation did not finish within the limit of {limit:g} s "
        "(RUNCAST_OPERATION_TIMEOUT) and was cancelled",
        extensions={"code": OPERATION_TIMEOUT_CODE},
    )
    return ExecutionResult(data=None, errors=[error])


def is_timeout(result: ExecutionResult) -> bool:
    """Whether ``result`` is :func:`timed_out`'s: the operation started, so no request error."""
    return any(
        (error.extensions or {}).get("code") == OPERATION_TIMEOUT_CODE
        for error in result.errors or ()
    )


async def within_limit(
    results: AsyncGenerator[T, None], limit: float
) -> AsyncGenerator[T | ExecutionResult, None]:
    """``results`` as long as they come within ``limit`` seconds, then :func:`timed_out`'s.

    Only the waits for results are timed, not what the consumer does with each one,
    so a cancellation never lands in the consumer's own code.
    """
    deadline = asyncio.get_running_loop().time() + limit
    async with aclosing(results) as source:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    result = await anext(source)
            except StopAsyncIteration:
                return
            except TimeoutError:
                yield timed_out(limit)
                return
            yield result
