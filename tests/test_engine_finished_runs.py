"""Finished runs read from memory: kept after one read, never once they changed or went."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from engine_support import wait_for_status
from runcast.engine import Engine, load_workflows
from runcast.engine._finished_runs import FinishedRuns
from runcast.engine._rows import RunRow, StepRow
from runcast.errors import RunNotFound
from runcast.models import Run, RunStatus
from test_engine_retention import SHORT


async def completed(engine: Engine, instance_id: str, payload: object = None) -> Run:
    """A three-steps run triggered and waited for until COMPLETE."""
    await engine.trigger("three-steps", instance_id=instance_id, input={"orderId": payload})
    return await wait_for_status(engine, "three-steps", instance_id, RunStatus.COMPLETE)


async def test_a_finished_run_is_read_once_from_the_file(engine: Engine) -> None:
    """The second read of a finished run is the very run the first read built."""
    await completed(engine, "f1")
    first = await engine.get_run("three-steps", "f1")
    assert await engine.get_run("three-steps", "f1") is first


async def test_a_restarted_run_is_read_as_it_is_now(engine: Engine) -> None:
    """After a restart the reads follow the run again, up to its new ending."""
    first = await completed(engine, "f2")
    assert await engine.get_run("three-steps", "f2") is not None
    restarted = await engine.restart("three-steps", "f2")
    assert restarted.output is None
    now = await engine.get_run("three-steps", "f2")
    assert now.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETE)
    again = await wait_for_status(engine, "three-steps", "f2", RunStatus.COMPLETE)
    assert again.started_at is not None
    assert first.ended_at is not None
    assert again.started_at >= first.ended_at
    assert await engine.get_run("three-steps", "f2") == again


async def test_a_deleted_run_is_not_found(engine: Engine) -> None:
    """A finished run read (and kept) then deleted is RunNotFound."""
    await completed(engine, "f3")
    await engine.get_run("three-steps", "f3")
    assert await engine.delete_run("three-steps", "f3")
    with pytest.raises(RunNotFound):
        await engine.get_run("three-steps", "f3")


async def test_a_run_swept_by_retention_is_not_found(tmp_path: Path) -> None:
    """A finished run read while kept, then deleted by the background sweep, is RunNotFound."""
    (tmp_path / "short.yaml").write_text(SHORT)
    definitions = load_workflows(tmp_path).definitions
    async with Engine(definitions, db_path=tmp_path / "e.db", retention_interval=0.05) as engine:
        await engine.trigger("short-lived", instance_id="s", input=1)
        await wait_for_status(engine, "short-lived", "s", RunStatus.COMPLETE)
        deadline = time.monotonic() + 20
        while True:
            try:
                await engine.get_run("short-lived", "s")
            except RunNotFound:
                break
            assert time.monotonic() < deadline, "the swept run is still read"
            await asyncio.sleep(0.05)


async def test_new_definitions_drop_every_kept_run(engine: Engine) -> None:
    """After the definitions are replaced, a finished run is read from the file again."""
    await completed(engine, "f4")
    first = await engine.get_run("three-steps", "f4")
    engine.replace_definitions(dict(engine.definitions))
    again = await engine.get_run("three-steps", "f4")
    assert again is not first
    assert again == first


async def test_a_large_run_is_not_kept(engine: Engine) -> None:
    """A run whose stored JSON is over the size bound is read from the file every time."""
    await completed(engine, "f5", "x" * 20_000)
    first = await engine.get_run("three-steps", "f5")
    assert await engine.get_run("three-steps", "f5") is not first


def stored(run: Run, *, chars: int = 10) -> tuple[RunRow, list[StepRow]]:
    """A stored row for ``run`` with ``chars`` characters of output."""
    row = RunRow(
        seq=1,
        workflow_id=run.workflow_id,
        instance_id=run.instance_id,
        status=run.raw_status,
        input=None,
        output="x" * chars,
        error=None,
        created_at=0.0,
        started_at=None,
        ended_at=None,
        pause_requested=False,
        queue_seq=None,
    )
    return row, []


def a_run(instance_id: str, status: RunStatus = RunStatus.COMPLETE) -> Run:
    """A run of workflow w in ``status``."""
    return Run(workflow_id="w", instance_id=instance_id, status=status, raw_status=status.value)


def test_a_read_that_overlapped_a_change_is_not_kept() -> None:
    """A run read at an older generation, or unfinished, is not kept; at most max_runs are."""
    runs = FinishedRuns(max_runs=2)
    generation = runs.generation
    runs.forget("w", "a")
    runs.keep(a_run("a"), *stored(a_run("a")), generation=generation)
    runs.keep(a_run("b", RunStatus.RUNNING), *stored(a_run("b")), generation=runs.generation)
    assert len(runs) == 0
    for name in ("c", "d", "e"):
        runs.keep(a_run(name), *stored(a_run(name)), generation=runs.generation)
    assert runs.get("w", "c", swept=0) is None
    assert runs.get("w", "e", swept=0) == a_run("e")
    assert runs.get("w", "e", swept=1) is None
    assert len(runs) == 0
