"""Reading Cloudflare's Workflows shapes into runcast models (part of the ``cloudflare`` adapter).

The shapes are :mod:`runcast.wire.cloudflare`'s. Choices where the API leaves room:

- Status: every ``InstanceStatus`` parses with :meth:`RunStatus.parse`;
  ``rollingBack`` and values not seen before become ``UNKNOWN`` with the raw
  string kept in ``raw_status`` (``rollingBack`` is a passing state before the
  run ends, so it is not terminal).
- ``output``: a number (or any non-string JSON) is taken as is; a string is
  JSON-decoded when it is valid JSON (the embedded engine's Cloudflare API sends
  JSON-encoded text) and kept verbatim otherwise; ``""`` means no output. The
  same goes for step outputs and for ``params`` sent back as a string.
- ``params``: an object, array, number or boolean is sent as is; a string input
  is sent JSON-encoded, so that servers taking ``params`` as JSON text and
  servers taking any JSON both hand it back as the same string.
- ``error {name, message}`` becomes the message (the name when the message is empty).
- Steps: ``step``/``rollback``, ``sleep`` and ``waitForEvent`` become
  :class:`~runcast.models.Step` with Cloudflare's type spelling. ``attempts`` is
  the number of attempts and the error the last failed attempt's message; the
  status uses the run vocabulary (``complete``, ``errored``, ``waiting`` between
  retries, ``running``, and ``paused`` for an unfinished sleep or wait).
  ``termination`` entries are skipped.
- Errors: see :func:`refusal`; the rest of the adapter's choices are listed in the
  docstring of :mod:`runcast.upstream.cloudflare`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, cast

import httpx

from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    PayloadTooLarge,
    RuncastError,
    RunNotFound,
    UpstreamError,
    UpstreamProtocolError,
    WorkflowNotFound,
)
from runcast.limits import MAX_UPSTREAM_MESSAGE_CHARS
from runcast.models import JSON, Run, RunStatus, RunWait, RunWaitReason, Step, Workflow
from runcast.upstream._reading import optional_text, status_text
from runcast.wire import cloudflare as cf
from runcast.wire.cloudflare import NO_ROUTE_CODES, decode_json_text
from runcast.wire.times import parse_iso_time as _parse_time

Route = Literal["workflow", "create", "instance", "event", "status"]


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


def _step_status(item: cf.TaskStep, attempts: list[Any]) -> str:
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


def _wait_status(item: cf.SleepStep | cf.WaitStep) -> str:
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
    if kind in ("step", "rollback"):
        return _task_step(cast(cf.TaskStep, item), name, kind)
    wait = cast(cf.SleepStep | cf.WaitStep, item)
    return Step(
        name=name,
        type=kind,
        status=_wait_status(wait),
        attempts=0,
        output=decode_json_text(wait.get("output")),
        error=error_text(wait.get("error")),
        started_at=_parse_time(wait.get("start")),
        ended_at=_parse_time(wait.get("end")) if wait.get("finished") is True else None,
    )


def _task_step(item: cf.TaskStep, name: str, kind: str) -> Step:
    listed: object = item.get("attempts")
    attempts: list[Any] = listed if isinstance(listed, list) else []
    errors = [
        error_text(a.get("error"))
        for a in attempts
        if isinstance(a, dict) and a.get("error") is not None
    ]
    status = _step_status(item, attempts)
    last_failed = (
        bool(attempts) and isinstance(attempts[-1], dict) and (attempts[-1].get("success") is False)
    )
    return Step(
        name=name,
        type=kind,
        status=status,
        attempts=len(attempts),
        output=decode_json_text(item.get("output")),
        error=errors[-1] if errors and (last_failed or status != "complete") else None,
        started_at=_parse_time(item.get("start")),
        ended_at=_parse_time(item.get("end")) if status in ("complete", "errored") else None,
    )


def parse_instance(result: object, *, workflow_id: str, instance_id: str) -> Run:
    """A :class:`Run` from the result of get-instance (steps left ``None`` when absent)."""
    if not isinstance(result, dict):
        raise UpstreamProtocolError("upstream cloudflare sent an instance that is not an object")
    body = cast(cf.Instance, result)
    raw_status = status_text(body.get("status"))
    steps_body: object = body.get("steps")
    steps: tuple[Step, ...] | None = None
    if isinstance(steps_body, list):
        steps = tuple(s for s in map(parse_step, steps_body) if s is not None)
    return Run(
        workflow_id=workflow_id,
        instance_id=instance_id,
        status=RunStatus.parse(raw_status),
        raw_status=raw_status,
        input=decode_json_text(body.get("params")),
        output=decode_output(body.get("output")),
        error=error_text(body.get("error")),
        created_at=_parse_time(body.get("queued")),
        started_at=_parse_time(body.get("start")),
        ended_at=_parse_time(body.get("end")),
        steps=steps,
        workflow_version=optional_text(body.get("versionId")),
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
    last = cast(cf.InstanceStep, items[-1]) if items else None
    unfinished = (
        last is not None and last.get("finished") is not True and last.get("success") is None
    )
    if unfinished and last is not None and last.get("type") == "sleep":
        return RunWait(RunWaitReason.SLEEP, until=_parse_time(last.get("end")))
    if unfinished and last is not None and last.get("type") == "waitForEvent":
        return RunWait(RunWaitReason.EVENT, event_type=optional_text(last.get("event_type")))
    if raw_status == "paused":
        return RunWait(RunWaitReason.REQUESTED_PAUSE)
    return RunWait(RunWaitReason.RETRY) if unfinished else None


def parse_instance_item(item: object, *, workflow_id: str) -> Run:
    """A :class:`Run` (no input, output or steps) from a list or create result item."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise UpstreamProtocolError("upstream cloudflare sent an instance without an id")
    body = cast(cf.ListItem, item)
    raw_status = status_text(body.get("status"))
    return Run(
        workflow_id=workflow_id,
        instance_id=body["id"],
        status=RunStatus.parse(raw_status),
        raw_status=raw_status,
        created_at=_parse_time(body.get("created_on")),
        started_at=_parse_time(body.get("started_on")),
        ended_at=_parse_time(body.get("ended_on")),
        workflow_version=optional_text(body.get("version_id")),
    )


