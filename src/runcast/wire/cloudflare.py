"""The Cloudflare Workflows REST API (client v4): its request and response shapes, once.

Transcribed from ``shared/reference/cloudflare-workflows-api.md`` (the SDK types and
the API reference): the engine's Cloudflare-compatible server builds these shapes,
the ``cloudflare`` adapter reads them, and the tests check both against a JSON Schema
generated from them (a field not listed here is undocumented, so an error there).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Generic, Literal, NotRequired, TypeVar, get_args

from typing_extensions import TypedDict

from runcast.models import JSON
from runcast.wire._json_schema import DATE_TIME, NOT_EMPTY, UUID

API_PREFIX = "/client/v4"
MAX_PER_PAGE = 100
"""The largest ``per_page`` of the list routes."""
MAX_BATCH = 100
"""The most instances one batch create holds (the Workers binding's limit)."""
RESERVED_ID_PATTERN = re.compile(r"^cf_[0-9a-f]{64}$")
"""Instance ids kept for system-generated instances."""
NO_ROUTE_CODES = frozenset({7000, 7003})
"""Cloudflare's "no route for that URI" codes: a wrong base URL or account, not a missing run."""

Timestamp = Annotated[str, DATE_TIME]
Uuid = Annotated[str, UUID]
Number = int | float

InstanceStatus = Literal[
    "queued",
    "running",
    "paused",
    "errored",
    "terminated",
    "complete",
    "waitingForPause",
    "waiting",
    "rollingBack",
]
INSTANCE_STATUSES: tuple[InstanceStatus, ...] = get_args(InstanceStatus)
"""Cloudflare's ``InstanceStatus`` values, in the order the SDK lists them."""

TriggerSource = Literal["unknown", "api", "binding", "event", "cron"]
StatusAction = Literal["pause", "resume", "terminate", "restart"]
STATUS_ACTIONS: tuple[StatusAction, ...] = get_args(StatusAction)


# --- envelope -------------------------------------------------------------------------


class Message(TypedDict):
    """One entry of an envelope's ``errors`` or ``messages``."""

    code: int
    message: str


class ResultInfo(TypedDict):
    """The paging information of a list route."""

    count: int
    per_page: int
    total_count: int
    cursor: NotRequired[str]
    page: NotRequired[int]
    total_pages: NotRequired[int]


ResultT = TypeVar("ResultT")


class Success(TypedDict, Generic[ResultT]):
    """The success envelope of a route that lists nothing."""

    success: Literal[True]
    errors: list[Message]
    messages: list[Message]
    result: ResultT


class Listing(TypedDict, Generic[ResultT]):
    """The success envelope of a list route."""

    success: Literal[True]
    errors: list[Message]
    messages: list[Message]
    result: ResultT
    result_info: ResultInfo


class Failure(TypedDict):
    """The failure envelope (at least one error)."""

    success: Literal[False]
    errors: Annotated[list[Message], NOT_EMPTY]
    messages: list[Message]
    result: None


def success(result: ResultT) -> Success[ResultT]:
    """The success envelope around ``result``."""
    return {"success": True, "errors": [], "messages": [], "result": result}


def listing(result: ResultT, info: ResultInfo) -> Listing[ResultT]:
    """The success envelope of a list route around ``result``."""
    return {"success": True, "errors": [], "messages": [], "result": result, "result_info": info}


def failure(code: int, message: str) -> Failure:
    """The failure envelope with one error."""
    return {
        "success": False,
        "errors": [{"code": code, "message": message}],
        "messages": [],
        "result": None,
    }


# --- workflows and instances ----------------------------------------------------------


class InstanceCounts(TypedDict, total=False):
    """A workflow's instances counted per status (a status without instances is left out)."""

    queued: int
    running: int
    paused: int
    errored: int
    terminated: int
    complete: int
    waitingForPause: int
    waiting: int
    rollingBack: int


class WorkflowSchedule(TypedDict):
    """A cron trigger of a workflow."""

    cron: str
    next_instance: Timestamp


class Workflow(TypedDict):
    """A workflow of list-workflows and get-workflow."""

    id: Uuid
    name: str
    class_name: str
    script_name: str
    created_on: Timestamp
    modified_on: Timestamp
    triggered_on: Timestamp | None
    instances: InstanceCounts
    schedules: NotRequired[list[WorkflowSchedule]]


class Created(TypedDict):
    """The result of create (and each item of batch create)."""

    id: str
    status: InstanceStatus
    version_id: Uuid
    workflow_id: Uuid
    trigger_source: NotRequired[TriggerSource]


class ListItem(TypedDict):
    """An item of list-instances (no params, output, error or steps)."""

    id: str
    status: InstanceStatus
    created_on: Timestamp
    modified_on: Timestamp
    started_on: Timestamp | None
    ended_on: Timestamp | None
    version_id: Uuid
    workflow_id: Uuid
    trigger_source: NotRequired[TriggerSource]


class Error(TypedDict):
    """An error of an instance, a step or an attempt."""

    name: str
    message: str


class Attempt(TypedDict):
    """One attempt of a ``step``."""

    start: Timestamp
    end: Timestamp | None
    success: bool | None
    error: Error | None


class Retries(TypedDict):
    """A step's retry policy (``delay`` ``"[dynamic]"`` when computed at run time)."""

    limit: Number
    delay: str | Number
    backoff: NotRequired[Literal["constant", "linear", "exponential"]]


class StepConfig(TypedDict):
    """A step's configuration."""

    retries: Retries
    timeout: str | Number
    sensitive: NotRequired[Literal["output"]]


class TaskStep(TypedDict):
    """A ``step`` (or ``rollback``) entry of ``steps``; ``output`` is JSON text."""

    type: Literal["step", "rollback"]
    name: str
    start: Timestamp
    end: Timestamp | None
    success: bool | None
    output: str | None
    attempts: list[Attempt]
    config: StepConfig


class SleepStep(TypedDict):
    """A ``sleep`` entry of ``steps``."""

    type: Literal["sleep"]
    name: str
    start: Timestamp
    end: Timestamp
    finished: bool
    error: Error | None


class WaitStep(TypedDict):
    """A ``waitForEvent`` entry of ``steps``; ``output`` is the event payload as JSON text."""

    type: Literal["waitForEvent"]
    name: str
    start: Timestamp
    end: Timestamp
    finished: bool
    error: Error | None
    output: NotRequired[str]
    event_type: NotRequired[str]


class StepTrigger(TypedDict):
    """Who terminated an instance."""

    source: str


class TerminationStep(TypedDict):
    """The ``termination`` entry of ``steps``."""

    type: Literal["termination"]
    trigger: StepTrigger


InstanceStep = TaskStep | SleepStep | WaitStep | TerminationStep


class Trigger(TypedDict):
    """What created an instance."""

    source: TriggerSource


class Rollback(TypedDict):
    """How an instance's rollback ended."""

    outcome: Literal["complete", "failed"]
    error: Error | None


class InstanceSchedule(TypedDict):
    """The cron run an instance belongs to."""

    cron: str
    scheduledTime: Number


class Instance(TypedDict):
    """The result of get-instance (``steps`` left out with ``simple=true``)."""

    status: InstanceStatus
    queued: Timestamp
    start: Timestamp | None
    end: Timestamp | None
    success: bool | None
    error: Error | None
    output: str | Number
    params: JSON
    trigger: Trigger
    versionId: Uuid
    step_count: int
    steps: NotRequired[list[InstanceStep]]
    rollback: NotRequired[Rollback | None]
    schedule: NotRequired[InstanceSchedule]


class StepResult(TypedDict):
    """The result of get-step-output (``output`` untruncated, when complete)."""

    status: InstanceStatus
    error: Error | None
    output: NotRequired[JSON]
    event_type: NotRequired[str]


class StatusResult(TypedDict):
    """The result of change-status."""

    status: InstanceStatus
    timestamp: Timestamp


class EventResult(TypedDict):
    """The result of send-event."""

    instanceId: str
    timestamp: Timestamp


# --- requests -------------------------------------------------------------------------


class CreateRequest(TypedDict, total=False):
    """The body of create (and each item of a batch create's array)."""

    instance_id: str
    params: JSON


class RestartFrom(TypedDict):
    name: str
    count: NotRequired[int]
    type: NotRequired[str]


"""Where a restart starts: the step ``name`` (its ``count``-th run, of ``type``)."""

StatusChange = TypedDict(
    "StatusChange",
    {"status": StatusAction, "rollback": NotRequired[bool], "from": NotRequired[RestartFrom]},
)
"""The body of change-status."""


# --- encodings ------------------------------------------------------------------------


def encode_params(value: JSON) -> JSON:
    """``params`` as sent: a string JSON-encoded, any other JSON as it is."""
    return json.dumps(value) if isinstance(value, str) else value


def decode_json_text(value: JSON) -> JSON:
    """A string that holds JSON as that JSON; other strings and values unchanged.

    How ``params`` (and ``output``) sent as JSON text are read back.
    """
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
