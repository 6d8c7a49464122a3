"""Runs per second to completion of the embedded engine, against DBOS on SQLite as the peer.

The workload is the 3-step ``return`` workflow of ``tests/workflows/three-steps.yaml``;
the peer runs the same three steps as a DBOS workflow of three ``@DBOS.step``s on a
SQLite system database in WAL mode. For each level of concurrency (1, 100 and
10,000 runs in flight by default) a closed loop of that many clients triggers a
run and waits for it to complete, again and again, until the level's number of
runs is done. Reported: runs per second to completion (runs / wall time from the
first trigger to the last completion) and the p50/p99 time from trigger to
complete, for both systems, and their ratio.

Every measurement runs in a fresh subprocess on a fresh database file, one system
at a time, alternating which goes first, so neither inherits the other's threads,
caches or page cache warmth. Each run's completion is observed in-process: the
engine's run listener, DBOS's workflow handle.

Never run by the test suite. Needs the ``bench`` extra (``pip install -e '.[bench]'``).
Usage::

    python bench/engine.py [--levels 1,100,10000] [--rounds 1] [--no-peer]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder leads sys.path, and bench/http.py would shadow
# the standard library's ``http`` package that httpx imports.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import importlib.metadata
import json
import os
import platform
import shlex
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = ROOT / "bench" / "results" / "engine.md"
WORKFLOW_ID = "three-steps"
WORKFLOW_FILE = ROOT / "tests" / "workflows" / f"{WORKFLOW_ID}.yaml"
EXPECTED_STEPS = [1, 2, 3]
DEFAULT_LEVELS = (1, 100, 10_000)
WARMUP_RUNS = 20
SYSTEMS = ("runcast", "dbos")


def runs_for(level: int) -> int:
    """How many runs one measurement completes at ``level`` runs in flight."""
    return max(level, min(20 * level, 2_000), 200)


@dataclass(frozen=True)
class Measurement:
    """One system at one level of concurrency."""

    system: str
    level: int
    runs: int
    seconds: float
    p50_ms: float
    p99_ms: float
    commits: int | None = None

    @property
    def per_second(self) -> float:
        return self.runs / self.seconds


# --- the closed loop, shared by both systems ---------------------------------------------------

StartRun = Callable[[str], Awaitable[Awaitable[Any]]]
"""Trigger the run named by its argument; the awaitable it returns completes with its output."""


async def closed_loop(start_run: StartRun, *, level: int, runs: int, prefix: str) -> list[float]:
    """Keep ``level`` runs in flight until ``runs`` are done; return each one's latency."""
    latencies: list[float] = []
    next_index = 0

    async def client() -> None:
        nonlocal next_index
        while next_index < runs:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            done = await start_run(f"{prefix}-{index}")
            output = await done
            latencies.append(time.perf_counter() - started)
            if output["steps"] != EXPECTED_STEPS or output["orderId"] != f"{prefix}-{index}":
                raise RuntimeError(f"wrong output {output!r}")

    async with asyncio.TaskGroup() as group:
        for _ in range(level):
            group.create_task(client())
    return latencies


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def warm_up(start_run: StartRun) -> None:
    """Complete a few runs first: imports, caches and the first file pages are not measured."""
    await closed_loop(start_run, level=4, runs=WARMUP_RUNS, prefix="warm")


async def measure(
    system: str, start_run: StartRun, level: int, runs: int
) -> tuple[float, list[float]]:
    """Complete ``runs`` runs with ``level`` in flight; return wall seconds and latencies."""
    began = time.perf_counter()
    latencies = await closed_loop(start_run, level=level, runs=runs, prefix=f"{system}{level}")
    return time.perf_counter() - began, latencies


# --- runcast ----------------------------------------------------------------------------------


