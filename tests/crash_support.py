"""The crash scenario of the engine's tests: a worker process on a real file, killed with SIGKILL.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runcast.engine import Engine, load_workflows

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
