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
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

import httpx

from runcast.engine import _store
from runcast.engine._slots import SlotQueue
from runcast.engine._state import (
    STEP_COMPLETE,
    STEP_ERRORED,
    STEP_RETRYING,
    STEP_RUNNING,
    STEP_SKIPPED,
    STEP_SUSPENDED,
    STEP_TERMINATED,
    RunState,
    StepState,
    decode,
    encode,
)
from runcast.engine._store import EventRow, Store
from runcast.engine._versions import VersionBook
from runcast.engine.actions import (
    ActionFailed,
    evaluate_expression,
    is_true,
    resolve_until,
    run_action,
)
from runcast.engine.definitions import (
    FailAction,
    Node,
    ReturnAction,
    SleepNode,
    SleepUntilNode,
    StepNode,
    WaitForEventNode,
    WorkflowDefinition,
)
from runcast.engine.observer import EngineEvents
from runcast.errors import AlreadyExists, BadUserInput, RunFinished
from runcast.models import JSON, TERMINAL_STATUSES, Run, RunStatus

__all__ = [
    "DEFAULT_STEP_TIMEOUT",
    "Executor",
    "RunListener",
    "attempts_allowed",
    "died_message",
    "format_duration",
]

log = logging.getLogger("runcast.engine")

RunListener = Callable[[Run], None]

DEFAULT_STEP_TIMEOUT = timedelta(seconds=30)
"""Wall time per attempt of a step that sets no ``timeout`` (the AwaitStep limit)."""

_TERMINAL_VALUES = [status.value for status in TERMINAL_STATUSES]


def attempts_allowed(node: StepNode) -> int:
    """How many attempts of ``node`` may start, attempts cut by a crash included.

    ``retries.limit + 1``, but at least 2: one crash of the engine during a step
    without retries re-runs it once instead of failing the run.
    """
    return max(node.retries.limit + 1, 2)


def died_message(node: StepNode, attempts: int) -> str:
    """The error of a run whose step's last attempt ended with the death of the process."""
    return (
        f"step {node.name!r} did not finish: the engine's process died during attempt"
        f" {attempts} of {attempts_allowed(node)}, so it is not run again"
    )


