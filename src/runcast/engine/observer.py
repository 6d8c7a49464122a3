"""What the engine tells about its work: run and step events, for logs, metrics and traces.

The executor calls one :class:`EngineEvents` at each event; it writes the engine's log
lines (info for what an operator acts on, debug for the rest) and passes the event on to
every :class:`EngineObserver` it was given (``runcast.engine.metrics``, the tracing
observer of ``runcast.engine.tracing``). With no observers an event costs a log call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from runcast.models import RunStatus

__all__ = ["AttemptEnd", "EngineEvents", "EngineObserver", "RunRef"]

log = logging.getLogger("runcast.engine")

ERROR_PREVIEW = 200
"""The most characters of a step's error message an info line shows."""


class RunRef(Protocol):
    """The run an event is about (the executor's run state satisfies it)."""

    @property
    def workflow_id(self) -> str:
        """The run's workflow."""
        ...

    @property
    def instance_id(self) -> str:
        """The run's instance id."""
        ...


@dataclass(frozen=True, slots=True)
class AttemptEnd:
    """How one attempt of a step ended."""

    step: str
    """The step's node name."""
    number: int
    """Which attempt it was (1 first)."""
    seconds: float
    """Its wall time."""
    error: str | None
    """Why it failed; ``None`` when it succeeded."""
    retry_in: float | None
    """Seconds until the next attempt when the failure is retried; ``None`` otherwise."""

    @property
    def outcome(self) -> str:
        """``ok``, ``retry`` (failed, tried again) or ``failed`` (no retry left)."""
        if self.error is None:
            return "ok"
        return "retry" if self.retry_in is not None else "failed"


class EngineObserver(Protocol):
    """Is told every run and step event on the loop, and every commit on the writer thread.

    Implementations must return quickly and must not raise (a raise is logged and ignored).
    """

    def run_started(self, run: RunRef) -> None:
        """A run was created or restarted and will execute."""
        ...

    def run_finished(self, run: RunRef, status: RunStatus, seconds: float | None) -> None:
        """A run reached the terminal ``status`` after ``seconds`` since it was started."""
        ...

    def step_started(self, run: RunRef, step: str, attempt: int) -> None:
        """Attempt ``attempt`` (1 first) of step ``step`` begins."""
        ...

    def step_finished(self, run: RunRef, attempt: AttemptEnd) -> None:
        """An attempt of one of the run's steps ended (successfully or not)."""
        ...

    def committed(self, seconds: float, operations: int) -> None:
        """The store committed a transaction of ``operations`` in ``seconds`` (writer thread)."""
        ...


class EngineEvents:
    """Logs each engine event and hands it to every observer.

    Args:
        observers: told every event, in order.
    """

    def __init__(self, observers: Sequence[EngineObserver] = ()) -> None:
        self.observers = tuple(observers)

    def run_started(self, run: RunRef) -> None:
        """See :meth:`EngineObserver.run_started`."""
        log.debug(
            "run %s of workflow %s started",
            run.instance_id,
            run.workflow_id,
            extra=_fields(run),
        )
        self._tell(lambda observer: observer.run_started(run))

    def run_finished(self, run: RunRef, status: RunStatus, seconds: float | None) -> None:
        """See :meth:`EngineObserver.run_finished`."""
        took = f" in {seconds:.3f}s" if seconds is not None else ""
        log.info(
            "run %s of workflow %s finished: %s%s",
            run.instance_id,
            run.workflow_id,
            status.value,
            took,
            extra={**_fields(run), "status": status.value, "duration_s": seconds},
        )
        self._tell(lambda observer: observer.run_finished(run, status, seconds))

    def step_started(self, run: RunRef, step: str, attempt: int) -> None:
        """See :meth:`EngineObserver.step_started`."""
        log.debug(
            "step %r of run %s attempt %d",
            step,
            run.instance_id,
            attempt,
            extra={**_fields(run), "step": step, "attempt": attempt},
        )
        self._tell(lambda observer: observer.step_started(run, step, attempt))

    def step_finished(self, run: RunRef, attempt: AttemptEnd) -> None:
        """See :meth:`EngineObserver.step_finished`; a failure is an info line."""
        if attempt.error is not None:
            _log_step_failure(run, attempt, attempt.error)
        self._tell(lambda observer: observer.step_finished(run, attempt))

    def committed(self, seconds: float, operations: int) -> None:
        """See :meth:`EngineObserver.committed` (called on the store's writer thread)."""
        self._tell(lambda observer: observer.committed(seconds, operations))

    def _tell(self, event: Callable[[EngineObserver], object]) -> None:
        """Hand one event to every observer; one that raises is logged and skipped."""
        for observer in self.observers:
            try:
                event(observer)
            except Exception as exc:
                log.warning("an engine observer raised %s; ignored", type(exc).__name__)
                log.debug("the engine observer's error", exc_info=exc)


def _log_step_failure(run: RunRef, attempt: AttemptEnd, error: str) -> None:
    retry_in = attempt.retry_in
    then = f"retrying in {retry_in:g}s" if retry_in is not None else "no retries left"
    log.info(
        "step %r of run %s (workflow %s) failed on attempt %d, %s: %s",
        attempt.step,
        run.instance_id,
        run.workflow_id,
        attempt.number,
        then,
        error[:ERROR_PREVIEW],
        extra={
            **_fields(run),
            "step": attempt.step,
            "attempt": attempt.number,
            "retry_in_s": retry_in,
        },
    )


def _fields(run: RunRef) -> dict[str, object]:
    """The structured fields every engine line about ``run`` carries."""
    return {"workflow_id": run.workflow_id, "run_id": run.instance_id}
