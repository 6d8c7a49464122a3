"""The root ``Query`` type: each field returns the models its resolver found (views in types.py)."""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

import strawberry

from runcast import models, resolvers
from runcast.schema.node import Node
from runcast.schema.types import Info, Run, Workflow


@strawberry.type
class Query:
    @strawberry.field(
        graphql_type=list[Workflow], description="Every workflow and script the caller can see."
    )
    async def workflows(self, info: Info) -> list[models.Workflow]:
        return await resolvers.list_workflows(info.context)

    @strawberry.field(graphql_type=Workflow | None, description="One workflow; null when unknown.")
    async def workflow(self, info: Info, id: strawberry.ID) -> models.Workflow | None:
        return await resolvers.find_workflow(info.context, str(id))

    @strawberry.field(
        graphql_type=Run | None, description="One run with its steps; null when unknown."
    )
    async def run(
        self, info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID
    ) -> models.Run | None:
        return await resolvers.find_run(info.context, str(workflow_id), str(instance_id))

    @strawberry.field(
        graphql_type=Node | None,
        description="The workflow or run with this global id; null when unknown.",
    )
    async def node(self, info: Info, id: strawberry.ID) -> models.Workflow | models.Run | None:
        return await resolvers.find_node(info.context, str(id))

    @strawberry.field(
        graphql_type=list[Node | None],
        description="The workflows and runs with these global ids, in order (null for each "
        "unknown one); at most 100.",
    )
    async def nodes(
        self, info: Info, ids: list[strawberry.ID]
    ) -> list[models.Workflow | models.Run | None]:
        return await resolvers.find_nodes(info.context, [str(i) for i in ids])
