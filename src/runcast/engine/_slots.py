"""The concurrency cap: at most ``limit`` runs hold a slot, the others wait first in first out.

The queue is ordered by the moment a run *entered* it: each time a run becomes
``queued`` it takes the next ``queue_seq`` (stored with the run, so a new engine
on the file serves queued runs in the same order). A run withdrawn from the queue
(paused, terminated, restarted) leaves a stale heap entry that is skipped when
popped, and dropped in bulk before stale entries pile up.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

from runcast.engine._state import RunState

__all__ = ["SlotQueue"]


class SlotQueue:
    """The slots of one engine and the FIFO queue of runs waiting for one.

    Args:
        limit: how many runs may hold a slot at once.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        """Slots held now."""
        self.queued = 0
        """Runs waiting for a slot now."""
        self._heap: list[tuple[int, int, RunState, asyncio.Future[bool]]] = []
        self._tie = itertools.count()
        self._last_seq = 0

    @property
    def entries(self) -> int:
        """Entries in the heap, stale ones (of withdrawn runs) included."""
        return len(self._heap)

    def resume_numbering(self, last: int) -> None:
        """Continue ``queue_seq`` numbers above ``last`` (the highest one in the file)."""
        self._last_seq = max(self._last_seq, last)

    def next_seq(self) -> int:
        """The place at the back of the queue, for a run that becomes ``queued`` now."""
        self._last_seq += 1
        return self._last_seq

    def take(self, run: RunState, *, jump_queue: bool = False) -> bool:
        """Give ``run`` a free slot now if nobody waits for one (or ``jump_queue``)."""
        if self.running >= self.limit or (self.queued and not jump_queue):
            return False
        run.holds_slot = True
        self.running += 1
        return True

    def release(self, run: RunState) -> None:
        """Give back ``run``'s slot, if it holds one, to the first run in the queue."""
        if run.holds_slot:
            run.holds_slot = False
            self.running -= 1
            self._grant()

    def enqueue(self, run: RunState) -> asyncio.Future[bool]:
        """Queue ``run`` at its ``queue_seq``; the future says whether it got a slot."""
        assert run.queue_seq is not None
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        run.slot_waiter = waiter
        self.queued += 1
        heapq.heappush(self._heap, (run.queue_seq, next(self._tie), run, waiter))
        self._grant()
        return waiter

    def withdraw(self, run: RunState) -> None:
        """Take ``run`` out of the queue (its waiter resolves to ``False``)."""
        waiter = run.slot_waiter
        if waiter is None:
            return
        run.slot_waiter = None
        self.queued -= 1
        if not waiter.done():
            waiter.set_result(False)
        if len(self._heap) > 2 * self.queued + 64:
            self._heap = [entry for entry in self._heap if entry[2].slot_waiter is entry[3]]
            heapq.heapify(self._heap)

    def _grant(self) -> None:
        while self.running < self.limit and self._heap:
            _, _, run, waiter = heapq.heappop(self._heap)
            if run.slot_waiter is not waiter or waiter.done():
                continue
            run.slot_waiter = None
            self.queued -= 1
            run.holds_slot = True
            self.running += 1
            waiter.set_result(True)
