"""The run lifecycle of the embedded engine, against a real engine on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from ulid import ULID

from engine_probe import GATES
from engine_support import (
    HOLD,
    close_gates,
    open_engine,
    python_step,
    release,
    return_step,
    run_until,
    trigger_hold,
    wait_for_run,
    wait_for_status,
    workflow,
)
from runcast.engine import DatabaseUnusable, Engine, load_workflows
from runcast.engine.definitions import (
    FailAction,
    RetryPolicy,
    SleepNode,
    SleepUntilNode,
    StepNode,
    WaitForEventNode,
    WorkflowDefinition,
)
from runcast.errors import (
    AlreadyExists,
    BadUserInput,
    NotTriggerable,
    RunFinished,
    RunNotFound,
    WorkflowNotFound,
)
from runcast.models import Run, RunStatus, WorkflowKind

LONG_SLEEP = workflow(
    "long-sleep", SleepNode("nap", timedelta(seconds=60)), return_step("z", "`1`")
)


async def test_three_steps_complete_with_last_result_and_steps(engine: Engine) -> None:
    """A 3-step run completes with the last step's result as output and every step recorded."""
    run = await engine.trigger("three-steps", input={"orderId": "A"})
    assert run.status in (RunStatus.RUNNING, RunStatus.QUEUED)
    done = await wait_for_status(engine, "three-steps", run.instance_id, RunStatus.COMPLETE)
    assert done.output == {"orderId": "A", "steps": [1, 2, 3]}
    assert done.error is None
    assert done.steps is not None
    assert [(s.name, s.type, s.status, s.attempts) for s in done.steps] == [
        ("first", "step", "complete", 1),
        ("second", "step", "complete", 1),
        ("third", "step", "complete", 1),
    ]
    assert done.steps[1].output == {"orderId": "A", "step": 2}
    for step in done.steps:
        assert step.started_at is not None
        assert step.ended_at is not None
        assert step.started_at <= step.ended_at
    assert done.created_at is not None
    assert done.started_at is not None
    assert done.ended_at is not None
    assert done.created_at <= done.started_at <= done.ended_at


async def test_run_ids_are_ulids_unless_given(engine: Engine) -> None:
    """A run id is a fresh ULID unless the caller gives a valid one."""
    run = await engine.trigger("three-steps", input={"orderId": "A"})
    assert str(ULID.from_str(run.instance_id)) == run.instance_id
    named = await engine.trigger("three-steps", input={"orderId": "B"}, instance_id="order_B-1")
    assert named.instance_id == "order_B-1"
    assert (await engine.get_run("three-steps", "order_B-1")).input == {"orderId": "B"}


@pytest.mark.parametrize("bad", ["", "-leading-dash", "has space", "x" * 101, "a/b", "ü"])
async def test_malformed_instance_ids_are_refused(engine: Engine, bad: str) -> None:
    """A caller-given instance id outside ^[A-Za-z0-9_][A-Za-z0-9_-]{0,99}$ is bad input."""
    with pytest.raises(BadUserInput):
        await engine.trigger("three-steps", instance_id=bad)


async def test_duplicate_instance_id_is_refused(engine: Engine) -> None:
    """A second run with the same instance id, running or finished, already exists."""
    await engine.trigger("sleepy", input=1, instance_id="dup")
    with pytest.raises(AlreadyExists):
        await engine.trigger("sleepy", instance_id="dup")
    await engine.trigger("three-steps", input={"orderId": 1}, instance_id="dup2")
    await wait_for_status(engine, "three-steps", "dup2", RunStatus.COMPLETE)
    with pytest.raises(AlreadyExists):
        await engine.trigger("three-steps", instance_id="dup2")


