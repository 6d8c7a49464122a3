"""Python actions for the engine's own tests: count executions, hold a step, hang once.

Importable as ``engine_probe`` (pytest puts ``tests/`` on ``sys.path``; the crash
worker is started with ``PYTHONPATH`` pointing here too).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GATES: dict[str, asyncio.Event] = {}
"""Events a ``hold`` step waits for, by ``input.gate`` (tests set and release them)."""

UNSTICK = threading.Event()
"""What every ``stuck`` step blocks its thread on (tests set it when they are done)."""


def _record(context: Mapping[str, Any], step: str) -> int:
    """Append ``"<input.id> <step>"`` to ``input.log``; return how often it was recorded."""
    line = f"{context['input']['id']} {step}\n"
    path = Path(context["input"]["log"])
    with path.open("a") as log:
        log.write(line)
    return path.read_text().count(line)


def step_a(context: Mapping[str, Any]) -> str:
    """Record one execution of step ``a``."""
    _record(context, "a")
    return "a"


def step_c(context: Mapping[str, Any]) -> str:
    """Record one execution of step ``c``."""
    _record(context, "c")
    return "c"


async def hang_b(context: Mapping[str, Any]) -> str:
    """Record step ``b``; the first execution hangs when ``input.hang`` is true."""
    times = await asyncio.to_thread(_record, context, "b")
    if context["input"].get("hang") and times == 1:
        await asyncio.sleep(3600)
    return "b"


async def hold(context: Mapping[str, Any]) -> Any:
    """Wait until the test sets ``GATES[input.gate]``; return the run's input."""
    await GATES[context["input"]["gate"]].wait()
    return context["input"]


def context_keys(context: Mapping[str, Any]) -> list[str]:
    """The names the run context holds, sorted."""
    return sorted(context)


def flop(context: Mapping[str, Any]) -> None:
    """Record step ``f`` and fail."""
    _record(context, "f")
    raise RuntimeError("flop")


def stuck(context: Mapping[str, Any]) -> str:
    """Block this thread until ``UNSTICK`` is set: a sync step that hangs."""
    UNSTICK.wait()
    return "unstuck"


def die(context: Mapping[str, Any]) -> str:
    """Record step ``d`` and end this process at once, as the OOM killer would."""
    import os
    import signal

    _record(context, "d")
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"
