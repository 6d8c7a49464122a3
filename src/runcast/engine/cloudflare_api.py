"""The embedded engine served as the Cloudflare Workflows REST API (client v4).

Cloudflare cannot be reached from a laptop or CI, so the engine speaks its API
too: the same runs and lifecycle as the AwaitStep REST API, under
``/client/v4/accounts/{account_id}/workflows/...``, with the documented
envelope, field names and status spelling (``shared/reference/
cloudflare-workflows-api.md``). ``runcast serve --upstream cloudflare://local``
with ``RUNCAST_CLOUDFLARE_BASE_URL=http://127.0.0.1:8000/client/v4`` then runs
the Cloudflare adapter end to end against it.

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

import base64
import binascii
import functools
import hmac
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

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
    WorkflowNotFound,
)
from runcast.models import JSON, Run, RunPage, RunStatus, Step, Workflow, WorkflowKind

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
API_PREFIX = "/client/v4"
MAX_BATCH = 100
MAX_PER_PAGE = 100
ENGINE_PAGE = 1000
DEFAULT_INSTANCES_PER_PAGE = 50
DEFAULT_WORKFLOWS_PER_PAGE = 20
INSTANCE_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9\-_]*$")
RESERVED_ID_PATTERN = re.compile(r"^cf_[0-9a-f]{64}$")
DEFAULT_STEP_TIMEOUT = timedelta(seconds=30)

INSTANCE_STATUSES = (
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waitingForPause",
    "waiting",
    "rollingBack",
)
"""Cloudflare's ``InstanceStatus`` values, in the order the SDK lists them."""

STATUS_ACTIONS = ("pause", "resume", "terminate", "restart")

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

_UUID_NAMESPACE = uuid.UUID("5f0c6b2e-5d0e-4a8e-9a77-1b0f0c1d2e3f")


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

    async def restart(self, workflow_id: str, instance_id: str) -> Run: ...