async def test_unknown_workflow_script_and_run_errors(engine: Engine) -> None:
    """Unknown workflows and runs are not found; a script cannot be triggered and names its URL."""
    with pytest.raises(WorkflowNotFound):
        await engine.trigger("nope")
    with pytest.raises(NotTriggerable) as caught:
        await engine.trigger("script")
    assert caught.value.url == "https://example.invalid/hello"
    assert "https://example.invalid/hello" in caught.value.message
    with pytest.raises(RunNotFound):
        await engine.get_run("three-steps", "missing")
    with pytest.raises(WorkflowNotFound):
        await engine.get_run("nope", "missing")
    kinds = {w.id: w.kind for w in engine.list_workflows()}
    assert kinds["script"] is WorkflowKind.SCRIPT
    assert kinds["three-steps"] is WorkflowKind.WORKFLOW
    assert engine.get_workflow("script").url == "https://example.invalid/hello"
    with pytest.raises(WorkflowNotFound):
        engine.get_workflow("nope")


async def test_flaky_step_waits_between_retries_then_completes(engine: Engine) -> None:
    """A failing step with retries left makes the run wait, then it completes on attempt 3."""
    seen: list[RunStatus] = []
    engine.add_run_listener(lambda run: seen.append(run.status))
    run = await engine.trigger("flaky")
    waiting = await wait_for_status(engine, "flaky", run.instance_id, RunStatus.WAITING)
    assert waiting.wake_at is not None
    assert waiting.steps is not None
    assert waiting.steps[0].status == "waiting"
    assert waiting.steps[0].error == "temporary failure"
    done = await wait_for_status(engine, "flaky", run.instance_id, RunStatus.COMPLETE)
    assert done.steps is not None
    assert done.steps[0].attempts == 3
    assert done.output is None
    assert seen.count(RunStatus.WAITING) == 2
    assert seen[-1] is RunStatus.COMPLETE


async def test_always_failing_step_errors_after_its_retries(engine: Engine) -> None:
    """A step failing past its retry limit errors the run with the step's message."""
    done = await run_until(engine, "always-fails", RunStatus.ERRORED)
    assert done.error == "always fails"
    assert done.output is None
    assert done.steps is not None
    assert (done.steps[0].status, done.steps[0].attempts) == ("errored", 2)
    assert done.steps[0].error == "always fails"
    assert done.ended_at is not None


