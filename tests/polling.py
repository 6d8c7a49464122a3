"""Polling helpers shared by the tests of the upstream adapters and the engine's servers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from runcast.models import ANONYMOUS, Credentials, Run, RunStatus
from runcast.upstream import RunAPI

T = TypeVar("T")


async def poll(
    read: Callable[[], Awaitable[T]], predicate: Callable[[T], bool], *, within: float = 10
) -> T:
    """Call ``read`` until ``predicate`` holds for its result; fail after ``within`` seconds."""
    async with asyncio.timeout(within):
        while True:
            value = await read()
            if predicate(value):
                return value
            await asyncio.sleep(0.02)


def in_status(*statuses: RunStatus) -> Callable[[Run], bool]:
    """A predicate: the run is in one of ``statuses``."""
    return lambda run: run.status in statuses


def at_node(name: str, status: RunStatus) -> Callable[[Run], bool]:
    """A predicate: the run is in ``status`` and has entered node ``name``."""
    return lambda run: run.status is status and any(s.name == name for s in run.steps or ())


async def wait_for_run(
    upstream: RunAPI,
    workflow_id: str,
    instance_id: str,
    predicate: Callable[[Run], bool],
    *,
    credentials: Credentials = ANONYMOUS,
    within: float = 10,
) -> Run:
    """Read the run through ``upstream`` until ``predicate`` holds; fail after ``within`` s."""

    async def read() -> Run:
        return await upstream.get_run(workflow_id, instance_id, credentials=credentials)

    return await poll(read, predicate, within=within)
