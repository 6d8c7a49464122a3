"""Reading the AwaitStep API's shapes into runcast models (part of the ``awaitstep`` adapter).

Tolerantly: unknown statuses become ``RunStatus.UNKNOWN`` (the raw string is kept),
unknown fields are ignored, a time may be ISO-8601 or epoch milliseconds, and a
body that cannot be read at all raises ``UpstreamProtocolError``. Error answers
(:class:`~runcast.wire.awaitstep.ErrorBody`) become :mod:`runcast.errors`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, cast

import httpx

from runcast import errors, models
from runcast.limits import MAX_UPSTREAM_MESSAGE_CHARS
from runcast.models import JSON, RunStatus, RunWait, RunWaitReason
from runcast.upstream._reading import optional_text, status_text
from runcast.wire import awaitstep as aw
from runcast.wire.times import parse_iso_time

Operation = Literal["workflow", "trigger", "run", "event", "control"]


def error_detail(response: httpx.Response) -> aw.ErrorDetail:
    """The ``error`` object of an AwaitStep error body (``{}`` when there is none)."""
    try:
        body = response.json()
    except ValueError:
        return cast(aw.ErrorDetail, {})
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return cast(aw.ErrorDetail, error)
        if isinstance(error, str):
            return cast(aw.ErrorDetail, {"message": error})
    return cast(aw.ErrorDetail, {})


def error_message(response: httpx.Response) -> str | None:
    """The message of an AwaitStep error body (at most 500 characters), if it has one."""
    message = error_detail(response).get("message")
    return message[:MAX_UPSTREAM_MESSAGE_CHARS] if isinstance(message, str) and message else None


def refusal(
    response: httpx.Response,
    *,
    operation: Operation,
    workflow_id: str,
    instance_id: str | None,
    payload_limit: int,
) -> errors.RuncastError:
    """The error a 4xx answer (that the HTTP boundary handed back) stands for."""
    status = response.status_code
    error = error_detail(response)
    code = error.get("code") if isinstance(error.get("code"), str) else None
    message = error_message(response)
    if status == 404:
        if code == "WORKFLOW_NOT_FOUND" or instance_id is None:
            return errors.WorkflowNotFound(workflow_id, message)
        return errors.RunNotFound(workflow_id, instance_id, message)
    if status == 409:
        if code == "ALREADY_EXISTS" or (code != "RUN_FINISHED" and operation == "trigger"):
            return errors.AlreadyExists(workflow_id, instance_id or "", message)
        finished = error.get("status")
        return errors.RunFinished(
            workflow_id,
            instance_id or "",
            finished if isinstance(finished, str) else "finished",
            message,
        )
    if status == 413:
        return errors.PayloadTooLarge(
            message or "the payload is larger than the upstream accepts",
            limit=_int(error.get("limit")) or payload_limit,
        )
    return _bad_request(response, error, code, message, workflow_id, instance_id)


def _bad_request(
    response: httpx.Response,
    error: aw.ErrorDetail,
    code: str | None,
    message: str | None,
    workflow_id: str,
    instance_id: str | None,
) -> errors.RuncastError:
    status = response.status_code
    if status == 400 and code == "NOT_TRIGGERABLE":
        url = error.get("url")
        return errors.NotTriggerable(workflow_id, url if isinstance(url, str) else None)
    if status == 400 and code == "RUN_NOT_FINISHED":
        unfinished = error.get("status")
        return errors.RunNotFinished(
            workflow_id,
            instance_id or "",
            unfinished if isinstance(unfinished, str) else "not finished",
        )
    if status in {400, 422}:
        return errors.BadUserInput(message or f"upstream awaitstep refused the request ({status})")
    return errors.UpstreamProtocolError(
        f"upstream awaitstep answered {status} on {response.request.method} "
        f"{response.request.url.path}"
    )


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # epoch milliseconds, as some AwaitStep deployments send
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return parse_iso_time(value)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return str(value["message"])
    return str(value)


def _int(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return 0


def parse_step(item: object) -> models.Step | None:
    """A step from its wire form; ``None`` when it is not an object with a name."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    body = cast(aw.Step, item)
    return models.Step(
        name=body["name"],
        type=str(body.get("type") or "step"),
        status=str(body.get("status") or "unknown"),
        attempts=_int(body.get("attempts")),
        output=body.get("output"),
        error=_text(body.get("error")),
        started_at=_parse_time(body.get("startedAt")),
        ended_at=_parse_time(body.get("endedAt")),
    )


