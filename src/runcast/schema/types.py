"""The GraphQL object types, enums and scalars of the public contract (design.md section 2).

Each type is built from a model with ``from_model``; fields that need the upstream
(``Workflow.runs``, ``Workflow.run``, ``Run.workflow``) resolve through
``runcast.resolvers`` with the request's context.
"""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import enum
from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from runcast import models, resolvers
from runcast.resolvers import GraphQLContext
from runcast.schema.node import Node

Info = strawberry.Info[GraphQLContext, None]


@strawberry.enum(description="The status of a run; UNKNOWN for anything an upstream adds later.")
class RunStatus(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    WAITING = "waiting"
    WAITING_FOR_PAUSE = "waitingForPause"
    ERRORED = "errored"
    TERMINATED = "terminated"
    COMPLETE = "complete"
    UNKNOWN = "unknown"

    @classmethod
    def from_model(cls, status: models.RunStatus) -> RunStatus:
        """The GraphQL value of a model status."""
        return cls[status.name]

    def to_model(self) -> models.RunStatus:
        """The model status of this GraphQL value."""
        return models.RunStatus[self.name]


@strawberry.enum(description="A WORKFLOW has runs; a SCRIPT is a Worker called by its URL.")
class WorkflowKind(enum.Enum):
    WORKFLOW = "workflow"
    SCRIPT = "script"


@strawberry.enum(description="Why a suspended run is not executing.")
class RunWaitReason(enum.Enum):
    SLEEP = "sleep"
    EVENT = "event"
    RETRY = "retry"
    REQUESTED_PAUSE = "requestedPause"


@strawberry.type(description="What a suspended run waits for.")
class RunWait:
    reason: RunWaitReason
    event_type: str | None = strawberry.field(
        description="For EVENT: the event type the run waits for."
    )
    until: datetime | None = strawberry.field(
        description="When the run resumes by itself (a sleep's end, a retry, a wait's timeout)."
    )

    @classmethod
    def from_model(cls, wait: models.RunWait | None) -> RunWait | None:
        """Render a model wait."""
        if wait is None:
            return None
        return cls(
            reason=RunWaitReason[wait.reason.name], event_type=wait.event_type, until=wait.until
        )


@strawberry.type(description="One node of a run as executed so far.")
class Step:
    name: str
    type: str
    status: str
    attempts: int
    output: JSON | None
    error: str | None
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def from_model(cls, step: models.Step) -> Step:
        """Render a model step."""
        return cls(
            name=step.name,
            type=step.type,
            status=step.status,
            attempts=step.attempts,
            output=step.output,
            error=step.error,
            started_at=step.started_at,
            ended_at=step.ended_at,
        )


async def _run_workflow(root: Run, info: Info) -> Workflow | None:
    found = await resolvers.workflow_of(info.context, str(root.workflow_id))
    return None if found is None else Workflow.from_model(found)


@strawberry.type(description="One execution of a workflow, named by its instanceId.")
class Run(Node):
    instance_id: strawberry.ID
    workflow_id: strawberry.ID
    workflow: Workflow | None = strawberry.field(
        resolver=_run_workflow, description="The workflow this run belongs to."
    )
    status: RunStatus
    raw_status: str = strawberry.field(description="Exactly what the upstream said.")
    is_terminal: bool = strawberry.field(
        description="Whether the run has finished for good (ERRORED, TERMINATED or COMPLETE)."
    )
    input: JSON | None
    output: JSON | None = strawberry.field(
        description="When COMPLETE: the return value of the last step."
    )
    error: str | None = strawberry.field(description="When ERRORED: the failing step's message.")
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    steps: list[Step] | None = strawberry.field(
        description="The steps so far; null where the upstream does not expose steps."
    )
    workflow_version: str | None = strawberry.field(
        default=None,
        description="The version of the workflow definition this run executes"
        " (it keeps it when the definition changes); null where the upstream does not tell.",
    )
    wait: RunWait | None = strawberry.field(
        default=None,
        description="What a suspended (PAUSED or WAITING) run waits for; null otherwise"
        " and where the upstream does not tell.",
    )

    @classmethod
    def from_model(cls, run: models.Run) -> Run:
        """Render a model run."""
        return cls(
            id=strawberry.ID(resolvers.run_node_id(run.workflow_id, run.instance_id)),
            instance_id=strawberry.ID(run.instance_id),
            workflow_id=strawberry.ID(run.workflow_id),
            status=RunStatus.from_model(run.status),
            raw_status=run.raw_status,
            is_terminal=run.is_terminal,
            input=run.input,
            output=run.output,
            error=run.error,
            created_at=run.created_at,
            started_at=run.started_at,
            ended_at=run.ended_at,
            steps=None if run.steps is None else [Step.from_model(s) for s in run.steps],
            workflow_version=run.workflow_version,
            wait=RunWait.from_model(run.wait),
        )


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A run and the cursor that points just after it.")
class RunEdge:
    cursor: str
    node: Run


@strawberry.type(description="A Relay cursor connection of runs, newest first.")
class RunConnection:
    edges: list[RunEdge]
    page_info: PageInfo

    @classmethod
    def from_slice(cls, runs: resolvers.RunSlice) -> RunConnection:
        """Render a slice of runs."""
        return cls(
            edges=[RunEdge(cursor=cursor, node=Run.from_model(run)) for cursor, run in runs.edges],
            page_info=PageInfo(has_next_page=runs.has_next_page, end_cursor=runs.end_cursor),
        )


@strawberry.type(description="A deployed workflow, or a script (a Worker called by URL).")
class Workflow(Node):
    id: strawberry.ID = strawberry.field(description="The workflow's own id (its node id too).")
    name: str
    kind: WorkflowKind
    url: str | None = strawberry.field(
        description="For scripts: the deployed Worker URL to call instead of triggering."
    )
    version: str | None = strawberry.field(
        default=None,
        description="The current version of the definition (new runs start on it);"
        " null where the upstream does not tell.",
    )
    input_schema: JSON | None = strawberry.field(
        default=None,
        description="The JSON Schema a run's input must match (build a form from it); "
        "null when the workflow declares none.",
    )
    schedule: str | None = strawberry.field(
        default=None, description="The cron expression (UTC) that triggers runs, if any."
    )
    next_scheduled_at: datetime | None = strawberry.field(
        default=None, description="When the schedule triggers its next run."
    )

    @strawberry.field(description="Runs of this workflow, newest first (at most 100 per page).")
    async def runs(
        self,
        info: Info,
        status: list[RunStatus] | None = strawberry.UNSET,
        first: int | None = 20,
        after: str | None = strawberry.UNSET,
    ) -> RunConnection:
        runs = await resolvers.list_runs(
            info.context,
            self._model(),
            statuses=None if not status else [s.to_model() for s in status],
            first=20 if first is None else first,
            after=after or None,
        )
        return RunConnection.from_slice(runs)

    @strawberry.field(description="One run of this workflow; null when unknown.")
    async def run(self, info: Info, instance_id: strawberry.ID) -> Run | None:
        if self.kind is WorkflowKind.SCRIPT:
            return None
        found = await resolvers.find_run(info.context, str(self.id), str(instance_id))
        return None if found is None else Run.from_model(found)

    def _model(self) -> models.Workflow:
        return models.Workflow(
            id=str(self.id),
            name=self.name,
            kind=models.WorkflowKind[self.kind.name],
            url=self.url,
            version=self.version,
        )

    @classmethod
    def from_model(cls, workflow: models.Workflow) -> Workflow:
        """Render a model workflow."""
        return cls(
            id=strawberry.ID(workflow.id),
            name=workflow.name,
            kind=WorkflowKind[workflow.kind.name],
            url=workflow.url,
            version=workflow.version,
            input_schema=workflow.input_schema,
            schedule=workflow.schedule,
            next_scheduled_at=workflow.next_scheduled_at,
        )


@strawberry.type(description="A run as observed by a subscription, with its status change.")
class RunStatusUpdate:
    run: Run = strawberry.field(description="The run as observed.")
    status: RunStatus
    previous_status: RunStatus | None = strawberry.field(
        description="The status before this change; null on the first message."
    )
    observed_at: datetime

    @classmethod
    def from_run(
        cls,
        run: models.Run,
        *,
        previous_status: models.RunStatus | None,
        observed_at: datetime,
    ) -> RunStatusUpdate:
        """Render an observed change of ``run``."""
        return cls(
            run=Run.from_model(run),
            status=RunStatus.from_model(run.status),
            previous_status=None
            if previous_status is None
            else RunStatus.from_model(previous_status),
            observed_at=observed_at,
        )


__all__ = [
    "JSON",
    "Info",
    "Node",
    "PageInfo",
    "Run",
    "RunConnection",
    "RunEdge",
    "RunStatus",
    "RunStatusUpdate",
    "Step",
    "Workflow",
    "WorkflowKind",
]
