"""The engine's slot queue: FIFO by the moment a run enters it, kept in the SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from engine_probe import GATES
from engine_support import (
    HOLD,
    close_gates,
    completed_hold,
    occupy,
    open_engine,
    pass_slot,
    python_step,
    release,
    trigger_hold,
    wait_for_status,
    workflow,
)
from runcast.engine import Engine
from runcast.engine._schema import runs_table
from runcast.engine.definitions import WaitForEventNode
from runcast.errors import AlreadyExists
from runcast.models import RunStatus

WAITS = workflow("waits", WaitForEventNode("go", "go"), python_step("held", "hold"))


async def statuses(engine: Engine, *names: str) -> list[RunStatus]:
    """The current status of each ``hold`` run in ``names``."""
    return [(await engine.get_run("hold", name)).status for name in names]


async def test_a_restarted_run_queues_behind_runs_queued_before_the_restart(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A restart over the cap puts the run at the back of the queue, not at its creation place."""
    close_gates("blocker", "q1", "q2")
    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        await completed_hold(engine, "old")
        await occupy(engine, "blocker", "q1", "q2")
        assert (await engine.restart("hold", "old")).status is RunStatus.QUEUED
        # restarting a queued run moves it to the back too: the queue is q2, old, q1
        assert (await engine.restart("hold", "q1")).status is RunStatus.QUEUED
        await pass_slot(engine, "blocker", "q2")
        assert await statuses(engine, "old", "q1") == [RunStatus.QUEUED, RunStatus.QUEUED]
        GATES["q2"].set()
        await wait_for_status(engine, "hold", "old", RunStatus.COMPLETE)
        await wait_for_status(engine, "hold", "q1", RunStatus.RUNNING)
        await release(engine, "q1")


