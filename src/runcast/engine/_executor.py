"""Run execution: one task per unfinished run, a FIFO concurrency cap, and the commands.

The cap's queue is first in first out by the moment a run *entered* it: each time a
run becomes ``queued`` (trigger over the cap, restart, resume or wake-up without a free
slot) it takes the next ``queue_seq``, which is stored with the run, so a new engine on
the file serves the queued runs in the same order.

Rules that keep memory, file and listeners consistent:

- Every change to a ``RunState`` happens on the loop together with queueing the write
  that records it, with no ``await`` in between; writes commit in the order queued.
- A run task never changes state after it is cancelled: commands that take a run over
  (terminate, restart, shutdown) cancel its task first, in the same synchronous block.
- A step's result is committed before the run's next node starts (the task awaits it).
- Listeners hear about a change once its write has committed, in order.

The parts: ``_runbook`` (the runs in memory, how one ends), ``_recorder`` (writes and
listeners), ``_pacing`` (slots, pauses, deadlines), ``_driver`` and ``_steps`` (the nodes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

import httpx

from runcast.engine._driver import RunDriver
from runcast.engine._pacing import Pacer
from runcast.engine._recorder import RunListener, RunRecorder
from runcast.engine._rows import EventRow
from runcast.engine._run_reads import max_event_id, max_queue_seq, select_run, select_unfinished
from runcast.engine._run_writes import forget_from, insert_event, insert_run
from runcast.engine._runbook import RunBook
from runcast.engine._slots import SlotQueue
from runcast.engine._state import STEP_COMPLETE, STEP_RETRYING, STEP_TERMINATED, RunState
from runcast.engine._store import Store
from runcast.engine._version_rows import select_version
from runcast.engine._versions import VersionBook
from runcast.engine.definitions import WorkflowDefinition
from runcast.engine.observer import EngineEvents
from runcast.errors import AlreadyExists, BadUserInput, RunFinished, RunNotFound
from runcast.models import JSON, TERMINAL_STATUSES, Run, RunStatus

__all__ = ["Executor", "RunListener", "restart_index"]

log = logging.getLogger("runcast.engine")

TERMINAL_VALUES = [status.value for status in TERMINAL_STATUSES]
"""The terminal statuses as the file writes them."""


class Executor:
    """Drives every unfinished run of one engine; owns their tasks and the concurrency cap."""

    def __init__(
        self,
        store: Store,
        versions: VersionBook,
        *,
        max_running: int,
        http_client: httpx.AsyncClient,
        events: EngineEvents | None = None,
    ) -> None:
        self.events = events or EngineEvents()
        self._store = store
        self._versions = versions
        self.slots = SlotQueue(max_running)
        """The concurrency cap (its ``queued`` and ``running`` counts are the engine's load)."""
        self._recorder = RunRecorder(store)
        self._book = RunBook(self.slots, self._recorder, self.events)
        pacer = Pacer(self.slots, self._recorder)
        self._driver = RunDriver(store, self._book, pacer, http_client)
        self._next_event_id = 0

    def find(self, workflow_id: str, instance_id: str) -> RunState | None:
        """The unfinished run with this id, if this executor drives it."""
        return self._book.find(workflow_id, instance_id)

    def add_listener(self, listener: RunListener) -> Callable[[], None]:
        """Call ``listener`` with the run after each committed status/output/error change."""
        return self._recorder.add_listener(listener)

    # -- starting, stopping ------------------------------------------------------------

    async def recover(self) -> None:
        """Load every unfinished run from the file and start driving it again."""
        rows, steps, events = await self._store.run(select_unfinished(TERMINAL_VALUES))
        self._next_event_id = await self._store.run(max_event_id)
        self.slots.resume_numbering(await self._store.run(max_queue_seq))
        restored: list[RunState] = []
        for row in rows:
            definition = await self.definition_of(row.workflow_id, row.version)
            if definition is None or not definition.nodes:
                # Left as it is in the file: it continues once its version can be read.
                log.warning(
                    "run %s of workflow %r waits: its version %s is not known",
                    row.instance_id,
                    row.workflow_id,
                    row.version,
                )
                continue
            run = RunState.from_rows(definition, row, steps[row.seq])
            self._book.active[run.key] = run
            restored.append(run)
        _give_events(restored, events)
        self._give_slots(restored)
        for run in restored:
            self._start_task(run)
        if restored:
            log.info("engine: %d unfinished runs continue", len(restored))

    def _give_slots(self, restored: list[RunState]) -> None:
        """Slots go back to runs that held one, then to queued ones in their queue order.

        The rest of the queue waits in that order (the heap is keyed by ``queue_seq``).
        """
        for run in restored:
            was_running = run.status in (RunStatus.RUNNING, RunStatus.WAITING_FOR_PAUSE)
            if was_running and not run.pause_requested:
                self.slots.take(run, jump_queue=True)
        queued = [
            run for run in restored if run.status is RunStatus.QUEUED and not run.pause_requested
        ]
        for run in queued:
            if run.queue_seq is None:  # cannot be after _schema's migration; keep creation order
                run.queue_seq = self.slots.next_seq()
        queued.sort(key=lambda run: (run.queue_seq, run.seq))
        for run in queued:
            if not self.slots.take(run, jump_queue=True):
                break

    async def unfinished(self, workflow_id: str, instance_id: str, *, script: bool) -> RunState:
        """The run a command acts on (a ``script`` has no runs in this engine).

        Raises:
            RunFinished: the run has finished.
            RunNotFound: no such run.
        """
        run = self.find(workflow_id, instance_id)
        if run is not None:
            return run
        if script:
            raise RunNotFound(workflow_id, instance_id)
        found = await self._store.run(select_run(workflow_id, instance_id))
        run = self.find(workflow_id, instance_id)
        if run is not None:
            return run
        if found is None:
            raise RunNotFound(workflow_id, instance_id)
        raise RunFinished(workflow_id, instance_id, found[0].status)

    async def take_back(self, workflow_id: str, instance_id: str) -> RunState:
        """The run to restart: the one driven, or a finished one read from the file.

        Raises:
            RunNotFound: no such run, or its version is not in the file.
        """
        run = self.find(workflow_id, instance_id)
        if run is not None:
            return run
        found = await self._store.run(select_run(workflow_id, instance_id))
        if found is None:
            raise RunNotFound(workflow_id, instance_id)
        definition = await self.definition_of(workflow_id, found[0].version)
        if definition is None:
            raise RunNotFound(
                workflow_id,
                instance_id,
                f"run {instance_id!r} of workflow {workflow_id!r} cannot restart:"
                f" its version {found[0].version} is not in the database",
            )
        # Restarted by someone else meanwhile?
        return self.find(workflow_id, instance_id) or RunState.from_rows(definition, *found)

    async def definition_of(
        self, workflow_id: str, version: str | None
    ) -> WorkflowDefinition | None:
        """The definition of one version of a workflow, from memory or the file."""
        if version is None:
            return None
        known = self._versions.known(workflow_id, version)
        if known is not None:
            return known
        text = await self._store.run(select_version(workflow_id, version))
        if text is None:
            return None
        try:
            return self._versions.remember(workflow_id, version, text)
        except ValueError as exc:
            log.error("workflow %r version %s cannot be read: %s", workflow_id, version, exc)
            return None

    async def close(self) -> None:
        """Cancel and await every run task; their state stays in the file as it is."""
        self._book.closing = True
        tasks = [run.task for run in self._book.active.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start_task(self, run: RunState) -> None:
        if self._book.closing:
            return  # the run is in the file; the next engine continues it
        run.task = asyncio.create_task(self._driver.drive(run), name=f"run:{run.instance_id}")

    # -- commands ----------------------------------------------------------------------

    async def trigger(
        self,
        definition: WorkflowDefinition,
        instance_id: str,
        input: JSON,
        input_json: str | None,
    ) -> Run:
        """Create a run (its row is durable on return) and start driving it.

        It takes a free slot now, or its place at the back of the queue before its
        row is written, so a slot freed meanwhile waits for it.

        Raises:
            AlreadyExists: the workflow already has a run called ``instance_id``.
        """
        key = (definition.id, instance_id)
        if self._book.taken(key):
            raise AlreadyExists(definition.id, instance_id)
        run = self._new_run(definition, instance_id, input, input_json)
        self._book.creating.add(key)
        try:
            seq = await self._store.submit(insert_run(run.insert_params()))
        except BaseException:
            self._abandon(run)
            raise
        finally:
            self._book.creating.discard(key)
        if seq is None:
            self._abandon(run)
            raise AlreadyExists(definition.id, instance_id)
        return self._admit(run, seq)

    def _new_run(
        self, definition: WorkflowDefinition, instance_id: str, input: JSON, input_json: str | None
    ) -> RunState:
        """A new run holding a free slot (``running``) or its place in the queue (``queued``)."""
        run = RunState(
            definition=definition,
            seq=0,  # known once the row is written
            instance_id=instance_id,
            status=RunStatus.QUEUED,
            input=input,
            input_json=input_json,
            created_at=time.time(),
            version=self._versions.current(definition.id) or "",
        )
        if self.slots.take(run):
            run.status, run.started_at = RunStatus.RUNNING, run.created_at
        else:
            run.queue_seq = self.slots.next_seq()
            self.slots.enqueue(run)
        return run

    def _abandon(self, run: RunState) -> None:
        """Give back the slot or queue place of a run whose row could not be written."""
        self.slots.withdraw(run)
        self.slots.release(run)

    def _admit(self, run: RunState, seq: int) -> Run:
        """Start driving a run whose row is committed; tell listeners."""
        run.seq = seq
        run.context = {"input": run.input}
        run.written_row = run.row_params()
        run.notified = run.observable()
        snapshot = run.to_model()
        self._book.active[run.key] = run
        self._recorder.announce(snapshot)
        self.events.run_started(run)
        self._start_task(run)
        return snapshot

    async def send_event(self, run: RunState, event_type: str, text: str) -> None:
        """Keep an event for the run's first wait of that type; return once it is durable."""
        self._next_event_id += 1
        event_id = self._next_event_id
        run.events.setdefault(event_type, deque()).append(event_id)
        run.changed.set()
        await self._store.submit(insert_event(event_id, run.seq, event_type, text))

    async def pause(self, run: RunState) -> None:
        """Pause at the next node boundary (at once inside a sleep, wait or retry delay)."""
        _refuse_finished(run)
        if run.pause_requested:
            return
        run.pause_requested = True
        if run.in_step:
            run.status = RunStatus.WAITING_FOR_PAUSE
        else:
            run.status = RunStatus.PAUSED
            self.slots.withdraw(run)
            if run.holds_slot and not run.in_step:
                self.slots.release(run)
        run.changed.set()
        await self._recorder.write(run)

    async def resume(self, run: RunState) -> None:
        """Undo a pause; a run that is not paused by request is left as it is."""
        _refuse_finished(run)
        if not run.pause_requested:
            return
        run.pause_requested = False
        current = run.current_step
        if run.status is RunStatus.WAITING_FOR_PAUSE:
            run.status = RunStatus.RUNNING
        elif current is not None and current.status == STEP_RETRYING:
            run.status = RunStatus.WAITING
        run.changed.set()
        await self._recorder.write(run)

    async def terminate(self, run: RunState) -> None:
        """End the run at once, even mid-step; output and error stay null."""
        _refuse_finished(run)
        task = self._take_over(run)
        step = run.current_step
        if step is not None:
            step.status = STEP_TERMINATED
            step.wake_at = None
            step.ended_at = time.time()
        run.output = run.output_json = run.error = None
        run.last_result = (None, None)
        self._book.finish(run, RunStatus.TERMINATED)
        run.status = RunStatus.TERMINATED
        written = self._recorder.write(run, [step] if step else [])
        await _settle(task)
        await written

    async def restart(self, run: RunState, from_step: str | None = None) -> None:
        """Start the run again from its first node, or from node ``from_step``.

        The results of the nodes before ``from_step`` stay (they do not run again);
        later results and every pending event are discarded.

        Raises:
            BadUserInput: no node is called ``from_step``, or the run has not
                completed every node before it.
        """
        keep = 0 if from_step is None else restart_index(run, from_step)
        task = self._take_over(run)
        run.reset(keep)
        run.status = RunStatus.QUEUED
        run.queue_seq = self.slots.next_seq()  # at the back, whenever it was created
        written = self._recorder.write(run, extra=forget_from(run.seq, keep))
        self._book.active[run.key] = run
        self.events.run_started(run)
        self._start_task(run)
        await _settle(task)
        await written

    def _take_over(self, run: RunState) -> asyncio.Task[None] | None:
        task = run.task
        if task is not None:
            task.cancel()
        run.task = None
        run.in_step = False
        self.slots.withdraw(run)
        self.slots.release(run)
        return task


def restart_index(run: RunState, from_step: str) -> int:
    """The index of node ``from_step`` of the run's version, where a restart may begin.

    Raises:
        BadUserInput: no such node, or a node before it has no result.
    """
    names = [node.name for node in run.definition.nodes]
    if from_step not in names:
        raise BadUserInput(
            f"workflow {run.workflow_id!r} (version {run.version}) has no step {from_step!r};"
            f" its steps are: {', '.join(names)}"
        )
    index = names.index(from_step)
    done = [step for step in run.steps[:index] if step.status == STEP_COMPLETE]
    if len(done) < index:
        raise BadUserInput(
            f"run {run.instance_id!r} cannot restart from {from_step!r}: it has not"
            f" completed {names[len(done)]!r} before it"
        )
    return index


def _give_events(restored: list[RunState], events: list[EventRow]) -> None:
    """Hand the undelivered events read from the file back to their runs, oldest first."""
    by_seq = {run.seq: run for run in restored}
    for event in events:
        owner = by_seq.get(event.run_seq)
        if owner is not None:
            owner.events.setdefault(event.event_type, deque()).append(event.id)


def _refuse_finished(run: RunState) -> None:
    if run.status in TERMINAL_STATUSES:
        raise RunFinished(run.workflow_id, run.instance_id, run.status.value)


async def _settle(task: asyncio.Task[None] | None) -> None:
    if task is None or task is asyncio.current_task():
        return
    await asyncio.gather(task, return_exceptions=True)