def parse_workflow(item: object) -> Workflow:
    """A :class:`Workflow` (kind ``WORKFLOW``, id = name) from a Cloudflare workflow."""
    if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
        raise UpstreamProtocolError("upstream cloudflare sent a workflow without a name")
    body = cast(cf.Workflow, item)
    return Workflow(id=body["name"], name=body["name"])


def is_last_page(page: int, count: int, info: dict[str, Any]) -> bool:
    """Whether page ``page`` of a page-based listing (``count`` items long) is its last."""
    total_pages = info.get("total_pages")
    if isinstance(total_pages, int):
        return page >= total_pages or not count
    return count < cf.MAX_PER_PAGE


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
    return text[:MAX_UPSTREAM_MESSAGE_CHARS] if text else None


def error_message(response: httpx.Response) -> str | None:
    """Cloudflare's own error message in ``response``, if its body has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return describe_errors(envelope_errors(body))


class Conflict(UpstreamError):
    """A 409 on an instance route, resolved into ``RunFinished`` or ``BadUserInput``."""

    attempts = 1
    """How many times the refused request went on the wire."""


@dataclass(frozen=True)
class Refused:
    """Where a request went: what an answer without success is read against."""

    route: Route
    workflow_id: str
    instance_id: str | None
    payload_limit: int


def envelope_result(
    status: int, body: JSON, request: Refused, *, attempts: int
) -> tuple[JSON, dict[str, Any]]:
    """The ``(result, result_info)`` of a success envelope; raises the refusal it is not.

    A :class:`Conflict` carries how many times the request went on the wire.
    """
    if status >= 400 or not isinstance(body, dict) or not body.get("success"):
        error = refusal(status, envelope_errors(body), request)
        if isinstance(error, Conflict):
            error.attempts = attempts
        raise error
    info = body.get("result_info")
    return body.get("result"), info if isinstance(info, dict) else {}


def refusal(status: int, errors: list[tuple[int | None, str]], request: Refused) -> RuncastError:
    """The error an answer without success (HTTP ``status``, envelope ``errors``) stands for."""
    route, workflow_id, instance_id = request.route, request.workflow_id, request.instance_id
    message = describe_errors(errors)
    text = " ".join(m for _, m in errors).lower()
    if status == 404 and (not workflow_id or any(code in NO_ROUTE_CODES for code, _ in errors)):
        return UpstreamProtocolError(
            f"upstream cloudflare has no such route ({message or 404}): "
            "check the account id and the base URL"
        )
    if status == 404 or "not_found" in text:
        if instance_id is None or route in ("workflow", "create") or "workflow.not_found" in text:
            return WorkflowNotFound(workflow_id)
        return RunNotFound(workflow_id, instance_id)
    if route == "create" and (status == 409 or "already_exists" in text):
        return AlreadyExists(workflow_id, instance_id or "")
    if status == 409:
        return Conflict(message or "the instance cannot change that way now")
    if status == 413:
        return PayloadTooLarge(
            message or "the payload is larger than Cloudflare accepts (1 MiB)",
            limit=request.payload_limit,
        )
    if status in (400, 422):
        return BadUserInput(message or f"upstream cloudflare refused the request ({status})")
    return UpstreamProtocolError(
        f"upstream cloudflare answered {status} without success"
        + (f": {message}" if message else "")
    )
