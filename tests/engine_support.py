"""Helpers for the engine's tests: wait for a run's condition, build definitions inline, gates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from engine_probe import GATES
from runcast.engine import Engine
from runcast.engine.definitions import (
    Node,
    PythonAction,
    RetryPolicy,
    ReturnAction,
    StepNode,
    WorkflowDefinition,
)
from runcast.models import JSON, Run, RunStatus


async def wait_for_run(
    engine: Engine,
    workflow_id: str,
    instance_id: str,
    condition: Callable[[Run], bool],
    *,
    within: float = 10.0,
) -> Run:
    """Poll ``get_run`` until ``condition(run)``; fail after ``within`` seconds."""
    run = await engine.get_run(workflow_id, instance_id)
    try:
        async with asyncio.timeout(within):
            while not condition(run):
                await asyncio.sleep(0.01)
                run = await engine.get_run(workflow_id, instance_id)
    except TimeoutError:
        raise AssertionError(f"condition not reached in {within}s; last state: {run}") from None
    return run


async def wait_for_status(
    engine: Engine, workflow_id: str, instance_id: str, *statuses: RunStatus, within: float = 10.0
) -> Run:
    """Poll until the run is in one of ``statuses``."""
    return await wait_for_run(
        engine, workflow_id, instance_id, lambda run: run.status in statuses, within=within
    )


async def run_until(
    engine: Engine, workflow_id: str, *statuses: RunStatus, input: JSON = None, within: float = 10.0
) -> Run:
    """Trigger a run of ``workflow_id``; return it once it is in one of ``statuses``."""
    run = await engine.trigger(workflow_id, input=input)
    return await wait_for_status(engine, workflow_id, run.instance_id, *statuses, within=within)


def workflow(workflow_id: str, *nodes: Node) -> WorkflowDefinition:
    """A workflow definition made in the test."""
    return WorkflowDefinition(id=workflow_id, name=workflow_id, nodes=nodes)


def python_step(
    name: str,
    target: str,
    *,
    retries: RetryPolicy | None = None,
    timeout: timedelta | None = None,
) -> StepNode:
    """A step calling ``engine_probe`` function ``target``."""
    return StepNode(
        name=name,
        action=PythonAction(f"engine_probe:{target}"),
        retries=retries or RetryPolicy(),
        timeout=timeout,
    )


def return_step(name: str, value: object) -> StepNode:
    """A step with a ``return`` action."""
    return StepNode(name=name, action=ReturnAction(value))


@asynccontextmanager
async def open_engine(
    db_path: Path, *definitions: WorkflowDefinition, **options: object
) -> AsyncIterator[Engine]:
    """A started engine over ``definitions`` on ``db_path``, closed after."""
    engine = Engine(
        {definition.id: definition for definition in definitions},
        db_path=db_path,
        **options,  # type: ignore[arg-type]
    )
    async with engine:
        yield engine


HOLD = workflow("hold", python_step("held", "hold"), return_step("after", "held"))
"""Its first step waits until the test opens the gate named by ``input.gate``."""


def close_gates(*names: str) -> None:
    """Closed gates called ``names`` for ``hold`` steps (``engine_probe.GATES``)."""
    for name in names:
        GATES[name] = asyncio.Event()


async def trigger_hold(engine: Engine, name: str) -> RunStatus:
    """Trigger a ``hold`` run called ``name`` held by gate ``name``; return its status."""
    return (await engine.trigger("hold", input={"gate": name}, instance_id=name)).status


async def occupy(engine: Engine, running: str, *queued: str) -> None:
    """Trigger ``hold`` run ``running`` into the free slot and ``queued`` behind it, in order."""
    assert await trigger_hold(engine, running) is RunStatus.RUNNING
    for name in queued:
        assert await trigger_hold(engine, name) is RunStatus.QUEUED


async def release(engine: Engine, name: str) -> Run:
    """Open gate ``name`` and wait until its ``hold`` run completes."""
    GATES[name].set()
    return await wait_for_status(engine, "hold", name, RunStatus.COMPLETE)


async def pass_slot(engine: Engine, finished: str, to: str) -> None:
    """Complete ``hold`` run ``finished``; wait until ``hold`` run ``to`` has the freed slot."""
    await release(engine, finished)
    await wait_for_status(engine, "hold", to, RunStatus.RUNNING)


async def completed_hold(engine: Engine, name: str) -> None:
    """A ``hold`` run called ``name`` that ran to completion (its gate open from the start)."""
    GATES[name] = asyncio.Event()
    GATES[name].set()
    await trigger_hold(engine, name)
    await wait_for_status(engine, "hold", name, RunStatus.COMPLETE)
