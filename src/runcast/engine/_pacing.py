"""When a run may work: it holds a slot and is not paused; meanwhile it queues or waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from runcast.engine._recorder import RunRecorder
from runcast.engine._slots import SlotQueue
from runcast.engine._state import RunState, StepState
from runcast.models import RunStatus

__all__ = ["Pacer", "wait_change"]


class Pacer:
    """Holds a run back until it may work, showing why (``queued``, ``paused``, ...).

    Args:
        slots: the concurrency cap.
        recorder: records each status the run shows meanwhile.
    """

    def __init__(self, slots: SlotQueue, recorder: RunRecorder) -> None:
        self._slots = slots
        self._recorder = recorder

    async def ready_to_work(self, run: RunState) -> None:
        """Return holding a slot and not paused; queue (FIFO by entry) or pause meanwhile."""
        while True:
            if run.pause_requested:
                await self._stay_paused(run)
                continue
            if not run.holds_slot and not self._slots.take(run):
                await self._wait_in_queue(run)
                continue
            if run.status is not RunStatus.RUNNING:
                run.status = RunStatus.RUNNING
                if run.started_at is None:
                    run.started_at = time.time()
                self._recorder.write_soon(run)
            return

    async def suspend(
        self, run: RunState, step: StepState, status: RunStatus, ready: Callable[[], bool]
    ) -> bool:
        """Wait without a slot until ``ready()`` (True) or the step's deadline passes (False).

        While a pause is requested the run stays paused and neither is looked at; the
        deadline is kept, so a run resumed after it acts at once. A run that is ready
        at once keeps its status and slot: a run queued when the last engine stopped
        stays queued in its place.
        """
        while True:
            if run.pause_requested:
                await self._stay_paused(run)
                continue
            if ready():
                return True
            if step.wake_at is not None and time.time() >= step.wake_at:
                return False
            self._slots.release(run)
            if run.status is not status:
                run.status = status
                self._recorder.write_soon(run)
            await wait_change(run, step.wake_at)

    async def _stay_paused(self, run: RunState) -> None:
        """Give up the slot, show ``paused`` and wait for the next change of the run."""
        self._slots.release(run)
        if run.status is not RunStatus.PAUSED:
            run.status = RunStatus.PAUSED
            self._recorder.write_soon(run)
        await wait_change(run, None)

    async def _wait_in_queue(self, run: RunState) -> None:
        # A run already ``queued`` (triggered or restarted over the cap, or queued when
        # the last engine stopped) keeps its place; any other enters at the back now.
        if run.status is not RunStatus.QUEUED or run.queue_seq is None:
            run.status = RunStatus.QUEUED
            run.queue_seq = self._slots.next_seq()
            self._recorder.write_soon(run)
        waiter = run.slot_waiter  # a new run has its place since its trigger
        if waiter is None:
            waiter = self._slots.enqueue(run)
        try:
            await waiter
        finally:
            if run.slot_waiter is waiter:
                self._slots.withdraw(run)


async def wait_change(run: RunState, deadline: float | None) -> None:
    """Wait until a command touches the run or ``deadline`` (a POSIX time) passes."""
    run.changed.clear()
    if deadline is None:
        await run.changed.wait()
        return
    delay = deadline - time.time()
    if delay <= 0:
        return
    try:
        async with asyncio.timeout(delay):
            await run.changed.wait()
    except TimeoutError:
        pass
