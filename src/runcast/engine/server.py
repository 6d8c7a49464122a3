"""The embedded engine's REST API: the AwaitStep API over :class:`~runcast.engine.Engine`.

Routes (all JSON; errors are ``{"error": {"code", "message", ...}}``)::

    GET    /api/v1/workflows                                  {data: [workflow]}
    GET    /api/v1/workflows/{id}                             workflow
    POST   /api/v1/workflows/{id}/runs                        {input, instanceId?} -> 201 run
    GET    /api/v1/workflows/{id}/runs?status=&cursor=&limit= {data: [run], nextCursor}
    GET    /api/v1/workflows/{id}/runs/{instanceId}           run (with steps)
    DELETE /api/v1/workflows/{id}/runs/{instanceId}           terminate -> run
    POST   /api/v1/workflows/{id}/runs/{instanceId}/events    {eventType, payload} -> run
    POST   /api/v1/workflows/{id}/runs/{instanceId}/pause     -> run
    POST   /api/v1/workflows/{id}/runs/{instanceId}/resume    -> run
    POST   /api/v1/workflows/{id}/runs/{instanceId}/restart   {fromStep?} -> run
    POST   /api/v1/workflows/{id}/runs/{instanceId}/delete    finished runs -> {deleted: true}

A run is ``{instanceId, workflowId, status, input, output, error, createdAt,
startedAt, endedAt, wakeAt, workflowVersion, wait, steps}`` (``wait`` is
``{reason: sleep|event|retry|requestedPause, eventType, until}`` or null); the
trigger answer carries at least ``{instanceId, status}``. Statuses: 400 bad input
(and ``NOT_TRIGGERABLE`` for a script, naming its URL), 401 missing or wrong API
key, 404 unknown workflow, run or route, 405 wrong method, 409 duplicate instance
id (``ALREADY_EXISTS``) or finished run (``RUN_FINISHED``), 413 body or payload
over the limit, 503 ``STORAGE_UNAVAILABLE`` while the database cannot be written
(with ``Retry-After``), 500 anything else (the detail goes to the log, never to the client).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from typing import Any, cast

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runcast.engine import Engine
from runcast.engine.api_keys import ApiKeys, bearer_token
from runcast.engine.engine import format_size
from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    NotTriggerable,
    PayloadTooLarge,
    RuncastError,
    RunFinished,
    RunNotFinished,
    RunNotFound,
    Unauthenticated,
    UpstreamUnavailable,
    WorkflowNotFound,
)
from runcast.limits import MIB
from runcast.models import JSON, Run, RunStatus
from runcast.wire import awaitstep as aw
from runcast.wire.awaitstep import API_PREFIX

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 2 * MIB
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 50

Handler = Callable[[Request], Awaitable[Response]]


# -- errors --------------------------------------------------------------------------------


def error_response(status_code: int, code: str, message: str, **extra: JSON) -> JSONResponse:
    """An error in the AwaitStep shape ``{"error": {"code", "message", ...}}``."""
    headers = {"WWW-Authenticate": "Bearer"} if status_code == 401 else None
    body: aw.ErrorBody = {
        "error": cast(aw.ErrorDetail, {"code": code, "message": message, **extra})
    }
    return JSONResponse(
        body,
        status_code=status_code,
        headers=headers,
    )


def _runcast_error_response(exc: RuncastError) -> JSONResponse:
    if isinstance(exc, PayloadTooLarge):
        return error_response(413, "PAYLOAD_TOO_LARGE", exc.message, limit=exc.limit)
    if isinstance(exc, UpstreamUnavailable):
        response = error_response(503, "STORAGE_UNAVAILABLE", exc.message)
        response.headers["Retry-After"] = "2"
        return response
    if isinstance(exc, RunNotFinished):
        return error_response(400, "RUN_NOT_FINISHED", exc.message, status=exc.status)
    if isinstance(exc, NotTriggerable):
        return error_response(400, exc.code, exc.message, url=exc.url)
    if isinstance(exc, BadUserInput):
        return error_response(400, exc.code, exc.message)
    if isinstance(exc, RunNotFound):
        return error_response(404, "RUN_NOT_FOUND", exc.message)
    if isinstance(exc, WorkflowNotFound):
        return error_response(404, "WORKFLOW_NOT_FOUND", exc.message)
    if isinstance(exc, AlreadyExists):
        return error_response(409, exc.code, exc.message)
    if isinstance(exc, RunFinished):
        return error_response(409, exc.code, exc.message, status=exc.status)
    if isinstance(exc, Unauthenticated):
        return error_response(401, exc.code, exc.message)
    logger.error("unexpected engine error %s: %s", type(exc).__name__, exc.message)
    return error_response(500, "INTERNAL_SERVER_ERROR", "internal error")


# -- request reading -----------------------------------------------------------------------


async def _read_body(request: Request, limit: int, payload_limit: int) -> bytes:
    def too_large() -> PayloadTooLarge:
        return PayloadTooLarge(
            f"request body is larger than the limit of {limit} bytes ({format_size(limit)});"
            f" an event payload or run input may be at most {payload_limit} bytes"
            f" ({format_size(payload_limit)})",
            limit=limit,
        )

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def _read_object(
    request: Request, limit: int, payload_limit: int, *, required: bool
) -> dict[str, Any]:
    body = await _read_body(request, limit, payload_limit)
    if not body.strip():
        if required:
            raise BadUserInput("the request body must be a JSON object")
        return {}
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadUserInput("the request body is not valid JSON") from exc
    if not isinstance(value, dict):
        raise BadUserInput("the request body must be a JSON object")
    return value


def _optional_string(body: Mapping[str, object], key: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadUserInput(f"{key!r} must be a string")
    return value


def _statuses(request: Request) -> list[RunStatus] | None:
    raw = [
        part.strip()
        for value in request.query_params.getlist("status")
        for part in value.split(",")
        if part.strip()
    ]
    if not raw:
        return None
    statuses: list[RunStatus] = []
    for name in raw:
        status = RunStatus.parse(name)
        if status is RunStatus.UNKNOWN:
            known = ", ".join(s.value for s in RunStatus if s is not RunStatus.UNKNOWN)
            raise BadUserInput(f"unknown status {name!r}; expected one of {known}")
        statuses.append(status)
    return statuses


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIST_LIMIT
    try:
        limit = int(raw)
    except ValueError as exc:
        raise BadUserInput(f"limit must be an integer, got {raw!r}") from exc
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise BadUserInput(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    return limit


# -- the app -------------------------------------------------------------------------------


class _EngineAPI:
    """The route handlers, bound to one engine."""

    def __init__(self, engine: Engine, *, api_keys: Collection[str], max_body_bytes: int) -> None:
        self.engine = engine
        self.api_keys = ApiKeys(api_keys)
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[Route]:
        wf = f"{API_PREFIX}/workflows/{{workflow_id}}"
        run = f"{wf}/runs/{{instance_id}}"
        engine = self.engine
        return [
            Route(f"{API_PREFIX}/workflows", self._guard(self.list_workflows), methods=["GET"]),
            Route(wf, self._guard(self.get_workflow), methods=["GET"]),
            Route(f"{wf}/runs", self._guard(self.trigger), methods=["POST"]),
            Route(f"{wf}/runs", self._guard(self.list_runs), methods=["GET"]),
            Route(run, self._on_run(engine.get_run), methods=["GET"]),
            Route(run, self._on_run(engine.terminate), methods=["DELETE"]),
            Route(f"{run}/events", self._guard(self.send_event), methods=["POST"]),
            Route(f"{run}/pause", self._on_run(engine.pause), methods=["POST"]),
            Route(f"{run}/resume", self._on_run(engine.resume), methods=["POST"]),
            Route(f"{run}/restart", self._guard(self.restart), methods=["POST"]),
            Route(f"{run}/delete", self._guard(self.delete_run), methods=["POST"]),
        ]

    async def _read_object(self, request: Request, *, required: bool) -> dict[str, Any]:
        limit = self.engine.max_event_payload_bytes
        return await _read_object(request, self.max_body_bytes, limit, required=required)

    def _on_run(self, command: Callable[[str, str], Awaitable[Run]]) -> Handler:
        """The guarded handler answering ``command(workflow_id, instance_id)`` as a run."""

        async def handler(request: Request) -> Response:
            params = request.path_params
            return JSONResponse(
                aw.run_body(await command(params["workflow_id"], params["instance_id"]))
            )

        handler.__name__ = command.__name__
        return self._guard(handler)

    def _guard(self, handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            try:
                self._authenticate(request)
                return await handler(request)
            except RuncastError as exc:
                return _runcast_error_response(exc)

        guarded.__name__ = handler.__name__
        return guarded

    def _authenticate(self, request: Request) -> None:
        if not self.api_keys:
            return
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise Unauthenticated("a bearer API key is required")
        if not self.api_keys.accepts(token):
            raise Unauthenticated("the API key is not valid")

    async def list_workflows(self, request: Request) -> Response:
        body: aw.WorkflowList = {
            "data": [aw.workflow_body(w) for w in self.engine.list_workflows()]
        }
        return JSONResponse(body)

    async def get_workflow(self, request: Request) -> Response:
        workflow = self.engine.get_workflow(request.path_params["workflow_id"])
        return JSONResponse(aw.workflow_body(workflow))

    async def trigger(self, request: Request) -> Response:
        workflow_id = request.path_params["workflow_id"]
        body = cast(aw.TriggerRequest, await self._read_object(request, required=False))
        instance_id = _optional_string(body, "instanceId")
        run = await self.engine.trigger(
            workflow_id, input=body.get("input"), instance_id=instance_id
        )
        return JSONResponse(aw.run_body(run), status_code=201)

    async def list_runs(self, request: Request) -> Response:
        cursor = request.query_params.get("cursor") or None
        page = await self.engine.list_runs(
            request.path_params["workflow_id"],
            statuses=_statuses(request),
            cursor=cursor,
            limit=_limit(request),
        )
        body: aw.RunList = {
            "data": [aw.run_body(run) for run in page.runs],
            "nextCursor": page.next_cursor,
        }
        return JSONResponse(body)

    async def delete_run(self, request: Request) -> Response:
        params = request.path_params
        deleted = await self.engine.delete_run(params["workflow_id"], params["instance_id"])
        body: aw.Deleted = {"deleted": deleted}
        return JSONResponse(body)

    async def restart(self, request: Request) -> Response:
        body = cast(aw.RestartRequest, await self._read_object(request, required=False))
        run = await self.engine.restart(
            request.path_params["workflow_id"],
            request.path_params["instance_id"],
            from_step=_optional_string(body, "fromStep"),
        )
        return JSONResponse(aw.run_body(run))

    async def send_event(self, request: Request) -> Response:
        body = cast(aw.EventRequest, await self._read_object(request, required=True))
        event_type = body.get("eventType")
        if not isinstance(event_type, str) or not event_type.strip():
            raise BadUserInput("'eventType' must be a non-empty string")
        run = await self.engine.send_event(
            request.path_params["workflow_id"],
            request.path_params["instance_id"],
            event_type=event_type,
            payload=body.get("payload"),
        )
        return JSONResponse(aw.run_body(run))


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error_response(404, "NOT_FOUND", f"no route for {request.url.path}")
    if exc.status_code == 405:
        response = error_response(
            405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed on {request.url.path}"
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response
    return error_response(exc.status_code, "BAD_REQUEST", str(exc.detail))


async def _internal_error(request: Request, exc: Exception) -> Response:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL_SERVER_ERROR", "internal error")


def create_engine_app(
    engine: Engine,
    *,
    api_keys: Collection[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    manage_engine: bool = False,
) -> Starlette:
    """Build the Starlette app serving the AwaitStep REST API over ``engine``.

    Args:
        engine: the engine to serve; the caller starts and closes it unless
            ``manage_engine`` is set.
        api_keys: when not empty, every request needs ``Authorization: Bearer <key>``
            with one of these keys, else 401.
        max_body_bytes: requests with a larger body get 413 before the engine sees them.
        manage_engine: start the engine in the app's lifespan and close it afterwards.

    Returns:
        The ASGI app.
    """
    api = _EngineAPI(engine, api_keys=api_keys, max_body_bytes=max_body_bytes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_engine:
            async with engine:
                yield
        else:
            yield

    return Starlette(
        routes=api.routes(),
        exception_handlers={HTTPException: _http_exception, Exception: _internal_error},
        lifespan=lifespan,
    )
