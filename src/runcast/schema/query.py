"""The root ``Query`` type."""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import strawberry

from runcast import resolvers
from runcast.schema.types import Info, Run, Workflow


@strawberry.type
class Query:
    @strawberry.field(description="Every workflow and script the caller can see.")
    async def workflows(self, info: Info) -> list[Workflow]:
        return [Workflow.from_model(w) for w in await resolvers.list_workflows(info.context)]

    @strawberry.field(description="One workflow; null when unknown.")
    async def workflow(self, info: Info, id: strawberry.ID) -> Workflow | None:
        found = await resolvers.find_workflow(info.context, str(id))
        return None if found is None else Workflow.from_model(found)

    @strawberry.field(description="One run with its steps; null when unknown.")
    async def run(
        self, info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID
    ) -> Run | None:
        found = await resolvers.find_run(info.context, str(workflow_id), str(instance_id))
        return None if found is None else Run.from_model(found)
