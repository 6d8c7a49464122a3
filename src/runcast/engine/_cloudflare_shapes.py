"""The Cloudflare Workflows shapes of the engine's values: envelope, codes, encodings.

Part of :mod:`runcast.engine.cloudflare_api` (whose docstring lists the choices
made where Cloudflare documents nothing): the success and failure envelopes, the
local error codes, and :class:`Shapes`, which renders workflows, instances and
steps in the documented field names.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Literal, cast

from starlette.responses import JSONResponse

from runcast.engine._attempts import DEFAULT_STEP_TIMEOUT
from runcast.engine.definitions import StepNode, WaitForEventNode, WorkflowDefinition
from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    NotFound,
    NotTriggerable,
    PayloadTooLarge,
    RuncastError,
    RunFinished,
    RunNotFound,
    UpstreamUnavailable,
    WorkflowNotFound,
)
from runcast.limits import ID_PATTERN
from runcast.models import JSON, Run, RunStatus, Step, Workflow
from runcast.wire import cloudflare as cf
from runcast.wire.cloudflare import INSTANCE_STATUSES, InstanceStatus
from runcast.wire.times import iso_z

logger = logging.getLogger(__name__)


ENGINE_PAGE = 1000
DEFAULT_INSTANCES_PER_PAGE = 50
DEFAULT_WORKFLOWS_PER_PAGE = 20
INSTANCE_ID_PATTERN = ID_PATTERN

CODE_AUTH = 10000
CODE_INTERNAL = 10001
CODE_VALIDATION = 10002
CODE_NOT_FOUND = 10400
CODE_ALREADY_EXISTS = 10405
CODE_CONFLICT = 10409
CODE_TOO_LARGE = 10413
CODE_NO_ROUTE = 7000
CODE_METHOD_NOT_ALLOWED = 7001

WORKFLOW_NOT_FOUND = "workflows.api.error.workflow.not_found"
INSTANCE_NOT_FOUND = "workflows.api.error.instance.not_found"
STEP_NOT_FOUND = "workflows.api.error.step.not_found"
INSTANCE_ALREADY_EXISTS = "workflows.api.error.instance.already_exists"

StepKind = Literal["step", "sleep", "waitForEvent"]

_UUID_NAMESPACE = uuid.UUID("5f0c6b2e-5d0e-4a8e-9a77-1b0f0c1d2e3f")


class ApiError(Exception):
    """A failure answered with the Cloudflare failure envelope."""

    def __init__(self, status_code: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


# --- envelope -------------------------------------------------------------------------


def failure(status_code: int, code: int, message: str) -> JSONResponse:
    """The failure envelope with one error, at ``status_code``."""
    return JSONResponse(cf.failure(code, message), status_code=status_code)


def error_response(exc: RuncastError) -> JSONResponse:
    """The failure envelope answering ``exc`` (an engine error)."""
    if isinstance(exc, WorkflowNotFound | NotTriggerable):
        return failure(404, CODE_NOT_FOUND, WORKFLOW_NOT_FOUND)
    if isinstance(exc, RunNotFound):
        return failure(404, CODE_NOT_FOUND, INSTANCE_NOT_FOUND)
    if isinstance(exc, NotFound):
        return failure(404, CODE_NOT_FOUND, exc.message)
    if isinstance(exc, AlreadyExists):
        return failure(409, CODE_ALREADY_EXISTS, INSTANCE_ALREADY_EXISTS)
    if isinstance(exc, RunFinished):
        return failure(409, CODE_CONFLICT, exc.message)
    if isinstance(exc, PayloadTooLarge):
        return failure(413, CODE_TOO_LARGE, exc.message)
    if isinstance(exc, BadUserInput):
        return failure(400, CODE_VALIDATION, exc.message)
    if isinstance(exc, UpstreamUnavailable):
        return failure(503, CODE_INTERNAL, exc.message)
    logger.error("cloudflare api: unexpected engine error %s", type(exc).__name__)
    return failure(500, CODE_INTERNAL, "workflows.api.error.internal_server")


# --- value encoding -------------------------------------------------------------------


def encode_output(value: JSON) -> str | int | float:
    """A run's output as the documented string-or-number (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return json.dumps(value, separators=(",", ":"))


def _encode_step_output(value: JSON) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def error_object(message: str | None) -> cf.Error | None:
    """``{name, message}`` for an error message, or ``None``."""
    return None if message is None else {"name": "Error", "message": message}


