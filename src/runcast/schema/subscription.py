"""The root ``Subscription`` type: live runs from the shared poller (``runcast.live``).

Each resolver checks its arguments, then relays the :class:`~runcast.live.RunChange`
values of the request's :class:`~runcast.live.LiveHub` as ``RunStatusUpdate``. Errors
are raised as ``runcast.errors``, which the schema maps to ``extensions.code``.
"""

# Strawberry types its decorators-with-arguments as returning Any.
# mypy: disable-error-code="untyped-decorator"

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from contextlib import aclosing

import strawberry
from strawberry.types.nodes import SelectedField, Selection

from runcast.errors import UpstreamUnavailable
from runcast.live import LiveHub, RunChange
from runcast.models import RunStatus
from runcast.resolvers import GraphQLContext, check_id
from runcast.schema.types import Info, RunStatusUpdate


def _hub(context: GraphQLContext) -> LiveHub:
    if context.live is None:
        raise UpstreamUnavailable("live updates are not available on this server")
    return context.live


def _field_names(selections: Iterable[Selection]) -> Iterable[SelectedField]:
    """The fields of ``selections``, fragments flattened."""
    for selection in selections:
        if isinstance(selection, SelectedField):
            yield selection
        else:
            yield from _field_names(selection.selections)


def _run_fields(info: Info) -> frozenset[str]:
    """The fields of ``run`` the subscriber selected (so the live layer reads no more)."""
    names: set[str] = set()
    for update in _field_names(info.selected_fields):
        for field in _field_names(update.selections):
            if field.name == "run":
                names.update(inner.name for inner in _field_names(field.selections))
    return frozenset(names)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        graphql_type=RunStatusUpdate,
        description="The current state at once, then one message per observed change; "
        "completes after a terminal status.",
    )
    async def run_status(
        self, info: Info, workflow_id: strawberry.ID, instance_id: strawberry.ID
    ) -> AsyncGenerator[RunChange, None]:
        workflow = check_id(str(workflow_id), argument="workflowId")
        instance = check_id(str(instance_id), argument="instanceId")
        hub = _hub(info.context)
        changes = hub.watch_run(
            workflow, instance, info.context.credentials, fields=_run_fields(info)
        )
        async with aclosing(changes):
            async for change in changes:
                yield change

    @strawberry.subscription(
        graphql_type=RunStatusUpdate,
        description="Every observed change of any run of one workflow; never completes by itself.",
    )
    async def workflow_runs(
        self,
        info: Info,
        workflow_id: strawberry.ID,
        status: list[RunStatus] | None = strawberry.UNSET,
    ) -> AsyncGenerator[RunChange, None]:
        workflow = check_id(str(workflow_id), argument="workflowId")
        statuses = set(status) if status else None
        hub = _hub(info.context)
        changes = hub.watch_workflow(workflow, statuses, info.context.credentials)
        async with aclosing(changes):
            async for change in changes:
                yield change
