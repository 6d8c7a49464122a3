"""A step's attempts: how many may start, how long each may take, when the next one starts."""

from __future__ import annotations

from datetime import timedelta

from runcast.engine.actions import ActionFailed
from runcast.engine.definitions import StepNode

__all__ = [
    "DEFAULT_STEP_TIMEOUT",
    "attempts_allowed",
    "died_message",
    "format_duration",
    "retry_in",
]

DEFAULT_STEP_TIMEOUT = timedelta(seconds=30)
"""Wall time per attempt of a step that sets no ``timeout`` (the AwaitStep limit)."""


def attempts_allowed(node: StepNode) -> int:
    """How many attempts of ``node`` may start, attempts cut by a crash included.

    ``retries.limit + 1``, but at least 2: one crash of the engine during a step
    without retries re-runs it once instead of failing the run.
    """
    return max(node.retries.limit + 1, 2)


def died_message(node: StepNode, attempts: int) -> str:
    """The error of a run whose step's last attempt ended with the death of the process."""
    return (
        f"step {node.name!r} did not finish: the engine's process died during attempt"
        f" {attempts} of {attempts_allowed(node)}, so it is not run again"
    )


def retry_in(node: StepNode, attempt: int, failure: ActionFailed | None) -> float | None:
    """Seconds before the next attempt of a failed one; ``None`` on success or no retry left."""
    if failure is None or not failure.retryable or attempt > node.retries.limit:
        return None
    return node.retries.delay_before(attempt).total_seconds()


def format_duration(delta: timedelta) -> str:
    """``1h``, ``30s``, ``1.5s``, ``250ms``: a duration the way workflow files write it."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"
