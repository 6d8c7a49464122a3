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

from collections.abc import Collection

import httpx

from runcast.errors import (
    Forbidden,
    RateLimited,
    RunFinished,
    Unauthenticated,
    UpstreamProtocolError,
)
from runcast.models import (
    JSON,
    Credentials,
    Run,
    RunPage,
    RunStatus,
    Workflow,
)
from runcast.settings import Settings
from runcast.upstream._awaitstep_shapes import (
    Operation,
    error_message,
    parse_run,
    parse_workflow,
    refusal,
)
from runcast.upstream._http import (
    RequestObserver,
    TransportLayer,
    UpstreamHttpClient,
    decode_json,
)
from runcast.upstream._idempotent import Control, already_applied
from runcast.upstream._port import Quota, RequestLimits
from runcast.upstream._rest import RestAdapter
from runcast.wire import awaitstep as aw
from runcast.wire import path_segment
from runcast.wire.awaitstep import API_PREFIX

_CONTROLS: dict[str, Control] = {"pause": "pause", "resume": "resume"}
"""The POST actions that are safe to send again (restart is not)."""


class AwaitStepUpstream(RestAdapter):
    """:class:`~runcast.upstream.RunAPI` over the AwaitStep REST API (or ``runcast engine``).

    Args:
        base_url: the server's root, e.g. ``https://awaitstep.example`` (a trailing
            ``/api/v1`` is accepted too).
        settings: timeouts, the retry bound and the event payload limit.
        transport: an httpx transport to use instead of the network.
        wrap_transport: wraps the transport (a span per attempt, when tracing).
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
        wrap_transport: TransportLayer | None = None,
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
            layers=() if wrap_transport is None else (wrap_transport,),
            on_request=on_request,
            error_message=error_message,
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
        if response.status_code >= 400:
            raise refusal(
                response,
                operation=operation,
                workflow_id=workflow_id,
                instance_id=instance_id,
                payload_limit=self.settings.max_event_payload_bytes,
            )

    def _json(self, response: httpx.Response) -> JSON:
        return decode_json(response, upstream=self.name)

    def _workflow_path(self, workflow_id: str) -> str:
        return f"{API_PREFIX}/workflows/{path_segment(workflow_id)}"

    def _run_path(self, workflow_id: str, instance_id: str) -> str:
        return f"{self._workflow_path(workflow_id)}/runs/{path_segment(instance_id)}"

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
        body: aw.TriggerRequest = {"input": input}
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
            json=aw.EventRequest(eventType=event_type, payload=payload),
        )

    async def _send_control(
        self, control: Control, workflow_id: str, instance_id: str, credentials: Credentials
    ) -> Run:
        """``DELETE .../runs/{instanceId}`` to terminate, else ``POST .../{control}``."""
        if control != "terminate":
            return await self._control(control, workflow_id, instance_id, credentials)
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

    async def restart(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        credentials: Credentials,
        from_step: str | None = None,
    ) -> Run:
        """``POST .../restart`` (with ``{"fromStep": name}`` to keep the earlier results)."""
        body = None if from_step is None else aw.RestartRequest(fromStep=from_step)
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
