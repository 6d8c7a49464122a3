"""Recording runs: the write that records a change, and the listeners told once it commits."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any

from runcast.engine._run_writes import record_run
from runcast.engine._state import RunState, StepState
from runcast.engine._store import Store
from runcast.models import TERMINAL_STATUSES, Run

__all__ = ["RunListener", "RunRecorder"]

log = logging.getLogger("runcast.engine")

RunListener = Callable[[Run], None]


class RunRecorder:
    """Queues the writes of the runs' changes, in order, and tells listeners after each commit.

    Args:
        store: the engine's store; writes commit in the order they are queued.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._listeners: list[RunListener] = []

    def add_listener(self, listener: RunListener) -> Callable[[], None]:
        """Call ``listener`` with the run after each committed status/output/error change."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def announce(self, run: Run) -> None:
        """Tell every listener about ``run`` now (its change is already durable)."""
        for listener in list(self._listeners):
            try:
                listener(run)
            except Exception:
                log.exception("a run listener raised; it stays subscribed")

    def write(
        self,
        run: RunState,
        steps: Iterable[StepState] = (),
        *,
        run_row: bool = True,
        extra: Callable[[sqlite3.Connection], object] | None = None,
    ) -> asyncio.Future[None]:
        """Queue the write recording ``run`` (and ``steps``) as they are now."""
        run_params = run.row_params() if run_row else None
        if run_params is not None and run_params == run.written_row and extra is None:
            run_params = None  # the file already has this row
        elif run_params is not None:
            run.written_row = run_params
        step_params = [step.params(run.seq) for step in steps]
        # Events no wait took are never delivered once the run has ended: drop them.
        drop_events = run.status in TERMINAL_STATUSES and any(run.events.values())
        future = self._store.submit(
            record_run(run.seq, run_params, step_params, drop_events=drop_events, extra=extra)
        )
        observed = run.observable()
        if observed != run.notified:
            run.notified = observed
            if self._listeners:
                snapshot = run.to_model()
                future.add_done_callback(lambda f: self._notify(snapshot, f))
        return future

    def write_soon(self, run: RunState, steps: Iterable[StepState] = ()) -> None:
        """Queue a write nobody awaits (a failure is logged)."""
        future = self.write(run, steps)
        future.add_done_callback(_log_failure)

    def _notify(self, run: Run, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            return  # the write failed; it is logged by whoever awaits it or by the store
        self.announce(run)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        log.error("engine: a write failed: %s", error)
