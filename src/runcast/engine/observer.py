"""What the engine tells about its work: run and step events, for logs, metrics and traces.

The executor calls one :class:`EngineEvents` at each event; it writes the engine's log
lines (info for what an operator acts on, debug for the rest) and passes the event on to
every :class:`EngineObserver` it was given (``runcast.engine.metrics``, the tracing
observer of ``runcast.engine.tracing``). With no observers an event costs a log call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from runcast.models import RunStatus

__all__ = ["EngineEvents", "EngineObserver", "RunRef"]

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

    def step_finished(
        self,
        run: RunRef,
        step: str,
        attempt: int,
        seconds: float,
        *,
        error: str | None,
        retry_in: float | None,
    ) -> None:
        """The attempt ended: ``error`` is ``None`` on success; ``retry_in`` when retried."""
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
        for observer in self.observers:
            _safely(observer.run_started, run)

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
        for observer in self.observers:
            _safely(observer.run_finished, run, status, seconds)

    def step_started(self, run: RunRef, step: str, attempt: int) -> None:
        """See :meth:`EngineObserver.step_started`."""
        log.debug(
            "step %r of run %s attempt %d",
            step,
            run.instance_id,
            attempt,
            extra={**_fields(run), "step": step, "attempt": attempt},
        )
        for observer in self.observers:
            _safely(observer.step_started, run, step, attempt)

    def step_finished(
        self,
        run: RunRef,
        step: str,
        attempt: int,
        seconds: float,
        *,
        error: str | None,
        retry_in: float | None,
    ) -> None:
        """See :meth:`EngineObserver.step_finished`; a failure is an info line."""
        if error is not None:
            _log_step_failure(run, step, attempt, error, retry_in)
        for observer in self.observers:
            try:
                observer.step_finished(run, step, attempt, seconds, error=error, retry_in=retry_in)
            except Exception as exc:
                _report(exc)

    def committed(self, seconds: float, operations: int) -> None:
        """See :meth:`EngineObserver.committed` (called on the store's writer thread)."""
        for observer in self.observers:
            _safely(observer.committed, seconds, operations)


def _log_step_failure(
    run: RunRef, step: str, attempt: int, error: str, retry_in: float | None
) -> None:
    then = f"retrying in {retry_in:g}s" if retry_in is not None else "no retries left"
    log.info(
        "step %r of run %s (workflow %s) failed on attempt %d, %s: %s",
        step,
        run.instance_id,
        run.workflow_id,
        attempt,
        then,
        error[:ERROR_PREVIEW],
        extra={**_fields(run), "step": step, "attempt": attempt, "retry_in_s": retry_in},
    )


def _fields(run: RunRef) -> dict[str, object]:
    """The structured fields every engine line about ``run`` carries."""
    return {"workflow_id": run.workflow_id, "run_id": run.instance_id}


def _safely(method: Callable[..., object], *args: object) -> None:
    try:
        method(*args)
    except Exception as exc:
        _report(exc)


def _report(exc: Exception) -> None:
    log.warning("an engine observer raised %s; ignored", type(exc).__name__)
    log.debug("the engine observer's error", exc_info=exc)
