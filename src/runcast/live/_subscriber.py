"""One subscription's mailbox: a bounded buffer of changes that never blocks the producer."""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Collection
from datetime import datetime

from runcast.live._change import Observable, RunChange
from runcast.metrics import Metrics
from runcast.models import Run, RunStatus

MAX_REMEMBERED_RUNS = 4096
"""How many runs a workflow subscriber remembers the last state of (least recently seen go)."""


class Subscriber:
    """A subscription's bounded buffer of :class:`RunChange` values.

    Producers (a poll, a push) call :meth:`offer` and never wait. A state equal to
    the last one this subscriber was given for the same run is not repeated. When
    the buffer is full, the queued changes of the same run collapse into the newest
    one (which keeps the ``previous_status`` of the oldest it replaced), so a slow
    reader skips intermediate states but still ends on the newest, terminal included;
    if no queued change is of the same run, the oldest queued change is dropped.

    Args:
        capacity: the most changes buffered; 1 makes a latest-value slot.
        metrics: where skipped changes are counted.
        statuses: deliver only states in these statuses (``None``: all).
        fields: the ``Run`` fields the subscriber selected (``None``: unknown, so all).
    """

    def __init__(
        self,
        *,
        capacity: int,
        metrics: Metrics,
        statuses: Collection[RunStatus] | None = None,
        fields: frozenset[str] | None = None,
    ) -> None:
        self.capacity = max(1, capacity)
        self.fields = fields
        self.statuses = frozenset(statuses) if statuses else None
        self._metrics = metrics
        self._items: deque[RunChange] = deque()
        self._last: OrderedDict[str, tuple[RunStatus, Observable]] = OrderedDict()
        self._ready = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None

    @property
    def closed(self) -> bool:
        """Whether no more changes will be offered."""
        return self._closed

    @property
    def has_state(self) -> bool:
        """Whether this subscriber has been given any state yet."""
        return bool(self._last)

    def offer(self, run: Run, observed_at: datetime) -> None:
        """Queue ``run`` if it differs from the last state given for that run."""
        if self._closed:
            return
        observable = run.observable()
        last = self._last.get(run.instance_id)
        if last is not None and last[1] == observable:
            return
        self._remember(run.instance_id, run.status, observable)
        if self.statuses is not None and run.status not in self.statuses:
            return
        self._put(RunChange(run, None if last is None else last[0], observed_at))

    def prime(self, run: Run, observed_at: datetime) -> None:
        """Put ``run`` (fetched while changes were already being offered) first.

        Queued changes up to and including one equal to ``run`` are older than it and
        are dropped; the rest follow it, the first of them re-linked to its status.
        """
        observable = run.observable()
        queued = list(self._items)
        for index in range(len(queued) - 1, -1, -1):
            if queued[index].run.observable() == observable:
                queued = queued[index + 1 :]
                break
        items = [RunChange(run, None, observed_at)]
        previous = run.status
        for change in queued:
            items.append(RunChange(change.run, previous, change.observed_at))
            previous = change.run.status
        self._items = deque(items[-self.capacity :])
        newest = items[-1].run
        self._remember(newest.instance_id, newest.status, newest.observable())
        self._ready.set()

    def close(self, error: BaseException | None = None) -> None:
        """End the stream after what is queued; then raise ``error`` if one is given."""
        if self._closed:
            return
        self._closed = True
        self._error = error
        self._ready.set()

    async def next(self) -> RunChange | None:
        """The next change, waiting for one; ``None`` once closed and drained.

        Raises:
            The error given to :meth:`close`, once the queued changes are drained.
        """
        while not self._items:
            if self._closed:
                if self._error is not None:
                    raise self._error.with_traceback(None)
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def _remember(self, instance_id: str, status: RunStatus, observable: Observable) -> None:
        self._last[instance_id] = (status, observable)
        self._last.move_to_end(instance_id)
        while len(self._last) > MAX_REMEMBERED_RUNS:
            self._last.popitem(last=False)

    def _put(self, change: RunChange) -> None:
        items = self._items
        if len(items) >= self.capacity:
            instance_id = change.run.instance_id
            same = [queued for queued in items if queued.run.instance_id == instance_id]
            if same:
                self._items = items = deque(
                    queued for queued in items if queued.run.instance_id != instance_id
                )
                change = RunChange(change.run, same[0].previous_status, change.observed_at)
                self._metrics.dropped_changes.inc(len(same))
            else:
                items.popleft()
                self._metrics.dropped_changes.inc()
        items.append(change)
        self._ready.set()
