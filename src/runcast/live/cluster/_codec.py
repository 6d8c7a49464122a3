"""The wire shape of a run in Redis (JSON), described once: writers and readers use it."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TypedDict

from runcast.live._change import Observable
from runcast.models import JSON, Run, RunStatus, Step


class StepWire(TypedDict):
    """One step of a run, as kept in Redis."""

    name: str
    type: str
    status: str
    attempts: int
    output: JSON
    error: str | None
    startedAt: str | None
    endedAt: str | None


class RunWire(TypedDict):
    """A run, as kept in Redis (never any credential)."""

    workflowId: str
    instanceId: str
    status: str
    rawStatus: str
    input: JSON
    output: JSON
    error: str | None
    createdAt: str | None
    startedAt: str | None
    endedAt: str | None
    wakeAt: str | None
    steps: list[StepWire] | None


class ChangeWire(TypedDict):
    """One published change: the run as observed, when, and its epoch and sequence number."""

    by: str
    epoch: str
    seq: int
    observedAt: str
    run: RunWire


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def run_to_wire(run: Run) -> RunWire:
    """``run`` as JSON-ready values."""
    steps: list[StepWire] | None = None
    if run.steps is not None:
        steps = [
            StepWire(
                name=step.name,
                type=step.type,
                status=step.status,
                attempts=step.attempts,
                output=step.output,
                error=step.error,
                startedAt=_time(step.started_at),
                endedAt=_time(step.ended_at),
            )
            for step in run.steps
        ]
    return RunWire(
        workflowId=run.workflow_id,
        instanceId=run.instance_id,
        status=run.status.value,
        rawStatus=run.raw_status,
        input=run.input,
        output=run.output,
        error=run.error,
        createdAt=_time(run.created_at),
        startedAt=_time(run.started_at),
        endedAt=_time(run.ended_at),
        wakeAt=_time(run.wake_at),
        steps=steps,
    )


def run_from_wire(wire: RunWire) -> Run:
    """The run that :func:`run_to_wire` wrote."""
    steps = None
    if wire["steps"] is not None:
        steps = tuple(
            Step(
                name=step["name"],
                type=step["type"],
                status=step["status"],
                attempts=step["attempts"],
                output=step["output"],
                error=step["error"],
                started_at=_parse_time(step["startedAt"]),
                ended_at=_parse_time(step["endedAt"]),
            )
            for step in wire["steps"]
        )
    return Run(
        workflow_id=wire["workflowId"],
        instance_id=wire["instanceId"],
        status=RunStatus.parse(wire["status"]),
        raw_status=wire["rawStatus"],
        input=wire["input"],
        output=wire["output"],
        error=wire["error"],
        created_at=_parse_time(wire["createdAt"]),
        started_at=_parse_time(wire["startedAt"]),
        ended_at=_parse_time(wire["endedAt"]),
        wake_at=_parse_time(wire["wakeAt"]),
        steps=steps,
    )


def observable_digest(run: Run) -> str:
    """The part of ``run`` whose change is news (see ``Run.observable``), as one string."""
    status, raw_status, output, error = run.observable()
    return json.dumps([status.value, raw_status, output, error], sort_keys=True, default=str)


def observable_from_digest(digest: str) -> Observable:
    """The ``Run.observable()`` value that :func:`observable_digest` wrote."""
    status, raw_status, output, error = json.loads(digest)
    return (RunStatus.parse(status), raw_status, output, error)
