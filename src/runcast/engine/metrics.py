"""Prometheus metrics of one embedded engine: runs, steps, attempts, the queue and the store.

:class:`EngineMetrics` is an :class:`~runcast.engine.observer.EngineObserver`: give it to
``Engine(observers=[...])``, then :meth:`EngineMetrics.watch` the started engine for the
queue and slot gauges. Its series go into the registry it is given (the gateway's own).
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from runcast.engine.observer import AttemptEnd, RunRef
from runcast.models import RunStatus

__all__ = ["EngineLoad", "EngineMetrics"]

_STEP_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0)
_COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class EngineLoad(Protocol):
    """What the queue and slot gauges read, at scrape time."""

    @property
    def queue_depth(self) -> int:
        """Runs waiting for a slot."""
        ...

    @property
    def running_slots(self) -> int:
        """Slots taken by executing runs."""
        ...


class EngineMetrics:
    """The engine's series.

    Args:
        registry: where the series are registered.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs_started = Counter(
            "runcast_engine_runs_started",
            "Runs created or restarted by the embedded engine, by workflow.",
            ["workflow"],
            registry=registry,
        )
        self.runs_finished = Counter(
            "runcast_engine_runs_finished",
            "Runs that reached a terminal status, by workflow and status.",
            ["workflow", "status"],
            registry=registry,
        )
        self.step_attempts = Counter(
            "runcast_engine_step_attempts",
            "Step attempts, by workflow and outcome (ok, retry, failed).",
            ["workflow", "outcome"],
            registry=registry,
        )
        self.step_duration = Histogram(
            "runcast_engine_step_duration_seconds",
            "Wall time of one step attempt, by workflow.",
            ["workflow"],
            buckets=_STEP_BUCKETS,
            registry=registry,
        )
        self.commit_latency = Histogram(
            "runcast_engine_commit_seconds",
            "Time of one store transaction (group commit, fsync included).",
            buckets=_COMMIT_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "runcast_engine_queue_depth",
            "Runs waiting for a free slot (over max_running).",
            registry=registry,
        )
        self.running_slots = Gauge(
            "runcast_engine_running_slots",
            "Slots taken by executing runs (at most max_running).",
            registry=registry,
        )

    def watch(self, engine: EngineLoad) -> None:
        """Read the queue and slot gauges from ``engine`` at every scrape."""
        self.queue_depth.set_function(lambda: engine.queue_depth)
        self.running_slots.set_function(lambda: engine.running_slots)

    def run_started(self, run: RunRef) -> None:
        """Count a started run."""
        self.runs_started.labels(workflow=run.workflow_id).inc()

    def run_finished(self, run: RunRef, status: RunStatus, seconds: float | None) -> None:
        """Count a finished run by its status."""
        self.runs_finished.labels(workflow=run.workflow_id, status=status.value).inc()

    def step_started(self, run: RunRef, step: str, attempt: int) -> None:
        """Nothing to count until the attempt ends."""

    def step_finished(self, run: RunRef, attempt: AttemptEnd) -> None:
        """Count the attempt by outcome and observe its duration."""
        self.step_attempts.labels(workflow=run.workflow_id, outcome=attempt.outcome).inc()
        self.step_duration.labels(workflow=run.workflow_id).observe(attempt.seconds)

    def committed(self, seconds: float, operations: int) -> None:
        """Observe one commit's latency."""
        self.commit_latency.observe(seconds)
