"""One owner per database, and attempts counted before they run: real processes, real files.

A second process on a database that an engine holds exits at once with one line;
a step that kills its own process runs at most ``retries.limit + 1`` times, then
its run is errored. Executions are counted in a log file by ``engine_probe``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import free_port
from runcast.engine import DatabaseInUse, Engine
from runcast.settings import default_db_path, default_engine_db_path

TESTS = Path(__file__).parent
RUNCAST = [sys.executable, "-m", "runcast.cli"]

SELF_KILL = """
id: self-kill
nodes:
  - step: a
    action: {python: "engine_probe:step_a"}
  - step: d
    action: {python: "engine_probe:die"}
    retries: {limit: 1, delay: 10ms}
  - step: c
    action: {python: "engine_probe:step_c"}
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), env.get("PYTHONPATH")]))
    return env


def _wait_for_http(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the first engine exited"
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"{url} did not answer")


def test_a_second_process_on_the_same_database_exits_at_once(tmp_path: Path) -> None:
    """`runcast engine` and `runcast serve` on a held file exit 2, one line naming file and pid."""
    db = tmp_path / "shared.db"
    port = free_port()
    first = subprocess.Popen(
        [*RUNCAST, "engine", "--db", str(db), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    try:
        _wait_for_http(f"http://127.0.0.1:{port}/api/v1/workflows", first)
        for command in ("engine", "serve"):
            second = subprocess.run(
                [*RUNCAST, command, "--db", str(db), "--port", str(free_port())],
                capture_output=True,
                text=True,
                timeout=60,
                env=_env(),
            )
            assert second.returncode == 2
            lines = second.stderr.strip().splitlines()
            assert len(lines) == 1, second.stderr
            assert str(db) in lines[0]
            assert f"in use by process {first.pid}" in lines[0]
            assert "--db" in lines[0]
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(timeout=30)


async def test_the_lock_goes_with_the_engine(tmp_path: Path) -> None:
    """A second engine in this process is refused while the first is open, accepted after."""
    db = tmp_path / "one.db"
    async with Engine({}, db_path=db):
        with pytest.raises(DatabaseInUse, match=f"in use by process {os.getpid()}") as raised:
            await Engine({}, db_path=db).start()
        assert raised.value.pid == os.getpid()
    async with Engine({}, db_path=db):
        pass


def test_a_killed_owner_leaves_no_stale_lock(tmp_path: Path) -> None:
    """After kill -9 of the owner, a new engine opens the file at once."""
    db = tmp_path / "killed.db"
    worker = subprocess.Popen(
        [sys.executable, str(TESTS / "engine_crash_worker.py"), str(db), str(tmp_path), "10", "[]"],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == "ready"
    worker.kill()
    worker.wait(timeout=10)
    worker.stdout.close()

    async def reopen() -> None:
        async with Engine({}, db_path=db):
            pass

    asyncio.run(reopen())


def test_serve_and_engine_have_different_default_files() -> None:
    """With no --db, `runcast serve` and `runcast engine` never share a database."""
    assert default_db_path() != default_engine_db_path()
    assert default_db_path().parent == default_engine_db_path().parent


def test_a_step_that_kills_its_process_runs_limit_plus_one_times(tmp_path: Path) -> None:
    """A self-killing step with retries.limit 1 runs twice in all, then its run is errored."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    (folder / "self-kill.yaml").write_text(SELF_KILL)
    db, log = tmp_path / "die.db", tmp_path / "steps.log"
    log.touch()
    commands = [["trigger", "self-kill", "k", {"id": "k", "log": str(log)}]]
    worker = [sys.executable, str(TESTS / "engine_crash_worker.py"), str(db), str(folder), "10"]
    starts = 0
    while True:
        starts += 1
        assert starts <= 5, f"still crash-looping after {starts - 1} starts: {log.read_text()}"
        process = subprocess.Popen(
            [*worker, json.dumps(commands if starts == 1 else [])],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        with process:
            status = _final_status(db, process)
        if status is not None:
            break
    assert log.read_text().splitlines() == ["k a", "k d", "k d"]
    assert starts == 3
    row = _run_row(db)
    assert row[0] == "errored"
    assert "process died during attempt 2 of 2" in row[1]
    assert _step_attempts(db, "d") == ("errored", 2)


def _final_status(db: Path, process: subprocess.Popen[str]) -> str | None:
    """Wait until the worker dies (``None``) or its run is finished (the status; it is killed)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if db.exists():
            status = _run_row(db)[0]
            if status in ("errored", "complete"):
                process.kill()
                process.wait(timeout=10)
                return str(status)
        time.sleep(0.05)
    process.kill()
    pytest.fail("the worker neither died nor finished the run")


def _run_row(db: Path) -> tuple[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT status, COALESCE(error, '') FROM runs").fetchone()
    except sqlite3.OperationalError:
        row = None
    finally:
        conn.close()
    return ("", "") if row is None else (row[0], row[1])


def _step_attempts(db: Path, name: str) -> tuple[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT status, attempts FROM steps WHERE name = ?", (name,)).fetchone()
    finally:
        conn.close()
    return (row[0], row[1])
