"""The ``awaitstep`` adapter: an httpx client of the AwaitStep REST API.

It speaks the API that ``runcast engine`` serves (see ``runcast.engine.server``)
through the shared HTTP boundary of ``runcast.upstream._http``, which owns the
connection pool, timeouts, retries and the 401/403/429/5xx mapping. This module
turns paths and bodies into :mod:`runcast.models` values and AwaitStep's error
bodies into :mod:`runcast.errors`, tolerantly: unknown statuses become
``RunStatus.UNKNOWN`` (the raw string is kept), unknown fields are ignored, and
a body it cannot read at all raises ``UpstreamProtocolError``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import httpx

from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    Forbidden,
    NotTriggerable,
    PayloadTooLarge,
    RateLimited,
    RunFinished,
    RunNotFinished,
    RunNotFound,
    Unauthenticated,
    UpstreamProtocolError,
    WorkflowNotFound,
)
from runcast.models import (
    JSON,
    Credentials,
    Run,
    RunPage,
    RunStatus,
    RunWait,
    RunWaitReason,
    Step,
    Workflow,
    WorkflowKind,
)
from runcast.settings import Settings
from runcast.upstream._http import RequestObserver, UpstreamHttpClient, decode_json
from runcast.upstream._idempotent import Control, already_applied
from runcast.upstream._port import Quota, RequestLimits

API_PREFIX = "/api/v1"
MAX_MESSAGE_CHARS = 500

Operation = Literal["workflow", "trigger", "run", "event", "control"]


def _segment(value: str) -> str:
    return quote(value, safe="")


def _error_body(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an AwaitStep error body, or ``{}``."""
    try:
        body = response.json()
    except ValueError:
        return {}
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return error
        if isinstance(error, str):
            return {"message": error}
    return {}


def _error_message(response: httpx.Response) -> str | None:
    message = _error_body(response).get("message")
    return message[:MAX_MESSAGE_CHARS] if isinstance(message, str) and message else None


