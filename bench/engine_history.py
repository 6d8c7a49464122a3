"""The embedded engine against a long history: listings, retention, and the cost of its promises.

Three measurements, each on a fresh SQLite file:

- ``listings``: the newest page, a status-filtered page and a deep cursor page of
  ``Engine.list_runs`` (50 runs each, p50 of many calls) with 10,000 and 1,000,000
  finished runs in the file. The history is written by a direct bulk insert (the
  rows the engine writes, three steps per run), so building it is quick.
- ``retention``: the file's size (database + WAL) every 20,000 runs while 200,000
  runs of the 3-step workflow complete with a 2-second retention and a sweep
  every second.
- ``overhead``: runs/s at 100 in flight of a 3-step workflow of ``python`` actions,
  with the attempt-start commit (the default) and without it (that write patched
  out, as before), measured in the same process one after the other, twice.

Never run by the test suite. Usage::

    python bench/engine_history.py [--sizes 10000,1000000] [--retention-runs 200000]
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from runcast.engine import Engine
from runcast.engine._executor import Executor
from runcast.engine.definitions import (
    PythonAction,
    Retention,
    ReturnAction,
    StepNode,
    WorkflowDefinition,
)
from runcast.engine.engine import _encode_cursor
from runcast.models import Run, RunStatus

PAGE = 50
ERRORED_EVERY = 997
"""One run in this many is errored, spread over the whole history."""


def three_steps(workflow_id: str, *, python: bool = False) -> WorkflowDefinition:
    """The 3-step workflow (``return`` actions, or ``python`` ones calling ``echo``)."""

    def step(name: str) -> StepNode:
        if python:
            return StepNode(name=name, action=PythonAction("engine_history:echo"))
        return StepNode(name=name, action=ReturnAction("input"))

    nodes = (step("first"), step("second"), step("third"))
    return WorkflowDefinition(id=workflow_id, name=workflow_id, nodes=nodes)


def echo(context: dict[str, Any]) -> Any:
    """A python action that returns the run's input."""
    return context["input"]


# -- listings ---------------------------------------------------------------------------


def bulk_insert(db: Path, workflow_id: str, version: str, count: int) -> None:
    """Write ``count`` finished runs of ``workflow_id`` with three steps each, oldest first."""
    conn = sqlite3.connect(db)
    now = time.time() - count
    conn.execute("BEGIN")
    batch = 20_000
    for start in range(0, count, batch):
        rows = []
        for number in range(start, min(count, start + batch)):
            status = "errored" if number % ERRORED_EVERY == 0 else "complete"
            at = now + number
            rows.append((workflow_id, f"h{number}", status, "1", "1", at, at, at, version))
        conn.executemany(
            "INSERT INTO runs (workflow_id, instance_id, status, input, output, created_at,"
            " started_at, ended_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    conn.execute(
        "INSERT INTO steps SELECT seq, idx, name, 'step', 'complete', 1, '1', NULL,"
        " created_at, created_at, NULL FROM runs, (SELECT 0 AS idx, 'first' AS name"
        " UNION ALL SELECT 1, 'second' UNION ALL SELECT 2, 'third')"
    )
    conn.execute("COMMIT")
    conn.close()


async def p50_ms(call: Callable[[], Awaitable[object]], times: int = 200) -> float:
    """The median wall time of ``call`` in milliseconds."""
    samples = []
    for _ in range(times):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


