"""The root ``Mutation`` type: trigger and steer runs; each returns the run the upstream left."""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import strawberry
from strawberry.scalars import JSON

from runcast import models, resolvers
from runcast.resolvers import GraphQLContext
from runcast.schema.types import Info, Run

RunAction = Callable[[GraphQLContext, str, str], Awaitable[object]]
"""A resolver that acts on the run a workflow id and an instance id name."""


def _value(argument: object) -> models.JSON:
    return None if argument is strawberry.UNSET else argument


def _on_run(action: RunAction, graphql_type: object, description: str) -> Any:
    """A mutation ``(workflowId: ID!, instanceId: ID!)`` that calls ``action``."""

    async def mutate(info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID) -> Any:
        return await action(info.context, str(workflow_id), str(instance_id))

    return strawberry.mutation(resolver=mutate, graphql_type=graphql_type, description=description)


@strawberry.type
class Mutation:
    @strawberry.mutation(
        graphql_type=Run,
        description="Start a run; the upstream names it unless instanceId is given. "
        "Scripts refuse with NOT_TRIGGERABLE.",
    )
    async def trigger_run(
        self,
        info: Info,
        workflow_id: strawberry.ID,
        input: JSON | None = strawberry.UNSET,
        instance_id: strawberry.ID | None = strawberry.UNSET,
    ) -> models.Run:
        return await resolvers.trigger_run(
            info.context,
            str(workflow_id),
            input=_value(input),
            instance_id=None if not instance_id else str(instance_id),
        )

    @strawberry.mutation(
        graphql_type=Run,
        description="Deliver an event to a waiting (or soon waiting) run; "
        "a finished run refuses with RUN_FINISHED.",
    )
    async def send_event(
        self,
        info: Info,
        workflow_id: strawberry.ID,
        instance_id: strawberry.ID,
        event_type: str,
        payload: JSON | None = strawberry.UNSET,
    ) -> models.Run:
        return await resolvers.send_event(
            info.context,
            str(workflow_id),
            str(instance_id),
            event_type=event_type,
            payload=_value(payload),
        )

    terminate_run = _on_run(resolvers.terminate_run, Run, "Stop a run for good.")
    pause_run = _on_run(resolvers.pause_run, Run, "Pause a run at its next node boundary.")
    delete_run = _on_run(
        resolvers.delete_run,
        bool,
        "Delete a finished run (COMPLETE, ERRORED or TERMINATED) for good;"
        " a run that has not finished is refused with BAD_USER_INPUT. True once deleted.",
    )
    resume_run = _on_run(resolvers.resume_run, Run, "Resume a paused run.")

    @strawberry.mutation(
        graphql_type=Run,
        description="Run again under the same instanceId and workflow version: from the"
        " beginning, or from the step fromStep, keeping the results of the steps before it.",
    )
    async def restart_run(
        self,
        info: Info,
        workflow_id: strawberry.ID,
        instance_id: strawberry.ID,
        from_step: str | None = None,
    ) -> models.Run:
        return await resolvers.restart_run(
            info.context, str(workflow_id), str(instance_id), from_step
        )