class ApiError(Exception):
    """A failure answered with the Cloudflare failure envelope."""

    def __init__(self, status_code: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


# --- envelope -------------------------------------------------------------------------


def envelope(result: JSON, *, result_info: Mapping[str, JSON] | None = None) -> dict[str, JSON]:
    """The success envelope around ``result`` (``result_info`` on list routes)."""
    body: dict[str, JSON] = {"success": True, "errors": [], "messages": [], "result": result}
    if result_info is not None:
        body["result_info"] = dict(result_info)
    return body


def failure(status_code: int, code: int, message: str) -> JSONResponse:
    """The failure envelope with one error, at ``status_code``."""
    return JSONResponse(
        {
            "success": False,
            "errors": [{"code": code, "message": message}],
            "messages": [],
            "result": None,
        },
        status_code=status_code,
    )


def _error_response(exc: RuncastError) -> JSONResponse:
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
    logger.error("cloudflare api: unexpected engine error %s", type(exc).__name__)
    return failure(500, CODE_INTERNAL, "workflows.api.error.internal_server")


# --- value encoding -------------------------------------------------------------------


def timestamp(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a ``Z``, or ``None``."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode_output(value: JSON) -> str | int | float:
    """A run's output as the documented string-or-number (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    return json.dumps(value, separators=(",", ":"))


def _encode_step_output(value: JSON) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def _error_object(message: str | None) -> dict[str, str] | None:
    return None if message is None else {"name": "Error", "message": message}


def _duration_ms(value: timedelta) -> int:
    return int(value.total_seconds() * 1000)


def _stable_uuid(*parts: str) -> str:
    return str(uuid.uuid5(_UUID_NAMESPACE, "\x1f".join(parts)))


def _class_name(workflow_id: str) -> str:
    words = re.split(r"[^a-zA-Z0-9]+", workflow_id)
    return "".join(word[:1].upper() + word[1:] for word in words if word) + "Workflow"


def _instance_status(run: Run) -> str:
    if run.raw_status in INSTANCE_STATUSES:
        return run.raw_status
    return run.status.value


_STEP_TYPES = {
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


def _step_type(step: Step) -> str:
    return _STEP_TYPES.get(step.type, "step")


class _Shapes:
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

    def version_uuid(self, workflow_id: str) -> str:
        definition = self.definitions.get(workflow_id)
        fingerprint = repr(definition.nodes) if definition is not None else ""
        return _stable_uuid(self.account_id, "version", workflow_id, fingerprint)

    def workflow(self, workflow: Workflow, runs: Sequence[Run]) -> dict[str, JSON]:
        counts: dict[str, int] = {}
        for run in runs:
            status = _instance_status(run)
            counts[status] = counts.get(status, 0) + 1
        triggered = max((r.created_at for r in runs if r.created_at), default=None)
        return {
            "id": self.workflow_uuid(workflow.id),
            "name": workflow.id,
            "class_name": _class_name(workflow.id),
            "script_name": "runcast-engine",
            "created_on": timestamp(self.created_on),
            "modified_on": timestamp(self.created_on),
            "triggered_on": timestamp(triggered),
            "instances": counts,
        }

    def created(self, run: Run) -> dict[str, JSON]:
        return {
            "id": run.instance_id,
            "status": _instance_status(run),
            "version_id": self.version_uuid(run.workflow_id),
            "workflow_id": self.workflow_uuid(run.workflow_id),
            "trigger_source": "api",
        }

    def list_item(self, run: Run) -> dict[str, JSON]:
        modified = run.ended_at or run.started_at or run.created_at
        return {
            "id": run.instance_id,
            "status": _instance_status(run),
            "created_on": timestamp(run.created_at or self.created_on),
            "modified_on": timestamp(modified or self.created_on),
            "started_on": timestamp(run.started_at),
            "ended_on": timestamp(run.ended_at),
            "version_id": self.version_uuid(run.workflow_id),
            "workflow_id": self.workflow_uuid(run.workflow_id),
            "trigger_source": "api",
        }

    def instance(self, run: Run, *, simple: bool, order: str) -> dict[str, JSON]:
        steps = [self.step(run, step) for step in run.steps or ()]
        if run.status is RunStatus.TERMINATED:
            steps.append({"type": "termination", "trigger": {"source": "api"}})
        if order == "desc":
            steps.reverse()
        success: bool | None = None
        if run.status is RunStatus.COMPLETE:
            success = True
        elif run.status in (RunStatus.ERRORED, RunStatus.TERMINATED):
            success = False
        body: dict[str, JSON] = {
            "status": _instance_status(run),
            "queued": timestamp(run.created_at or self.created_on),
            "start": timestamp(run.started_at),
            "end": timestamp(run.ended_at),
            "success": success,
            "error": _error_object(run.error),
            "output": encode_output(run.output),
            "params": json.dumps(run.input) if isinstance(run.input, str) else run.input,
            "trigger": {"source": "api"},
            "versionId": self.version_uuid(run.workflow_id),
            "step_count": len(steps),
            "rollback": None,
        }
        if not simple:
            body["steps"] = steps
        return body

    def step(self, run: Run, step: Step) -> dict[str, JSON]:
        kind = _step_type(step)
        fallback = step.started_at or run.created_at or self.created_on
        start = timestamp(fallback)
        if kind == "step":
            return {
                "type": "step",
                "name": step.name,
                "start": start,
                "end": timestamp(step.ended_at),
                "success": _step_success(step),
                "output": _encode_step_output(step.output),
                "attempts": self._attempts(step, start),
                "config": self._config(run.workflow_id, step.name),
            }
        finished = step.status in _DONE or step.status in _FAILED
        end = step.ended_at or (None if finished else run.wake_at) or fallback
        body: dict[str, JSON] = {
            "type": kind,
            "name": step.name,
            "start": start,
            "end": timestamp(end),
            "finished": finished,
            "error": _error_object(step.error) if step.status in _FAILED else None,
        }
        if kind == "waitForEvent":
            if step.output is not None:
                body["output"] = json.dumps(step.output, separators=(",", ":"))
            event_type = self.event_type(run.workflow_id, step.name)
            if event_type is not None:
                body["event_type"] = event_type
        return body

    def _attempts(self, step: Step, start: str | None) -> list[JSON]:
        count = max(step.attempts, 1 if step.started_at else 0)
        retrying = step.status == "waiting"
        attempts: list[JSON] = []
        for number in range(1, count + 1):
            if number < count or retrying:
                # An attempt before the last one (or the last, while a retry is due) failed.
                failed = _error_object(step.error or "attempt failed")
                attempts.append({"start": start, "end": start, "success": False, "error": failed})
                continue
            success = _step_success(step)
            attempts.append(
                {
                    "start": start,
                    "end": timestamp(step.ended_at),
                    "success": success,
                    "error": _error_object(step.error) if success is False else None,
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

    def _config(self, workflow_id: str, name: str) -> dict[str, JSON]:
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

    def event_type(self, workflow_id: str, name: str) -> str | None:
        node = self._node(workflow_id, name)
        return node.event_type if isinstance(node, WaitForEventNode) else None


def _step_success(step: Step) -> bool | None:
    if step.status in _DONE:
        return True
    if step.status in _FAILED:
        return False
    return None


def _step_api_status(step: Step) -> str:
    if step.status in _DONE:
        return "complete"
    if step.status in _FAILED:
        return "errored"
    if step.status == "waiting":
        return "waiting"
    return "running"


# --- request parsing ------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be between {low} and {high}")
    return value


def _date_param(request: Request, name: str) -> datetime | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be an ISO-8601 date-time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _choice_param(request: Request, name: str, choices: Sequence[str], default: str) -> str:
    raw = request.query_params.get(name, default)
    if raw not in choices:
        raise ApiError(400, CODE_VALIDATION, f"{name} must be one of {', '.join(choices)}")
    return raw


async def _json_body(request: Request, *, limit: int) -> tuple[bool, JSON]:
    """Read at most ``limit`` bytes of body; returns (present, value)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, CODE_TOO_LARGE, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, CODE_TOO_LARGE, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        return False, None
    try:
        return True, json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, CODE_VALIDATION, "the body is not valid JSON") from None


def _check_instance_id(value: JSON) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 100:
        raise ApiError(400, CODE_VALIDATION, "instance_id must be a string of 1 to 100 characters")
    if not INSTANCE_ID_PATTERN.match(value):
        raise ApiError(400, CODE_VALIDATION, "instance_id must match ^[a-zA-Z0-9_][a-zA-Z0-9-_]*$")
    if RESERVED_ID_PATTERN.match(value):
        raise ApiError(400, CODE_VALIDATION, "instance_id of the form cf_<64 hex> is reserved")
    return value


def _decode_params(value: JSON) -> JSON:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _creation(item: JSON) -> tuple[str | None, JSON]:
    if not isinstance(item, dict):
        raise ApiError(400, CODE_VALIDATION, "each instance to create must be a JSON object")
    return _check_instance_id(item.get("instance_id")), _decode_params(item.get("params"))


def _encode_cursor(direction: str, after: str) -> str:
    raw = json.dumps({"d": direction, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        direction, after = data["d"], data["a"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ApiError(400, CODE_VALIDATION, "cursor is not valid") from None
    if direction not in ("asc", "desc") or not isinstance(after, str):
        raise ApiError(400, CODE_VALIDATION, "cursor is not valid")
    return direction, after


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
        self.api_tokens = tuple(api_tokens)
        self.max_event_payload_bytes = max_event_payload_bytes
        self.shapes = _Shapes(account_id, definitions, datetime.now(UTC))

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
                return _error_response(exc)
            except Exception:
                logger.exception("cloudflare api: unexpected failure")
                return failure(500, CODE_INTERNAL, "workflows.api.error.internal_server")

        return endpoint

    def _authorize(self, request: Request) -> None:
        if self.api_tokens:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise ApiError(401, CODE_AUTH, "Authentication error: a bearer token is required")
            presented = token.strip().encode()
            if not any(hmac.compare_digest(presented, t.encode()) for t in self.api_tokens):
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
        page = _int_param(request, "page", 1, 1, 1_000_000)
        per_page = _int_param(request, "per_page", DEFAULT_WORKFLOWS_PER_PAGE, 1, MAX_PER_PAGE)
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
        info = {
            "page": page,
            "per_page": per_page,
            "count": len(result),
            "total_count": total,
            "total_pages": max(1, -(-total // per_page)),
        }
        return JSONResponse(envelope(result, result_info=info))

    # GET /accounts/{account_id}/workflows/{workflow_name}
    async def get_workflow(self, request: Request) -> Response:
        workflow = self._workflow(request)
        runs = await self._all_runs(workflow.id)
        return JSONResponse(envelope(self.shapes.workflow(workflow, runs)))

    # POST .../instances
    async def create_instance(self, request: Request) -> Response:
        workflow = self._workflow(request)
        present, body = await _json_body(request, limit=self.max_event_payload_bytes + MIB)
        instance_id, params = _creation(body if present else {})
        run = await self.engine.trigger(workflow.id, input=params, instance_id=instance_id)
        return JSONResponse(envelope(self.shapes.created(run)))

    # POST .../instances/batch
    async def create_batch(self, request: Request) -> Response:
        workflow = self._workflow(request)
        limit = MAX_BATCH * (self.max_event_payload_bytes + MIB)
        _, body = await _json_body(request, limit=limit)
        if not isinstance(body, list):
            raise ApiError(400, CODE_VALIDATION, "the body must be a JSON array of instances")
        if not 1 <= len(body) <= MAX_BATCH:
            raise ApiError(
                400, CODE_VALIDATION, f"a batch holds 1 to {MAX_BATCH} instances, not {len(body)}"
            )
        creations = [_creation(item) for item in body]
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
        return JSONResponse(envelope(result))

    # GET .../instances
    async def list_instances(self, request: Request) -> Response:
        workflow = self._workflow(request)
        if "cursor" in request.query_params and "page" in request.query_params:
            raise ApiError(400, CODE_VALIDATION, "cursor and page are mutually exclusive")
        per_page = _int_param(request, "per_page", DEFAULT_INSTANCES_PER_PAGE, 1, MAX_PER_PAGE)
        page = _int_param(request, "page", 1, 1, 1_000_000)
        direction = _choice_param(request, "direction", ("asc", "desc"), "desc")
        status = request.query_params.get("status")
        if status is not None and status not in INSTANCE_STATUSES:
            raise ApiError(
                400, CODE_VALIDATION, f"status must be one of {', '.join(INSTANCE_STATUSES)}"
            )
        date_start = _date_param(request, "date_start")
        date_end = _date_param(request, "date_end")
        cursor = request.query_params.get("cursor") or None
        after: str | None = None
        if cursor is not None:
            direction, after = _decode_cursor(cursor)

        statuses = None
        if status is not None:
            parsed = RunStatus.parse(status)
            statuses = {parsed} if parsed is not RunStatus.UNKNOWN else None
        runs = await self._all_runs(workflow.id, statuses) if statuses or status is None else []
        if status is not None:
            runs = [r for r in runs if _instance_status(r) == status]
        if date_start is not None:
            runs = [r for r in runs if r.created_at is not None and r.created_at >= date_start]
        if date_end is not None:
            runs = [r for r in runs if r.created_at is not None and r.created_at <= date_end]
        if direction == "asc":
            runs.reverse()

        if after is not None:
            ids = [r.instance_id for r in runs]
            start = ids.index(after) + 1 if after in ids else len(runs)
        else:
            start = (page - 1) * per_page
        chunk = runs[start : start + per_page]
        info: dict[str, JSON] = {
            "count": len(chunk),
            "per_page": per_page,
            "total_count": len(runs),
        }
        if "page" in request.query_params:
            info["page"] = page
            info["total_pages"] = max(1, -(-len(runs) // per_page))
        elif start + per_page < len(runs) and chunk:
            info["cursor"] = _encode_cursor(direction, chunk[-1].instance_id)
        result = [self.shapes.list_item(r) for r in chunk]
        return JSONResponse(envelope(result, result_info=info))

    # GET .../instances/{instance_id}
    async def get_instance(self, request: Request) -> Response:
        workflow = self._workflow(request)
        simple = _choice_param(request, "simple", ("true", "false"), "false") == "true"
        order = _choice_param(request, "order", ("asc", "desc"), "asc")
        run = await self.engine.get_run(workflow.id, request.path_params["instance_id"])
        return JSONResponse(envelope(self.shapes.instance(run, simple=simple, order=order)))

    # PATCH .../instances/{instance_id}/status
    async def change_status(self, request: Request) -> Response:
        workflow = self._workflow(request)
        instance_id = request.path_params["instance_id"]
        _, body = await _json_body(request, limit=MIB)
        if not isinstance(body, dict) or body.get("status") not in STATUS_ACTIONS:
            raise ApiError(
                400, CODE_VALIDATION, f"status must be one of {', '.join(STATUS_ACTIONS)}"
            )
        action = body["status"]
        if action == "restart" and body.get("from") is not None:
            raise ApiError(
                400, CODE_VALIDATION, "restart from a given step is not supported by this engine"
            )
        if action == "terminate" and not isinstance(body.get("rollback", False), bool):
            raise ApiError(400, CODE_VALIDATION, "rollback must be a boolean")
        current = await self.engine.get_run(workflow.id, instance_id)
        self._check_transition(action, current)
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
        result = {"status": _instance_status(run), "timestamp": timestamp(datetime.now(UTC))}
        return JSONResponse(envelope(result))

    @staticmethod
    def _check_transition(action: str, run: Run) -> None:
        if action in ("pause", "resume", "terminate") and run.is_terminal:
            raise ApiError(
                409,
                CODE_CONFLICT,
                f"cannot {action} instance {run.instance_id!r}: it is {_instance_status(run)}",
            )

    # POST .../instances/{instance_id}/events/{event_type}
    async def send_event(self, request: Request) -> Response:
        workflow = self._workflow(request)
        instance_id = request.path_params["instance_id"]
        event_type = request.path_params["event_type"]
        if not 1 <= len(event_type) <= 100:
            raise ApiError(400, CODE_VALIDATION, "event_type must be 1 to 100 characters")
        _, payload = await _json_body(request, limit=self.max_event_payload_bytes)
        run = await self.engine.send_event(
            workflow.id, instance_id, event_type=event_type, payload=payload
        )
        result = {"instanceId": run.instance_id, "timestamp": timestamp(datetime.now(UTC))}
        return JSONResponse(envelope(result))

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
        step = next((s for s in run.steps or () if s.name == name and _step_type(s) == kind), None)
        if step is None:
            raise ApiError(404, CODE_NOT_FOUND, STEP_NOT_FOUND)
        status = _step_api_status(step)
        error = _error_object(step.error) if status == "errored" else None
        output: JSON = step.output if status == "complete" else None
        if attempt_raw is not None:
            attempt = _int_param(request, "attempt", 1, 1, max(1, step.attempts))
            if attempt < step.attempts:
                status, error, output = (
                    "errored",
                    _error_object(step.error or "attempt failed"),
                    None,
                )
        result: dict[str, JSON] = {"status": status, "error": error}
        if output is not None:
            result["output"] = output
        if kind == "waitForEvent":
            event_type = self.shapes.event_type(workflow.id, step.name)
            if event_type is not None:
                result["event_type"] = event_type
        return JSONResponse(envelope(result))


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
