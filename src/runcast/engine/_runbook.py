"""The unfinished runs of one engine, by id, and the changes that end a node or a run."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from runcast.engine._recorder import RunRecorder
from runcast.engine._slots import SlotQueue
from runcast.engine._state import STEP_COMPLETE, STEP_ERRORED, RunState, StepState
from runcast.engine.observer import EngineEvents
from runcast.models import JSON, RunStatus

__all__ = ["RunBook"]


class RunBook:
    """The runs one engine drives (they stay in memory until they end).

    Args:
        slots: the concurrency cap; a run that ends gives its slot or queue place back.
        recorder: records each change.
        events: told when a run ends.
    """

    def __init__(self, slots: SlotQueue, recorder: RunRecorder, events: EngineEvents) -> None:
        self.slots = slots
        self.recorder = recorder
        self.events = events
        self.active: dict[tuple[str, str], RunState] = {}
        self.creating: set[tuple[str, str]] = set()
        """Runs being triggered whose row is being written (their ids are taken)."""
        self.closing = False
        """The engine stops: no run task starts any more."""

    def find(self, workflow_id: str, instance_id: str) -> RunState | None:
        """The unfinished run with this id, if this engine drives it."""
        return self.active.get((workflow_id, instance_id))

    def taken(self, key: tuple[str, str]) -> bool:
        """Whether a run with this ``(workflow_id, instance_id)`` is driven or being created."""
        return key in self.active or key in self.creating

    def finish(self, run: RunState, status: RunStatus) -> None:
        """Make ``run`` terminal: free its slot, forget it from memory (the file has it)."""
        run.status = status
        run.ended_at = time.time()
        if status is RunStatus.COMPLETE:
            run.output, run.output_json = run.last_result
        run.pause_requested = False
        self.slots.withdraw(run)
        self.slots.release(run)
        if self.active.get(run.key) is run:
            del self.active[run.key]
        self.events.run_finished(run, status, run.ended_at - (run.started_at or run.created_at))

    def error(self, run: RunState, step: StepState | None, message: str) -> None:
        """End ``run`` as ``errored`` with ``message``, at ``step`` if it is inside one."""
        if step is not None:
            step.status = STEP_ERRORED
            step.error = message
            step.ended_at = time.time()
        run.error = message
        self.finish(run, RunStatus.ERRORED)

    async def fail(self, run: RunState, step: StepState | None, message: str) -> None:
        """End ``run`` as ``errored`` (see :meth:`error`) and await the commit."""
        self.error(run, step, message)
        await self.recorder.write(run, [step] if step else [])

    async def suspend_at(self, run: RunState, step: StepState) -> None:
        """Enter ``step``, a sleep or wait: the run gives up its slot and shows ``paused``."""
        run.steps.append(step)
        self.slots.release(run)
        run.status = RunStatus.PAUSED
        await self.recorder.write(run, [step])

    async def complete_node(
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
            self.finish(run, RunStatus.COMPLETE)
        elif run.pause_requested:
            self.slots.release(run)
            run.status = RunStatus.PAUSED
        await self.recorder.write(run, [step], extra=extra)