async def listings(size: int, folder: Path) -> dict[str, float]:
    """p50 ms of the three listing shapes with ``size`` finished runs in the file."""
    definition = three_steps("history")
    db = folder / f"history-{size}.db"
    async with Engine({"history": definition}, db_path=db) as engine:
        version = engine.get_workflow("history").version or ""
    bulk_insert(db, "history", version, size)
    # The generated history spans `size` seconds: keep it all, so no sweep runs meanwhile.
    forever = Retention(timedelta(days=3650), timedelta(days=3650), timedelta(days=3650))
    async with Engine({"history": definition}, db_path=db, retention=forever) as engine:
        # A cursor in the middle of the history: runs are numbered by ``seq``.
        deep_cursor = _encode_cursor(size // 2)
        return {
            "newest": await p50_ms(lambda: engine.list_runs("history", limit=PAGE)),
            "errored": await p50_ms(
                lambda: engine.list_runs("history", statuses={RunStatus.ERRORED}, limit=PAGE)
            ),
            "deep": await p50_ms(
                lambda: engine.list_runs("history", cursor=deep_cursor, limit=PAGE)
            ),
        }


# -- retention ---------------------------------------------------------------------------


def file_size(db: Path) -> int:
    """Bytes of the database and its WAL."""
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


async def closed_loop(engine: Engine, workflow_id: str, runs: int, level: int) -> float:
    """Complete ``runs`` runs with ``level`` in flight; returns wall seconds."""
    waiters: dict[str, asyncio.Future[None]] = {}

    def on_change(run: Run) -> None:
        waiter = waiters.pop(run.instance_id, None) if run.status.is_terminal else None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    unsubscribe = engine.add_run_listener(on_change)
    loop = asyncio.get_running_loop()
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < runs:
            instance_id = f"{workflow_id}-{next_index}-{time.monotonic_ns()}"
            next_index += 1
            waiter = waiters[instance_id] = loop.create_future()
            await engine.trigger(workflow_id, input={"n": 1}, instance_id=instance_id)
            await waiter

    began = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(level):
                group.create_task(client())
    finally:
        unsubscribe()
    return time.perf_counter() - began


async def retention(runs: int, folder: Path) -> list[tuple[int, int]]:
    """(runs completed, file bytes) every 20,000 runs under a 2-second retention."""
    db = folder / "retention.db"
    short = Retention(
        complete=timedelta(seconds=2),
        errored=timedelta(seconds=2),
        terminated=timedelta(seconds=2),
    )
    definition = three_steps("kept-briefly")
    samples: list[tuple[int, int]] = []
    async with Engine(
        {"kept-briefly": definition}, db_path=db, retention=short, retention_interval=1.0
    ) as engine:
        done = 0
        while done < runs:
            chunk = min(20_000, runs - done)
            await closed_loop(engine, "kept-briefly", chunk, 100)
            done += chunk
            samples.append((done, file_size(db)))
            sys.stderr.write(f"retention: {done:,} runs, {file_size(db) / 1e6:.1f} MB\n")
    return samples


# -- overhead of the attempt-start commit ------------------------------------------------


async def overhead(runs: int, folder: Path) -> dict[str, list[float]]:
    """runs/s at 100 in flight of 3 python steps, with and without the attempt-start commit."""
    committing = Executor._start_attempt

    async def not_committing(self: Executor, run: Any, node: Any, step: Any) -> None:
        run.in_step = True

    results: dict[str, list[float]] = {"with": [], "without": []}
    for round_number in range(2):
        for label in ("with", "without") if round_number % 2 == 0 else ("without", "with"):
            Executor._start_attempt = committing if label == "with" else not_committing  # type: ignore[method-assign]
            db = folder / f"overhead-{label}-{round_number}.db"
            definitions = {"py": three_steps("py", python=True)}
            async with Engine(definitions, db_path=db) as engine:
                await closed_loop(engine, "py", 200, 20)  # warm up
                seconds = await closed_loop(engine, "py", runs, 100)
            results[label].append(runs / seconds)
    Executor._start_attempt = committing  # type: ignore[method-assign]
    return results


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as name:
        folder = Path(name)
        if "listings" in args.only:
            report["listings"] = {
                size: await listings(size, folder) for size in map(int, args.sizes.split(","))
            }
            sys.stderr.write(f"listings: {json.dumps(report['listings'])}\n")
        if "overhead" in args.only:
            report["overhead"] = await overhead(args.overhead_runs, folder)
            sys.stderr.write(f"overhead: {json.dumps(report['overhead'])}\n")
        if "retention" in args.only:
            report["retention"] = await retention(args.retention_runs, folder)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--retention-runs", type=int, default=200_000)
    parser.add_argument("--overhead-runs", type=int, default=3000)
    parser.add_argument("--only", default="listings,overhead,retention")
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # python actions: engine_history
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=1))
