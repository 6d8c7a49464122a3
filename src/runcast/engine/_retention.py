"""Retention: finished runs are deleted in the background once their retention period ends.

Deletion goes through the store's writer in small batches (``BATCH`` runs per
transaction), with a pause between batches, so other writes never wait long
behind it. SQLite reuses the freed pages, so under a steady load the file stops
growing once the oldest runs start to expire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from datetime import timedelta

from runcast.engine._run_writes import delete_expired
from runcast.engine._store import Store, StoreClosed
from runcast.engine._version_rows import select_workflow_ids
from runcast.engine.definitions import Retention, WorkflowDefinition
from runcast.models import RunStatus

__all__ = ["BATCH", "DEFAULT_RETENTION", "RetentionSweeper", "retention_of"]

log = logging.getLogger("runcast.engine")

DEFAULT_RETENTION = Retention(
    complete=timedelta(days=7), errored=timedelta(days=30), terminated=timedelta(days=30)
)
"""How long finished runs are kept unless told otherwise (as Cloudflare keeps them)."""

BATCH = 500
"""The most runs one deleting transaction removes."""

_BATCH_PAUSE = 0.01
"""Seconds between two full batches: other writes commit in between."""


def retention_of(definition: WorkflowDefinition | None, default: Retention) -> Retention:
    """The retention of a workflow: its own ``retention:`` over the engine's default."""
    if definition is None or definition.retention is None:
        return default
    return definition.retention.over(default)


class RetentionSweeper:
    """Deletes the finished runs of every workflow whose retention period has passed.

    Args:
        store: the engine's store (its writer runs the deletes).
        definitions: the loaded workflows (their ``retention:``); others use ``default``.
        default: the engine-wide retention.
        interval: seconds between two sweeps.
        clock: the current POSIX time (tests pass their own).
    """

    def __init__(
        self,
        store: Store,
        definitions: Mapping[str, WorkflowDefinition],
        *,
        default: Retention,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._definitions = definitions
        self._default = default
        self._interval = interval
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.deleted = 0
        """How many runs this sweeper deleted (for measurements)."""

    def start(self) -> None:
        """Start sweeping in the background (at once, then every ``interval`` seconds)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="runcast-retention")

    async def close(self) -> None:
        """Stop sweeping and wait for the current batch to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # wait() neither raises the task's CancelledError nor swallows our own.
            await asyncio.wait([task])

    async def sweep(self) -> int:
        """Delete every expired run now, batch by batch; returns how many were deleted."""
        total = 0
        for workflow_id in await self._store.run(select_workflow_ids):
            retention = retention_of(self._definitions.get(workflow_id), self._default)
            for status, period in _periods(retention):
                total += await self._sweep_one(workflow_id, status, period)
        self.deleted += total
        return total

    async def _sweep_one(self, workflow_id: str, status: RunStatus, period: timedelta) -> int:
        total = 0
        while True:
            cutoff = self._clock() - period.total_seconds()
            deleted = await self._store.run(
                delete_expired(workflow_id, status.value, cutoff, BATCH)
            )
            total += deleted
            if deleted < BATCH:
                return total
            await asyncio.sleep(_BATCH_PAUSE)

    async def _loop(self) -> None:
        while True:
            try:
                deleted = await self.sweep()
            except StoreClosed:
                return
            except Exception as exc:
                log.warning("engine: deleting expired runs failed (%s); retrying later", exc)
            else:
                if deleted:
                    log.info("engine: deleted %d finished runs past their retention", deleted)
            await asyncio.sleep(self._interval)


def _periods(retention: Retention) -> list[tuple[RunStatus, timedelta]]:
    pairs = [
        (RunStatus.COMPLETE, retention.complete),
        (RunStatus.ERRORED, retention.errored),
        (RunStatus.TERMINATED, retention.terminated),
    ]
    return [(status, period) for status, period in pairs if period is not None]