async def run_runcast(level: int, runs: int, folder: Path) -> Measurement:
    from runcast.engine import Engine
    from runcast.engine.loader import load_workflows
    from runcast.models import Run, RunStatus

    (folder / "workflows").mkdir()
    (folder / "workflows" / WORKFLOW_FILE.name).write_text(WORKFLOW_FILE.read_text())
    loaded = load_workflows(folder / "workflows")
    if loaded.problems:
        raise RuntimeError(f"bench workflow does not load: {loaded.problems}")

    waiters: dict[str, asyncio.Future[Any]] = {}

    def on_change(run: Run) -> None:
        if run.status.is_terminal:
            waiter = waiters.pop(run.instance_id, None)
            if waiter is not None and not waiter.done():
                if run.status is RunStatus.COMPLETE:
                    waiter.set_result(run.output)
                else:
                    waiter.set_exception(RuntimeError(f"{run.instance_id}: {run.status}"))

    async with Engine(loaded.definitions, db_path=folder / "engine.sqlite") as engine:
        unsubscribe = engine.add_run_listener(on_change)
        loop = asyncio.get_running_loop()

        async def start_run(instance_id: str) -> Awaitable[Any]:
            waiter = loop.create_future()
            waiters[instance_id] = waiter
            await engine.trigger(
                WORKFLOW_ID, input={"orderId": instance_id}, instance_id=instance_id
            )
            return waiter

        try:
            await warm_up(start_run)
            commits_before = _commits(engine)
            seconds, latencies = await measure("runcast", start_run, level, runs)
            commits = _commits(engine)
        finally:
            unsubscribe()
    return Measurement(
        "runcast",
        level,
        runs,
        seconds,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        None if commits is None or commits_before is None else commits - commits_before,
    )


def _commits(engine: Any) -> int | None:
    # The store counts its transactions; read it if this build exposes it.
    store = getattr(engine, "_store", None)
    value = getattr(store, "commits", None)
    return value if isinstance(value, int) else None


# --- the peer: DBOS on SQLite (WAL) ---------------------------------------------------------


async def run_dbos(level: int, runs: int, folder: Path) -> Measurement:
    from dbos import DBOS, DBOSConfig

    path = folder / "dbos.sqlite"
    # DBOS leaves SQLite's journal mode alone; WAL is a property of the file, set first.
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.close()

    @DBOS.step()
    async def first(payload: dict[str, Any]) -> dict[str, Any]:
        return {"orderId": payload.get("orderId"), "step": 1}

    @DBOS.step()
    async def second(first_result: dict[str, Any]) -> dict[str, Any]:
        return {"orderId": first_result["orderId"], "step": 2}

    @DBOS.step()
    async def third(first_result: dict[str, Any], second_result: dict[str, Any]) -> Any:
        return {
            "orderId": second_result["orderId"],
            "steps": [first_result["step"], second_result["step"], 3],
        }

    @DBOS.workflow()
    async def three_steps(payload: dict[str, Any]) -> Any:
        one = await first(payload)
        two = await second(one)
        return await third(one, two)

    config: DBOSConfig = {
        "name": "bench",
        "system_database_url": f"sqlite:///{path}",
        "log_level": "WARNING",
    }
    DBOS(config=config)
    DBOS.launch()
    try:

        async def start_run(instance_id: str) -> Awaitable[Any]:
            handle = await DBOS.start_workflow_async(three_steps, {"orderId": instance_id})
            return handle.get_result()

        await warm_up(start_run)
        seconds, latencies = await measure("dbos", start_run, level, runs)
    finally:
        DBOS.destroy()
    return Measurement(
        "dbos",
        level,
        runs,
        seconds,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
    )


# --- orchestration ----------------------------------------------------------------------------


def worker(system: str, level: int, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix=f"bench-{system}-") as folder:
        runner = run_runcast if system == "runcast" else run_dbos
        measurement = asyncio.run(runner(level, runs, Path(folder)))
    sys.stdout.write(json.dumps(asdict(measurement)) + "\n")


