"""Retention and deleteRun: finished runs go away after their period, or when asked.

The background sweep is watched on a real ``runcast engine`` process and on a
real SQLite file; the rows of deleted runs (runs, steps, events) are counted.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from conftest import UpstreamFactory, free_port
from engine_support import wait_for_status
from runcast.engine import Engine, load_workflows
from runcast.engine.definitions import Retention
from runcast.errors import BadUserInput, RunNotFinished, RunNotFound
from runcast.models import ANONYMOUS, RunStatus

SHORT = """
id: short-lived
retention: {complete: 200ms}
nodes:
  - step: only
    action: {return: input}
"""

KEPT = """
id: kept
nodes:
  - step: only
    action: {return: input}
"""


def _count(db: Path, sql: str, *params: object) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute(sql, params).fetchone()[0])
    finally:
        conn.close()


def test_the_loader_reads_a_workflows_retention(tmp_path: Path) -> None:
    """`retention:` gives per-status periods; a bad one is a load problem naming the key."""
    (tmp_path / "short.yaml").write_text(SHORT)
    (tmp_path / "bad.yaml").write_text(KEPT.replace("id: kept", "id: bad\nretention: {done: 1d}"))
    result = load_workflows(tmp_path)
    assert result.definitions["short-lived"].retention == Retention(
        complete=timedelta(milliseconds=200)
    )
    assert [problem.message for problem in result.problems] == [
        "unknown key 'done' (expected: complete, errored, terminated)"
    ]


async def test_expired_runs_are_deleted_and_others_kept(tmp_path: Path) -> None:
    """With a 200 ms retention the runs and their steps go; runs of a 7-day workflow stay."""
    (tmp_path / "short.yaml").write_text(SHORT)
    (tmp_path / "kept.yaml").write_text(KEPT)
    db = tmp_path / "retention.db"
    definitions = load_workflows(tmp_path).definitions
    async with Engine(definitions, db_path=db, retention_interval=0.05) as engine:
        for number in range(30):
            for workflow_id in ("short-lived", "kept"):
                await engine.trigger(workflow_id, instance_id=f"r{number}", input=number)
        await wait_for_status(engine, "kept", "r29", RunStatus.COMPLETE)
        deadline = time.monotonic() + 20
        while _count(db, "SELECT COUNT(*) FROM runs WHERE workflow_id = 'short-lived'"):
            assert time.monotonic() < deadline, "expired runs were not deleted"
            await asyncio.sleep(0.05)
        with pytest.raises(RunNotFound):
            await engine.get_run("short-lived", "r0")
        kept = await engine.get_run("kept", "r0")
    assert kept.output == 0
    assert _count(db, "SELECT COUNT(*) FROM runs WHERE workflow_id = 'kept'") == 30
    assert _count(db, "SELECT COUNT(*) FROM steps") == 30


def test_runcast_engine_applies_the_global_retention(tmp_path: Path) -> None:
    """`runcast engine` with RUNCAST_RETENTION_COMPLETE=300ms deletes a finished run by itself."""
    (tmp_path / "kept.yaml").write_text(KEPT)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RUNCAST_")}
    env.update(RUNCAST_RETENTION_COMPLETE="300ms", RUNCAST_RETENTION_INTERVAL="0.1")
    command = [sys.executable, "-m", "runcast.cli", "engine", "--port", str(port)]
    command += ["--workflows", str(tmp_path), "--db", str(tmp_path / "e.db")]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}/api/v1/workflows/kept/runs"
    try:
        with httpx.Client(timeout=5) as client:
            _poll(process, lambda: _answers(client, url), "runcast engine never answered")
            assert client.post(url, json={"instanceId": "one", "input": 1}).status_code == 201
            gone = lambda: client.get(f"{url}/one").status_code == 404  # noqa: E731
            _poll(process, gone, "the run was never deleted")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.TransportError:
        return False


def _poll(process: subprocess.Popen[bytes], condition: Callable[[], bool], failure: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert process.poll() is None, "runcast engine exited"
        assert time.monotonic() < deadline, failure
        time.sleep(0.05)


async def test_delete_run_removes_a_finished_run_only(upstream_factory: UpstreamFactory) -> None:
    """deleteRun deletes a finished run; a running one is refused; Cloudflare refuses it."""
    async with upstream_factory() as upstream:
        await upstream.trigger(
            "three-steps", input={"orderId": 1}, instance_id="d", credentials=ANONYMOUS
        )
        await upstream.trigger(
            "approval", input={"orderId": 2}, instance_id="w", credentials=ANONYMOUS
        )
        engine = upstream_factory.engine
        await wait_for_status(engine, "three-steps", "d", RunStatus.COMPLETE)
        if upstream_factory.adapter == "cloudflare":
            with pytest.raises(BadUserInput, match="cannot delete an instance"):
                await upstream.delete_run("three-steps", "d", credentials=ANONYMOUS)
            return
        with pytest.raises(RunNotFinished, match="only a finished run can be deleted"):
            await upstream.delete_run("approval", "w", credentials=ANONYMOUS)
        assert await upstream.delete_run("three-steps", "d", credentials=ANONYMOUS) is True
        with pytest.raises(RunNotFound):
            await upstream.get_run("three-steps", "d", credentials=ANONYMOUS)
        with pytest.raises(RunNotFound):
            await upstream.delete_run("three-steps", "d", credentials=ANONYMOUS)
