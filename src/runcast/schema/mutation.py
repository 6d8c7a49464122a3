"""The root ``Mutation`` type: trigger and steer runs."""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from runcast import models, resolvers
from runcast.schema.types import Info, Run


def _value(argument: object) -> models.JSON:
    return None if argument is strawberry.UNSET else argument


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Start a run; the upstream names it unless instanceId is given. "
        "Scripts refuse with NOT_TRIGGERABLE."
    )
    async def trigger_run(
        self,
        info: Info,
        workflow_id: strawberry.ID,
        input: JSON | None = strawberry.UNSET,
        instance_id: strawberry.ID | None = strawberry.UNSET,
    ) -> Run:
        run = await resolvers.trigger_run(
            info.context,
            str(workflow_id),
            input=_value(input),
            instance_id=None if not instance_id else str(instance_id),
        )
        return Run.from_model(run)

    @strawberry.mutation(
        description="Deliver an event to a waiting (or soon waiting) run; "
        "a finished run refuses with RUN_FINISHED."
    )
    async def send_event(
        self,
        info: Info,
        workflow_id: strawberry.ID,
        instance_id: strawberry.ID,
        event_type: str,
        payload: JSON | None = strawberry.UNSET,
    ) -> Run:
        run = await resolvers.send_event(
            info.context,
            str(workflow_id),
            str(instance_id),
            event_type=event_type,
            payload=_value(payload),
        )
        return Run.from_model(run)

    @strawberry.mutation(description="Stop a run for good.")
    async def terminate_run(
        self, info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID
    ) -> Run:
        run = await resolvers.terminate_run(info.context, str(workflow_id), str(instance_id))
        return Run.from_model(run)

    @strawberry.mutation(description="Pause a run at its next node boundary.")
    async def pause_run(
        self, info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID
    ) -> Run:
        run = await resolvers.pause_run(info.context, str(workflow_id), str(instance_id))
        return Run.from_model(run)

    @strawberry.mutation(
        description="Delete a finished run (COMPLETE, ERRORED or TERMINATED) for good;"
        " a run that has not finished is refused with BAD_USER_INPUT. True once deleted."
    )
    async def delete_run(
        self, info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID
    ) -> bool:
        return await resolvers.delete_run(info.context, str(workflow_id), str(instance_id))

    @strawberry.mutation(description="Resume a paused run.")
    async def resume_run(
        self, info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID
    ) -> Run:
        run = await resolvers.resume_run(info.context, str(workflow_id), str(instance_id))
        return Run.from_model(run)

    @strawberry.mutation(
        description="Run again under the same instanceId and workflow version: from the"
        " beginning, or from the step fromStep, keeping the results of the steps before it."
    )
    async def restart_run(
        self,
        info: Info,
        workflow_id: strawberry.ID,
        instance_id: strawberry.ID,
        from_step: str | None = None,
    ) -> Run:
        run = await resolvers.restart_run(
            info.context, str(workflow_id), str(instance_id), from_step
        )
        return Run.from_model(run)