async def test_a_run_resumed_over_the_cap_queues_at_the_back(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A run paused by request and resumed when no slot is free queues behind later runs."""
    close_gates("p", "q", "r")
    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        await occupy(engine, "p", "q")
        assert (await engine.pause("hold", "p")).status is RunStatus.WAITING_FOR_PAUSE
        GATES["p"].set()
        await wait_for_status(engine, "hold", "p", RunStatus.PAUSED)
        await wait_for_status(engine, "hold", "q", RunStatus.RUNNING)
        assert await trigger_hold(engine, "r") is RunStatus.QUEUED
        await engine.resume("hold", "p")
        await wait_for_status(engine, "hold", "p", RunStatus.QUEUED)
        await pass_slot(engine, "q", "r")
        assert await statuses(engine, "p") == [RunStatus.QUEUED]
        await release(engine, "r")
        await wait_for_status(engine, "hold", "p", RunStatus.COMPLETE)


async def test_a_run_woken_over_the_cap_queues_at_the_back(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A run woken by its event when no slot is free queues behind runs queued before."""
    close_gates("w", "blocker", "q")
    async with open_engine(tmp_path / "e.db", WAITS, HOLD, max_running=1) as engine:
        await engine.trigger("waits", input={"gate": "w"}, instance_id="w")
        await wait_for_status(engine, "waits", "w", RunStatus.PAUSED)
        await occupy(engine, "blocker", "q")
        await engine.send_event("waits", "w", event_type="go")
        await wait_for_status(engine, "waits", "w", RunStatus.QUEUED)
        await pass_slot(engine, "blocker", "q")
        assert (await engine.get_run("waits", "w")).status is RunStatus.QUEUED
        await release(engine, "q")
        await wait_for_status(engine, "waits", "w", RunStatus.RUNNING)
        GATES["w"].set()
        await wait_for_status(engine, "waits", "w", RunStatus.COMPLETE)


async def queue_y_before_x(db: Path) -> None:
    """Leave ``blocker`` running and the queue ``y, x`` (x created first, then restarted)."""
    async with open_engine(db, HOLD, max_running=1) as engine:
        await occupy(engine, "blocker", "x", "y")
        await engine.restart("hold", "x")


async def test_queue_order_survives_an_engine_restart_on_the_same_file(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A new engine on the file serves queued runs in the order they entered the queue."""
    close_gates("blocker", "x", "y")
    await queue_y_before_x(tmp_path / "e.db")
    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        await wait_for_status(engine, "hold", "blocker", RunStatus.RUNNING)
        assert await statuses(engine, "x", "y") == [RunStatus.QUEUED, RunStatus.QUEUED]
        await pass_slot(engine, "blocker", "y")
        assert await statuses(engine, "x") == [RunStatus.QUEUED]
        # a run entering the queue after the restart goes behind the restored ones
        close_gates("z")
        assert await trigger_hold(engine, "z") is RunStatus.QUEUED
        await pass_slot(engine, "y", "x")
        assert await statuses(engine, "z") == [RunStatus.QUEUED]
        await release(engine, "x")
        await release(engine, "z")


async def test_a_slot_free_at_startup_goes_to_the_head_of_the_restored_queue(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """With a free slot after a restart, the run first in the queue takes it, not the oldest."""
    close_gates("blocker", "x", "y")
    await queue_y_before_x(tmp_path / "e.db")
    async with open_engine(tmp_path / "e.db", HOLD, max_running=2) as engine:
        await wait_for_status(engine, "hold", "y", RunStatus.RUNNING)
        assert await statuses(engine, "blocker", "x") == [RunStatus.RUNNING, RunStatus.QUEUED]
        await pass_slot(engine, "blocker", "x")
        await release(engine, "x")
        await release(engine, "y")


OLD_RUNS_TABLE = runs_table(later=())
"""The ``runs`` table of the engine before ``queue_seq`` and ``version`` were added."""


async def test_a_file_without_queue_order_opens_and_keeps_creation_order(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A file of the engine before queue_seq gains the column; its queued runs keep their order."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(OLD_RUNS_TABLE)
        conn.executemany(
            "INSERT INTO runs (workflow_id, instance_id, status, input, output, created_at,"
            " ended_at) VALUES ('hold', ?, ?, ?, ?, 1.0, ?)",
            [
                ("done", "complete", '{"gate":"done"}', '"held"', 2.0),
                ("a", "queued", '{"gate":"a"}', None, None),
                ("b", "queued", '{"gate":"b"}', None, None),
            ],
        )
    conn.close()
    close_gates("a", "b", "c")
    async with open_engine(db, HOLD, max_running=1) as engine:
        assert (await engine.get_run("hold", "done")).output == "held"
        await wait_for_status(engine, "hold", "a", RunStatus.RUNNING)
        assert await trigger_hold(engine, "c") is RunStatus.QUEUED
        assert await statuses(engine, "b") == [RunStatus.QUEUED]
        await pass_slot(engine, "a", "b")
        assert await statuses(engine, "c") == [RunStatus.QUEUED]
        await release(engine, "b")
        await release(engine, "c")
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    conn.close()
    assert "queue_seq" in columns


async def test_a_run_queued_while_its_row_is_written_keeps_its_place(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A slot freed while a queued run's row is being written goes to it, not to a later run."""
    close_gates("blocker", "a", "b")
    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        assert await trigger_hold(engine, "blocker") is RunStatus.RUNNING
        first = asyncio.create_task(trigger_hold(engine, "a"))
        await asyncio.sleep(0)  # "a" is queued and its row is in the store's queue
        ended = asyncio.create_task(engine.terminate("hold", "blocker"))
        second = asyncio.create_task(trigger_hold(engine, "b"))
        assert await first is RunStatus.QUEUED
        assert await second is RunStatus.QUEUED
        await ended
        await wait_for_status(engine, "hold", "a", RunStatus.RUNNING)
        assert await statuses(engine, "b") == [RunStatus.QUEUED]
        await release(engine, "a")
        await release(engine, "b")


async def test_a_refused_trigger_over_the_cap_leaves_no_place_in_the_queue(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A trigger refused as a duplicate over the cap neither blocks the queue nor keeps a slot."""
    close_gates("blocker", "q", "r")
    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        await completed_hold(engine, "done")
        assert await trigger_hold(engine, "blocker") is RunStatus.RUNNING
        with pytest.raises(AlreadyExists):
            await trigger_hold(engine, "done")
        assert await trigger_hold(engine, "q") is RunStatus.QUEUED
        await pass_slot(engine, "blocker", "q")
        await release(engine, "q")
        assert await trigger_hold(engine, "r") is RunStatus.RUNNING
        await release(engine, "r")
