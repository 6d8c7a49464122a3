"""The list poller: what one poll of a workflow's runs reads, page by page, within the budget."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runcast.errors import Forbidden, NotFound
from runcast.live._watch import UNFINISHED_STATUSES, WorkflowWatch
from runcast.models import Run, RunPage, RunStatus

if TYPE_CHECKING:
    from runcast.live._context import LiveContext

MAX_LIST_REQUESTS_PER_POLL = 10
"""Requests one poll of a workflow's runs may send (pages and final states); each is budgeted."""

Seen = dict[str, Run]
"""Runs a poll saw, by instance id, newest first."""
Unreached = dict[str, Run]
"""The known entries of the unfinished runs a poll did not reach."""


class _Reads:
    """The requests of one poll: every one after the first waits for the budget."""

    def __init__(self, ctx: LiveContext, watch: WorkflowWatch, *, urgent: bool) -> None:
        self.ctx = ctx
        self.watch = watch
        self.urgent = urgent
        self.count = 0

    @property
    def exhausted(self) -> bool:
        return self.count >= MAX_LIST_REQUESTS_PER_POLL

    async def page(self, statuses: tuple[RunStatus, ...] | None, cursor: str | None) -> RunPage:
        if self.count:  # the poll's first request was budgeted by whoever started it
            await self.ctx.limiter(self.watch.credentials).acquire(urgent=self.urgent)
        self.count += 1
        watch = self.watch
        return await self.ctx.call(
            "list",
            self.ctx.upstream.list_runs(
                watch.workflow_id,
                statuses=statuses,
                cursor=cursor,
                limit=self.ctx.page_size,
                credentials=watch.credentials,
            ),
        )

    async def final_state(self, instance_id: str) -> Run | None:
        await self.ctx.limiter(self.watch.credentials).acquire(urgent=self.urgent)
        self.count += 1
        watch = self.watch
        try:
            return await self.ctx.call(
                "run",
                self.ctx.upstream.get_run(
                    watch.workflow_id, instance_id, credentials=watch.credentials
                ),
            )
        except (NotFound, Forbidden):
            return None  # deleted, or not this caller's to read: nothing more to report


class ListPoller:
    """Reads what may have changed among a workflow watch's runs: one page, unless more is needed.

    With a status filter (see :meth:`WorkflowWatch.list_filter`), the upstream's listing
    of those statuses is read to its end. Without, the newest page of every run is read,
    and the next ones only while runs created since the last poll fill them. Terminal
    runs never change, so older pages are not read; the unfinished runs older than what
    was read (known to the watch, or not yet discovered) are looked for in a listing of
    unfinished runs, and those that have left it are fetched one by one for their final
    state. Every request after the first waits for the budget, and a poll sends at most
    ``MAX_LIST_REQUESTS_PER_POLL``; what it could not reach waits for the next poll.
    """

    async def read(
        self,
        ctx: LiveContext,
        watch: WorkflowWatch,
        statuses: tuple[RunStatus, ...] | None,
        *,
        urgent: bool,
    ) -> tuple[Seen, Unreached]:
        """The runs seen, newest first, and the known unfinished runs this poll did not reach."""
        reads = _Reads(ctx, watch, urgent=urgent)
        if statuses is not None:
            return await self._filtered(reads, statuses)
        seen, cursor = await self._newest(reads, switched=watch.listed_with is not None)
        if cursor is None:
            watch.discover = False  # every run of the workflow was read
            return seen, {}
        pending = {
            instance_id
            for instance_id, known in watch.known.items()
            if instance_id not in seen and not known.is_terminal
        }
        if not pending and not watch.discover:
            return seen, {}
        await self._unfinished(reads, seen, pending)
        return seen, {instance_id: watch.known[instance_id] for instance_id in pending}

    async def _filtered(
        self, reads: _Reads, statuses: tuple[RunStatus, ...]
    ) -> tuple[Seen, Unreached]:
        watch = reads.watch
        watch.discover = True  # unfinished runs in other statuses go unseen meanwhile
        seen: Seen = {}
        cursor: str | None = None
        while not reads.exhausted:
            listed = await reads.page(statuses, cursor)
            for run in listed.runs:
                seen.setdefault(run.instance_id, run)
            cursor = listed.next_cursor
            if cursor is None:
                return seen, {}
        unreached = {
            instance_id: known
            for instance_id, known in watch.known.items()
            if instance_id not in seen and known.status in statuses
        }
        return seen, unreached

    async def _newest(self, reads: _Reads, *, switched: bool) -> tuple[Seen, str | None]:
        """Newest-first pages of every run, as many as the runs that may have changed need.

        The next page is read while runs created since the last poll fill the pages, or
        while the page just read held runs that may have changed (riders, or known runs
        not finished) and some of those are still to be seen: a busy workflow's
        changing runs are read from the list, however many pages they span, never the
        finished history behind them.
        """
        watch = reads.watch
        seen: Seen = {}
        cursor: str | None = None
        while True:
            listed = await reads.page(None, cursor)
            for run in listed.runs:
                seen.setdefault(run.instance_id, run)
            cursor = listed.next_cursor
            if cursor is None or not listed.runs:
                return seen, cursor
            burst = watch.baselined and not switched
            if burst and listed.runs[-1].instance_id not in watch.known:
                if reads.exhausted:
                    watch.discover = True  # new runs were left unread: look for unfinished ones
                    return seen, cursor
                continue
            if reads.exhausted or not self._dense(reads, listed, seen):
                return seen, cursor

    @staticmethod
    def _dense(reads: _Reads, listed: RunPage, seen: Seen) -> bool:
        """Whether ``listed`` held runs that may change and some are not seen yet."""
        watch = reads.watch
        riders = {rider.instance_id for rider in watch.riders(reads.ctx)}

        def changing(instance_id: str) -> bool:
            known = watch.known.get(instance_id)
            return instance_id in riders or (known is not None and not known.is_terminal)

        if not any(changing(run.instance_id) for run in listed.runs):
            return False
        return any(
            changing(instance_id) for instance_id in (riders | watch.known.keys()) - seen.keys()
        )

    async def _unfinished(self, reads: _Reads, seen: Seen, pending: set[str]) -> None:
        """Look for ``pending`` runs in the unfinished listing; fetch those that left it."""
        watch = reads.watch
        cursor: str | None = None
        finished = False
        while not reads.exhausted:
            listed = await reads.page(UNFINISHED_STATUSES, cursor)
            for run in listed.runs:
                seen.setdefault(run.instance_id, run)
                pending.discard(run.instance_id)
            cursor = listed.next_cursor
            if cursor is None:
                finished = True
                break
            if not pending and not watch.discover:
                break
        if not finished:
            return
        watch.discover = False
        # Not unfinished any more: they finished (or went) since they were last seen.
        for instance_id in sorted(pending):
            if reads.exhausted:
                break
            final = await reads.final_state(instance_id)
            if final is not None:
                seen[instance_id] = final
            pending.discard(instance_id)
