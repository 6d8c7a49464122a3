"""The store operations that read runs, steps and events (each runs in the writer thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from runcast.engine._rows import EventRow, RunRow, StepRow, row_to_run
from runcast.engine._schema import RUN_COLUMNS

__all__ = [
    "Unfinished",
    "max_event_id",
    "max_queue_seq",
    "round_trip",
    "select_event_payload",
    "select_page",
    "select_run",
    "select_steps",
    "select_unfinished",
]

Unfinished = tuple[list[RunRow], dict[int, list[StepRow]], list[EventRow]]
"""What ``select_unfinished`` reads: the runs, their steps by run ``seq``, their events."""


def select_steps(conn: sqlite3.Connection, seqs: list[int]) -> dict[int, list[StepRow]]:
    """The step rows of runs ``seqs``, in node order."""
    found: dict[int, list[StepRow]] = {seq: [] for seq in seqs}
    for start in range(0, len(seqs), 500):
        chunk = seqs[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT run_seq, idx, name, type, status, attempts, output, error, started_at,"
            f" ended_at, wake_at FROM steps WHERE run_seq IN ({marks}) ORDER BY run_seq, idx",
            chunk,
        ):
            found[row[0]].append(row)
    return found


def select_run(
    workflow_id: str, instance_id: str
) -> Callable[[sqlite3.Connection], tuple[RunRow, list[StepRow]] | None]:
    """An operation reading one run and its steps."""

    def op(conn: sqlite3.Connection) -> tuple[RunRow, list[StepRow]] | None:
        row = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ? AND instance_id = ?",
            (workflow_id, instance_id),
        ).fetchone()
        if row is None:
            return None
        run = row_to_run(row)
        return run, select_steps(conn, [run.seq])[run.seq]

    return op


def select_page(
    workflow_id: str, statuses: list[str] | None, before_seq: int | None, limit: int
) -> Callable[[sqlite3.Connection], list[tuple[RunRow, list[StepRow]]]]:
    """An operation reading one page of a workflow's runs, newest first."""

    def op(conn: sqlite3.Connection) -> list[tuple[RunRow, list[StepRow]]]:
        # One index range per status (runs_by_workflow_status), merged here: the cost is
        # the page size times the statuses asked for, however many runs the file holds.
        ranges = [None] if statuses is None else statuses
        found: list[RunRow] = []
        for status in ranges:
            sql = f"SELECT {RUN_COLUMNS} FROM runs WHERE workflow_id = ?"
            params: list[Any] = [workflow_id]
            if status is not None:
                sql += " AND status = ?"
                params.append(status)
            if before_seq is not None:
                sql += " AND seq < ?"
                params.append(before_seq)
            sql += " ORDER BY seq DESC LIMIT ?"
            params.append(limit)
            found.extend(row_to_run(row) for row in conn.execute(sql, params))
        runs = sorted(found, key=lambda run: run.seq, reverse=True)[:limit]
        steps = select_steps(conn, [run.seq for run in runs])
        return [(run, steps[run.seq]) for run in runs]

    return op


def select_unfinished(terminal: list[str]) -> Callable[[sqlite3.Connection], Unfinished]:
    """An operation reading every run not in a ``terminal`` status, its steps and events."""

    def op(conn: sqlite3.Connection) -> Unfinished:
        marks = ",".join("?" * len(terminal))
        runs = [
            row_to_run(row)
            for row in conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE status NOT IN ({marks}) ORDER BY seq",
                terminal,
            )
        ]
        steps = select_steps(conn, [run.seq for run in runs])
        events: list[EventRow] = []
        if runs:
            events = [
                EventRow(*row)
                for row in conn.execute(
                    "SELECT e.id, e.run_seq, e.event_type FROM events e"
                    f" JOIN runs r ON r.seq = e.run_seq WHERE r.status NOT IN ({marks})"
                    " ORDER BY e.id",
                    terminal,
                )
            ]
        return runs, steps, events

    return op


def max_queue_seq(conn: sqlite3.Connection) -> int:
    """The highest ``queue_seq`` ever given in the file (0 if none): the counter resumes above."""
    row = conn.execute("SELECT COALESCE(MAX(queue_seq), 0) FROM runs").fetchone()
    return int(row[0])


def select_event_payload(event_id: int) -> Callable[[sqlite3.Connection], str | None]:
    """An operation reading the JSON payload of event ``event_id`` (``None`` if it is gone)."""

    def op(conn: sqlite3.Connection) -> str | None:
        row = conn.execute("SELECT payload FROM events WHERE id = ?", (event_id,)).fetchone()
        return None if row is None else str(row[0])

    return op


def max_event_id(conn: sqlite3.Connection) -> int:
    """The highest event id ever given in the file (0 if none): the counter resumes above."""
    row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
    return int(row[0])


def round_trip(conn: sqlite3.Connection) -> None:
    """An operation that only reads: proves the writer thread and the file answer."""
    conn.execute("SELECT 1").fetchone()
