"""Running a ``step`` node: its attempts, each under a timeout, retried by its policy."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from runcast.engine._attempts import (
    DEFAULT_STEP_TIMEOUT,
    attempts_allowed,
    died_message,
    format_duration,
    retry_in,
)
from runcast.engine._pacing import Pacer
from runcast.engine._runbook import RunBook
from runcast.engine._state import STEP_RETRYING, STEP_RUNNING, RunState, StepState, encode
from runcast.engine.actions import ActionFailed, run_action
from runcast.engine.definitions import FailAction, ReturnAction, StepNode
from runcast.engine.observer import AttemptEnd
from runcast.models import JSON, RunStatus

__all__ = ["StepRunner"]

log = logging.getLogger("runcast.engine")


class StepRunner:
    """Runs the attempts of a run's step until one succeeds or none is left.

    Args:
        book: the engine's runs (a step that fails for good ends its run).
        pacer: holds the run back while queued or paused, and through retry delays.
        http_client: the pooled client of ``http`` actions (the engine's).
    """

    def __init__(self, book: RunBook, pacer: Pacer, http_client: httpx.AsyncClient) -> None:
        self._book = book
        self._pacer = pacer
        self._http_client = http_client

    async def run(self, run: RunState, node: StepNode, step: StepState | None) -> None:
        """Run ``node`` from where ``step`` (its entered state, if any) left it."""
        if step is None:
            await self._pacer.ready_to_work(run)  # a paused or queued run shows no next step yet
            step = StepState(idx=len(run.steps), name=node.name, type="step", status=STEP_RUNNING)
            run.steps.append(step)
        while True:
            if step.status == STEP_RETRYING:
                await self._pacer.suspend(run, step, RunStatus.WAITING, lambda: False)
            elif step.status == STEP_RUNNING and step.attempts >= attempts_allowed(node):
                # The process died during that attempt (its start was committed): it counts.
                await self._book.fail(run, step, died_message(node, step.attempts))
                return
            if not await self._try_once(run, node, step):
                return

    async def _try_once(self, run: RunState, node: StepNode, step: StepState) -> bool:
        """Run the next attempt and record how it ended; whether another one follows."""
        attempt = step.attempts + 1
        await self._pacer.ready_to_work(run)
        began = time.time()
        step.status = STEP_RUNNING
        step.attempts = attempt
        step.wake_at = None
        if step.started_at is None:
            step.started_at = began
        await self._start_attempt(run, node, step)
        self._book.events.step_started(run, node.name, attempt)
        failure = await self._attempt(run, node, step, attempt)
        delay = retry_in(node, attempt, failure)
        error = None if failure is None else failure.message
        ended = AttemptEnd(node.name, attempt, time.time() - began, error, delay)
        self._book.events.step_finished(run, ended)
        if error is None:
            return False
        if delay is None:
            await self._book.fail(run, step, error)
            return False
        step.error = error
        step.status = STEP_RETRYING
        step.wake_at = time.time() + delay
        self._book.slots.release(run)
        run.status = RunStatus.PAUSED if run.pause_requested else RunStatus.WAITING
        await self._book.recorder.write(run, [step])
        return True

    async def _start_attempt(self, run: RunState, node: StepNode, step: StepState) -> None:
        """Mark the run as inside a step; commit the attempt's start if its action has effects.

        An action with effects may kill the process, so its attempt is durable before it
        runs and a crash counts it. A pure action (``return``, ``fail``) only records its end.
        """
        run.in_step = True  # from here a pause request waits for the attempt to end
        if isinstance(node.action, ReturnAction | FailAction):
            return
        try:
            await self._book.recorder.write(run, [step], run_row=False)
        except BaseException:
            run.in_step = False
            raise

    async def _attempt(
        self, run: RunState, node: StepNode, step: StepState, attempt: int
    ) -> ActionFailed | None:
        """Run one attempt; on success record the result and return ``None``, else the failure."""
        try:
            result = await self._act(node, dict(run.context), attempt)
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
        await self._book.complete_node(run, step, result, result_json)
        return None

    async def _act(self, node: StepNode, context: dict[str, JSON], attempt: int) -> JSON:
        """The action's result; a pure one runs at once, one with effects under the timeout."""
        if isinstance(node.action, ReturnAction | FailAction):
            return await run_action(
                node.action, context, attempt=attempt, http_client=self._http_client
            )
        limit = node.timeout or DEFAULT_STEP_TIMEOUT
        try:
            async with asyncio.timeout(limit.total_seconds()):
                return await run_action(
                    node.action, context, attempt=attempt, http_client=self._http_client
                )
        except TimeoutError:
            raise ActionFailed(
                f"step {node.name!r} timed out after {format_duration(limit)}"
            ) from None
