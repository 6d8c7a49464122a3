"""Workflow definitions of the embedded engine: the parsed, validated form of a YAML file.

The file format is public (design.md section 4). ``runcast.engine.loader`` turns
files into these values; ``runcast.engine.actions`` executes a step's action.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, TypeAlias

from runcast.models import JSON, Workflow, WorkflowKind

Backoff: TypeAlias = Literal["constant", "linear", "exponential"]
HttpResult: TypeAlias = Literal["body", "full"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def reference(name: str) -> str:
    """The JMESPath expression that reads node ``name`` from the context (quoted if needed)."""
    if _IDENTIFIER.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a failing step is tried again, and how long it waits in between."""

    limit: int = 0
    delay: timedelta = timedelta(seconds=1)
    backoff: Backoff = "constant"

    def delay_before(self, retry: int) -> timedelta:
        """The wait before retry number ``retry`` (1 for the first retry)."""
        if self.backoff == "constant":
            return self.delay
        if self.backoff == "linear":
            return self.delay * retry
        return self.delay * float(2 ** (retry - 1))


@dataclass(frozen=True, slots=True)
class ReturnAction:
    """Build JSON from the run context; strings are JMESPath expressions."""

    value: JSON


@dataclass(frozen=True, slots=True)
class RetryOn:
    """Which failures of an ``http`` step are retried; any other ends the run at once."""

    statuses: frozenset[int] = frozenset({429})
    classes: frozenset[int] = frozenset({5})
    connection: bool = True

    def retries_status(self, status: int) -> bool:
        """Whether a response with HTTP ``status`` is worth another attempt."""
        return status in self.statuses or status // 100 in self.classes


@dataclass(frozen=True, slots=True)
class Secret:
    """A value a workflow reads from an environment variable when an http step runs."""

    name: str
    env: str


@dataclass(frozen=True, slots=True)
class HttpAction:
    """Make a real HTTP request; the result is the response's body (or all of it).

    ``url``, header and query values are templates (``${expression}`` parts);
    strings in ``json`` are expressions, as in ``return``.
    """

    method: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()
    json: JSON = None
    query: tuple[tuple[str, str], ...] = ()
    result: HttpResult = "body"
    retry_on: RetryOn = field(default_factory=RetryOn)
    secrets: tuple[Secret, ...] = ()


@dataclass(frozen=True, slots=True)
class FailAction:
    """Fail the attempt with ``message``; with ``times`` only the first N attempts fail."""

    message: str
    times: int | None = None
    retry: bool = True


@dataclass(frozen=True, slots=True)
class PythonAction:
    """Call an importable callable (``module.path:function``), sync or async, with the context."""

    target: str


Action: TypeAlias = ReturnAction | HttpAction | FailAction | PythonAction


@dataclass(frozen=True, slots=True)
class StepNode:
    """Run an action; its return value is saved as the node's result."""

    name: str
    action: Action
    retries: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: timedelta | None = None
    when: str | None = None
    type: Literal["step"] = "step"


@dataclass(frozen=True, slots=True)
class SleepNode:
    """Suspend the run for ``duration``."""

    name: str
    duration: timedelta
    when: str | None = None
    type: Literal["sleep"] = "sleep"


@dataclass(frozen=True, slots=True)
class SleepUntilNode:
    """Suspend the run until a timestamp: a literal ISO-8601 string or a JMESPath expression."""

    name: str
    until: str
    when: str | None = None
    type: Literal["sleep_until"] = "sleep_until"


@dataclass(frozen=True, slots=True)
class WaitForEventNode:
    """Suspend the run until an event of ``event_type`` arrives (or ``timeout`` passes)."""

    name: str
    event_type: str
    timeout: timedelta | None = None
    when: str | None = None
    type: Literal["wait_for_event"] = "wait_for_event"


Node: TypeAlias = StepNode | SleepNode | SleepUntilNode | WaitForEventNode


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished runs are kept after they end, by terminal status.

    ``None`` for a status means "as the engine's default says".
    """

    complete: timedelta | None = None
    errored: timedelta | None = None
    terminated: timedelta | None = None

    def over(self, default: Retention) -> Retention:
        """This retention, with ``default``'s period wherever this one has none."""
        return Retention(
            complete=self.complete if self.complete is not None else default.complete,
            errored=self.errored if self.errored is not None else default.errored,
            terminated=self.terminated if self.terminated is not None else default.terminated,
        )


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """One workflow (with nodes) or script (with a URL), as loaded from ``source``."""

    id: str
    name: str
    kind: WorkflowKind = WorkflowKind.WORKFLOW
    url: str | None = None
    nodes: tuple[Node, ...] = ()
    source: Path | None = None
    retention: Retention | None = None
    """How long this workflow's finished runs are kept (``retention:`` in the file)."""
    secrets: tuple[Secret, ...] = ()
    input_schema: JSON = None
    schedule: str | None = None
    schedule_input: JSON = None

    def describe(self) -> Workflow:
        """The public description of this definition."""
        return Workflow(
            id=self.id,
            name=self.name,
            kind=self.kind,
            url=self.url,
            input_schema=self.input_schema,
            schedule=self.schedule,
        )

    @property
    def event_types(self) -> tuple[str, ...]:
        """The event types its ``wait_for_event`` nodes wait for, in node order, once each."""
        found = (node.event_type for node in self.nodes if isinstance(node, WaitForEventNode))
        return tuple(dict.fromkeys(found))

    def node(self, name: str) -> Node:
        """The node called ``name``; raises ``KeyError``."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)