def spawn(system: str, level: int, runs: int) -> Measurement:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        system,
        "--levels",
        str(level),
        "--runs",
        str(runs),
    ]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise RuntimeError(f"{system} at {level} failed:\n{finished.stderr[-4000:]}")
    return Measurement(**json.loads(finished.stdout.strip().splitlines()[-1]))


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def table(results: dict[tuple[str, int], list[Measurement]], levels: list[int]) -> str:
    def best(system: str, level: int) -> Measurement | None:
        found = results.get((system, level))
        return max(found, key=lambda m: m.per_second) if found else None

    lines = [
        "| runs in flight | runs | runcast runs/s | DBOS runs/s | ratio |"
        " runcast p50 / p99 ms | DBOS p50 / p99 ms | runcast commits/run |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for level in levels:
        ours, peer = best("runcast", level), best("dbos", level)
        if ours is None:
            continue
        ratio = f"{ours.per_second / peer.per_second:.1f}x" if peer else "-"
        peer_rate = f"{peer.per_second:,.0f}" if peer else "-"
        peer_latency = f"{peer.p50_ms:,.1f} / {peer.p99_ms:,.1f}" if peer else "-"
        commits = f"{ours.commits / ours.runs:.2f}" if ours.commits is not None else "-"
        lines.append(
            f"| {level:,} | {ours.runs:,} | {ours.per_second:,.0f} | {peer_rate} | {ratio} |"
            f" {ours.p50_ms:,.1f} / {ours.p99_ms:,.1f} | {peer_latency} | {commits} |"
        )
    return "\n".join(lines)


def history_report() -> str:
    """Listings at 10,000 and 1,000,000 runs, measured by bench/engine_history.py."""
    script = Path(__file__).resolve().parent / "engine_history.py"
    finished = subprocess.run(
        [sys.executable, str(script), "--only", "listings"],
        capture_output=True,
        text=True,
        check=True,
    )
    sizes = json.loads(finished.stdout)["listings"]
    lines = [
        "| runs in the file | newest page ms | ERRORED page ms | deep cursor page ms |",
        "|---:|---:|---:|---:|",
    ]
    for size, shapes in sizes.items():
        lines.append(
            f"| {int(size):,} | {shapes['newest']:.2f} | {shapes['errored']:.2f}"
            f" | {shapes['deep']:.2f} |"
        )
    return "\n".join(["## Listings against history size (p50, 50 runs a page)", "", *lines])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default=",".join(str(level) for level in DEFAULT_LEVELS))
    parser.add_argument("--rounds", type=int, default=1, help="repeat each pair; best is shown")
    parser.add_argument("--no-peer", action="store_true", help="skip DBOS")
    parser.add_argument("--no-save", action="store_true", help=f"do not write {RESULTS_FILE}")
    parser.add_argument(
        "--history",
        action="store_true",
        help="also report listings at 10,000 and 1,000,000 runs (bench/engine_history.py)",
    )
    parser.add_argument("--worker", choices=SYSTEMS, help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]

    if args.worker:
        worker(args.worker, levels[0], args.runs or runs_for(levels[0]))
        return 0

    systems = ["runcast"] if args.no_peer else list(SYSTEMS)
    results: dict[tuple[str, int], list[Measurement]] = {}
    for round_number in range(args.rounds):
        for level in levels:
            order = systems if (round_number + level) % 2 == 0 else systems[::-1]
            for system in order:
                measurement = spawn(system, level, runs_for(level))
                results.setdefault((system, level), []).append(measurement)
                sys.stderr.write(
                    f"round {round_number + 1} {system:>7} x{level:<6}"
                    f" {measurement.per_second:8,.0f} runs/s"
                    f"  p50 {measurement.p50_ms:8,.1f} ms  p99 {measurement.p99_ms:8,.1f} ms\n"
                )

    with sqlite3.connect(":memory:") as memory:
        sqlite_version = memory.execute("select sqlite_version()").fetchone()[0]
    memory.close()
    command = "python bench/engine.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    report = "\n".join(
        [
            f"# Embedded engine: 3-step runs to completion ({datetime.now(UTC):%Y-%m-%d})",
            "",
            table(results, levels),
            "",
            f"Machine: {os.cpu_count()} CPUs, {platform.platform()}, Python"
            f" {platform.python_version()}, SQLite {sqlite_version}; runcast"
            f" {version('runcast')}, DBOS {version('dbos')} (SQLite system database, WAL).",
            "Closed loop: N clients each trigger a run and wait for it to complete, until the"
            " level's run count is done; runs/s = runs / wall time, latency = trigger to complete."
            " The engine keeps its default cap of 1,000 running runs (the rest queue, FIFO)."
            " Both commit every step before the next starts, with SQLite synchronous=FULL"
            " (DBOS by SQLite's default).",
            "",
            f"Reproduce: `pip install -e '.[bench]' && {command.strip()}`",
        ]
    )
    if args.history:
        report += "\n\n" + history_report()
    sys.stdout.write(report + "\n")
    if not args.no_save:
        RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_FILE.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
