"""Crash safety: a real engine process is killed with SIGKILL, a new engine continues its runs.

Steps record every execution in a log file (``engine_probe``), so the tests count
how often each step ran. The killed process is ``engine_crash_worker.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from engine_support import wait_for_status
from runcast.engine import Engine, load_workflows
from runcast.models import Run, RunStatus

TESTS = Path(__file__).parent

WORKFLOWS = {
    "crash-step.yaml": """
id: crash-step
nodes:
  - step: a
    action: {python: "engine_probe:step_a"}
  - step: b
    action: {python: "engine_probe:hang_b"}
  - step: c
    action: {python: "engine_probe:step_c"}
""",
    "crash-sleep.yaml": """
id: crash-sleep
nodes:
  - step: a
    action: {python: "engine_probe:step_a"}
  - sleep: nap
    duration: 2500ms
  - step: c
    action: {python: "engine_probe:step_c"}
""",
    "crash-nap.yaml": """
id: crash-nap
nodes:
  - step: a
    action: {python: "engine_probe:step_a"}
  - sleep: nap
    duration: 300ms
  - step: c
    action: {python: "engine_probe:step_c"}
""",
    "crash-retry.yaml": """
id: crash-retry
nodes:
  - step: f
    action: {python: "engine_probe:flop"}
    retries: {limit: 1, delay: 1500ms}
""",
    "crash-wait.yaml": """
id: crash-wait
nodes:
  - step: a
    action: {python: "engine_probe:step_a"}
  - wait_for_event: w1
    event_type: go
    timeout: 60s
  - wait_for_event: w2
    event_type: later
  - step: c
    action: {python: "engine_probe:step_c"}
""",
}


class Crash:
    """A workflows folder, a database and a step log in ``tmp_path``; starts and kills workers."""

    def __init__(self, tmp_path: Path) -> None:
        self.db = tmp_path / "crash.db"
        self.log = tmp_path / "steps.log"
        self.log.touch()
        self.folder = tmp_path / "workflows"
        self.folder.mkdir()
        for name, text in WORKFLOWS.items():
            (self.folder / name).write_text(text)
        self.stderr = tmp_path / "worker.err"
        self.process: subprocess.Popen[bytes] | None = None

    def input(self, instance_id: str, **extra: object) -> dict[str, object]:
        """The input that makes ``engine_probe`` steps log as ``instance_id``."""
        return {"id": instance_id, "log": str(self.log), **extra}

    def start(self, commands: list[list[Any]], *, max_running: int = 1000) -> None:
        """Start the worker process with ``commands``."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
        with self.stderr.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(TESTS / "engine_crash_worker.py"),
                    str(self.db),
                    str(self.folder),
                    str(max_running),
                    json.dumps(commands),
                ],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )

    def wait_until(self, condition: Callable[[], bool], *, timeout: float = 20.0) -> None:
        """Poll ``condition`` while the worker lives; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the worker exited: {self.stderr.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail(f"condition not reached in {timeout}s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the worker and reap it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        assert self.process.returncode == -signal.SIGKILL

    def lines(self) -> list[str]:
        """The step log, one ``"<instance id> <step>"`` per execution."""
        return self.log.read_text().splitlines()

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows of a read-only query on the worker's database (empty before it exists)."""
        if not self.db.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError:
            return []  # the schema is not created yet
        finally:
            conn.close()

    def step_row(self, instance_id: str, name: str) -> tuple[Any, ...] | None:
        """``(status, started_at, wake_at)`` of a node of a run, as the file has it."""
        found = self.rows(
            "SELECT s.status, s.started_at, s.wake_at FROM steps s JOIN runs r ON r.seq = s.run_seq"
            " WHERE r.instance_id = ? AND s.name = ?",
            instance_id,
            name,
        )
        return found[0] if found else None

    def reopen(self, check: Callable[[Engine], Any], *, max_running: int = 1000) -> None:
        """Open a new engine on the file in this process and run ``check`` with it."""
        definitions = load_workflows(self.folder).definitions

        async def main() -> None:
            async with Engine(definitions, db_path=self.db, max_running=max_running) as engine:
                await check(engine)

        asyncio.run(main())


@pytest.fixture
def crash(tmp_path: Path) -> Iterator[Crash]:
    """A crash scenario; the worker is killed after the test whatever happens."""
    scenario = Crash(tmp_path)
    yield scenario
    if scenario.process is not None and scenario.process.poll() is None:
        scenario.process.kill()
        scenario.process.wait(timeout=10)


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
        paused = await engine.get_run("crash-sleep", "s")
        assert paused.status is RunStatus.PAUSED
        assert paused.wake_at == datetime.fromtimestamp(wake_at, UTC)
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
        waiting = await engine.get_run("crash-retry", "f")
        assert waiting.status is RunStatus.WAITING
        assert waiting.wake_at == datetime.fromtimestamp(retry_at, UTC)
        done = await wait_for_status(engine, "crash-retry", "f", RunStatus.ERRORED)
        assert done.steps is not None
        assert done.steps[0].attempts == 2
        assert done.error == "engine_probe:flop raised RuntimeError: flop"

    crash.reopen(check)
    assert crash.lines() == ["f f", "f f"]
