"""The per-request context every resolver receives, and its DataLoaders."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strawberry.dataloader import DataLoader

from runcast import models
from runcast.errors import RunNotFound, WorkflowNotFound
from runcast.settings import Settings
from runcast.upstream import RunAPI

if TYPE_CHECKING:
    from runcast.live import LiveHub


class Loaders:
    """DataLoaders that batch and cache upstream lookups for one operation.

    ``workflow`` resolves a workflow id to the workflow (or ``None`` when unknown):
    one id costs one ``get_workflow`` call, several ids in the same tick cost one
    ``list_workflows`` call, and every id is fetched at most once per operation.
    """

    def __init__(self, context: GraphQLContext) -> None:
        self._context = context
        self.workflow: DataLoader[str, models.Workflow | None] = DataLoader(
            load_fn=self._load_workflows
        )
        self.run: DataLoader[tuple[str, str], models.Run | None] = DataLoader(
            load_fn=self._load_runs
        )

    async def _load_workflows(self, ids: list[str]) -> Sequence[models.Workflow | None]:
        context = self._context
        if len(ids) == 1:
            try:
                found = await context.upstream.get_workflow(ids[0], credentials=context.credentials)
            except WorkflowNotFound:
                return [None]
            return [found]
        everything = await context.upstream.list_workflows(credentials=context.credentials)
        by_id = {workflow.id: workflow for workflow in everything}
        return [by_id.get(workflow_id) for workflow_id in ids]

    async def _load_runs(self, keys: list[tuple[str, str]]) -> Sequence[models.Run | None]:
        return await asyncio.gather(*(self._get_run(*key) for key in keys))

    async def _get_run(self, workflow_id: str, instance_id: str) -> models.Run | None:
        context = self._context
        try:
            return await context.upstream.get_run(
                workflow_id, instance_id, credentials=context.credentials
            )
        except (RunNotFound, WorkflowNotFound):
            return None

    def prime_workflows(self, workflows: Sequence[models.Workflow]) -> None:
        """Remember workflows already fetched, so later lookups cost nothing."""
        for workflow in workflows:
            self.workflow.prime(workflow.id, workflow)


@dataclass
class GraphQLContext:
    """What a resolver may use: the upstream, the caller's credentials, loaders, the live hub.

    Args:
        upstream: the run API every resolver calls.
        credentials: what the caller presented; forwarded on every upstream call.
        settings: limits for validation.
        live: the shared poller for subscriptions, or ``None`` when not running.
        connection_params: the WebSocket ``connection_init`` payload (WebSocket only).
    """

    upstream: RunAPI
    credentials: models.Credentials
    settings: Settings
    live: LiveHub | None = None
    connection_params: dict[str, Any] | None = field(default=None, repr=False)
    _loaders: Loaders | None = field(default=None, init=False, repr=False)

    @property
    def loaders(self) -> Loaders:
        """The operation's DataLoaders, made at the first lookup (most operations make none).

        A subscription holds its context as long as it runs, so loaders it never uses
        would be memory held per subscriber.
        """
        if self._loaders is None:
            self._loaders = Loaders(self)
        return self._loaders

    def reset_loaders(self) -> None:
        """Start a fresh loader cache (one per operation on long-lived WebSocket contexts)."""
        self._loaders = None
