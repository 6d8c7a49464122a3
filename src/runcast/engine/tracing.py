"""Spans of the embedded engine: one per run (while this engine drives it), one per attempt.

:class:`EngineTracing` is an :class:`~runcast.engine.observer.EngineObserver`. A run's span
starts when the run is created or restarted, as a child of whatever span is current then
(the request that triggered it, so one trace goes from the client to the steps), and ends
when the run reaches a terminal status. Each step attempt is a child span of its run's.
A run this engine continues after a restart gets a new root span at its next attempt.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from runcast.engine.observer import AttemptEnd, RunRef
from runcast.models import RunStatus

__all__ = ["EngineTracing"]

_Key = tuple[str, str]


class EngineTracing:
    """Run and step spans, made with ``tracer``.

    Args:
        tracer: makes the spans (``Tracing.tracer("runcast.engine")``).
    """

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer
        self._runs: dict[_Key, Span] = {}
        self._steps: dict[_Key, Span] = {}

    def _run_span(self, run: RunRef, *, parent_current: bool) -> Span:
        key = (run.workflow_id, run.instance_id)
        span = self._runs.get(key)
        if span is None:
            context = None if parent_current else trace.set_span_in_context(trace.INVALID_SPAN)
            span = self._tracer.start_span(
                f"run {run.workflow_id}",
                context=context,
                attributes={
                    "runcast.workflow_id": run.workflow_id,
                    "runcast.run_id": run.instance_id,
                },
            )
            self._runs[key] = span
        return span

    def run_started(self, run: RunRef) -> None:
        """Start the run's span under the current one (ending a span of an earlier start)."""
        key = (run.workflow_id, run.instance_id)
        self._end_step(key, None)
        earlier = self._runs.pop(key, None)
        if earlier is not None:
            earlier.set_attribute("runcast.status", "restarted")
            earlier.end()
        self._run_span(run, parent_current=True)

    def run_finished(self, run: RunRef, status: RunStatus, seconds: float | None) -> None:
        """End the run's span with its status."""
        key = (run.workflow_id, run.instance_id)
        self._end_step(key, None)
        span = self._runs.pop(key, None)
        if span is None:
            return
        span.set_attribute("runcast.status", status.value)
        if status is RunStatus.ERRORED:
            span.set_status(Status(StatusCode.ERROR))
        span.end()

    def step_started(self, run: RunRef, step: str, attempt: int) -> None:
        """Start a span for the attempt, under the run's."""
        key = (run.workflow_id, run.instance_id)
        self._end_step(key, None)
        parent = self._run_span(run, parent_current=False)
        self._steps[key] = self._tracer.start_span(
            f"step {step}",
            context=trace.set_span_in_context(parent),
            attributes={"runcast.step": step, "runcast.attempt": attempt},
        )

    def step_finished(self, run: RunRef, attempt: AttemptEnd) -> None:
        """End the attempt's span; a failed one has status ERROR and the step's message."""
        key = (run.workflow_id, run.instance_id)
        span = self._steps.get(key)
        if span is not None and attempt.retry_in is not None:
            span.set_attribute("runcast.retry_in_s", attempt.retry_in)
        self._end_step(key, attempt.error)

    def committed(self, seconds: float, operations: int) -> None:
        """Commits make no spans (there are many, and the metrics time them)."""

    def _end_step(self, key: _Key, error: str | None) -> None:
        span = self._steps.pop(key, None)
        if span is None:
            return
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()
