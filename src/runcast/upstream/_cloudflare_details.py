"""Finished runs of a Cloudflare listing, read back once for their input, output and error.

Part of the ``cloudflare`` adapter: list items carry none of the three, so a run
listed as ``complete`` or ``errored`` is read back (``simple=true``, at most 8 at
a time) and kept in a bounded cache per token, since a finished run does not
change (a restart changes its status and end time, which invalidates the entry).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable

from runcast.errors import RateLimited, RunNotFound
from runcast.models import Run, RunStatus

MAX_CACHED_RUNS = 10_000
DETAIL_CONCURRENCY = 8
DETAILED_STATUSES = frozenset({RunStatus.COMPLETE, RunStatus.ERRORED})

ReadRun = Callable[[Run], Awaitable[Run]]
"""Reads a listed run back in full."""


class FinishedRuns:
    """The bounded cache of finished runs read back, keyed by token, workflow and instance."""

    def __init__(self, *, limit: int = MAX_CACHED_RUNS) -> None:
        self.limit = limit
        self._runs: collections.OrderedDict[tuple[str, str, str], Run] = collections.OrderedDict()

    async def fill(self, runs: list[Run], token: str, read: ReadRun) -> list[Run]:
        """``runs`` with each finished one replaced by its full form (cached, or ``read``)."""
        limiter = asyncio.Semaphore(DETAIL_CONCURRENCY)

        async def detail(item: Run) -> Run:
            if item.status not in DETAILED_STATUSES:
                return item
            key = (token, item.workflow_id, item.instance_id)
            cached = self._cached(key, item)
            if cached is not None:
                return cached
            async with limiter:
                try:
                    full = await read(item)
                except (RunNotFound, RateLimited):
                    return item
            if full.status in DETAILED_STATUSES:
                self._keep(key, full)
            return full

        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(detail(run)) for run in runs]
        except ExceptionGroup as failed:
            # One read failed (the others were cancelled): raise it as itself, so a 5xx
            # is UPSTREAM_UNAVAILABLE and not an unexpected error.
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    def _cached(self, key: tuple[str, str, str], item: Run) -> Run | None:
        cached = self._runs.get(key)
        if cached is None or cached.raw_status != item.raw_status:
            return None
        if cached.ended_at != item.ended_at:
            return None
        self._runs.move_to_end(key)
        return cached

    def _keep(self, key: tuple[str, str, str], run: Run) -> None:
        self._runs[key] = run
        while len(self._runs) > self.limit:
            self._runs.popitem(last=False)
