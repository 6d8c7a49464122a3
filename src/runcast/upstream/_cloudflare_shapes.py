"""Reading Cloudflare's Workflows shapes into runcast models (part of the ``cloudflare`` adapter).

The choices made where the API leaves room (statuses, ``output`` as string or
number, ``params`` as JSON text, steps) are listed in the docstring of
:mod:`runcast.upstream.cloudflare`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from runcast.errors import UpstreamProtocolError
from runcast.models import JSON, Run, RunStatus, RunWait, RunWaitReason, Step, Workflow

MAX_MESSAGE_CHARS = 500


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def decode_json_text(value: JSON) -> JSON:
    """A string that holds JSON as that JSON, other strings and values unchanged."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def decode_output(value: JSON) -> JSON:
    """An instance's ``output`` (string or number) as JSON; ``""`` and null are no output."""
    if value is None or value == "":
        return None
    return decode_json_text(value)


def error_text(value: JSON) -> str | None:
    """``{name, message}`` as its message (or name); a string unchanged; null as ``None``."""
    if value is None:
        return None
    if isinstance(value, dict):
        message = value.get("message")
        if isinstance(message, str) and message:
            return message
        name = value.get("name")
        return name if isinstance(name, str) and name else "error"
    return value if isinstance(value, str) else json.dumps(value)


def _step_status(item: Mapping[str, Any], attempts: list[Any]) -> str:
    success = item.get("success")
    if success is True:
        return "complete"
    if success is False:
        return "errored"
    if item.get("end") is None and attempts:
        last = attempts[-1]
        if isinstance(last, dict) and last.get("success") is False and last.get("end"):
            return "waiting"
    return "running"


def _wait_status(item: Mapping[str, Any]) -> str:
    if item.get("error") is not None:
        return "errored"
    # An unfinished sleep or wait is a durable suspension: "paused" in the run vocabulary.
    return "complete" if item.get("finished") is True else "paused"


def parse_step(item: object) -> Step | None:
    """A :class:`Step` from one entry of ``steps``; ``None`` for termination entries."""
    if not isinstance(item, dict):
        return None
    kind = item.get("type")
    if kind == "termination" or not isinstance(kind, str):
        return None
    name = item.get("name")
    name = name if isinstance(name, str) and name else kind
    started_at = _parse_time(item.get("start"))
    ended_at = _parse_time(item.get("end"))
    if kind in ("step", "rollback"):
        attempts = item.get("attempts")
        attempts = attempts if isinstance(attempts, list) else []
        errors = [
            error_text(a.get("error"))
            for a in attempts
            if isinstance(a, dict) and a.get("error") is not None
        ]
        status = _step_status(item, attempts)
        last_failed = (
            bool(attempts)
            and isinstance(attempts[-1], dict)
            and (attempts[-1].get("success") is False)
        )
        return Step(
            name=name,
            type=kind,
            status=status,
            attempts=len(attempts),
            output=decode_json_text(item.get("output")),
            error=errors[-1] if errors and (last_failed or status != "complete") else None,
            started_at=started_at,
            ended_at=ended_at if status in ("complete", "errored") else None,
        )
    status = _wait_status(item)
    return Step(
        name=name,
        type=kind,
        status=status,
        attempts=0,
        output=decode_json_text(item.get("output")),
        error=error_text(item.get("error")),
        started_at=started_at,
        ended_at=ended_at if item.get("finished") is True else None,
    )


