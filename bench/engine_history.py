"""The embedded engine against a long history: listings, retention, and the cost of its promises.

Three measurements, each on a fresh SQLite file:

- ``listings``: the newest page, a status-filtered page and a deep cursor page of
  ``Engine.list_runs`` (50 runs each, p50 of many calls) with 10,000 and 1,000,000
  finished runs in the file. The history is written by a direct bulk insert (the
  rows the engine writes, three steps per run), so building it is quick.
- ``retention``: the file's size (database + WAL) every 20,000 runs while 200,000
  runs of the 3-step workflow complete with a 2-second retention and a sweep
  every second; ``baseline``: the same load with the 7-day default (nothing is
  deleted), for the growth without retention.
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
import contextlib
import json
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from runcast.engine import Engine
from runcast.engine._arguments import encode_cursor
from runcast.engine._steps import StepRunner
from runcast.engine.definitions import (
    PythonAction,
    Retention,
    ReturnAction,
    StepNode,
    WorkflowDefinition,
)
from runcast.models import Run, RunStatus

PAGE = 50
ERRORED_EVERY = 97
"""One run in this many is errored, spread over the whole history (over 100 at 10,000 runs,
so the ERRORED page is full at both sizes)."""


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


async def build(size: int, folder: Path) -> Path:
    """A database file with ``size`` finished runs of workflow ``history``."""
    db = folder / f"history-{size}.db"
    async with Engine({"history": three_steps("history")}, db_path=db) as engine:
        version = engine.get_workflow("history").version or ""
    bulk_insert(db, "history", version, size)
    return db


async def listings(sizes: list[int], folder: Path, samples: int = 300) -> dict[int, Any]:
    """p50 ms of the three listing shapes at each size, calls interleaved across sizes.

    Every size's engine is open at once and the calls alternate between them, so
    whatever else the machine does lands on every size alike.
    """
    # The generated history spans `size` seconds: keep it all, so no sweep runs meanwhile.
    forever = Retention(timedelta(days=3650), timedelta(days=3650), timedelta(days=3650))
    definitions = {"history": three_steps("history")}
    async with contextlib.AsyncExitStack() as stack:
        engines = {}
        for size in sizes:
            db = await build(size, folder)
            engines[size] = await stack.enter_async_context(
                Engine(definitions, db_path=db, retention=forever)
            )
        shapes: dict[str, Callable[[Engine, int], Awaitable[object]]] = {
            "newest": lambda engine, size: engine.list_runs("history", limit=PAGE),
            "errored": lambda engine, size: engine.list_runs(
                "history", statuses={RunStatus.ERRORED}, limit=PAGE
            ),
            # a cursor in the middle of the history: runs are numbered by ``seq``
            "deep": lambda engine, size: engine.list_runs(
                "history", cursor=encode_cursor(size // 2), limit=PAGE
            ),
        }
        times: dict[int, dict[str, list[float]]] = {size: {} for size in sizes}
        for name, call in shapes.items():
            for _ in range(samples):
                for size, engine in engines.items():
                    began = time.perf_counter()
                    page = await call(engine, size)
                    times[size].setdefault(name, []).append(time.perf_counter() - began)
                    assert len(page.runs) == PAGE  # type: ignore[attr-defined]
    return {
        size: {name: statistics.median(values) * 1000 for name, values in by_shape.items()}
        for size, by_shape in times.items()
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


class CommitTimes:
    """An engine observer keeping the duration of every commit (the rest is ignored)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    def run_started(self, run: Any) -> None:
        pass

    def run_finished(self, run: Any, status: Any, seconds: float | None) -> None:
        pass

    def step_started(self, run: Any, step: str, attempt: int) -> None:
        pass

    def step_finished(self, run: Any, attempt: Any) -> None:
        pass

    def committed(self, seconds: float, operations: int) -> None:
        self.seconds.append(seconds)


async def retention(runs: int, folder: Path, *, keep: timedelta) -> dict[str, Any]:
    """File bytes every 20,000 runs when finished runs are kept ``keep``, and commit times."""
    db = folder / f"retention-{keep.total_seconds():g}.db"
    short = Retention(complete=keep, errored=keep, terminated=keep)
    definition = three_steps("kept-briefly")
    samples: list[tuple[int, int]] = []
    commits = CommitTimes()
    async with Engine(
        {"kept-briefly": definition},
        db_path=db,
        retention=short,
        retention_interval=1.0,
        observers=[commits],
    ) as engine:
        done = 0
        while done < runs:
            chunk = min(20_000, runs - done)
            await closed_loop(engine, "kept-briefly", chunk, 100)
            done += chunk
            samples.append((done, file_size(db)))
            sys.stderr.write(f"retention: {done:,} runs, {file_size(db) / 1e6:.1f} MB\n")
        deleted = engine._sweeper.deleted
    ordered = sorted(commits.seconds)
    return {
        "sizes": samples,
        "deleted": deleted,
        "commit_p50_ms": ordered[len(ordered) // 2] * 1000,
        "commit_p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
        "commit_max_ms": ordered[-1] * 1000,
    }


# -- overhead of the attempt-start commit ------------------------------------------------


async def overhead(runs: int, rounds: int, folder: Path) -> dict[str, list[float]]:
    """runs/s at 100 in flight of 3 python steps, with and without the attempt-start commit."""
    committing = StepRunner._start_attempt

    async def not_committing(self: StepRunner, run: Any, node: Any, step: Any) -> None:
        run.in_step = True

    results: dict[str, list[float]] = {"with": [], "without": []}
    for round_number in range(rounds):
        for label in ("with", "without") if round_number % 2 == 0 else ("without", "with"):
            StepRunner._start_attempt = committing if label == "with" else not_committing  # type: ignore[method-assign]
            db = folder / f"overhead-{label}-{round_number}.db"
            definitions = {"py": three_steps("py", python=True)}
            async with Engine(definitions, db_path=db) as engine:
                await closed_loop(engine, "py", 200, 20)  # warm up
                seconds = await closed_loop(engine, "py", runs, 100)
            results[label].append(runs / seconds)
    StepRunner._start_attempt = committing  # type: ignore[method-assign]
    return results


async def main(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-history-") as name:
        folder = Path(name)
        if "listings" in args.only:
            report["listings"] = await listings([int(n) for n in args.sizes.split(",")], folder)
            sys.stderr.write(f"listings: {json.dumps(report['listings'])}\n")
        if "overhead" in args.only:
            report["overhead"] = await overhead(args.overhead_runs, args.overhead_rounds, folder)
            sys.stderr.write(f"overhead: {json.dumps(report['overhead'])}\n")
        if "retention" in args.only:
            report["retention"] = await retention(
                args.retention_runs, folder, keep=timedelta(seconds=2)
            )
        if "baseline" in args.only:  # the same load, nothing deleted (7 days)
            report["baseline"] = await retention(args.baseline_runs, folder, keep=timedelta(days=7))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--retention-runs", type=int, default=200_000)
    parser.add_argument("--baseline-runs", type=int, default=60_000)
    parser.add_argument("--overhead-runs", type=int, default=3000)
    parser.add_argument("--overhead-rounds", type=int, default=2)
    parser.add_argument("--only", default="listings,overhead,retention,baseline")
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # python actions: engine_history
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=1))
