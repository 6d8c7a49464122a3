"""Python callables that the test workflows (tests/workflows) and action tests call.

Importable as ``workflow_actions``: pytest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any


async def slow_sleep(context: Mapping[str, Any]) -> str:
    """Sleep 30 seconds without blocking the loop (the ``slow-step`` workflow)."""
    await asyncio.sleep(30)
    return "slept"


def add(context: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``input.a`` and ``input.b`` (sync); also say which thread ran it."""
    return {"sum": context["input"]["a"] + context["input"]["b"], "thread": threading.get_ident()}


async def echo(context: Mapping[str, Any]) -> Any:
    """Return the run's input (async)."""
    await asyncio.sleep(0)
    return context["input"]


def block(context: Mapping[str, Any]) -> str:
    """Block its thread for ``input.seconds`` (sync): must not block the event loop."""
    time.sleep(context["input"]["seconds"])
    return "unblocked"


def not_json(context: Mapping[str, Any]) -> object:
    """Return something JSON cannot hold."""
    return {"when": object()}


def explode(context: Mapping[str, Any]) -> None:
    """Raise an ordinary exception."""
    raise ValueError("kaboom")


NOT_CALLABLE = 42


def refuse_charge(context: Mapping[str, Any]) -> None:
    """Refuse a non-positive ``input.amount`` for good: no retry can fix it."""
    from runcast.engine import NonRetryableError

    raise NonRetryableError(f"amount {context['input']['amount']} is not positive")
