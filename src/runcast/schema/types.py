"""The GraphQL object types, enums and scalars of the public contract (design.md section 2).

The enums are the model enums (``runcast.models``), declared to Strawberry here. The
object types are views over the models: a resolver returns the model itself
(``graphql_type=`` names the GraphQL type) and Strawberry reads each field from it by
name, so nothing is copied or converted. Fields the model has not (``Run.id``,
``Run.workflow``, ``Workflow.runs``, ``Workflow.run``) have resolvers that take the
model as their ``root``; the ones that need the upstream go through ``runcast.resolvers``.
"""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from runcast import models, resolvers
from runcast.live import RunChange
from runcast.models import RunStatus, RunWaitReason, WorkflowKind
from runcast.resolvers import GraphQLContext
from runcast.schema.node import Node

Info = strawberry.Info[GraphQLContext, None]

strawberry.enum(
    RunStatus, description="The status of a run; UNKNOWN for anything an upstream adds later."
)
strawberry.enum(
    WorkflowKind, description="A WORKFLOW has runs; a SCRIPT is a Worker called by its URL."
)
strawberry.enum(RunWaitReason, description="Why a suspended run is not executing.")


def _is(model: type) -> Any:
    """An ``is_type_of`` that knows the view's model (for the ``Node`` interface)."""
    return classmethod(lambda cls, obj, info: isinstance(obj, model))


@strawberry.type(description="What a suspended run waits for.")
class RunWait:
    reason: RunWaitReason
    event_type: str | None = strawberry.field(
        description="For EVENT: the event type the run waits for."
    )
    until: datetime | None = strawberry.field(
        description="When the run resumes by itself (a sleep's end, a retry, a wait's timeout)."
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


def _run_id(root: strawberry.Parent[models.Run]) -> strawberry.ID:
    return strawberry.ID(resolvers.run_node_id(root.workflow_id, root.instance_id))


async def _run_workflow(root: strawberry.Parent[models.Run], info: Info) -> models.Workflow | None:
    return await resolvers.workflow_of(info.context, root.workflow_id)


@strawberry.type(description="One execution of a workflow, named by its instanceId.")
class Run(Node):
    id: strawberry.ID = strawberry.field(
        resolver=_run_id, description="Opaque and stable: the same object always has the same id."
    )
    instance_id: strawberry.ID
    workflow_id: strawberry.ID
    workflow: models.Workflow | None = strawberry.field(
        resolver=_run_workflow,
        graphql_type=Annotated["Workflow", strawberry.lazy("runcast.schema.types")] | None,
        description="The workflow this run belongs to.",
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
        description="The version of the workflow definition this run executes"
        " (it keeps it when the definition changes); null where the upstream does not tell.",
    )
    wait: RunWait | None = strawberry.field(
        description="What a suspended (PAUSED or WAITING) run waits for; null otherwise"
        " and where the upstream does not tell.",
    )

    is_type_of = _is(models.Run)


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="A run and the cursor that points just after it.")
class RunEdge:
    cursor: str
    node: models.Run = strawberry.field(graphql_type=Run)


def _edges(root: strawberry.Parent[resolvers.RunSlice]) -> list[RunEdge]:
    return [RunEdge(cursor=cursor, node=run) for cursor, run in root.edges]


def _page_info(root: strawberry.Parent[resolvers.RunSlice]) -> resolvers.RunSlice:
    return root


@strawberry.type(description="A Relay cursor connection of runs, newest first.")
class RunConnection:
    edges: list[RunEdge] = strawberry.field(resolver=_edges)
    page_info: resolvers.RunSlice = strawberry.field(resolver=_page_info, graphql_type=PageInfo)


async def _workflow_runs(
    root: strawberry.Parent[models.Workflow],
    info: Info,
    status: list[RunStatus] | None = strawberry.UNSET,
    first: int | None = 20,
    after: str | None = strawberry.UNSET,
) -> resolvers.RunSlice:
    return await resolvers.list_runs(
        info.context,
        root,
        statuses=status or None,
        first=20 if first is None else first,
        after=after or None,
    )


async def _workflow_run(
    root: strawberry.Parent[models.Workflow], info: Info, instance_id: strawberry.ID
) -> models.Run | None:
    if root.kind is WorkflowKind.SCRIPT:
        return None
    return await resolvers.find_run(info.context, root.id, str(instance_id))


@strawberry.type(description="A deployed workflow, or a script (a Worker called by URL).")
class Workflow(Node):
    id: strawberry.ID = strawberry.field(description="The workflow's own id (its node id too).")
    name: str
    kind: WorkflowKind
    url: str | None = strawberry.field(
        description="For scripts: the deployed Worker URL to call instead of triggering."
    )
    version: str | None = strawberry.field(
        description="The current version of the definition (new runs start on it);"
        " null where the upstream does not tell.",
    )
    input_schema: JSON | None = strawberry.field(
        description="The JSON Schema a run's input must match (build a form from it); "
        "null when the workflow declares none.",
    )
    schedule: str | None = strawberry.field(
        description="The cron expression (UTC) that triggers runs, if any."
    )
    next_scheduled_at: datetime | None = strawberry.field(
        description="When the schedule triggers its next run."
    )
    runs: resolvers.RunSlice = strawberry.field(
        resolver=_workflow_runs,
        graphql_type=RunConnection,
        description="Runs of this workflow, newest first (at most 100 per page).",
    )
    run: models.Run | None = strawberry.field(
        resolver=_workflow_run,
        graphql_type=Run | None,
        description="One run of this workflow; null when unknown.",
    )

    is_type_of = _is(models.Workflow)


def _status(root: strawberry.Parent[RunChange]) -> RunStatus:
    return root.run.status


@strawberry.type(description="A run as observed by a subscription, with its status change.")
class RunStatusUpdate:
    run: Run = strawberry.field(description="The run as observed.")
    status: RunStatus = strawberry.field(resolver=_status)
    previous_status: RunStatus | None = strawberry.field(
        description="The status before this change; null on the first message."
    )
    observed_at: datetime


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
    "RunWait",
    "RunWaitReason",
    "Step",
    "Workflow",
    "WorkflowKind",
]
