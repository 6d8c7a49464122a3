"""The ``cloudflare`` adapter: an httpx client of the Cloudflare Workflows REST API.

Every Cloudflare workflow is a runcast workflow of kind ``WORKFLOW`` whose id
(and name) is the Cloudflare workflow name; a run is an instance. Requests go
through the shared HTTP boundary (:mod:`runcast.upstream._http`); this module
reads Cloudflare's envelope and shapes (``shared/reference/
cloudflare-workflows-api.md``) and keeps the token clear of Cloudflare's rate
limit.

Choices where the API leaves room:

- Reading Cloudflare's shapes (statuses, ``output``, ``params``, errors, steps):
  see :mod:`runcast.upstream._cloudflare_shapes`.
- ``list_runs`` with several statuses: Cloudflare filters by one status per
  request, so one status (other than ``UNKNOWN``) is filtered by Cloudflare and
  several are filtered here, on one unfiltered page per call. Such a page can
  hold fewer runs than ``limit`` (even none) while ``next_cursor`` is still set.
  Cloudflare's list items carry no input, output, error or steps: finished runs
  are read back once for them (:mod:`runcast.upstream._cloudflare_details`), at
  one request per finished run the first time it is listed; ``list_details=False``
  turns it off. Other listed runs have no input.
- Errors: 404 is ``WorkflowNotFound`` on workflow routes and ``RunNotFound``
  on instance routes (unless Cloudflare names the workflow); 409 on create is
  ``AlreadyExists``, on events, pause, resume and terminate ``RunFinished`` when
  the run has finished; 413 ``PayloadTooLarge``; 400 ``BadUserInput``.

Rate limits: Cloudflare allows 1,200 requests per 5 minutes per token and locks
a token out for five minutes after a 429. Every request asks the limiter of its
token (one per token, :func:`~runcast.upstream._cloudflare_ratelimit.cloudflare_quota`
kept; the app's limits, else this adapter's own), which refuses locally
(``RateLimited`` with ``retry_after``) before the quota is spent, and also while
Cloudflare has said to wait: ``retry-after`` on a 429 (five minutes when absent),
``Ratelimit: ...;r=0;t=N`` or ``x-ratelimit-remaining: 0`` with ``x-ratelimit-reset``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import httpx

from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    Forbidden,
    PayloadTooLarge,
    RateLimited,
    RuncastError,
    RunFinished,
    RunNotFound,
    Unauthenticated,
    UpstreamProtocolError,
)
from runcast.limits import json_size
from runcast.models import JSON, Credentials, Run, RunPage, RunStatus, Workflow
from runcast.settings import Settings
from runcast.upstream._cloudflare_details import FinishedRuns
from runcast.upstream._cloudflare_ratelimit import (
    LOCKOUT_SECONDS,
    cloudflare_quota,
    parse_ratelimit,
)
from runcast.upstream._cloudflare_shapes import (
    Conflict,
    Refused,
    Route,
    envelope_result,
    error_message,
    is_last_page,
    parse_instance,
    parse_instance_item,
    parse_workflow,
)
from runcast.upstream._http import (
    RequestObserver,
    TransportLayer,
    UpstreamHttpClient,
    decode_json,
)
from runcast.upstream._idempotent import Control, already_applied
from runcast.upstream._limiter import local_limits
from runcast.upstream._port import Quota, RequestLimits
from runcast.upstream._rest import RestAdapter
from runcast.wire import cloudflare as cf
from runcast.wire import path_segment
from runcast.wire.cloudflare import MAX_PER_PAGE

# --- the adapter ----------------------------------------------------------------------


class CloudflareUpstream(RestAdapter):
    """:class:`~runcast.upstream.RunAPI` over the Cloudflare Workflows REST API.

    Args:
        account_id: the Cloudflare account whose workflows are served.
        base_url: the API root; ``None`` means ``settings.cloudflare_base_url``
            (``https://api.cloudflare.com/client/v4`` unless configured).
        token: the service token used when the caller brings none; ``None`` means
            ``settings.cloudflare_token``. Never logged, never in ``repr``.
        settings: timeouts, the retry bound and the event payload limit.
        transport: an httpx transport to use instead of the network.
        wrap_transport: wraps the transport (a span per attempt, when tracing).
        on_request: observer of every HTTP attempt, for metrics and budgets.
        list_details: read finished runs of a listing back for their output and error.
        retry_base_delay: the first retry backoff in seconds.
    """

    name = "cloudflare"
    quota: Quota | None = cloudflare_quota()

    def __init__(
        self,
        account_id: str,
        *,
        base_url: str | None = None,
        token: str | None = None,
        settings: Settings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        wrap_transport: TransportLayer | None = None,
        on_request: RequestObserver | None = None,
        list_details: bool = True,
        retry_base_delay: float = 0.1,
    ) -> None:
        if not account_id:
            raise BadUserInput("a Cloudflare account id is required (cloudflare://ACCOUNT_ID)")
        self.settings = settings or Settings()
        self.account_id = account_id
        self.base_url = (base_url or self.settings.cloudflare_base_url).rstrip("/")
        self._token = token if token is not None else self.settings.cloudflare_token
        self.http = UpstreamHttpClient(
            self.name,
            self.base_url,
            settings=self.settings,
            transport=transport,
            layers=() if wrap_transport is None else (wrap_transport,),
            on_request=on_request,
            error_message=error_message,
            retry_base_delay=retry_base_delay,
        )
        self.http.limit_key = _token_key
        self.http.rate_headers = parse_ratelimit
        self.http.hold_after_429 = LOCKOUT_SECONDS
        self.limit_requests(local_limits(None, quota=self.quota, name=self.name))
        self._prefix = f"/accounts/{path_segment(account_id)}/workflows"
        self.list_details = list_details
        self._finished = FinishedRuns()

    def __repr__(self) -> str:
        return f"CloudflareUpstream(account_id={self.account_id!r}, base_url={self.base_url!r})"

    # -- helpers ---------------------------------------------------------------------------

    def _headers(self, credentials: Credentials) -> dict[str, str]:
        if credentials.token is not None:
            return credentials.authorization_header()
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    def _workflow_path(self, workflow_id: str) -> str:
        return f"{self._prefix}/{path_segment(workflow_id)}"

    def _instance_path(self, workflow_id: str, instance_id: str) -> str:
        return f"{self._workflow_path(workflow_id)}/instances/{path_segment(instance_id)}"

    async def _call(
        self,
        method: str,
        path: str,
        *,
        credentials: Credentials,
        route: Route,
        workflow_id: str,
        instance_id: str | None = None,
        params: list[tuple[str, str]] | None = None,
        json: JSON = None,
        idempotent: bool | None = None,
    ) -> tuple[JSON, dict[str, Any]]:
        """Send one request and return ``(result, result_info)`` of a success envelope."""
        headers = self._headers(credentials)
        response, attempts = await self.http.request_with_attempts(
            method, path, headers=headers, params=params, json=json, idempotent=idempotent
        )
        if (
            response.status_code == 409
            and route == "create"
            and instance_id is not None
            and attempts > 1
        ):
            # Our own first attempt created it before the connection dropped.
            raise _CreatedByRetry()
        return envelope_result(
            response.status_code,
            decode_json(response, upstream=self.name),
            Refused(route, workflow_id, instance_id, self.settings.max_event_payload_bytes),
            attempts=attempts,
        )

    async def _instance(
        self, workflow_id: str, instance_id: str, credentials: Credentials, *, simple: bool = False
    ) -> Run:
        result, _ = await self._call(
            "GET",
            self._instance_path(workflow_id, instance_id),
            credentials=credentials,
            route="instance",
            workflow_id=workflow_id,
            instance_id=instance_id,
            params=[("simple", "true")] if simple else None,
        )
        return parse_instance(result, workflow_id=workflow_id, instance_id=instance_id)

    async def _with_details(
        self, runs: list[Run], workflow_id: str, credentials: Credentials
    ) -> list[Run]:
        """Fill in input, output and error of finished list items (see the module docstring)."""
        token = self.limit_key(credentials)

        async def read(item: Run) -> Run:
            return await self._instance(workflow_id, item.instance_id, credentials, simple=True)

        return await self._finished.fill(runs, token, read)

    async def _finished_or_refused(
        self, conflict: Conflict, workflow_id: str, instance_id: str, credentials: Credentials
    ) -> RuncastError:
        try:
            run = await self._instance(workflow_id, instance_id, credentials)
        except RuncastError:
            return RunFinished(workflow_id, instance_id, "finished", conflict.message)
        if run.is_terminal:
            return RunFinished(workflow_id, instance_id, run.raw_status)
        return BadUserInput(f"instance {instance_id!r} is {run.raw_status}: {conflict.message}")

    # -- the port --------------------------------------------------------------------------

    async def list_workflows(self, *, credentials: Credentials) -> list[Workflow]:
        """Every Cloudflare workflow of the account (all pages)."""
        workflows: list[Workflow] = []
        page = 1
        while True:
            result, info = await self._call(
                "GET",
                self._prefix,
                credentials=credentials,
                route="workflow",
                workflow_id="",
                params=[("page", str(page)), ("per_page", str(MAX_PER_PAGE))],
            )
            if not isinstance(result, list):
                raise UpstreamProtocolError(
                    "upstream cloudflare sent a workflow list that is not a list"
                )
            workflows.extend(parse_workflow(item) for item in result)
            if is_last_page(page, len(result), info):
                return workflows
            page += 1

    async def get_workflow(self, workflow_id: str, *, credentials: Credentials) -> Workflow:
        """One workflow by name; raises ``WorkflowNotFound``."""
        result, _ = await self._call(
            "GET",
            self._workflow_path(workflow_id),
            credentials=credentials,
            route="workflow",
            workflow_id=workflow_id,
        )
        return parse_workflow(result)

    async def trigger(
        self,
        workflow_id: str,
        *,
        input: JSON = None,
        instance_id: str | None = None,
        credentials: Credentials,
    ) -> Run:
        """Create an instance, then read it back (the create result has no params).

        With a caller-given ``instance_id`` the create is retried safely; a 409
        after a retry means our own first attempt got through.
        """
        body: cf.CreateRequest = {}
        if instance_id is not None:
            body["instance_id"] = instance_id
        if input is not None:
            body["params"] = cf.encode_params(input)
        try:
            result, _ = await self._call(
                "POST",
                f"{self._workflow_path(workflow_id)}/instances",
                credentials=credentials,
                route="create",
                workflow_id=workflow_id,
                instance_id=instance_id,
                json=body,
                idempotent=instance_id is not None,
            )
        except _CreatedByRetry:
            assert instance_id is not None
            existing = await self._instance(workflow_id, instance_id, credentials)
            if existing.input != input:
                raise AlreadyExists(workflow_id, instance_id) from None
            return existing
        created = parse_instance_item(result, workflow_id=workflow_id)
        try:
            return await self._instance(workflow_id, created.instance_id, credentials)
        except RunNotFound:
            return Run(
                workflow_id=workflow_id,
                instance_id=created.instance_id,
                status=created.status,
                raw_status=created.raw_status,
                input=input,
            )

    async def get_run(self, workflow_id: str, instance_id: str, *, credentials: Credentials) -> Run:
        """One instance with its steps; raises ``RunNotFound`` (or ``WorkflowNotFound``)."""
        return await self._instance(workflow_id, instance_id, credentials)

    async def list_runs(
        self,
        workflow_id: str,
        *,
        statuses: Collection[RunStatus] | None = None,
        cursor: str | None = None,
        limit: int = 50,
        credentials: Credentials,
    ) -> RunPage:
        """Instances newest first; several ``statuses`` are filtered here (see module doc)."""
        if limit < 1:
            raise BadUserInput(f"limit must be at least 1, not {limit}")
        wanted = set(statuses or ())
        params = [
            ("per_page", str(min(MAX_PER_PAGE, limit))),
            ("direction", "desc"),
        ]
        server_side = len(wanted) == 1 and RunStatus.UNKNOWN not in wanted
        if server_side:
            params.append(("status", next(iter(wanted)).value))
        if cursor:
            params.append(("cursor", cursor))
        result, info = await self._call(
            "GET",
            f"{self._workflow_path(workflow_id)}/instances",
            credentials=credentials,
            route="workflow",
            workflow_id=workflow_id,
            params=params,
        )
        if not isinstance(result, list):
            raise UpstreamProtocolError(
                "upstream cloudflare sent an instance list that is not a list"
            )
        runs = [parse_instance_item(item, workflow_id=workflow_id) for item in result]
        if wanted and not server_side:
            runs = [run for run in runs if run.status in wanted]
        if self.list_details:
            runs = await self._with_details(runs, workflow_id, credentials)
        next_cursor = info.get("cursor")
        return RunPage(
            runs=tuple(runs),
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
        """POST the raw payload to ``events/{event_type}``, then read the instance back."""
        if not event_type:
            raise BadUserInput("the event type must not be empty")
        limit = self.settings.max_event_payload_bytes
        if payload is not None and json_size(payload) > limit:
            raise PayloadTooLarge(
                f"the event payload is larger than the limit of {limit} bytes", limit=limit
            )
        suffix = f"/events/{path_segment(event_type)}"
        return await self._act(
            "POST", suffix, "event", workflow_id, instance_id, credentials, payload
        )

    async def _send_control(
        self, control: Control, workflow_id: str, instance_id: str, credentials: Credentials
    ) -> Run:
        """``PATCH .../status {"status": control}``, then read the instance back."""
        body: cf.StatusChange = {"status": control}
        return await self._act(
            "PATCH",
            "/status",
            "status",
            workflow_id,
            instance_id,
            credentials,
            body,
            control=control,
        )

    async def _act(
        self,
        method: str,
        suffix: str,
        route: Route,
        workflow_id: str,
        instance_id: str,
        credentials: Credentials,
        body: JSON,
        *,
        control: Control | None = None,
    ) -> Run:
        """Send an action to the instance (a 409 explained), then read the instance back.

        A ``control`` is sent again after a lost answer, and a 409 on a later attempt
        is a success when the run is where the control leaves it (see ``_idempotent``).
        """
        try:
            await self._call(
                method,
                self._instance_path(workflow_id, instance_id) + suffix,
                credentials=credentials,
                route=route,
                workflow_id=workflow_id,
                instance_id=instance_id,
                json=body,
                idempotent=True if control is not None else None,
            )
        except Conflict as conflict:
            if control is not None and conflict.attempts > 1:
                run = await self._instance(workflow_id, instance_id, credentials)
                if already_applied(control, run):
                    return run
            raise await self._finished_or_refused(
                conflict, workflow_id, instance_id, credentials
            ) from None
        return await self._instance(workflow_id, instance_id, credentials)

    async def delete_run(
        self, workflow_id: str, instance_id: str, *, credentials: Credentials
    ) -> bool:
        """Refused: Cloudflare's Workflows API has no call that deletes an instance."""
        raise BadUserInput(
            "Cloudflare's Workflows API cannot delete an instance; Cloudflare deletes"
            " finished instances itself after its retention period"
        )

    async def restart(
        self,
        workflow_id: str,
        instance_id: str,
        *,
        credentials: Credentials,
        from_step: str | None = None,
    ) -> Run:
        """``PATCH .../status {"status": "restart", "from"?: {"name"}}``, then read it back."""
        body: cf.StatusChange = {"status": "restart"}
        if from_step is not None:
            body["from"] = {"name": from_step}
        return await self._act(
            "PATCH", "/status", "status", workflow_id, instance_id, credentials, body
        )

    async def ping(self) -> None:
        """Return if Cloudflare answers at all (a 401, 403 or 429 still means it is up)."""
        try:
            await self.http.request(
                "GET",
                self._prefix,
                headers=self._headers(Credentials(None)),
                params=[("per_page", "1")],
            )
        except (Unauthenticated, Forbidden, RateLimited):
            return

    def limit_requests(self, limits: RequestLimits) -> None:
        """Ask the limiter of each request's token before sending it (retries and resends too)."""
        self.http.limits = limits

    def limit_key(self, credentials: Credentials) -> str:
        """The key of the limiter of the token requests with ``credentials`` carry."""
        return _token_key(self._headers(credentials))


class _CreatedByRetry(Exception):
    """A retried create met the instance its own first attempt created."""


def _token_key(headers: Mapping[str, str]) -> str:
    """The limiter key of a request: its token's fingerprint (Cloudflare limits per token)."""
    return Credentials.from_authorization(headers.get("Authorization")).fingerprint


__all__ = ["CloudflareUpstream", "cloudflare_quota", "parse_ratelimit"]
