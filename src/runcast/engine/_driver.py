"""Driving a run: its nodes in order, from where it is, until it ends or is taken over."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from runcast.engine._attempts import format_duration
from runcast.engine._pacing import Pacer
from runcast.engine._run_reads import select_event_payload
from runcast.engine._run_writes import delete_event
from runcast.engine._runbook import RunBook
from runcast.engine._state import (
    STEP_RUNNING,
    STEP_SKIPPED,
    STEP_SUSPENDED,
    RunState,
    StepState,
    decode,
    encode,
)
from runcast.engine._steps import StepRunner
from runcast.engine._store import Store
from runcast.engine.actions import ActionFailed, evaluate_expression, is_true, resolve_until
from runcast.engine.definitions import (
    Node,
    SleepNode,
    SleepUntilNode,
    StepNode,
    WaitForEventNode,
)
from runcast.models import TERMINAL_STATUSES, RunStatus

__all__ = ["RunDriver"]

log = logging.getLogger("runcast.engine")


class RunDriver:
    """Executes the nodes of runs, one task per run (the executor owns the tasks).

    Args:
        store: the engine's store (events' payloads are read from it).
        book: the engine's runs.
        pacer: holds a run back while it may not work.
        http_client: the pooled client of ``http`` actions (the engine's).
    """

    def __init__(
        self, store: Store, book: RunBook, pacer: Pacer, http_client: httpx.AsyncClient
    ) -> None:
        self._store = store
        self._book = book
        self._pacer = pacer
        self.steps = StepRunner(book, pacer, http_client)

    async def drive(self, run: RunState) -> None:
        """Run ``run``'s nodes until it ends, a command takes it over, or the engine stops."""
        try:
            await self._nodes(run)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if run.status in TERMINAL_STATUSES or self._book.closing:
                raise
            log.exception("run %s of %r failed inside the engine", run.instance_id, run.workflow_id)
            message = f"internal error in the engine ({type(exc).__name__}); see its log"
            try:
                await self._book.fail(run, run.current_step, message)
            except Exception:
                log.exception("could not record the failure of run %s", run.instance_id)

    async def _nodes(self, run: RunState) -> None:
        nodes = run.definition.nodes
        while run.key in self._book.active and run.task is asyncio.current_task():
            index = run.node_index
            if index >= len(nodes):
                self._book.finish(run, RunStatus.COMPLETE)
                await self._book.recorder.write(run)
                return
            node = nodes[index]
            if run.current_step is None and node.when and await self._skipped(run, node):
                continue
            if isinstance(node, StepNode):
                await self.steps.run(run, node, run.current_step)
            elif isinstance(node, WaitForEventNode):
                await self._wait(run, node, run.current_step)
            else:
                await self._sleep(run, node, run.current_step)

    async def _skipped(self, run: RunState, node: Node) -> bool:
        """Whether ``node`` is skipped by its ``when`` (recorded with status ``skipped``)."""
        assert node.when is not None
        try:
            wanted = is_true(evaluate_expression(node.when, run.context))
        except ActionFailed as exc:
            step = StepState(len(run.steps), node.name, node.type, STEP_RUNNING, 0)
            run.steps.append(step)
            await self._book.fail(run, step, f"'when' of {node.name!r}: {exc.message}")
            return True
        if wanted:
            return False
        step = StepState(len(run.steps), node.name, node.type, STEP_SKIPPED, 0)
        step.started_at = step.ended_at = time.time()
        run.steps.append(step)
        run.context[node.name] = None
        if step.idx + 1 >= len(run.definition.nodes):
            self._book.finish(run, RunStatus.COMPLETE)
        await self._book.recorder.write(run, [step])
        return True

    async def _sleep(
        self, run: RunState, node: SleepNode | SleepUntilNode, step: StepState | None
    ) -> None:
        if step is None:
            step = StepState(len(run.steps), node.name, node.type, STEP_SUSPENDED, 1)
            step.started_at = time.time()
            try:
                step.wake_at = _wake_at(node, run, step.started_at)
            except ActionFailed as exc:
                step.status = STEP_RUNNING
                run.steps.append(step)
                await self._book.fail(run, step, exc.message)
                return
            await self._book.suspend_at(run, step)
        await self._pacer.suspend(run, step, RunStatus.PAUSED, lambda: False)
        await self._pacer.ready_to_work(run)
        await self._book.complete_node(run, step, None, None)

    async def _wait(self, run: RunState, node: WaitForEventNode, step: StepState | None) -> None:
        if step is None:
            step = StepState(len(run.steps), node.name, node.type, STEP_SUSPENDED, 1)
            step.started_at = time.time()
            if node.timeout is not None:
                step.wake_at = step.started_at + node.timeout.total_seconds()
            await self._book.suspend_at(run, step)

        def arrived() -> bool:
            return bool(run.events.get(node.event_type))

        if not await self._pacer.suspend(run, step, RunStatus.PAUSED, arrived):
            after = f" after {format_duration(node.timeout)}" if node.timeout else ""
            await self._book.fail(
                run, step, f"timed out waiting for event {node.event_type!r}{after}"
            )
            return
        await self._pacer.ready_to_work(run)
        pending = run.events[node.event_type]
        event_id = pending[0]
        text = await self._store.run(select_event_payload(event_id))
        if text is None:
            raise RuntimeError(f"event {event_id} of run {run.instance_id} is not in the file")
        pending.popleft()
        result = {"eventType": node.event_type, "payload": decode(text)}
        await self._book.complete_node(
            run, step, result, encode(result), extra=delete_event(event_id)
        )


def _wake_at(node: SleepNode | SleepUntilNode, run: RunState, now: float) -> float:
    """When a sleep entered at ``now`` ends; raises ``ActionFailed`` for a bad ``until``."""
    if isinstance(node, SleepNode):
        return now + node.duration.total_seconds()
    return resolve_until(node, run.context).timestamp()