def format_duration(delta: timedelta) -> str:
    """``1h``, ``30s``, ``1.5s``, ``250ms``: a duration the way workflow files write it."""
    seconds = delta.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    if seconds >= 1:
        return f"{seconds:g}s"
    return f"{seconds * 1000:g}ms"


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
        self._slots = SlotQueue(max_running)
        self._http_client = http_client
        self._active: dict[tuple[str, str], RunState] = {}
        self._creating: set[tuple[str, str]] = set()
        """Runs being triggered whose row is being written (their ids are taken)."""
        self._listeners: list[RunListener] = []
        self._next_event_id = 0
        self._closing = False

    @property
    def queue_depth(self) -> int:
        """Runs waiting for a slot."""
        return self._slots.queued

    @property
    def running_slots(self) -> int:
        """Slots taken by executing runs."""
        return self._slots.running

    def find(self, workflow_id: str, instance_id: str) -> RunState | None:
        """The unfinished run with this id, if this executor drives it."""
        return self._active.get((workflow_id, instance_id))

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: RunListener) -> Callable[[], None]:
        """Call ``listener`` with the run after each committed status/output/error change."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _notify(self, run: Run, future: asyncio.Future[Any]) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            return  # the write failed; it is logged by whoever awaits it or by the store
        for listener in list(self._listeners):
            try:
                listener(run)
            except Exception:
                log.exception("a run listener raised; it stays subscribed")

    # -- writes ------------------------------------------------------------------------

    def _write(
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
            _store.record_run(
                run.seq, run_params, step_params, drop_events=drop_events, extra=extra
            )
        )
        observed = run.observable()
        if observed != run.notified:
            run.notified = observed
            if self._listeners:
                snapshot = run.to_model()
                future.add_done_callback(lambda f: self._notify(snapshot, f))
        return future

    def _write_soon(self, run: RunState, steps: Iterable[StepState] = ()) -> None:
        """Queue a write nobody awaits (a failure is logged)."""
        future = self._write(run, steps)
        future.add_done_callback(_log_failure)

    # -- starting, stopping ------------------------------------------------------------

    async def recover(self) -> None:
        """Load every unfinished run from the file and start driving it again."""
        rows, steps, events = await self._store.run(_store.select_unfinished(_TERMINAL_VALUES))
        self._next_event_id = await self._store.run(_store.max_event_id)
        self._slots.resume_numbering(await self._store.run(_store.max_queue_seq))
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
            self._active[run.key] = run
            restored.append(run)
        by_seq = {run.seq: run for run in restored}
        for event in events:
            owner = by_seq.get(event.run_seq)
            if owner is not None:
                _remember_event(owner, event)
        # Runs that held a slot get one back first, then queued ones in their queue order;
        # the rest of the queue waits in that order (the heap is keyed by queue_seq).
        for run in restored:
            was_running = run.status in (RunStatus.RUNNING, RunStatus.WAITING_FOR_PAUSE)
            if was_running and not run.pause_requested:
                self._slots.take(run, jump_queue=True)
        queued = [
            run for run in restored if run.status is RunStatus.QUEUED and not run.pause_requested
        ]
        for run in queued:
            if run.queue_seq is None:  # cannot be after _store._migrate; keep creation order
                run.queue_seq = self._slots.next_seq()
        queued.sort(key=lambda run: (run.queue_seq, run.seq))
        for run in queued:
            if not self._slots.take(run, jump_queue=True):
                break
        for run in restored:
            self._start_task(run)
        if restored:
            log.info("engine: %d unfinished runs continue", len(restored))

    async def definition_of(
        self, workflow_id: str, version: str | None
    ) -> WorkflowDefinition | None:
        """The definition of one version of a workflow, from memory or the file."""
        if version is None:
            return None
        known = self._versions.known(workflow_id, version)
        if known is not None:
            return known
        text = await self._store.run(_store.select_version(workflow_id, version))
        if text is None:
            return None
        try:
            return self._versions.remember(workflow_id, version, text)
        except ValueError as exc:
            log.error("workflow %r version %s cannot be read: %s", workflow_id, version, exc)
            return None

    async def close(self) -> None:
        """Cancel and await every run task; their state stays in the file as it is."""
        self._closing = True
        tasks = [run.task for run in self._active.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start_task(self, run: RunState) -> None:
        if self._closing:
            return  # the run is in the file; the next engine continues it
        run.task = asyncio.create_task(self._drive(run), name=f"run:{run.instance_id}")

    # -- the concurrency cap -----------------------------------------------------------

    def _release_slot(self, run: RunState) -> None:
        self._slots.release(run)

    async def _stay_paused(self, run: RunState) -> None:
        """Give up the slot, show ``paused`` and wait for the next change of the run."""
        self._release_slot(run)
        if run.status is not RunStatus.PAUSED:
            run.status = RunStatus.PAUSED
            self._write_soon(run)
        await _wait_change(run, None)

    async def _ready_to_work(self, run: RunState) -> None:
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
                self._write_soon(run)
            return

    async def _wait_in_queue(self, run: RunState) -> None:
        # A run already ``queued`` (triggered or restarted over the cap, or queued when
        # the last engine stopped) keeps its place; any other enters at the back now.
        if run.status is not RunStatus.QUEUED or run.queue_seq is None:
            run.status = RunStatus.QUEUED
            run.queue_seq = self._slots.next_seq()
            self._write_soon(run)
        waiter = run.slot_waiter  # a new run has its place since its trigger
        if waiter is None:
            waiter = self._slots.enqueue(run)
        try:
            await waiter
        finally:
            if run.slot_waiter is waiter:
                self._slots.withdraw(run)

    # -- driving a run -----------------------------------------------------------------

    async def _drive(self, run: RunState) -> None:
        try:
            nodes = run.definition.nodes
            while run.key in self._active and run.task is asyncio.current_task():
                index = run.node_index
                if index >= len(nodes):
                    self._finish(run, RunStatus.COMPLETE)
                    await self._write(run)
                    return
                node = nodes[index]
                if run.current_step is None and node.when and await self._skipped(run, node):
                    continue
                if isinstance(node, StepNode):
                    await self._do_step(run, node, run.current_step)
                elif isinstance(node, WaitForEventNode):
                    await self._do_wait(run, node, run.current_step)
                else:
                    await self._do_sleep(run, node, run.current_step)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if run.status in TERMINAL_STATUSES or self._closing:
                raise
            log.exception("run %s of %r failed inside the engine", run.instance_id, run.workflow_id)
            step = run.current_step
            message = f"internal error in the engine ({type(exc).__name__}); see its log"
            self._error(run, step, message)
            try:
                await self._write(run, [step] if step else [])
            except Exception:
                log.exception("could not record the failure of run %s", run.instance_id)

    async def _do_step(self, run: RunState, node: StepNode, step: StepState | None) -> None:
        if step is None:
            await self._ready_to_work(run)  # a paused or queued run shows no next step yet
            step = StepState(idx=len(run.steps), name=node.name, type="step", status=STEP_RUNNING)
            run.steps.append(step)
        while True:
            if step.status == STEP_RETRYING:
                await self._suspend(run, step, RunStatus.WAITING, lambda: False)
            elif step.status == STEP_RUNNING and step.attempts >= attempts_allowed(node):
                # The process died during that attempt (its start was committed): it counts.
                self._error(run, step, died_message(node, step.attempts))
                await self._write(run, [step])
                return
            attempt = step.attempts + 1
            await self._ready_to_work(run)
            now = time.time()
            step.status = STEP_RUNNING
            step.attempts = attempt
            step.wake_at = None
            if step.started_at is None:
                step.started_at = now
            await self._start_attempt(run, node, step)
            self.events.step_started(run, node.name, attempt)
            failure = await self._attempt(run, node, step, attempt)
            retry_in = _retry_in(node, attempt, failure)
            self.events.step_finished(
                run,
                node.name,
                attempt,
                time.time() - now,
                error=None if failure is None else failure.message,
                retry_in=retry_in,
            )
            if failure is None:
                return
            message = failure.message
            now = time.time()
            step.error = message
            if failure.retryable and attempt <= node.retries.limit:
                delay = node.retries.delay_before(attempt)
                step.status = STEP_RETRYING
                step.wake_at = now + delay.total_seconds()
                self._release_slot(run)
                run.status = RunStatus.PAUSED if run.pause_requested else RunStatus.WAITING
                await self._write(run, [step])
                continue
            self._error(run, step, message)
            await self._write(run, [step])
            return

    async def _start_attempt(self, run: RunState, node: StepNode, step: StepState) -> None:
        """Mark the run as inside a step; commit the attempt's start if its action has effects.

        An action with effects may kill the process, so its attempt is durable before it
        runs and a crash counts it. A pure action (``return``, ``fail``) only records its end.
        """
        run.in_step = True  # from here a pause request waits for the attempt to end
        if isinstance(node.action, ReturnAction | FailAction):
            return
        try:
            await self._write(run, [step], run_row=False)
        except BaseException:
            run.in_step = False
            raise

    async def _attempt(
        self, run: RunState, node: StepNode, step: StepState, attempt: int
    ) -> ActionFailed | None:
        """Run one attempt; on success record the result and return ``None``, else the failure."""
        context = dict(run.context)
        try:
            if isinstance(node.action, ReturnAction | FailAction):
                result = await run_action(
                    node.action, context, attempt=attempt, http_client=self._http_client
                )
            else:
                limit = node.timeout or DEFAULT_STEP_TIMEOUT
                try:
                    async with asyncio.timeout(limit.total_seconds()):
                        result = await run_action(
                            node.action, context, attempt=attempt, http_client=self._http_client
                        )
                except TimeoutError:
                    return ActionFailed(
                        f"step {node.name!r} timed out after {format_duration(limit)}"
                    )
        except ActionFailed as exc:
            return exc
        except Exception as exc:
            # Actions turn their failures into ActionFailed; anything else is still only
            # this attempt failing, and the retry policy decides what happens next.
            log.warning("step %r of run %s raised %s", node.name, run.instance_id, exc)
            return ActionFailed(f"step {node.name!r} failed: {type(exc).__name__}")
        finally:
            run.in_step = False
        try:
            result_json = encode(result)
        except (TypeError, ValueError) as exc:
            return ActionFailed(f"step {node.name!r} returned a value that is not JSON: {exc}")
        await self._node_done(run, step, result, result_json)
        return None

    async def _node_done(
        self,
        run: RunState,
        step: StepState,
        result: JSON,
        result_json: str | None,
        extra: Callable[[sqlite3.Connection], object] | None = None,
    ) -> None:
        """Record a node's result (and the run's end after the last node); await the commit."""
        step.status = STEP_COMPLETE
        step.output = result
        step.output_json = result_json
        step.error = None
        step.wake_at = None
        step.ended_at = time.time()
        run.context[step.name] = result
        if step.type == "step":
            run.last_result = (result, result_json)
        if step.idx + 1 >= len(run.definition.nodes):
            self._finish(run, RunStatus.COMPLETE)
        elif run.pause_requested:
            self._release_slot(run)
            run.status = RunStatus.PAUSED
        await self._write(run, [step], extra=extra)

    async def _skipped(self, run: RunState, node: Node) -> bool:
        """Whether ``node`` is skipped by its ``when`` (recorded with status ``skipped``)."""
        assert node.when is not None
        try:
            wanted = is_true(evaluate_expression(node.when, run.context))
        except ActionFailed as exc:
            step = StepState(len(run.steps), node.name, node.type, STEP_RUNNING, 0)
            run.steps.append(step)
            self._error(run, step, f"'when' of {node.name!r}: {exc.message}")
            await self._write(run, [step])
            return True
        if wanted:
            return False
        step = StepState(len(run.steps), node.name, node.type, STEP_SKIPPED, 0)
        step.started_at = step.ended_at = time.time()
        run.steps.append(step)
        run.context[node.name] = None
        if step.idx + 1 >= len(run.definition.nodes):
            self._finish(run, RunStatus.COMPLETE)
        await self._write(run, [step])
        return True

    async def _do_sleep(
        self, run: RunState, node: SleepNode | SleepUntilNode, step: StepState | None
    ) -> None:
        if step is None:
            now = time.time()
            if isinstance(node, SleepNode):
                wake_at = now + node.duration.total_seconds()
            else:
                try:
                    wake_at = resolve_until(node, run.context).timestamp()
                except ActionFailed as exc:
                    step = StepState(len(run.steps), node.name, node.type, STEP_RUNNING, 1)
                    step.started_at = now
                    run.steps.append(step)
                    self._error(run, step, exc.message)
                    await self._write(run, [step])
                    return
            step = StepState(len(run.steps), node.name, node.type, STEP_SUSPENDED, 1)
            step.started_at = now
            step.wake_at = wake_at
            run.steps.append(step)
            self._release_slot(run)
            run.status = RunStatus.PAUSED
            await self._write(run, [step])
        await self._suspend(run, step, RunStatus.PAUSED, lambda: False)
        await self._ready_to_work(run)
        await self._node_done(run, step, None, None)

    async def _do_wait(self, run: RunState, node: WaitForEventNode, step: StepState | None) -> None:
        if step is None:
            now = time.time()
            step = StepState(len(run.steps), node.name, node.type, STEP_SUSPENDED, 1)
            step.started_at = now
            if node.timeout is not None:
                step.wake_at = now + node.timeout.total_seconds()
            run.steps.append(step)
            self._release_slot(run)
            run.status = RunStatus.PAUSED
            await self._write(run, [step])

        def arrived() -> bool:
            return bool(run.events.get(node.event_type))

        if not await self._suspend(run, step, RunStatus.PAUSED, arrived):
            after = f" after {format_duration(node.timeout)}" if node.timeout else ""
            self._error(run, step, f"timed out waiting for event {node.event_type!r}{after}")
            await self._write(run, [step])
            return
        await self._ready_to_work(run)
        pending = run.events[node.event_type]
        event_id = pending[0]
        text = await self._store.run(_store.select_event_payload(event_id))
        if text is None:
            raise RuntimeError(f"event {event_id} of run {run.instance_id} is not in the file")
        pending.popleft()
        result = {"eventType": node.event_type, "payload": decode(text)}
        await self._node_done(
            run, step, result, encode(result), extra=_store.delete_event(event_id)
        )

    async def _suspend(
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
            self._release_slot(run)
            if run.status is not status:
                run.status = status
                self._write_soon(run)
            await _wait_change(run, step.wake_at)

    def _error(self, run: RunState, step: StepState | None, message: str) -> None:
        if step is not None:
            step.status = STEP_ERRORED
            step.error = message
            step.ended_at = time.time()
        run.error = message
        self._finish(run, RunStatus.ERRORED)

    def _finish(self, run: RunState, status: RunStatus) -> None:
        """Make ``run`` terminal: free its slot, forget it from memory (the file has it)."""
        run.status = status
        run.ended_at = time.time()
        if status is RunStatus.COMPLETE:
            run.output, run.output_json = run.last_result
        run.pause_requested = False
        self._slots.withdraw(run)
        self._release_slot(run)
        if self._active.get(run.key) is run:
            del self._active[run.key]
        self.events.run_finished(run, status, run.ended_at - (run.started_at or run.created_at))

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
        if key in self._active or key in self._creating:
            raise AlreadyExists(definition.id, instance_id)
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
        if self._slots.take(run):
            run.status, run.started_at = RunStatus.RUNNING, run.created_at
        else:
            run.queue_seq = self._slots.next_seq()
            self._slots.enqueue(run)
        self._creating.add(key)
        try:
            seq = await self._store.submit(_store.insert_run(run.insert_params()))
        except BaseException:
            self._abandon(run)
            raise
        finally:
            self._creating.discard(key)
        if seq is None:
            self._abandon(run)
            raise AlreadyExists(definition.id, instance_id)
        return self._admit(run, seq)

    def _abandon(self, run: RunState) -> None:
        """Give back the slot or queue place of a run whose row could not be written."""
        self._slots.withdraw(run)
        self._slots.release(run)

    def _admit(self, run: RunState, seq: int) -> Run:
        """Start driving a run whose row is committed; tell listeners."""
        run.seq = seq
        run.context = {"input": run.input}
        run.written_row = run.row_params()
        run.notified = run.observable()
        snapshot = run.to_model()
        self._active[run.key] = run
        for listener in list(self._listeners):
            try:
                listener(snapshot)
            except Exception:
                log.exception("a run listener raised; it stays subscribed")
        self.events.run_started(run)
        self._start_task(run)
        return snapshot

    async def send_event(self, run: RunState, event_type: str, text: str) -> None:
        """Keep an event for the run's first wait of that type; return once it is durable."""
        self._next_event_id += 1
        event_id = self._next_event_id
        run.events.setdefault(event_type, deque()).append(event_id)
        run.changed.set()
        await self._store.submit(_store.insert_event(event_id, run.seq, event_type, text))

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
            self._slots.withdraw(run)
            if run.holds_slot and not run.in_step:
                self._release_slot(run)
        run.changed.set()
        await self._write(run)

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
        await self._write(run)

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
        self._finish(run, RunStatus.TERMINATED)
        run.status = RunStatus.TERMINATED
        written = self._write(run, [step] if step else [])
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
        run.queue_seq = self._slots.next_seq()  # at the back, whenever it was created
        written = self._write(run, extra=_store.forget_from(run.seq, keep))
        self._active[run.key] = run
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
        self._slots.withdraw(run)
        self._release_slot(run)
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


def _retry_in(node: StepNode, attempt: int, failure: ActionFailed | None) -> float | None:
    """Seconds before the next attempt of a failed one; ``None`` on success or no retry left."""
    if failure is None or not failure.retryable or attempt > node.retries.limit:
        return None
    return node.retries.delay_before(attempt).total_seconds()


def _refuse_finished(run: RunState) -> None:
    if run.status in TERMINAL_STATUSES:
        raise RunFinished(run.workflow_id, run.instance_id, run.status.value)


async def _settle(task: asyncio.Task[None] | None) -> None:
    if task is None or task is asyncio.current_task():
        return
    await asyncio.gather(task, return_exceptions=True)


async def _wait_change(run: RunState, deadline: float | None) -> None:
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


def _remember_event(run: RunState, event: EventRow) -> None:
    run.events.setdefault(event.event_type, deque()).append(event.id)


def _log_failure(future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        log.error("engine: a write failed: %s", error)
