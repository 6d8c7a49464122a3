"""The AwaitStep REST API: its request and response shapes, once, and the engine's encoding.

``runcast engine`` serves these shapes (:mod:`runcast.engine.server`), the
``awaitstep`` adapter reads them (tolerantly: an AwaitStep deployment may send
more, less, or epoch milliseconds for a time), and the tests check the engine's
answers against a JSON Schema generated from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, NotRequired, overload

from typing_extensions import TypedDict

from runcast import models
from runcast.models import JSON
from runcast.wire._json_schema import DATE_TIME

API_PREFIX = "/api/v1"

Timestamp = Annotated[str, DATE_TIME]
WorkflowKind = Literal["workflow", "script"]
WaitReason = Literal["sleep", "event", "retry", "requestedPause"]


class Workflow(TypedDict):
    """A workflow (or script, called by ``url``) of ``GET /workflows`` and ``/workflows/{id}``."""

    id: str
    name: str
    kind: WorkflowKind
    url: str | None
    version: str | None
    inputSchema: dict[str, JSON] | None
    schedule: str | None
    nextScheduledAt: Timestamp | None


class Step(TypedDict):
    """One step of a run."""

    name: str
    type: str
    status: str
    attempts: int
    output: JSON
    error: str | None
    startedAt: Timestamp | None
    endedAt: Timestamp | None


class Wait(TypedDict):
    """What a suspended run waits for."""

    reason: WaitReason
    eventType: str | None
    until: Timestamp | None


class Run(TypedDict):
    """A run; ``steps`` is null where they were not loaded (listings)."""

    instanceId: str
    workflowId: str
    status: str
    input: JSON
    output: JSON
    error: str | None
    createdAt: Timestamp | None
    startedAt: Timestamp | None
    endedAt: Timestamp | None
    wakeAt: Timestamp | None
    workflowVersion: str | None
    wait: Wait | None
    steps: list[Step] | None


class WorkflowList(TypedDict):
    """The answer of ``GET /workflows``."""

    data: list[Workflow]


class RunList(TypedDict):
    """The answer of ``GET /workflows/{id}/runs``; ``nextCursor`` null on the last page."""

    data: list[Run]
    nextCursor: str | None


class Deleted(TypedDict):
    """The answer of ``POST .../runs/{instanceId}/delete``."""

    deleted: bool


class ErrorDetail(TypedDict):
    """What went wrong: a code such as ``RUN_FINISHED``, a message, and the code's context."""

    code: str
    message: str
    limit: NotRequired[int]
    """With ``PAYLOAD_TOO_LARGE``: the limit in bytes."""
    status: NotRequired[str]
    """With ``RUN_FINISHED`` and ``RUN_NOT_FINISHED``: the run's status."""
    url: NotRequired[str | None]
    """With ``NOT_TRIGGERABLE``: where the script is called."""


class ErrorBody(TypedDict):
    """Every error answer: ``{"error": {"code", "message", ...}}``."""

    error: ErrorDetail


class TriggerRequest(TypedDict, total=False):
    """The body of ``POST /workflows/{id}/runs``."""

    input: JSON
    instanceId: str


class EventRequest(TypedDict):
    """The body of ``POST .../runs/{instanceId}/events``."""

    eventType: str
    payload: NotRequired[JSON]


class RestartRequest(TypedDict, total=False):
    """The body of ``POST .../runs/{instanceId}/restart`` (from a step, keeping earlier results)."""

    fromStep: str


@overload
def timestamp(value: datetime) -> str: ...
@overload
def timestamp(value: datetime | None) -> str | None: ...
def timestamp(value: datetime | None) -> str | None:
    """A time as the API sends it (ISO-8601 with its offset), or ``None``."""
    return value.isoformat() if value is not None else None


def workflow_body(workflow: models.Workflow) -> Workflow:
    """The wire form of ``workflow``."""
    return {
        "id": workflow.id,
        "name": workflow.name,
        "kind": workflow.kind.value,
        "url": workflow.url,
        "version": workflow.version,
        "inputSchema": workflow.input_schema,
        "schedule": workflow.schedule,
        "nextScheduledAt": timestamp(workflow.next_scheduled_at),
    }


def step_body(step: models.Step) -> Step:
    """The wire form of ``step``."""
    return {
        "name": step.name,
        "type": step.type,
        "status": step.status,
        "attempts": step.attempts,
        "output": step.output,
        "error": step.error,
        "startedAt": timestamp(step.started_at),
        "endedAt": timestamp(step.ended_at),
    }


def wait_body(wait: models.RunWait | None) -> Wait | None:
    """The wire form of what a suspended run waits for."""
    if wait is None:
        return None
    return {
        "reason": wait.reason.value,
        "eventType": wait.event_type,
        "until": timestamp(wait.until),
    }


def run_body(run: models.Run) -> Run:
    """The wire form of ``run``; ``steps`` is null where they were not loaded."""
    return {
        "instanceId": run.instance_id,
        "workflowId": run.workflow_id,
        "status": run.raw_status,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "createdAt": timestamp(run.created_at),
        "startedAt": timestamp(run.started_at),
        "endedAt": timestamp(run.ended_at),
        "wakeAt": timestamp(run.wake_at),
        "workflowVersion": run.workflow_version,
        "wait": wait_body(run.wait),
        "steps": None if run.steps is None else [step_body(step) for step in run.steps],
    }