def parse_run(
    body: object, *, workflow_id: str, fallback: Mapping[str, JSON] | None = None
) -> models.Run:
    """A run from its wire form; fields missing from ``body`` come from ``fallback``.

    Raises:
        UpstreamProtocolError: ``body`` is not an object with an ``instanceId``.
    """
    if not isinstance(body, dict):
        raise errors.UpstreamProtocolError(
            "upstream awaitstep sent a run that is not a JSON object"
        )
    merged = cast(aw.Run, {**(fallback or {}), **body})
    instance_id = merged.get("instanceId", cast(dict[str, Any], merged).get("id"))
    if not isinstance(instance_id, str) or not instance_id:
        raise errors.UpstreamProtocolError("upstream awaitstep sent a run without an instanceId")
    status = status_text(merged.get("status"))
    steps_body: object = merged.get("steps")
    steps: tuple[models.Step, ...] | None = None
    if isinstance(steps_body, list):
        steps = tuple(step for step in map(parse_step, steps_body) if step is not None)
    run_workflow = merged.get("workflowId")
    return models.Run(
        workflow_id=run_workflow if isinstance(run_workflow, str) and run_workflow else workflow_id,
        instance_id=instance_id,
        status=RunStatus.parse(status),
        raw_status=status,
        input=merged.get("input"),
        output=merged.get("output"),
        error=_text(merged.get("error")),
        created_at=_parse_time(merged.get("createdAt")),
        started_at=_parse_time(merged.get("startedAt")),
        ended_at=_parse_time(merged.get("endedAt")),
        steps=steps,
        wake_at=_parse_time(merged.get("wakeAt")),
        workflow_version=optional_text(merged.get("workflowVersion")),
        wait=_parse_wait(merged.get("wait"), status, steps, merged.get("wakeAt")),
    )


_WAIT_REASONS = {reason.value: reason for reason in RunWaitReason}


def _parse_wait(
    body: object, raw_status: str, steps: tuple[models.Step, ...] | None, wake_at: object
) -> RunWait | None:
    """The run's ``wait`` as sent; else what its status, last step and ``wakeAt`` tell."""
    if isinstance(body, dict) and body.get("reason") in _WAIT_REASONS:
        wait = cast(aw.Wait, body)
        event_type = wait.get("eventType")
        return RunWait(
            _WAIT_REASONS[wait["reason"]],
            event_type=event_type if isinstance(event_type, str) else None,
            until=_parse_time(wait.get("until")),
        )
    until = _parse_time(wake_at)
    if raw_status == "waiting":
        return RunWait(RunWaitReason.RETRY, until=until)
    current = steps[-1] if steps and steps[-1].status != "complete" else None
    if raw_status != "paused" or current is None:
        return None
    if current.type in ("sleep", "sleep_until"):
        return RunWait(RunWaitReason.SLEEP, until=until)
    if current.type == "wait_for_event":
        return RunWait(RunWaitReason.EVENT, until=until)
    return None


def parse_workflow(item: object) -> models.Workflow:
    """A workflow from its wire form (an unknown ``kind`` reads as ``workflow``).

    Raises:
        UpstreamProtocolError: ``item`` is not an object with an ``id``.
    """
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise errors.UpstreamProtocolError("upstream awaitstep sent a workflow without an id")
    body = cast(aw.Workflow, item)
    script = body.get("kind") == "script"
    kind = models.WorkflowKind.SCRIPT if script else models.WorkflowKind.WORKFLOW
    name = body.get("name")
    return models.Workflow(
        id=body["id"],
        name=name if isinstance(name, str) and name else body["id"],
        kind=kind,
        url=optional_text(body.get("url")),
        version=optional_text(body.get("version")),
        input_schema=_optional_object(body.get("inputSchema")),
        schedule=optional_text(body.get("schedule")),
        next_scheduled_at=_parse_time(body.get("nextScheduledAt")),
    )


def _optional_object(value: object) -> dict[str, object] | None:
    return value if isinstance(value, dict) else None
