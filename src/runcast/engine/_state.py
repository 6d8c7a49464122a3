"""The hot, in-memory state of the engine's unfinished runs, and its rows in SQLite.

A ``RunState`` is mutated only on the event loop, always together with queueing
the write that records the change (see ``_executor``), so the file converges to
memory in the same order the changes happened.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runcast.engine._rows import RunRow, StepRow
from runcast.engine.definitions import WaitForEventNode, WorkflowDefinition
from runcast.limits import compact_json
from runcast.models import JSON, Run, RunStatus, RunWait, RunWaitReason, Step

__all__ = [
    "STEP_COMPLETE",
    "STEP_ERRORED",
    "STEP_RETRYING",
    "STEP_RUNNING",
    "STEP_SKIPPED",
    "STEP_SUSPENDED",
    "STEP_TERMINATED",
    "RunState",
    "StepState",
    "decode",
    "encode",
    "moment",
    "run_from_rows",
    "wait_of",
]

# Step statuses use the run vocabulary: what the run was doing at that node.
STEP_RUNNING = "running"
STEP_RETRYING = "waiting"
STEP_SUSPENDED = "paused"
STEP_COMPLETE = "complete"
STEP_ERRORED = "errored"
STEP_TERMINATED = "terminated"
STEP_SKIPPED = "skipped"
"""A node whose ``when`` was false: it did not run, its result is null."""
_DONE = (STEP_COMPLETE, STEP_SKIPPED)


def encode(value: JSON) -> str:
    """Compact JSON text of ``value``; raises ``TypeError``/``ValueError`` if it is not JSON."""
    return compact_json(value)


def decode(text: str | None) -> JSON:
    """The value of JSON ``text`` (``None`` for SQL NULL)."""
    return None if text is None else json.loads(text)


def moment(timestamp: float | None) -> datetime | None:
    """An aware UTC datetime from a POSIX timestamp."""
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


def wait_of(
    status: RunStatus,
    pause_requested: bool,
    current: StepState | None,
    definition: WorkflowDefinition | None,
) -> RunWait | None:
    """What a run in ``status`` at node ``current`` waits for (``None`` unless suspended)."""
    if status is RunStatus.PAUSED and pause_requested:
        return RunWait(RunWaitReason.REQUESTED_PAUSE)
    if current is None or status not in (RunStatus.PAUSED, RunStatus.WAITING):
        return None
    until = moment(current.wake_at)
    if current.status == STEP_RETRYING:
        return RunWait(RunWaitReason.RETRY, until=until)
    if current.type == "wait_for_event":
        return RunWait(RunWaitReason.EVENT, _event_type(definition, current), until)
    if current.type in ("sleep", "sleep_until"):
        return RunWait(RunWaitReason.SLEEP, until=until)
    return None


def _event_type(definition: WorkflowDefinition | None, step: StepState) -> str | None:
    if definition is None or step.idx >= len(definition.nodes):
        return None
    node = definition.nodes[step.idx]
    if isinstance(node, WaitForEventNode) and node.name == step.name:
        return node.event_type
    return None


@dataclass(slots=True)
class StepState:
    """One entered node of a run."""

    idx: int
    name: str
    type: str
    status: str
    attempts: int = 0
    output: JSON = None
    output_json: str | None = None
    error: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    wake_at: float | None = None

    def params(self, seq: int) -> tuple[Any, ...]:
        """The parameters of ``STEP_UPSERT`` for this step of run ``seq``."""
        return (
            seq,
            self.idx,
            self.name,
            self.type,
            self.status,
            self.attempts,
            self.output_json,
            self.error,
            self.started_at,
            self.ended_at,
            self.wake_at,
        )

    def to_model(self) -> Step:
        """The public ``Step``."""
        return Step(
            name=self.name,
            type=self.type,
            status=self.status,
            attempts=self.attempts,
            output=self.output,
            error=self.error,
            started_at=moment(self.started_at),
            ended_at=moment(self.ended_at),
        )

    @classmethod
    def from_row(cls, row: StepRow) -> StepState:
        """The state a stored ``steps`` row describes."""
        _, idx, name, kind, status, attempts, output, error, started, ended, wake = row
        return cls(
            idx, name, kind, status, attempts, decode(output), output, error, started, ended, wake
        )


@dataclass(slots=True, eq=False)
class RunState:
    """An unfinished run: everything its task and the commands need, without a read."""

    definition: WorkflowDefinition
    seq: int
    instance_id: str
    status: RunStatus
    input: JSON
    input_json: str | None
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    output: JSON = None
    output_json: str | None = None
    error: str | None = None
    pause_requested: bool = False
    queue_seq: int | None = None
    """Its place in the slot queue: a new, higher number each time it (re)enters it."""
    version: str = ""
    """The workflow version ``definition`` is (the one the run was triggered on)."""
    steps: list[StepState] = field(default_factory=list)
    context: dict[str, JSON] = field(default_factory=dict)
    last_result: tuple[JSON, str | None] = (None, None)
    events: dict[str, deque[int]] = field(default_factory=dict)
    """Ids of undelivered events by type, oldest first; their payloads stay in the file."""
    task: asyncio.Task[None] | None = None
    holds_slot: bool = False
    in_step: bool = False
    slot_waiter: asyncio.Future[bool] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    notified: tuple[RunStatus, str | None, str | None] | None = None
    written_row: tuple[Any, ...] | None = None

    @property
    def workflow_id(self) -> str:
        """The id of the run's workflow."""
        return self.definition.id

    @property
    def key(self) -> tuple[str, str]:
        """``(workflow_id, instance_id)``."""
        return (self.definition.id, self.instance_id)

    @property
    def node_index(self) -> int:
        """The index of the node the run is at (entered or not)."""
        steps = self.steps
        if steps and steps[-1].status not in _DONE:
            return len(steps) - 1
        return len(steps)

    @property
    def current_step(self) -> StepState | None:
        """The entered, unfinished node, if any."""
        steps = self.steps
        if steps and steps[-1].status not in _DONE:
            return steps[-1]
        return None

    def insert_params(self) -> tuple[Any, ...]:
        """The parameters of ``_store.insert_run`` for this new run."""
        return (
            self.definition.id,
            self.instance_id,
            self.status.value,
            self.input_json,
            self.created_at,
            self.started_at,
            self.queue_seq,
            self.version,
        )

    def row_params(self) -> tuple[Any, ...]:
        """The parameters of ``RUN_UPDATE`` for this run."""
        return (
            self.status.value,
            self.output_json,
            self.error,
            self.started_at,
            self.ended_at,
            int(self.pause_requested),
            self.queue_seq,
            self.seq,
        )

    def observable(self) -> tuple[RunStatus, str | None, str | None]:
        """What listeners are told about when it changes."""
        return (self.status, self.output_json, self.error)

    def to_model(self) -> Run:
        """The public ``Run``, with its steps."""
        current = self.current_step
        wake_at = None
        if current is not None and self.status in (RunStatus.PAUSED, RunStatus.WAITING):
            wake_at = moment(current.wake_at)
        return Run(
            workflow_id=self.definition.id,
            instance_id=self.instance_id,
            status=self.status,
            raw_status=self.status.value,
            input=self.input,
            output=self.output,
            error=self.error,
            created_at=moment(self.created_at),
            started_at=moment(self.started_at),
            ended_at=moment(self.ended_at),
            steps=tuple(step.to_model() for step in self.steps),
            wake_at=wake_at,
            workflow_version=self.version or None,
            wait=wait_of(self.status, self.pause_requested, current, self.definition),
        )

    def reset(self, keep: int = 0) -> None:
        """Forget the results of every node from index ``keep`` on, and every pending event.

        The run goes on from node ``keep`` (0: from the beginning); the results of the
        nodes before it stay, and the run's context is rebuilt from them.
        """
        self.steps = self.steps[:keep]
        self.context = {"input": self.input}
        self.last_result = (None, None)
        for step in self.steps:
            self.context[step.name] = step.output
            if step.type == "step":
                self.last_result = (step.output, step.output_json)
        self.events = {}
        self.output = None
        self.output_json = None
        self.error = None
        self.started_at = None
        self.ended_at = None
        self.pause_requested = False

    @classmethod
    def from_rows(
        cls, definition: WorkflowDefinition, row: RunRow, steps: list[StepRow]
    ) -> RunState:
        """The state its stored rows describe (an unfinished run after a restart, or any run)."""
        state = cls(
            definition=definition,
            seq=row.seq,
            instance_id=row.instance_id,
            status=RunStatus.parse(row.status),
            input=decode(row.input),
            input_json=row.input,
            created_at=row.created_at,
            started_at=row.started_at,
            ended_at=row.ended_at,
            output=decode(row.output),
            output_json=row.output,
            error=row.error,
            pause_requested=row.pause_requested,
            queue_seq=row.queue_seq,
            version=row.version or "",
        )
        state.context = {"input": state.input}
        for step_row in steps:
            step = StepState.from_row(step_row)
            if state.current_step is not None:
                break  # rows after an unfinished node cannot be; keep the prefix
            state.steps.append(step)
            if step.status == STEP_SKIPPED:
                state.context[step.name] = None
            if step.status == STEP_COMPLETE:
                state.context[step.name] = step.output
                if step.type == "step":
                    state.last_result = (step.output, step.output_json)
        state.notified = state.observable()
        state.written_row = state.row_params()
        return state


def run_from_rows(
    workflow_id: str,
    row: RunRow,
    steps: list[StepRow],
    definition: WorkflowDefinition | None = None,
) -> Run:
    """The public ``Run`` a stored run describes (for runs not in memory).

    Without its ``definition``, a definition without nodes stands in: the run's wait,
    if any, names no event type.
    """
    if definition is None:
        definition = WorkflowDefinition(id=workflow_id, name=workflow_id)
    return RunState.from_rows(definition, row, steps).to_model()
