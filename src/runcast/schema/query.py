"""The root ``Query`` type."""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import strawberry

from runcast import models, resolvers
from runcast.schema.node import Node
from runcast.schema.types import Info, Run, Workflow


def _node(found: models.Workflow | models.Run | None) -> Node | None:
    if found is None:
        return None
    if isinstance(found, models.Workflow):
        return Workflow.from_model(found)
    return Run.from_model(found)


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

    @strawberry.field(description="The workflow or run with this global id; null when unknown.")
    async def node(self, info: Info, id: strawberry.ID) -> Node | None:
        return _node(await resolvers.find_node(info.context, str(id)))

    @strawberry.field(
        description="The workflows and runs with these global ids, in order (null for each "
        "unknown one); at most 100."
    )
    async def nodes(self, info: Info, ids: list[strawberry.ID]) -> list[Node | None]:
        found = await resolvers.find_nodes(info.context, [str(i) for i in ids])
        return [_node(item) for item in found]