def _raw_status(value: object) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def parse_instance(result: object, *, workflow_id: str, instance_id: str) -> Run:
    """A :class:`Run` from the result of get-instance (steps left ``None`` when absent)."""
    if not isinstance(result, dict):
        raise UpstreamProtocolError("upstream cloudflare sent an instance that is not an object")
    raw_status = _raw_status(result.get("status"))
    steps_body = result.get("steps")
    steps: tuple[Step, ...] | None = None
    if isinstance(steps_body, list):
        steps = tuple(s for s in map(parse_step, steps_body) if s is not None)
    return Run(
        workflow_id=workflow_id,
        instance_id=instance_id,
        status=RunStatus.parse(raw_status),
        raw_status=raw_status,
        input=decode_json_text(result.get("params")),
        output=decode_output(result.get("output")),
        error=error_text(result.get("error")),
        created_at=_parse_time(result.get("queued")),
        started_at=_parse_time(result.get("start")),
        ended_at=_parse_time(result.get("end")),
        steps=steps,
        workflow_version=_optional_text(result.get("versionId")),
        wait=_instance_wait(raw_status, steps_body),
    )


def _instance_wait(raw_status: str, steps_body: object) -> RunWait | None:
    """What a suspended instance waits for: its unfinished last step, else a pause by request.

    Cloudflare says ``paused`` for a pause by request and ``waiting`` for a sleep, an event
    wait or a retry delay; runcast's engine says ``paused`` for all three, so the step decides.
    """
    if raw_status not in ("paused", "waiting"):
        return None
    items = (
        [item for item in steps_body if isinstance(item, dict)]
        if isinstance(steps_body, list)
        else []
    )
    last = items[-1] if items else None
    unfinished = (
        last is not None and last.get("finished") is not True and last.get("success") is None
    )
    if unfinished and last is not None and last.get("type") == "sleep":
        return RunWait(RunWaitReason.SLEEP, until=_parse_time(last.get("end")))
    if unfinished and last is not None and last.get("type") == "waitForEvent":
        return RunWait(RunWaitReason.EVENT, event_type=_optional_text(last.get("event_type")))
    if raw_status == "paused":
        return RunWait(RunWaitReason.REQUESTED_PAUSE)
    return RunWait(RunWaitReason.RETRY) if unfinished else None


def parse_instance_item(item: object, *, workflow_id: str) -> Run:
    """A :class:`Run` (no input, output or steps) from a list or create result item."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise UpstreamProtocolError("upstream cloudflare sent an instance without an id")
    raw_status = _raw_status(item.get("status"))
    return Run(
        workflow_id=workflow_id,
        instance_id=item["id"],
        status=RunStatus.parse(raw_status),
        raw_status=raw_status,
        created_at=_parse_time(item.get("created_on")),
        started_at=_parse_time(item.get("started_on")),
        ended_at=_parse_time(item.get("ended_on")),
        workflow_version=_optional_text(item.get("version_id")),
    )


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def parse_workflow(item: object) -> Workflow:
    """A :class:`Workflow` (kind ``WORKFLOW``, id = name) from a Cloudflare workflow."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise UpstreamProtocolError("upstream cloudflare sent a workflow without a name")
    return Workflow(id=item["name"], name=item["name"])


def envelope_errors(body: object) -> list[tuple[int | None, str]]:
    """The ``(code, message)`` pairs of an envelope's ``errors`` (none when unreadable)."""
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return []
    found: list[tuple[int | None, str]] = []
    for error in body["errors"]:
        if isinstance(error, dict):
            code = error.get("code")
            message = error.get("message")
            found.append(
                (
                    code if isinstance(code, int) and not isinstance(code, bool) else None,
                    message if isinstance(message, str) else "",
                )
            )
    return found


def describe_errors(errors: list[tuple[int | None, str]]) -> str | None:
    """The errors as one message for people (at most 500 characters), or ``None``."""
    parts = [f"{m} (code {c})" if c is not None else m for c, m in errors if m or c is not None]
    text = "; ".join(parts)
    return text[:MAX_MESSAGE_CHARS] if text else None


def error_message(response: httpx.Response) -> str | None:
    """Cloudflare's own error message in ``response``, if its body has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return describe_errors(envelope_errors(body))


def path_segment(value: str) -> str:
    """``value`` escaped as one URL path segment."""
    return quote(value, safe="")