def _duration_ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


def _stable_uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, "\x1f".join(parts)))


def _class_name(workflow_id: str) -> str:
    words = re.split(r"[^a-zA-Z0-9]+", workflow_id)
    return "".join(word[:1].upper() + word[1:] for word in words if word) + "Workflow"


def instance_status(run: Run) -> InstanceStatus:
    """The run's status in Cloudflare's ``InstanceStatus`` spelling."""
    status = run.raw_status if run.raw_status in INSTANCE_STATUSES else run.status.value
    return cast(InstanceStatus, status)  # the engine's own runs are never UNKNOWN


_STEP_TYPES: dict[str, StepKind] = {
    "step": "step",
    "do": "step",
    "sleep": "sleep",
    "sleep_until": "sleep",
    "sleepUntil": "sleep",
    "wait_for_event": "waitForEvent",
    "waitForEvent": "waitForEvent",
}
_DONE = frozenset({"complete", "completed", "succeeded", "success"})
_FAILED = frozenset({"errored", "failed", "error", "terminated"})


def step_type(step: Step) -> StepKind:
    """The Cloudflare step type (``step``, ``sleep``, ``waitForEvent``) of ``step``."""
    return _STEP_TYPES.get(step.type, "step")


class Shapes:
    """Turns engine values into the documented Cloudflare shapes for one account."""

    def __init__(
        self,
        account_id: str,
        definitions: Mapping[str, WorkflowDefinition],
        created_on: datetime,
    ) -> None:
        self.account_id = account_id
        self.definitions = definitions
        self.created_on = created_on

    def workflow_uuid(self, workflow_id: str) -> str:
        return _stable_uuid(self.account_id, "workflow", workflow_id)

    def version_uuid(self, run: Run) -> str:
        """Cloudflare's ``versionId`` of the run's workflow version (a UUID made from it)."""
        return _stable_uuid(self.account_id, "version", run.workflow_id, run.workflow_version or "")

    def workflow(self, workflow: Workflow, runs: Sequence[Run]) -> cf.Workflow:
        counts: dict[str, int] = {}
        for run in runs:
            status = instance_status(run)
            counts[status] = counts.get(status, 0) + 1
        triggered = max((r.created_at for r in runs if r.created_at), default=None)
        return {
            "id": self.workflow_uuid(workflow.id),
            "name": workflow.id,
            "class_name": _class_name(workflow.id),
            "script_name": "runcast-engine",
            "created_on": iso_z(self.created_on),
            "modified_on": iso_z(self.created_on),
            "triggered_on": iso_z(triggered),
            "instances": cast(cf.InstanceCounts, counts),
        }

    def created(self, run: Run) -> cf.Created:
        return {
            "id": run.instance_id,
            "status": instance_status(run),
            "version_id": self.version_uuid(run),
            "workflow_id": self.workflow_uuid(run.workflow_id),
            "trigger_source": "api",
        }

    def list_item(self, run: Run) -> cf.ListItem:
        modified = run.ended_at or run.started_at or run.created_at
        return {
            "id": run.instance_id,
            "status": instance_status(run),
            "created_on": iso_z(run.created_at or self.created_on),
            "modified_on": iso_z(modified or self.created_on),
            "started_on": iso_z(run.started_at),
            "ended_on": iso_z(run.ended_at),
            "version_id": self.version_uuid(run),
            "workflow_id": self.workflow_uuid(run.workflow_id),
            "trigger_source": "api",
        }

    def instance(self, run: Run, *, simple: bool, order: str) -> cf.Instance:
        steps: list[cf.InstanceStep] = [self.step(run, step) for step in run.steps or ()]
        if run.status is RunStatus.TERMINATED:
            steps.append({"type": "termination", "trigger": {"source": "api"}})
        if order == "desc":
            steps.reverse()
        success: bool | None = None
        if run.status is RunStatus.COMPLETE:
            success = True
        elif run.status in (RunStatus.ERRORED, RunStatus.TERMINATED):
            success = False
        body: cf.Instance = {
            "status": instance_status(run),
            "queued": iso_z(run.created_at or self.created_on),
            "start": iso_z(run.started_at),
            "end": iso_z(run.ended_at),
            "success": success,
            "error": error_object(run.error),
            "output": encode_output(run.output),
            "params": cf.encode_params(run.input),
            "trigger": {"source": "api"},
            "versionId": self.version_uuid(run),
            "step_count": len(steps),
            "rollback": None,
        }
        if not simple:
            body["steps"] = steps
        return body

    def step(self, run: Run, step: Step) -> cf.TaskStep | cf.SleepStep | cf.WaitStep:
        kind = step_type(step)
        fallback = step.started_at or run.created_at or self.created_on
        start = iso_z(fallback)
        if kind == "step":
            return {
                "type": "step",
                "name": step.name,
                "start": start,
                "end": iso_z(step.ended_at),
                "success": _step_success(step),
                "output": _encode_step_output(step.output),
                "attempts": self._attempts(step, start),
                "config": self._config(run.workflow_id, step.name),
            }
        finished = step.status in _DONE or step.status in _FAILED
        end = iso_z(step.ended_at or (None if finished else run.wake_at) or fallback)
        error = error_object(step.error) if step.status in _FAILED else None
        sleep: cf.SleepStep = {
            "type": "sleep",
            "name": step.name,
            "start": start,
            "end": end,
            "finished": finished,
            "error": error,
        }
        if kind == "sleep":
            return sleep
        body = cast(cf.WaitStep, {**sleep, "type": "waitForEvent"})  # adds output, event_type
        if step.output is not None:
            body["output"] = json.dumps(step.output, separators=(",", ":"))
        event_type = self.event_type(run.workflow_id, step.name)
        if event_type is not None:
            body["event_type"] = event_type
        return body

    def _attempts(self, step: Step, start: str) -> list[cf.Attempt]:
        count = max(step.attempts, 1 if step.started_at else 0)
        retrying = step.status == "waiting"
        attempts: list[cf.Attempt] = []
        for number in range(1, count + 1):
            if number < count or retrying:
                # An attempt before the last one (or the last, while a retry is due) failed.
                failed = error_object(step.error or "attempt failed")
                attempts.append({"start": start, "end": start, "success": False, "error": failed})
                continue
            success = _step_success(step)
            attempts.append(
                {
                    "start": start,
                    "end": iso_z(step.ended_at),
                    "success": success,
                    "error": error_object(step.error) if success is False else None,
                }
            )
        return attempts

    def _node(self, workflow_id: str, name: str) -> object | None:
        definition = self.definitions.get(workflow_id)
        if definition is None:
            return None
        try:
            return definition.node(name)
        except KeyError:
            return None

    def _config(self, workflow_id: str, name: str) -> cf.StepConfig:
        node = self._node(workflow_id, name)
        if isinstance(node, StepNode):
            retries = node.retries
            timeout = node.timeout or DEFAULT_STEP_TIMEOUT
            return {
                "retries": {
                    "limit": retries.limit,
                    "delay": _duration_ms(retries.delay),
                    "backoff": retries.backoff,
                },
                "timeout": _duration_ms(timeout),
            }
        return {
            "retries": {"limit": 0, "delay": 1000, "backoff": "constant"},
            "timeout": _duration_ms(DEFAULT_STEP_TIMEOUT),
        }

    def step_result(self, workflow_id: str, step: Step, *, attempt: int | None) -> cf.StepResult:
        """What get-step-output says of ``step`` (or of its ``attempt``-th attempt)."""
        status = step_api_status(step)
        error = error_object(step.error) if status == "errored" else None
        output: JSON = step.output if status == "complete" else None
        if attempt is not None and attempt < step.attempts:
            status, error, output = "errored", error_object(step.error or "attempt failed"), None
        result: cf.StepResult = {"status": status, "error": error}
        if output is not None:
            result["output"] = output
        if step_type(step) == "waitForEvent":
            event_type = self.event_type(workflow_id, step.name)
            if event_type is not None:
                result["event_type"] = event_type
        return result

    def event_type(self, workflow_id: str, name: str) -> str | None:
        node = self._node(workflow_id, name)
        return node.event_type if isinstance(node, WaitForEventNode) else None


def _step_success(step: Step) -> bool | None:
    if step.status in _DONE:
        return True
    if step.status in _FAILED:
        return False
    return None


def step_api_status(step: Step) -> InstanceStatus:
    """The status of ``step`` in the run vocabulary the API reports."""
    if step.status in _DONE:
        return "complete"
    if step.status in _FAILED:
        return "errored"
    if step.status == "waiting":
        return "waiting"
    return "running"
