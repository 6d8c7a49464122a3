"""The resolvers: arguments in, validation, one upstream call, models out.

Each function takes the request's ``GraphQLContext`` and returns plain models;
the schema layer renders them and maps ``runcast.errors`` to GraphQL codes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runcast import models
from runcast.errors import BadUserInput, RunNotFound, WorkflowNotFound
from runcast.resolvers._context import GraphQLContext
from runcast.resolvers._pagination import RunSlice, decode_cursor, slice_page
from runcast.resolvers._validation import (
    MAX_PAGE_SIZE,
    check_event_type,
    check_id,
    check_page_size,
    check_payload_size,
)

logger = logging.getLogger("runcast.graphql")


async def list_workflows(context: GraphQLContext) -> list[models.Workflow]:
    """Every workflow the caller can see (and remember them for later lookups)."""
    workflows = await context.upstream.list_workflows(credentials=context.credentials)
    context.loaders.prime_workflows(workflows)
    return workflows


async def find_workflow(context: GraphQLContext, workflow_id: str) -> models.Workflow | None:
    """The workflow named ``workflow_id``, or ``None`` when unknown (batched per request)."""
    check_id(workflow_id, argument="id")
    return await context.loaders.workflow.load(workflow_id)


async def workflow_of(context: GraphQLContext, workflow_id: str) -> models.Workflow | None:
    """The workflow of a run already fetched (batched per request, no id check)."""
    return await context.loaders.workflow.load(workflow_id)


async def find_run(
    context: GraphQLContext, workflow_id: str, instance_id: str
) -> models.Run | None:
    """One run with its steps, or ``None`` when the workflow or the run is unknown."""
    check_id(workflow_id, argument="workflowId")
    check_id(instance_id, argument="instanceId")
    try:
        return await context.upstream.get_run(
            workflow_id, instance_id, credentials=context.credentials
        )
    except (RunNotFound, WorkflowNotFound):
        return None


async def list_runs(
    context: GraphQLContext,
    workflow: models.Workflow,
    *,
    statuses: Sequence[models.RunStatus] | None,
    first: int,
    after: str | None,
) -> RunSlice:
    """A Relay slice of the runs of ``workflow``, newest first; scripts have none."""
    check_page_size(first)
    start = decode_cursor(after)
    if workflow.kind is models.WorkflowKind.SCRIPT:
        return RunSlice((), False)
    page = await context.upstream.list_runs(
        workflow.id,
        statuses=None if statuses is None else frozenset(statuses),
        cursor=start.page_cursor,
        limit=min(start.skip + max(first, 1), MAX_PAGE_SIZE),
        credentials=context.credentials,
    )
    return slice_page(page.runs, page.next_cursor, start=start, first=first)


async def trigger_run(
    context: GraphQLContext,
    workflow_id: str,
    *,
    input: models.JSON,
    instance_id: str | None,
) -> models.Run:
    """Create a run; scripts refuse with ``NotTriggerable`` (from the upstream)."""
    check_id(workflow_id, argument="workflowId")
    if instance_id is not None:
        check_id(instance_id, argument="instanceId")
    run = await context.upstream.trigger(
        workflow_id, input=input, instance_id=instance_id, credentials=context.credentials
    )
    logger.info(
        "run %s of workflow %s triggered (%s)",
        run.instance_id,
        run.workflow_id,
        run.raw_status,
        extra={"run_id": run.instance_id, "workflow_id": run.workflow_id},
    )
    return run


async def send_event(
    context: GraphQLContext,
    workflow_id: str,
    instance_id: str,
    *,
    event_type: str,
    payload: models.JSON,
) -> models.Run:
    """Deliver an event; the payload is checked against ``max_event_payload_bytes`` first."""
    check_id(workflow_id, argument="workflowId")
    check_id(instance_id, argument="instanceId")
    check_event_type(event_type)
    check_payload_size(payload, limit=context.settings.max_event_payload_bytes)
    return await context.upstream.send_event(
        workflow_id,
        instance_id,
        event_type=event_type,
        payload=payload,
        credentials=context.credentials,
    )


async def delete_run(context: GraphQLContext, workflow_id: str, instance_id: str) -> bool:
    """Delete a finished run for good."""
    _check_run_ids(workflow_id, instance_id)
    return await context.upstream.delete_run(
        workflow_id, instance_id, credentials=context.credentials
    )


async def terminate_run(context: GraphQLContext, workflow_id: str, instance_id: str) -> models.Run:
    """Stop a run for good."""
    _check_run_ids(workflow_id, instance_id)
    return await context.upstream.terminate(
        workflow_id, instance_id, credentials=context.credentials
    )


async def pause_run(context: GraphQLContext, workflow_id: str, instance_id: str) -> models.Run:
    """Pause a run at its next node boundary."""
    _check_run_ids(workflow_id, instance_id)
    return await context.upstream.pause(workflow_id, instance_id, credentials=context.credentials)


async def resume_run(context: GraphQLContext, workflow_id: str, instance_id: str) -> models.Run:
    """Resume a paused run."""
    _check_run_ids(workflow_id, instance_id)
    return await context.upstream.resume(workflow_id, instance_id, credentials=context.credentials)


async def restart_run(
    context: GraphQLContext, workflow_id: str, instance_id: str, from_step: str | None = None
) -> models.Run:
    """Run again under the same instance id, from the beginning or from ``from_step``."""
    _check_run_ids(workflow_id, instance_id)
    if from_step is not None and not from_step.strip():
        raise BadUserInput("fromStep must be a step name, not empty")
    return await context.upstream.restart(
        workflow_id, instance_id, credentials=context.credentials, from_step=from_step
    )


def _check_run_ids(workflow_id: str, instance_id: str) -> None:
    check_id(workflow_id, argument="workflowId")
    check_id(instance_id, argument="instanceId")
