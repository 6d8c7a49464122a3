"""The embedded engine served as the Cloudflare Workflows REST API (client v4).

Cloudflare cannot be reached from a laptop or CI, so the engine speaks its API
too: the same runs and lifecycle as the AwaitStep REST API, under
``/client/v4/accounts/{account_id}/workflows/...``, with the documented
envelope, field names and status spelling (``shared/reference/
cloudflare-workflows-api.md``). ``runcast serve --upstream cloudflare://local``
with ``RUNCAST_CLOUDFLARE_BASE_URL=http://127.0.0.1:8000/client/v4`` then runs
the Cloudflare adapter end to end against it.

This module holds the routes; the documented shapes and error codes live in
``_cloudflare_shapes`` and the reading of parameters, bodies and cursors in
``_cloudflare_requests``.

Choices where Cloudflare documents nothing:

- Scripts are not Cloudflare workflows: they are left out of listings and are
  ``404`` everywhere.
- Authentication (when tokens are configured): a missing or unknown bearer
  token is 401; a path naming another account than the served one is 403.
- Error codes (``errors[].code``) are local: 10000 authentication, 10001
  internal, 10002 validation, 10400 not found (``workflows.api.error.
  workflow.not_found`` / ``instance.not_found`` / ``step.not_found``), 10405
  duplicate instance id (HTTP 409), 10409 invalid status change or finished run
  (HTTP 409), 10413 payload too large (HTTP 413), 7000 no such route, 7001
  method not allowed.
- ``output`` of get-instance is typed string-or-number: a number stays a number,
  no output is ``""``, anything else is JSON-encoded (so ``"ok"`` is sent as
  ``"\\"ok\\""``). Step ``output`` (string or null) is JSON-encoded the same way.
  ``GET .../step`` returns the untruncated value as plain JSON.
- ``params`` given as a string is decoded as JSON when it is valid JSON and kept
  as that string otherwise; a string input is sent back JSON-encoded (as the
  newest spec's "JSON-encoded event payload"), other inputs as they are.
- Instances are listed newest first (``direction=desc``) unless
  ``direction=asc``; ``cursor`` is the opaque position after the last instance
  of the page and is left out on the last page. ``date_start``/``date_end``
  compare against the creation time.
- Every step attempt but the last one failed; the engine keeps only the last
  error, so earlier attempts report that error too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from runcast.engine._cloudflare_requests import (
    choice_param,
    creation,
    instance_query,
    int_param,
    json_body,
    restart_from,
)
from runcast.engine._cloudflare_shapes import (
    CODE_ALREADY_EXISTS,
    CODE_AUTH,
    CODE_CONFLICT,
    CODE_INTERNAL,
    CODE_METHOD_NOT_ALLOWED,
    CODE_NO_ROUTE,
    CODE_NOT_FOUND,
    CODE_VALIDATION,
    DEFAULT_WORKFLOWS_PER_PAGE,
    ENGINE_PAGE,
    INSTANCE_ALREADY_EXISTS,
    STEP_NOT_FOUND,
    WORKFLOW_NOT_FOUND,
    ApiError,
    Shapes,
    error_response,
    failure,
    instance_status,
    step_type,
)
from runcast.engine.api_keys import ApiKeys, bearer_token
from runcast.engine.definitions import WorkflowDefinition
from runcast.errors import (
    BadUserInput,
    PayloadTooLarge,
    RuncastError,
    RunNotFound,
    WorkflowNotFound,
)
from runcast.limits import MAX_EVENT_TYPE_LENGTH, MIB
from runcast.models import JSON, Run, RunPage, RunStatus, Workflow, WorkflowKind
from runcast.wire import cloudflare as cf
from runcast.wire.cloudflare import API_PREFIX, MAX_BATCH, MAX_PER_PAGE, STATUS_ACTIONS
from runcast.wire.times import iso_z

logger = logging.getLogger(__name__)


class RunEngine(Protocol):
    """The part of ``runcast.engine.Engine`` this API calls."""

    @property
    def definitions(self) -> Mapping[str, WorkflowDefinition]: ...

    def list_workflows(self) -> list[Workflow]: ...

    def get_workflow(self, workflow_id: str) -> Workflow: ...

    async def trigger(
        self, workflow_id: str, *, input: JSON = None, instance_id: str | None = None
    ) -> Run: ...

    async def get_run(self, workflow_id: str, instance_id: str) -> Run: ...

    async def list_runs(
        self,
        workflow_id: str,
        *,
        statuses: Collection[RunStatus] | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> RunPage: ...

    async def send_event(
        self, workflow_id: str, instance_id: str, *, event_type: str, payload: JSON = None
    ) -> Run: ...

    async def terminate(self, workflow_id: str, instance_id: str) -> Run: ...

    async def pause(self, workflow_id: str, instance_id: str) -> Run: ...

    async def resume(self, workflow_id: str, instance_id: str) -> Run: ...

    async def restart(
        self, workflow_id: str, instance_id: str, *, from_step: str | None = None
    ) -> Run: ...


# --- the application ------------------------------------------------------------------

Handler = Callable[[Request], Awaitable[Response]]


class _CloudflareApi:
    def __init__(
        self,
        engine: RunEngine,
        *,
        account_id: str,
        api_tokens: Iterable[str],
        max_event_payload_bytes: int,
        definitions: Mapping[str, WorkflowDefinition],
    ) -> None:
        self.engine = engine
        self.account_id = account_id
        self.api_tokens = ApiKeys(api_tokens)
        self.max_event_payload_bytes = max_event_payload_bytes
        self.shapes = Shapes(account_id, definitions, datetime.now(UTC))

    def routes(self) -> list[Route]:
        base = "/accounts/{account_id}/workflows"
        instance = base + "/{workflow_name}/instances/{instance_id}"
        return [
            Route(base, self._wrap(self.list_workflows), methods=["GET"]),
            Route(base + "/{workflow_name}", self._wrap(self.get_workflow), methods=["GET"]),
            Route(
                base + "/{workflow_name}/instances/batch",
                self._wrap(self.create_batch),
                methods=["POST"],
            ),
            Route(
                base + "/{workflow_name}/instances",
                self._wrap(self.create_instance),
                methods=["POST"],
            ),
            Route(
                base + "/{workflow_name}/instances",
                self._wrap(self.list_instances),
                methods=["GET"],
            ),
            Route(instance, self._wrap(self.get_instance), methods=["GET"]),
            Route(instance + "/status", self._wrap(self.change_status), methods=["PATCH"]),
            Route(
                instance + "/events/{event_type}",
                self._wrap(self.send_event),
                methods=["POST"],
            ),
            Route(instance + "/step", self._wrap(self.get_step), methods=["GET"]),
        ]

    def _wrap(self, handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def endpoint(request: Request) -> Response:
            try:
                self._authorize(request)
                return await handler(request)
            except ApiError as exc:
                return failure(exc.status_code, exc.code, exc.message)
            except RuncastError as exc:
                return error_response(exc)
            except Exception:
                logger.exception("cloudflare api: unexpected failure")
                return failure(500, CODE_INTERNAL, "workflows.api.error.internal_server")

        return endpoint

    def _authorize(self, request: Request) -> None:
        if self.api_tokens:
            token = bearer_token(request.headers.get("authorization"))
            if token is None:
                raise ApiError(401, CODE_AUTH, "Authentication error: a bearer token is required")
            if not self.api_tokens.accepts(token):
                raise ApiError(401, CODE_AUTH, "Authentication error: the token is not valid")
        if request.path_params.get("account_id") != self.account_id:
            raise ApiError(403, CODE_AUTH, "Authentication error: unknown account")

    def _workflow(self, request: Request) -> Workflow:
        name = request.path_params["workflow_name"]
        try:
            workflow = self.engine.get_workflow(name)
        except WorkflowNotFound:
            raise ApiError(404, CODE_NOT_FOUND, WORKFLOW_NOT_FOUND) from None
        if workflow.kind is not WorkflowKind.WORKFLOW:
            raise ApiError(404, CODE_NOT_FOUND, WORKFLOW_NOT_FOUND)
        return workflow

    async def _all_runs(
        self, workflow_id: str, statuses: Collection[RunStatus] | None = None
    ) -> list[Run]:
        runs: list[Run] = []
        cursor: str | None = None
        while True:
            page = await self.engine.list_runs(
                workflow_id, statuses=statuses, cursor=cursor, limit=ENGINE_PAGE
            )
            runs.extend(page.runs)
            cursor = page.next_cursor
            if cursor is None:
                return runs

    # GET /accounts/{account_id}/workflows
    async def list_workflows(self, request: Request) -> Response:
        page = int_param(request, "page", 1, 1, 1_000_000)
        per_page = int_param(request, "per_page", DEFAULT_WORKFLOWS_PER_PAGE, 1, MAX_PER_PAGE)
        search = request.query_params.get("search", "")
        workflows = [
            w
            for w in self.engine.list_workflows()
            if w.kind is WorkflowKind.WORKFLOW and search.lower() in w.id.lower()
        ]
        workflows.sort(key=lambda w: w.id)
        chunk = workflows[(page - 1) * per_page : page * per_page]
        result = [self.shapes.workflow(w, await self._all_runs(w.id)) for w in chunk]
        total = len(workflows)
        info: cf.ResultInfo = {
            "page": page,
            "per_page": per_page,
            "count": len(result),
            "total_count": total,
            "total_pages": max(1, -(-total // per_page)),
        }
        return JSONResponse(cf.listing(result, info))

    # GET /accounts/{account_id}/workflows/{workflow_name}
    async def get_workflow(self, request: Request) -> Response:
        workflow = self._workflow(request)
        runs = await self._all_runs(workflow.id)
        return JSONResponse(cf.success(self.shapes.workflow(workflow, runs)))

    # POST .../instances
    async def create_instance(self, request: Request) -> Response:
        workflow = self._workflow(request)
        present, body = await json_body(request, limit=self.max_event_payload_bytes + MIB)
        instance_id, params = creation(body if present else {})
        run = await self.engine.trigger(workflow.id, input=params, instance_id=instance_id)
        return JSONResponse(cf.success(self.shapes.created(run)))

    # POST .../instances/batch
    async def create_batch(self, request: Request) -> Response:
        workflow = self._workflow(request)
        limit = MAX_BATCH * (self.max_event_payload_bytes + MIB)
        _, body = await json_body(request, limit=limit)
        if not isinstance(body, list):
            raise ApiError(400, CODE_VALIDATION, "the body must be a JSON array of instances")
        if not 1 <= len(body) <= MAX_BATCH:
            raise ApiError(
                400, CODE_VALIDATION, f"a batch holds 1 to {MAX_BATCH} instances, not {len(body)}"
            )
        creations = [creation(item) for item in body]
        named = [i for i, _ in creations if i is not None]
        if len(named) != len(set(named)):
            raise ApiError(400, CODE_VALIDATION, "instance ids in a batch must be unique")
        for name in named:
            try:
                await self.engine.get_run(workflow.id, name)
            except RunNotFound:
                continue
            raise ApiError(409, CODE_ALREADY_EXISTS, INSTANCE_ALREADY_EXISTS)
        result = []
        for instance_id, params in creations:
            run = await self.engine.trigger(workflow.id, input=params, instance_id=instance_id)
            result.append(self.shapes.created(run))
        return JSONResponse(cf.success(result))

    # GET .../instances
    async def list_instances(self, request: Request) -> Response:
        workflow = self._workflow(request)
        query = instance_query(request)
        statuses = None
        if query.status is not None:
            parsed = RunStatus.parse(query.status)
            statuses = {parsed} if parsed is not RunStatus.UNKNOWN else None
        listed = statuses or query.status is None
        runs = query.select(await self._all_runs(workflow.id, statuses) if listed else [])
        chunk, info = query.page_of(runs)
        return JSONResponse(cf.listing([self.shapes.list_item(r) for r in chunk], info))

    # GET .../instances/{instance_id}
    async def get_instance(self, request: Request) -> Response:
        workflow = self._workflow(request)
        simple = choice_param(request, "simple", ("true", "false"), "false") == "true"
        order = choice_param(request, "order", ("asc", "desc"), "asc")
        run = await self.engine.get_run(workflow.id, request.path_params["instance_id"])
        return JSONResponse(cf.success(self.shapes.instance(run, simple=simple, order=order)))

    # PATCH .../instances/{instance_id}/status
    async def change_status(self, request: Request) -> Response:
        workflow = self._workflow(request)
        instance_id = request.path_params["instance_id"]
        _, body = await json_body(request, limit=MIB)
        if not isinstance(body, dict) or body.get("status") not in STATUS_ACTIONS:
            raise ApiError(
                400, CODE_VALIDATION, f"status must be one of {', '.join(STATUS_ACTIONS)}"
            )
        action = body["status"]
        from_step = restart_from(body) if action == "restart" else None
        if action == "terminate" and not isinstance(body.get("rollback", False), bool):
            raise ApiError(400, CODE_VALIDATION, "rollback must be a boolean")
        current = await self.engine.get_run(workflow.id, instance_id)
        self._check_transition(action, current)
        if from_step is not None:
            try:
                run = await self.engine.restart(workflow.id, instance_id, from_step=from_step)
            except BadUserInput as exc:
                raise ApiError(400, CODE_VALIDATION, exc.message) from None
            result = {"status": instance_status(run), "timestamp": iso_z(datetime.now(UTC))}
            return JSONResponse(cf.success(result))
        change = {
            "pause": self.engine.pause,
            "resume": self.engine.resume,
            "terminate": self.engine.terminate,
            "restart": self.engine.restart,
        }[action]
        try:
            run = await change(workflow.id, instance_id)
        except PayloadTooLarge:
            raise
        except BadUserInput as exc:
            raise ApiError(409, CODE_CONFLICT, exc.message) from None
        result = {"status": instance_status(run), "timestamp": iso_z(datetime.now(UTC))}
        return JSONResponse(cf.success(result))

    @staticmethod
    def _check_transition(action: str, run: Run) -> None:
        if action in ("pause", "resume", "terminate") and run.is_terminal:
            raise ApiError(
                409,
                CODE_CONFLICT,
                f"cannot {action} instance {run.instance_id!r}: it is {instance_status(run)}",
            )

    # POST .../instances/{instance_id}/events/{event_type}
    async def send_event(self, request: Request) -> Response:
        workflow = self._workflow(request)
        instance_id = request.path_params["instance_id"]
        event_type = request.path_params["event_type"]
        if not 1 <= len(event_type) <= MAX_EVENT_TYPE_LENGTH:
            raise ApiError(
                400,
                CODE_VALIDATION,
                f"event_type must be 1 to {MAX_EVENT_TYPE_LENGTH} characters",
            )
        _, payload = await json_body(request, limit=self.max_event_payload_bytes)
        run = await self.engine.send_event(
            workflow.id, instance_id, event_type=event_type, payload=payload
        )
        result = {"instanceId": run.instance_id, "timestamp": iso_z(datetime.now(UTC))}
        return JSONResponse(cf.success(result))

    # GET .../instances/{instance_id}/step
    async def get_step(self, request: Request) -> Response:
        workflow = self._workflow(request)
        name = request.query_params.get("name")
        if not name:
            raise ApiError(400, CODE_VALIDATION, "name is required")
        kind = request.query_params.get("type")
        if kind not in ("step", "waitForEvent"):
            raise ApiError(400, CODE_VALIDATION, "type must be step or waitForEvent")
        attempt_raw = request.query_params.get("attempt")
        run = await self.engine.get_run(workflow.id, request.path_params["instance_id"])
        step = next((s for s in run.steps or () if s.name == name and step_type(s) == kind), None)
        if step is None:
            raise ApiError(404, CODE_NOT_FOUND, STEP_NOT_FOUND)
        attempt = None
        if attempt_raw is not None:
            attempt = int_param(request, "attempt", 1, 1, max(1, step.attempts))
        result = self.shapes.step_result(workflow.id, step, attempt=attempt)
        return JSONResponse(cf.success(result))


def _without_trailing_slash(app: ASGIApp) -> ASGIApp:
    """Serve ``/path/`` as ``/path`` (clients do not follow redirects)."""

    async def strip(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await app(scope, receive, send)

    return strip


async def _not_found(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        return failure(405, CODE_METHOD_NOT_ALLOWED, "Method not allowed for this route")
    if isinstance(exc, HTTPException) and exc.status_code != 404:
        return failure(exc.status_code, CODE_VALIDATION, str(exc.detail))
    return failure(404, CODE_NO_ROUTE, f"No route for that URI: {request.url.path}")


def cloudflare_mount(
    engine: RunEngine,
    *,
    account_id: str = "local",
    api_tokens: Iterable[str] = (),
    max_event_payload_bytes: int = MIB,
    definitions: Mapping[str, WorkflowDefinition] | None = None,
) -> Mount:
    """The Cloudflare API as one ``Mount("/client/v4", ...)`` route, to add to another app.

    Insert it first in an app's routes, e.g. next to the AwaitStep REST API::

        app.router.routes.insert(0, cloudflare_mount(engine, api_tokens=keys))

    Args:
        engine: the started engine whose runs are served (the caller owns its lifetime).
        account_id: the only account id the API answers for.
        api_tokens: bearer tokens accepted; empty means no authentication.
        max_event_payload_bytes: the event body limit (413 above it).
        definitions: the workflow definitions, for step ``config`` and ``event_type``;
            taken from ``engine.definitions`` when not given.
    """
    if definitions is None:
        definitions = engine.definitions
    api = _CloudflareApi(
        engine,
        account_id=account_id,
        api_tokens=api_tokens,
        max_event_payload_bytes=max_event_payload_bytes,
        definitions=definitions,
    )
    inner = Starlette(
        routes=api.routes(),
        exception_handlers={HTTPException: _not_found},
    )
    inner.router.redirect_slashes = False
    return Mount(API_PREFIX, app=_without_trailing_slash(inner))


def create_cloudflare_app(
    engine: RunEngine,
    *,
    account_id: str = "local",
    api_tokens: Iterable[str] = (),
    max_event_payload_bytes: int = MIB,
    definitions: Mapping[str, WorkflowDefinition] | None = None,
) -> Starlette:
    """A Starlette app serving the Cloudflare Workflows API over ``engine``.

    The routes live under ``/client/v4/accounts/{account_id}/workflows``; every
    response is the Cloudflare envelope. The app does not start or close the
    engine: its owner does. See :func:`cloudflare_mount` for the arguments.
    """
    mount = cloudflare_mount(
        engine,
        account_id=account_id,
        api_tokens=api_tokens,
        max_event_payload_bytes=max_event_payload_bytes,
        definitions=definitions,
    )
    return Starlette(routes=[mount], exception_handlers={HTTPException: _not_found})