def _parse_time(value: object) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        # epoch milliseconds, as some AwaitStep deployments send
        try:
            return datetime.fromtimestamp(value / 1000, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


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


def parse_step(body: object) -> Step | None:
    """A step from its wire form; ``None`` when it is not an object with a name."""
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return None
    return Step(
        name=body["name"],
        type=str(body.get("type") or "step"),
        status=str(body.get("status") or "unknown"),
        attempts=_int(body.get("attempts")),
        output=body.get("output"),
        error=_text(body.get("error")),
        started_at=_parse_time(body.get("startedAt")),
        ended_at=_parse_time(body.get("endedAt")),
    )


def parse_run(body: object, *, workflow_id: str, fallback: Mapping[str, JSON] | None = None) -> Run:
    """A run from its wire form; fields missing from ``body`` come from ``fallback``.

    Raises:
        UpstreamProtocolError: ``body`` is not an object with an ``instanceId``.
    """
    if not isinstance(body, dict):
        raise UpstreamProtocolError("upstream awaitstep sent a run that is not a JSON object")
    merged: dict[str, Any] = {**(fallback or {}), **body}
    instance_id = merged.get("instanceId", merged.get("id"))
    if not isinstance(instance_id, str) or not instance_id:
        raise UpstreamProtocolError("upstream awaitstep sent a run without an instanceId")
    raw = merged.get("status")
    raw_status = raw if isinstance(raw, str) else ("" if raw is None else str(raw))
    steps_body = merged.get("steps")
    steps: tuple[Step, ...] | None = None
    if isinstance(steps_body, list):
        steps = tuple(step for step in map(parse_step, steps_body) if step is not None)
    run_workflow = merged.get("workflowId")
    return Run(
        workflow_id=run_workflow if isinstance(run_workflow, str) and run_workflow else workflow_id,
        instance_id=instance_id,
        status=RunStatus.parse(raw_status),
        raw_status=raw_status,
        input=merged.get("input"),
        output=merged.get("output"),
        error=_text(merged.get("error")),
        created_at=_parse_time(merged.get("createdAt")),
        started_at=_parse_time(merged.get("startedAt")),
        ended_at=_parse_time(merged.get("endedAt")),
        steps=steps,
        wake_at=_parse_time(merged.get("wakeAt")),
        workflow_version=_optional_string(merged.get("workflowVersion")),
        wait=_parse_wait(merged.get("wait"), raw_status, steps, merged.get("wakeAt")),
    )


_WAIT_REASONS = {reason.value: reason for reason in RunWaitReason}


def _parse_wait(
    body: object, raw_status: str, steps: tuple[Step, ...] | None, wake_at: object
) -> RunWait | None:
    """The run's ``wait`` as sent; else what its status, last step and ``wakeAt`` tell."""
    if isinstance(body, dict) and body.get("reason") in _WAIT_REASONS:
        event_type = body.get("eventType")
        return RunWait(
            _WAIT_REASONS[body["reason"]],
            event_type=event_type if isinstance(event_type, str) else None,
            until=_parse_time(body.get("until")),
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


def parse_workflow(body: object) -> Workflow:
    """A workflow from its wire form (an unknown ``kind`` reads as ``workflow``).

    Raises:
        UpstreamProtocolError: ``body`` is not an object with an ``id``.
    """
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
        raise UpstreamProtocolError("upstream awaitstep sent a workflow without an id")
    kind = WorkflowKind.SCRIPT if body.get("kind") == "script" else WorkflowKind.WORKFLOW
    name = body.get("name")
    url = body.get("url")
    return Workflow(
        id=body["id"],
        name=name if isinstance(name, str) and name else body["id"],
        kind=kind,
        url=_optional_string(url),
        version=_optional_string(body.get("version")),
        input_schema=_optional_object(body.get("inputSchema")),
        schedule=_optional_string(body.get("schedule")),
        next_scheduled_at=_parse_time(body.get("nextScheduledAt")),
    )


_CONTROLS: dict[str, Control] = {"pause": "pause", "resume": "resume"}
"""The POST actions that are safe to send again (restart is not)."""


def _optional_object(value: object) -> dict[str, object] | None:
    return value if isinstance(value, dict) else None


def _optional_string(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class AwaitStepUpstream:
    """:class:`~runcast.upstream.RunAPI` over the AwaitStep REST API (or ``runcast engine``).

    Args:
        base_url: the server's root, e.g. ``https://awaitstep.example`` (a trailing
            ``/api/v1`` is accepted too).
        settings: timeouts, the retry bound and the event payload limit.
        transport: an httpx transport to use instead of the network.
        on_request: observer of every HTTP attempt, for metrics and budgets; it can
            also be set later as ``upstream.http.on_request``.
        retry_base_delay: the first retry backoff in seconds (tests make it tiny).
    """

    name = "awaitstep"
    quota: Quota | None = None
    """AwaitStep's 200 requests per minute per IP is kept by the pace (3/s) alone."""
    listed_fields = frozenset(
        {"input", "output", "error", "createdAt", "startedAt", "endedAt", "workflowVersion", "wait"}
    )
    """The ``Run`` fields a list item carries besides identity and status (and steps, if sent):
    a change seen in a listing is delivered from the item, with no GET of the run."""

    def __init__(
        self,
        base_url: str,
        *,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: RequestObserver | None = None,
        retry_base_delay: float = 0.1,
    ) -> None:
        self.settings = settings or Settings()
        root = base_url.rstrip("/")
        if root.endswith(API_PREFIX):
            root = root[: -len(API_PREFIX)]
        self.base_url = root
        self.http = UpstreamHttpClient(
            self.name,
            root,
            settings=self.settings,
            transport=transport,
            on_request=on_request,
            error_message=_error_message,
            retry_base_delay=retry_base_delay,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _raise_for_error(
        self,
        response: httpx.Response,
        *,
        operation: Operation,
        workflow_id: str,
        instance_id: str | None = None,
    ) -> None:
        """Map a 4xx that the HTTP boundary handed back into ``runcast.errors``."""
        status = response.status_code
        if status < 400:
            return
        error = _error_body(response)
        code = error.get("code") if isinstance(error.get("code"), str) else None
        message = _error_message(response)
        if status == 404:
            if code == "WORKFLOW_NOT_FOUND" or instance_id is None:
                raise WorkflowNotFound(workflow_id, message)
            raise RunNotFound(workflow_id, instance_id, message)
        if status == 409:
            if code == "ALREADY_EXISTS" or (code != "RUN_FINISHED" and operation == "trigger"):
                raise AlreadyExists(workflow_id, instance_id or "", message)
            finished = error.get("status")
            raise RunFinished(
                workflow_id,
                instance_id or "",
                finished if isinstance(finished, str) else "finished",
                message,
            )
        if status == 413:
            limit = error.get("limit")
            raise PayloadTooLarge(
                message or "the payload is larger than the upstream accepts",
                limit=_int(limit) or self.settings.max_event_payload_bytes,
            )
        if status == 400 and code == "NOT_TRIGGERABLE":
            url = error.get("url")
            raise NotTriggerable(workflow_id, url if isinstance(url, str) else None)
        if status == 400 and code == "RUN_NOT_FINISHED":
            unfinished = error.get("status")
            raise RunNotFinished(
                workflow_id,
                instance_id or "",
                unfinished if isinstance(unfinished, str) else "not finished",
            )
        if status in {400, 422}:
            raise BadUserInput(message or f"upstream awaitstep refused the request ({status})")
        raise UpstreamProtocolError(
            f"upstream awaitstep answered {status} on {response.request.method} "
            f"{response.request.url.path}"
        )

    def _json(self, response: httpx.Response) -> JSON:
        return decode_json(response, upstream=self.name)

    def _workflow_path(self, workflow_id: str) -> str:
        return f"{API_PREFIX}/workflows/{_segment(workflow_id)}"

    def _run_path(self, workflow_id: str, instance_id: str) -> str:
        return f"{self._workflow_path(workflow_id)}/runs/{_segment(instance_id)}"

    async def _run_call(
        self,
        method: str,
        path: str,
        workflow_id: str,
        instance_id: str,
        *,
        operation: Operation,
        credentials: Credentials,
        json: JSON = None,
        control: Control | None = None,
    ) -> Run:
        response, attempts = await self.http.request_with_attempts(
            method,
            path,
            headers=credentials.authorization_header(),
            json=json,
            idempotent=True if control is not None else None,
        )
        try:
            self._raise_for_error(
                response, operation=operation, workflow_id=workflow_id, instance_id=instance_id
            )
        except RunFinished:
            if control is None or attempts < 2:
                raise
            # An earlier attempt of this call may have been applied before its answer was lost.
            run = await self.get_run(workflow_id, instance_id, credentials=credentials)
            if not already_applied(control, run):
                raise
            return run
        return parse_run(self._json(response), workflow_id=workflow_id)

    # -- the port --------------------------------------------------------------------------

    async def list_workflows(self, *, credentials: Credentials) -> list[Workflow]:
        """Every workflow and script the caller can see."""
        response = await self.http.request(
            "GET", f"{API_PREFIX}/workflows", headers=credentials.authorization_header()
        )
        self._raise_for_error(response, operation="workflow", workflow_id="")
        body = self._json(response)
        items = body.get("data") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise UpstreamProtocolError("upstream awaitstep sent a workflow list without data")
        return [parse_workflow(item) for item in items]

    async def get_workflow(self, workflow_id: str, *, credentials: Credentials) -> Workflow:
        """One workflow; raises ``WorkflowNotFound``."""
        response = await self.http.request(
            "GET", self._workflow_path(workflow_id), headers=credentials.authorization_header()
        )
        self._raise_for_error(response, operation="workflow", workflow_id=workflow_id)
        return parse_workflow(self._json(response))

    async def trigger(
        self,
        workflow_id: str,
        *,
        input: JSON = None,
        instance_id: str | None = None,
        credentials: Credentials,
    ) -> Run:
        """Create a run; with a caller-given ``instance_id`` the call is retried safely.

        A retry can meet the run its own first attempt created (409): then the run
        is read back and returned, provided its input is the one sent.
        """
        body: dict[str, JSON] = {"input": input}
        if instance_id is not None:
            body["instanceId"] = instance_id
        response, attempts = await self.http.request_with_attempts(
            "POST",
            f"{self._workflow_path(workflow_id)}/runs",
            headers=credentials.authorization_header(),
            json=body,
            idempotent=instance_id is not None,
        )
        if response.status_code == 409 and instance_id is not None and attempts > 1:
            existing = await self.get_run(workflow_id, instance_id, credentials=credentials)
            if existing.input == input:
                return existing
        self._raise_for_error(
            response, operation="trigger", workflow_id=workflow_id, instance_id=instance_id
        )
        return parse_run(
            self._json(response),
            workflow_id=workflow_id,
            fallback={"input": input, "workflowId": workflow_id},
        )

    async def get_run(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """One run with its steps; raises ``RunNotFound`` (or ``WorkflowNotFound``)."""
        return await self._run_call(
            "GET",
            self._run_path(workflow_id, instance_id),
            workflow_id,
            instance_id,
            operation="run",
            credentials=credentials,
        )

    async def list_runs(
        self,
        workflow_id: str,
        *,
        statuses: Collection[RunStatus] | None = None,
        cursor: str | None = None,
        limit: int = 50,
        credentials: Credentials,
    ) -> RunPage:
        """Runs of one workflow, newest first, optionally only in ``statuses``."""
        params: list[tuple[str, str]] = [("limit", str(limit))]
        params += [("status", status.value) for status in statuses or ()]
        if cursor:
            params.append(("cursor", cursor))
        response = await self.http.request(
            "GET",
            f"{self._workflow_path(workflow_id)}/runs",
            headers=credentials.authorization_header(),
            params=params,
        )
        self._raise_for_error(response, operation="workflow", workflow_id=workflow_id)
        body = self._json(response)
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UpstreamProtocolError("upstream awaitstep sent a run list without data")
        next_cursor = body.get("nextCursor") if isinstance(body, dict) else None
        return RunPage(
            runs=tuple(parse_run(item, workflow_id=workflow_id) for item in items),
            next_cursor=next_cursor if isinstance(next_cursor, str) and next_cursor else None,
        )

    async def send_event(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        event_type: str,
        payload: JSON = None,
        credentials: Credentials,
    ) -> Run:
        """Deliver an event; raises ``RunFinished`` if the run has finished."""
        return await self._run_call(
            "POST",
            f"{self._run_path(workflow_id, instance_id)}/events",
            workflow_id,
            instance_id,
            operation="event",
            credentials=credentials,
            json={"eventType": event_type, "payload": payload},
        )

    async def terminate(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> Run:
        """Stop a run for good."""
        return await self._run_call(
            "DELETE",
            self._run_path(workflow_id, instance_id),
            workflow_id,
            instance_id,
            operation="control",
            credentials=credentials,
            control="terminate",
        )

    async def _control(
        self,
        action: str,
        workflow_id: str,
        instance_id: str,
        credentials: Credentials,
        body: JSON = None,
    ) -> Run:
        return await self._run_call(
            "POST",
            f"{self._run_path(workflow_id, instance_id)}/{action}",
            workflow_id,
            instance_id,
            operation="control",
            credentials=credentials,
            json=body,
            control=_CONTROLS.get(action),
        )

    async def pause(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Pause a run at its next node boundary."""
        return await self._control("pause", workflow_id, instance_id, credentials)

    async def resume(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """Resume a paused run."""
        return await self._control("resume", workflow_id, instance_id, credentials)

    async def restart(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        credentials: Credentials,
        from_step: str | None = None,
    ) -> Run:
        """``POST .../restart`` (with ``{"fromStep": name}`` to keep the earlier results)."""
        body = None if from_step is None else {"fromStep": from_step}
        return await self._control("restart", workflow_id, instance_id, credentials, body)

    async def delete_run(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> bool:
        """``POST .../runs/{instanceId}/delete`` (runcast's engine; finished runs only)."""
        response = await self.http.request(
            "POST",
            f"{self._run_path(workflow_id, instance_id)}/delete",
            headers=credentials.authorization_header(),
        )
        self._raise_for_error(
            response, operation="control", workflow_id=workflow_id, instance_id=instance_id
        )
        body = self._json(response)
        return bool(body.get("deleted", True)) if isinstance(body, dict) else True

    async def ping(self) -> None:
        """Return if the server answers at all (a 401, 403 or 429 still means it is up)."""
        try:
            await self.http.request("GET", f"{API_PREFIX}/workflows")
        except (Unauthenticated, Forbidden, RateLimited):
            return

    def limit_requests(self, limits: RequestLimits) -> None:
        """Take a token before every request (retries and resends too) from ``limits``."""
        self.http.limits = limits

    def limit_key(self, credentials: Credentials) -> str:
        """One key for every caller: AwaitStep limits requests per IP, not per key."""
        return ""

    async def aclose(self) -> None:
        """Close the connection pool; later calls raise ``UpstreamUnavailable``."""
        await self.http.aclose()
