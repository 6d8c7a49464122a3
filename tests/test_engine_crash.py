"""Crash safety: a real engine process is killed with SIGKILL, a new engine continues its runs.

The scenario (``crash_support.Crash``, the ``crash`` fixture) counts how often each step ran.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from crash_support import Crash
from engine_support import wait_for_status
from runcast.engine import Engine
from runcast.models import Run, RunStatus


async def assert_suspended(
    engine: Engine, workflow_id: str, instance_id: str, status: RunStatus, wake_at: float
) -> None:
    """The run shows ``status`` and wakes at POSIX time ``wake_at``, as the worker left it."""
    run = await engine.get_run(workflow_id, instance_id)
    assert run.status is status
    assert run.wake_at == datetime.fromtimestamp(wake_at, UTC)


def test_kill_mid_step_reruns_only_the_unfinished_step_and_keeps_the_queue(
    crash: Crash,
) -> None:
    """Killed mid-step: completed steps never run again, and queued runs start in order."""
    commands = [["trigger", "crash-step", "r0", crash.input("r0", hang=True)]]
    commands += [["trigger", "crash-step", q, crash.input(q)] for q in ("q1", "q2", "q3")]
    crash.start(commands, max_running=1)
    crash.wait_until(lambda: "r0 b" in crash.lines())
    crash.wait_until(lambda: len(crash.rows("SELECT seq FROM runs WHERE status = 'queued'")) == 3)
    crash.kill()
    assert crash.lines() == ["r0 a", "r0 b"]

    async def check(engine: Engine) -> None:
        queued = await engine.list_runs("crash-step", statuses={RunStatus.QUEUED})
        assert [run.instance_id for run in queued.runs] == ["q3", "q2", "q1"]
        for instance_id in ("r0", "q1", "q2", "q3"):
            done = await wait_for_status(engine, "crash-step", instance_id, RunStatus.COMPLETE)
            assert done.output == "c"

    crash.reopen(check, max_running=1)
    assert crash.lines() == [
        "r0 a",
        "r0 b",
        "r0 b",
        "r0 c",
        "q1 a",
        "q1 b",
        "q1 c",
        "q2 a",
        "q2 b",
        "q2 c",
        "q3 a",
        "q3 b",
        "q3 c",
    ]


def test_kill_mid_sleep_wakes_at_the_original_time(crash: Crash) -> None:
    """Killed mid-sleep: the sleep ends at its original wake time, not one sleep after restart."""
    crash.start([["trigger", "crash-sleep", "s", crash.input("s")]])
    crash.wait_until(lambda: crash.step_row("s", "nap") is not None)
    row = crash.step_row("s", "nap")
    assert row is not None
    status, slept_at, wake_at = row
    assert (status, wake_at - slept_at) == ("paused", pytest.approx(2.5))
    crash.wait_until(lambda: time.time() >= slept_at + 1.0)
    crash.kill()

    async def check(engine: Engine) -> None:
        await assert_suspended(engine, "crash-sleep", "s", RunStatus.PAUSED, wake_at)
        done = await wait_for_status(engine, "crash-sleep", "s", RunStatus.COMPLETE)
        assert done.steps is not None
        nap = done.steps[1]
        assert nap.ended_at is not None
        woke = nap.ended_at.timestamp()
        assert wake_at <= woke < wake_at + 0.8

    crash.reopen(check)
    assert crash.lines() == ["s a", "s c"]


def test_a_sleep_that_ended_while_down_wakes_at_once(crash: Crash) -> None:
    """Killed mid-sleep and restarted after its wake time: the run continues at once."""
    crash.start([["trigger", "crash-nap", "n", crash.input("n")]])
    crash.wait_until(lambda: crash.step_row("n", "nap") is not None)
    crash.kill()
    row = crash.step_row("n", "nap")
    assert row is not None
    wake_at = row[2]
    while time.time() < wake_at + 0.3:
        time.sleep(0.05)

    async def check(engine: Engine) -> None:
        opened = time.time()
        done = await wait_for_status(engine, "crash-nap", "n", RunStatus.COMPLETE)
        assert done.ended_at is not None
        assert done.ended_at.timestamp() - opened < 1.0

    crash.reopen(check)
    assert crash.lines() == ["n a", "n c"]


def test_kill_mid_wait_keeps_the_deadline_and_the_pending_events(crash: Crash) -> None:
    """Killed mid-wait: the wait keeps its original deadline and early events are kept."""
    crash.start(
        [
            ["trigger", "crash-wait", "w", crash.input("w")],
            ["event", "crash-wait", "w", "later", {"k": 1}],
        ]
    )
    crash.wait_until(lambda: crash.step_row("w", "w1") is not None)
    crash.wait_until(lambda: bool(crash.rows("SELECT id FROM events")))
    row = crash.step_row("w", "w1")
    assert row is not None
    _, waited_at, deadline = row
    assert deadline - waited_at == pytest.approx(60)
    crash.kill()

    async def check(engine: Engine) -> None:
        run: Run = await engine.get_run("crash-wait", "w")
        assert run.status is RunStatus.PAUSED
        assert run.wake_at == datetime.fromtimestamp(deadline, UTC)
        assert run.wake_at - datetime.now(UTC) > timedelta(seconds=50)
        await engine.send_event("crash-wait", "w", event_type="go", payload="now")
        done = await wait_for_status(engine, "crash-wait", "w", RunStatus.COMPLETE)
        assert done.steps is not None
        assert [step.output for step in done.steps] == [
            "a",
            {"eventType": "go", "payload": "now"},
            {"eventType": "later", "payload": {"k": 1}},
            "c",
        ]

    crash.reopen(check)
    assert crash.lines() == ["w a", "w c"]


def test_kill_while_waiting_to_retry_keeps_the_attempt_count(crash: Crash) -> None:
    """Killed between retries: the failed attempt still counts and the retry time stands."""
    crash.start([["trigger", "crash-retry", "f", crash.input("f")]])
    crash.wait_until(lambda: (crash.step_row("f", "f") or ("",))[0] == "waiting")
    row = crash.step_row("f", "f")
    assert row is not None
    retry_at = row[2]
    crash.kill()
    assert crash.lines() == ["f f"]

    async def check(engine: Engine) -> None:
        await assert_suspended(engine, "crash-retry", "f", RunStatus.WAITING, retry_at)
        done = await wait_for_status(engine, "crash-retry", "f", RunStatus.ERRORED)
        assert done.steps is not None
        assert done.steps[0].attempts == 2
        assert done.error == "engine_probe:flop raised RuntimeError: flop"

    crash.reopen(check)
    assert crash.lines() == ["f f", "f f"]