async def test_step_timeout_is_a_failed_attempt(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """An attempt over the step's timeout fails; past the retries the run errors naming it."""
    slow = workflow(
        "slow",
        python_step(
            "stuck",
            "hold",
            retries=RetryPolicy(limit=1, delay=timedelta(milliseconds=10)),
            timeout=timedelta(milliseconds=100),
        ),
    )
    close_gates("never")
    async with open_engine(tmp_path / "e.db", slow) as engine:
        done = await run_until(engine, "slow", RunStatus.ERRORED, input={"gate": "never"})
    assert done.error == "step 'stuck' timed out after 100ms"
    assert done.steps is not None
    assert (done.steps[0].status, done.steps[0].attempts) == ("errored", 2)


async def test_action_context_holds_input_and_earlier_results(tmp_path: Path) -> None:
    """An action sees {input, <node name>: result, ...} of the nodes before it."""
    flow = workflow(
        "ctx",
        return_step("one", "`1`"),
        SleepNode("nap", timedelta(milliseconds=1)),
        python_step("keys", "context_keys"),
    )
    async with open_engine(tmp_path / "e.db", flow) as engine:
        done = await run_until(engine, "ctx", RunStatus.COMPLETE, input={"x": 1})
    assert done.output == ["input", "nap", "one"]
    assert done.steps is not None
    assert done.steps[1].output is None


async def test_sleep_pauses_and_sleep_until_a_past_moment_continues_at_once(
    tmp_path: Path,
) -> None:
    """A sleep shows paused with its wake time; a sleep_until in the past does not wait."""
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    flow = workflow(
        "sleeps",
        SleepUntilNode("then", "input.when"),
        SleepNode("nap", timedelta(milliseconds=300)),
        return_step("end", '`"done"`'),
    )
    async with open_engine(tmp_path / "e.db", flow) as engine:
        run = await engine.trigger("sleeps", input={"when": past})
        paused = await wait_for_status(engine, "sleeps", run.instance_id, RunStatus.PAUSED)
        assert paused.wake_at is not None
        assert paused.steps is not None
        assert [s.name for s in paused.steps] == ["then", "nap"]
        done = await wait_for_status(engine, "sleeps", run.instance_id, RunStatus.COMPLETE)
    assert done.output == "done"
    assert done.steps is not None
    nap = done.steps[1]
    assert nap.started_at is not None
    assert nap.ended_at is not None
    assert nap.ended_at - nap.started_at >= timedelta(milliseconds=290)


async def test_runs_over_the_cap_queue_fifo(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """Over max_running, runs stay queued and start first in first out as slots free up."""
    order: list[str] = []

    def started(run: Run) -> None:
        if run.status is RunStatus.RUNNING:
            order.append(run.instance_id)

    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        engine.add_run_listener(started)
        close_gates("r1", "r2", "r3", "r4")
        await trigger_hold(engine, "r1")
        queued = [await trigger_hold(engine, name) for name in ("r2", "r3", "r4")]
        assert all(status is RunStatus.QUEUED for status in queued)
        for name in ("r1", "r2", "r3", "r4"):
            await wait_for_status(engine, "hold", name, RunStatus.RUNNING)
            for other in ("r2", "r3", "r4"):
                if other > name:
                    assert (await engine.get_run("hold", other)).status is RunStatus.QUEUED
            await release(engine, name)
    assert order == ["r1", "r2", "r3", "r4"]


async def test_sleeping_and_waiting_runs_hold_no_slot(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A run paused at a sleep or waiting to retry does not keep others queued."""
    flaky = workflow(
        "retry",
        python_step("x", "hold", retries=RetryPolicy(limit=1, delay=timedelta(seconds=60))),
    )
    async with open_engine(tmp_path / "e.db", LONG_SLEEP, flaky, HOLD, max_running=1) as engine:
        await engine.trigger("long-sleep", instance_id="sleeper")
        await wait_for_status(engine, "long-sleep", "sleeper", RunStatus.PAUSED)
        close_gates("h")
        assert await trigger_hold(engine, "h") is RunStatus.RUNNING
        await release(engine, "h")
        # a missing gate makes the action fail: the run waits 60s to retry
        await engine.trigger("retry", input={"gate": "missing"}, instance_id="w")
        await wait_for_status(engine, "retry", "w", RunStatus.WAITING)
        close_gates("h2")
        assert await trigger_hold(engine, "h2") is RunStatus.RUNNING


async def test_pause_mid_step_waits_for_the_step_then_resume_completes(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """Pause mid-step shows waitingForPause, pauses after the step; resume completes the run."""
    async with open_engine(tmp_path / "e.db", HOLD) as engine:
        close_gates("p")
        await trigger_hold(engine, "p")
        await wait_for_run(engine, "hold", "p", lambda r: r.steps is not None and len(r.steps) == 1)
        pausing = await engine.pause("hold", "p")
        assert pausing.status is RunStatus.WAITING_FOR_PAUSE
        assert (await engine.pause("hold", "p")).status is RunStatus.WAITING_FOR_PAUSE
        GATES["p"].set()
        paused = await wait_for_status(engine, "hold", "p", RunStatus.PAUSED)
        assert paused.steps is not None
        assert [s.status for s in paused.steps] == ["complete"]
        resumed = await engine.resume("hold", "p")
        assert resumed.status in (RunStatus.PAUSED, RunStatus.RUNNING, RunStatus.COMPLETE)
        done = await wait_for_status(engine, "hold", "p", RunStatus.COMPLETE)
        assert done.output == "held" or done.output == {"gate": "p"}


async def test_a_run_paused_by_request_gives_its_slot_away_and_queues_on_resume(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """Paused after its step, a run frees its slot; resumed over the cap, it queues."""
    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        close_gates("p", "q")
        await trigger_hold(engine, "p")
        await wait_for_run(engine, "hold", "p", lambda r: r.steps is not None and len(r.steps) == 1)
        assert await trigger_hold(engine, "q") is RunStatus.QUEUED
        assert (await engine.pause("hold", "p")).status is RunStatus.WAITING_FOR_PAUSE
        assert (await engine.get_run("hold", "q")).status is RunStatus.QUEUED
        GATES["p"].set()
        await wait_for_status(engine, "hold", "p", RunStatus.PAUSED)
        await wait_for_status(engine, "hold", "q", RunStatus.RUNNING)
        await engine.resume("hold", "p")
        await wait_for_status(engine, "hold", "p", RunStatus.QUEUED)
        await release(engine, "q")
        await wait_for_status(engine, "hold", "p", RunStatus.COMPLETE)


async def test_a_run_waiting_for_an_event_holds_no_slot(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A run paused at wait_for_event does not keep a new run queued."""
    waits = workflow("waits", WaitForEventNode("go", "go"), return_step("z", "go.payload"))
    async with open_engine(tmp_path / "e.db", waits, HOLD, max_running=1) as engine:
        await engine.trigger("waits", instance_id="w")
        await wait_for_status(engine, "waits", "w", RunStatus.PAUSED)
        close_gates("h")
        assert await trigger_hold(engine, "h") is RunStatus.RUNNING
        await engine.send_event("waits", "w", event_type="go", payload=5)
        assert (await engine.get_run("waits", "w")).status is not RunStatus.COMPLETE
        await wait_for_status(engine, "waits", "w", RunStatus.QUEUED)
        GATES["h"].set()
        done = await wait_for_status(engine, "waits", "w", RunStatus.COMPLETE)
    assert done.output == 5


async def test_pause_inside_a_sleep_is_immediate_and_keeps_the_deadline(tmp_path: Path) -> None:
    """A sleeping run pauses at once, keeps its wake time, and resumes its sleep on resume."""
    flow = workflow("nap", SleepNode("nap", timedelta(milliseconds=400)), return_step("z", "`1`"))
    async with open_engine(tmp_path / "e.db", flow) as engine:
        await engine.trigger("nap", instance_id="n")
        sleeping = await wait_for_status(engine, "nap", "n", RunStatus.PAUSED)
        paused = await engine.pause("nap", "n")
        assert paused.status is RunStatus.PAUSED
        assert paused.wake_at == sleeping.wake_at
        assert sleeping.wake_at is not None
        # past the deadline, a run paused by request stays paused
        past_deadline = sleeping.wake_at + timedelta(milliseconds=100) - datetime.now(UTC)
        await asyncio.sleep(past_deadline.total_seconds())
        assert (await engine.get_run("nap", "n")).status is RunStatus.PAUSED
        await engine.resume("nap", "n")
        done = await wait_for_status(engine, "nap", "n", RunStatus.COMPLETE)
    assert done.output == 1


async def test_pause_and_resume_of_a_queued_run(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """A queued run paused leaves the queue for good; resumed, it queues and runs again."""
    async with open_engine(tmp_path / "e.db", HOLD, max_running=1) as engine:
        close_gates("a", "b")
        await trigger_hold(engine, "a")
        await trigger_hold(engine, "b")
        assert (await engine.pause("hold", "b")).status is RunStatus.PAUSED
        for _ in range(150):  # withdrawn queue entries must not pile up
            await engine.resume("hold", "b")
            await wait_for_status(engine, "hold", "b", RunStatus.QUEUED)
            await engine.pause("hold", "b")
        assert engine._executor.slots.entries <= 64 + 2
        await release(engine, "a")
        assert (await engine.get_run("hold", "b")).status is RunStatus.PAUSED
        await engine.resume("hold", "b")
        await wait_for_status(engine, "hold", "b", RunStatus.RUNNING)
        await release(engine, "b")


async def test_resume_of_a_run_not_paused_returns_it_unchanged(engine: Engine) -> None:
    """Resume of a run that is not paused by request is a no-op that returns the run."""
    await engine.trigger("sleepy", input=1, instance_id="s")
    await wait_for_status(engine, "sleepy", "s", RunStatus.PAUSED)
    before = await engine.get_run("sleepy", "s")
    after = await engine.resume("sleepy", "s")
    assert (after.status, after.wake_at) == (before.status, before.wake_at)


async def test_pause_resume_terminate_of_a_finished_run_are_refused(engine: Engine) -> None:
    """Pause, resume and terminate of a finished run raise RunFinished with its status."""
    await engine.trigger("three-steps", input={"orderId": 1}, instance_id="f")
    await wait_for_status(engine, "three-steps", "f", RunStatus.COMPLETE)
    for command in (engine.pause, engine.resume, engine.terminate):
        with pytest.raises(RunFinished) as caught:
            await command("three-steps", "f")
        assert caught.value.status == "complete"
    with pytest.raises(RunNotFound):
        await engine.pause("three-steps", "missing")


async def test_terminate_mid_step_is_immediate(
    tmp_path: Path, gates: dict[str, asyncio.Event]
) -> None:
    """Terminate ends a run at once even mid-step; output and error are null."""
    async with open_engine(tmp_path / "e.db", HOLD) as engine:
        close_gates("t")
        await trigger_hold(engine, "t")
        await wait_for_run(engine, "hold", "t", lambda r: bool(r.steps))
        ended = await engine.terminate("hold", "t")
        assert ended.status is RunStatus.TERMINATED
        assert (ended.output, ended.error) == (None, None)
        assert ended.steps is not None
        assert ended.steps[0].status == "terminated"
        assert ended.ended_at is not None
        stored = await engine.get_run("hold", "t")
        assert stored.status is RunStatus.TERMINATED
        GATES["t"].set()
        await asyncio.sleep(0)
        assert (await engine.get_run("hold", "t")).steps == stored.steps


async def test_terminate_a_sleeping_run(engine: Engine) -> None:
    """A run inside a sleep terminates at once and stays terminated."""
    await engine.trigger("sleepy", input=1, instance_id="zz")
    await wait_for_status(engine, "sleepy", "zz", RunStatus.PAUSED)
    assert (await engine.terminate("sleepy", "zz")).status is RunStatus.TERMINATED
    with pytest.raises(RunFinished):
        await engine.terminate("sleepy", "zz")


async def test_restart_runs_again_from_the_beginning(tmp_path: Path) -> None:
    """Restart runs the same instance from its first node; earlier results are discarded."""
    log = tmp_path / "log"
    flow = workflow("rec", python_step("a", "step_a"), python_step("c", "step_c"))
    async with open_engine(tmp_path / "e.db", flow, LONG_SLEEP) as engine:
        await engine.trigger("rec", input={"id": "r", "log": str(log)}, instance_id="r")
        first = await wait_for_status(engine, "rec", "r", RunStatus.COMPLETE)
        restarted = await engine.restart("rec", "r")
        assert restarted.instance_id == "r"
        assert restarted.output is None
        assert restarted.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETE)
        second = await wait_for_status(engine, "rec", "r", RunStatus.COMPLETE)
        assert second.created_at == first.created_at
        assert second.steps is not None
        assert len(second.steps) == 2
        assert second.started_at is not None
        assert first.ended_at is not None
        assert second.started_at >= first.ended_at
        assert log.read_text().splitlines() == ["r a", "r c", "r a", "r c"]
        # a sleeping run restarts too, and a terminated one
        await engine.trigger("long-sleep", instance_id="s")
        await wait_for_status(engine, "long-sleep", "s", RunStatus.PAUSED)
        again = await engine.restart("long-sleep", "s")
        assert again.steps is not None
        assert len(again.steps) <= 1
        await engine.terminate("long-sleep", "s")
        await engine.restart("long-sleep", "s")
        await wait_for_status(engine, "long-sleep", "s", RunStatus.PAUSED)
        with pytest.raises(RunNotFound):
            await engine.restart("long-sleep", "missing")


async def test_list_runs_newest_first_with_filter_and_cursor(engine: Engine) -> None:
    """list_runs pages newest first with an opaque cursor and filters by status."""
    ids = [f"run{i}" for i in range(5)]
    for instance_id in ids:
        await engine.trigger("three-steps", input={"orderId": 1}, instance_id=instance_id)
    for instance_id in ids:
        await wait_for_status(engine, "three-steps", instance_id, RunStatus.COMPLETE)
    await engine.trigger("sleepy", input=1, instance_id="sleeping")
    first = await engine.list_runs("three-steps", limit=2)
    assert [run.instance_id for run in first.runs] == ["run4", "run3"]
    assert first.next_cursor is not None
    second = await engine.list_runs("three-steps", limit=2, cursor=first.next_cursor)
    assert [run.instance_id for run in second.runs] == ["run2", "run1"]
    assert second.next_cursor is not None
    last = await engine.list_runs("three-steps", limit=2, cursor=second.next_cursor)
    assert [run.instance_id for run in last.runs] == ["run0"]
    assert last.next_cursor is None
    everything = await engine.list_runs("three-steps")
    assert len(everything.runs) == 5
    assert everything.next_cursor is None
    assert everything.runs[0].steps is not None
    none = await engine.list_runs("three-steps", statuses={RunStatus.RUNNING, RunStatus.PAUSED})
    assert none.runs == ()
    await wait_for_status(engine, "sleepy", "sleeping", RunStatus.PAUSED)
    paused = await engine.list_runs("sleepy", statuses={RunStatus.PAUSED})
    assert [run.instance_id for run in paused.runs] == ["sleeping"]
    with pytest.raises(BadUserInput):
        await engine.list_runs("three-steps", cursor="not-a-cursor")
    with pytest.raises(BadUserInput):
        await engine.list_runs("three-steps", limit=0)
    with pytest.raises(WorkflowNotFound):
        await engine.list_runs("nope")


async def test_listeners_hear_every_change_in_order_and_survive_errors(engine: Engine) -> None:
    """Listeners get every status change in order; one that raises breaks nothing."""
    heard: list[tuple[str, RunStatus]] = []

    def broken(run: Run) -> None:
        raise RuntimeError("listener bug")

    engine.add_run_listener(broken)
    unsubscribe = engine.add_run_listener(lambda run: heard.append((run.instance_id, run.status)))
    await engine.trigger("approval", input={"orderId": 1}, instance_id="ap")
    await wait_for_run(
        engine, "approval", "ap", lambda r: r.steps is not None and len(r.steps) == 3
    )
    await engine.send_event(
        "approval", "ap", event_type="approve", payload={"approved": True, "approvedBy": "x"}
    )
    await wait_for_status(engine, "approval", "ap", RunStatus.COMPLETE)
    assert [status for _, status in heard] == [
        RunStatus.RUNNING,
        RunStatus.PAUSED,  # sleep
        RunStatus.RUNNING,
        RunStatus.PAUSED,  # wait
        RunStatus.RUNNING,
        RunStatus.COMPLETE,
    ]
    unsubscribe()
    await engine.trigger("three-steps", input={"orderId": 1}, instance_id="quiet")
    await wait_for_status(engine, "three-steps", "quiet", RunStatus.COMPLETE)
    assert all(instance_id == "ap" for instance_id, _ in heard)


async def test_close_keeps_unfinished_runs_for_the_next_engine(
    tmp_path: Path, workflows_dir: Path
) -> None:
    """Closing an engine cancels its run tasks; a new engine on the file continues the runs."""
    definitions: dict[str, WorkflowDefinition] = {"long-sleep": LONG_SLEEP}
    async with Engine(definitions, db_path=tmp_path / "e.db") as engine:
        await engine.trigger("long-sleep", instance_id="k")
        before = await wait_for_status(engine, "long-sleep", "k", RunStatus.PAUSED)
    async with Engine(definitions, db_path=tmp_path / "e.db") as engine:
        after = await engine.get_run("long-sleep", "k")
        assert after.status is RunStatus.PAUSED
        assert after.wake_at == before.wake_at
        assert await engine.terminate("long-sleep", "k")
    with pytest.raises(RuntimeError):
        await engine.get_run("long-sleep", "k")


async def test_aclose_cancels_run_tasks_and_joins_the_writer_thread(tmp_path: Path) -> None:
    """After aclose no run task and no store thread of the engine is left."""
    db = tmp_path / "joined.db"
    async with open_engine(db, LONG_SLEEP, HOLD) as engine:
        await engine.trigger("long-sleep", instance_id="s")
        await wait_for_status(engine, "long-sleep", "s", RunStatus.PAUSED)
        before = {task for task in asyncio.all_tasks() if task.get_name().startswith("run:")}
        assert before
    assert all(task.done() for task in before)
    assert not [t for t in threading.enumerate() if t.name == f"runcast-store:{db.name}"]


@pytest.mark.parametrize("content", ["garbage", "foreign"])
async def test_an_unusable_database_is_one_clear_error(tmp_path: Path, content: str) -> None:
    """A file that is not an engine database fails start with DatabaseUnusable, threads joined."""
    db = tmp_path / "runs.db"
    if content == "garbage":
        db.write_bytes(b"not a database at all " * 200)
    else:
        with sqlite3.connect(db) as conn:  # another program's database, with a `runs` table
            conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        conn.close()
    engine = Engine({"hold": HOLD}, db_path=db)
    with pytest.raises(DatabaseUnusable, match=r"cannot open the database .*runs\.db") as raised:
        await engine.start()
    assert "\n" not in raised.value.message
    assert not [t for t in threading.enumerate() if t.name == f"runcast-store:{db.name}"]


async def test_memory_database_runs_workflows(workflows_dir: Path) -> None:
    """db_path ":memory:" gives a working, throwaway engine."""
    definitions = load_workflows(workflows_dir).definitions
    async with Engine(definitions, db_path=":memory:") as engine:
        done = await run_until(engine, "three-steps", RunStatus.COMPLETE, input={"orderId": "M"})
    assert done.output == {"orderId": "M", "steps": [1, 2, 3]}


async def test_pause_while_waiting_to_retry_keeps_the_retry_time(tmp_path: Path) -> None:
    """A run waiting between retries pauses at once; resumed, it waits for the same retry time."""
    flow = workflow(
        "retry-later",
        StepNode(
            "once",
            FailAction("first attempt fails", times=1),
            retries=RetryPolicy(limit=1, delay=timedelta(seconds=60)),
        ),
    )
    async with open_engine(tmp_path / "e.db", flow) as engine:
        await engine.trigger("retry-later", instance_id="r")
        waiting = await wait_for_status(engine, "retry-later", "r", RunStatus.WAITING)
        paused = await engine.pause("retry-later", "r")
        assert paused.status is RunStatus.PAUSED
        assert paused.wake_at == waiting.wake_at
        resumed = await engine.resume("retry-later", "r")
        assert resumed.status is RunStatus.WAITING
        assert resumed.wake_at == waiting.wake_at
        assert resumed.steps is not None
        assert (resumed.steps[0].attempts, resumed.steps[0].error) == (1, "first attempt fails")
