"""Recording the loaded workflows' versions in the engine's file, and logging what changed."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable

from runcast.engine._store import Store
from runcast.engine._version_rows import Registered, register_versions
from runcast.engine._versions import VersionBook
from runcast.models import TERMINAL_STATUSES

__all__ = ["VersionRegistry"]

log = logging.getLogger("runcast.engine")


class VersionRegistry:
    """Makes the loaded definitions the file's current versions, at start and after reloads.

    Args:
        store: the engine's store.
        versions: the loaded and known versions.
    """

    def __init__(self, store: Store, versions: VersionBook) -> None:
        self._store = store
        self._versions = versions
        self.retired: frozenset[str] = frozenset()
        """Workflows the file has runs or versions of that are not loaded any more."""

    async def register(self) -> None:
        """Record the loaded versions and return once they are durable."""
        self._log(await self._store.run(self._operation()))

    def register_soon(self) -> None:
        """Record the loaded versions in the background (after a reload); a failure is logged."""
        self._store.submit(self._operation()).add_done_callback(self._registered)

    def _operation(self) -> Callable[[sqlite3.Connection], Registered]:
        terminal = [status.value for status in TERMINAL_STATUSES]
        return register_versions(self._versions.loaded(), terminal, time.time())

    def _registered(self, future: asyncio.Future[Registered]) -> None:
        if future.cancelled() or future.exception() is not None:
            log.error("engine: the new workflow versions could not be recorded")
            return
        self._log(future.result())

    def _log(self, registered: Registered) -> None:
        changes, retired = registered
        for change in changes:
            log.info(
                "workflow %r changed: version %s -> %s; %d unfinished runs stay on %s",
                change.workflow_id,
                change.old,
                change.new,
                change.runs_on_old,
                change.old,
            )
        self.retired = frozenset(retired)
