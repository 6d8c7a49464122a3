"""Lifetimes: objects opened once and closed once, and the tasks they own while open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal, Self

logger = logging.getLogger(__name__)

STOP_PATIENCE = 1.0
"""Seconds :func:`stop_task` waits after each cancellation before cancelling again."""


class Lifetime:
    """Opened once (``async with``), closed once (:meth:`aclose`), never reopened.

    Subclasses start what lives while open in :meth:`_open` and stop it in :meth:`_close`;
    :meth:`aclose` runs that once, whether the object was opened or not, and a second
    ``async with`` raises ``RuntimeError``.
    """

    _state: Literal["new", "open", "closed"] = "new"

    async def __aenter__(self) -> Self:
        if self._state != "new":
            raise RuntimeError(f"a {type(self).__name__} can be opened only once")
        self._state = "open"
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop what was started and release what was held; again, nothing happens."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._close()

    @property
    def is_open(self) -> bool:
        """Whether it was opened and is not closed yet."""
        return self._state == "open"

    @property
    def closed(self) -> bool:
        """Whether :meth:`aclose` was called."""
        return self._state == "closed"

    async def _open(self) -> None:
        """Start what lives while open (nothing by default)."""

    async def _close(self) -> None:
        """Stop what :meth:`_open` started (nothing by default)."""


class OwnedTasks:
    """Tasks an owner starts, each kept until it ends, every one stopped by :meth:`stop`."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def start(
        self, work: Coroutine[Any, Any, None], *, name: str | None = None
    ) -> asyncio.Task[None]:
        """Run ``work`` as a task owned here until it ends."""
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self) -> None:
        """Wait for every task to end by itself (their errors are not raised)."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def stop(self) -> None:
        """Cancel every task and wait for each to end (see :func:`stop_task`)."""
        for task in list(self._tasks):
            await stop_task(task)


async def stop_task(task: asyncio.Task[None], *, patience: float = STOP_PATIENCE) -> None:
    """Cancel ``task`` and wait for it, cancelling again while it runs on.

    redis-py can take a cancellation for a failed command and carry on, so loops that
    call it also check their owner's state, and this asks until they notice. An error
    the task ended with is logged.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=patience)
    if not task.cancelled() and task.exception() is not None:
        logger.error("task %s failed", task.get_name(), exc_info=task.exception())
