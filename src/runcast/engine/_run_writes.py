"""The store operations that write runs, steps and events (each runs in the writer thread)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

__all__ = [
    "RUN_UPDATE",
    "STEP_UPSERT",
    "delete_event",
    "delete_expired",
    "delete_finished",
    "forget_from",
    "insert_event",
    "insert_run",
    "record_run",
]


def insert_run(params: tuple[Any, ...]) -> Callable[[sqlite3.Connection], int | None]:
    """An operation inserting a run; it returns its ``seq``, or ``None`` if the id is taken.

    ``params``: workflow id, instance id, status, input JSON, created at, started at,
    queue seq and version (``RunState.insert_params``).
    """

    def op(conn: sqlite3.Connection) -> int | None:
        cursor = conn.execute(
            "INSERT INTO runs (workflow_id, instance_id, status, input, created_at, started_at,"
            " queue_seq, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (workflow_id, instance_id) DO NOTHING",
            params,
        )
        return cursor.lastrowid if cursor.rowcount == 1 else None

    return op


RUN_UPDATE = (
    "UPDATE runs SET status = ?, output = ?, error = ?, started_at = ?, ended_at = ?,"
    " pause_requested = ?, queue_seq = ? WHERE seq = ?"
)
STEP_UPSERT = (
    "INSERT OR REPLACE INTO steps (run_seq, idx, name, type, status, attempts, output, error,"
    " started_at, ended_at, wake_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def record_run(
    seq: int,
    run_params: tuple[Any, ...] | None,
    step_params: list[tuple[Any, ...]],
    *,
    drop_events: bool,
    extra: Callable[[sqlite3.Connection], object] | None = None,
) -> Callable[[sqlite3.Connection], None]:
    """An operation writing run ``seq``'s row (``RUN_UPDATE``) and step rows (``STEP_UPSERT``).

    ``drop_events`` deletes its undelivered events (a finished run never takes them);
    ``extra`` runs first, in the same transaction.
    """

    def op(conn: sqlite3.Connection) -> None:
        if extra is not None:
            extra(conn)
        if run_params is not None:
            conn.execute(RUN_UPDATE, run_params)
        if drop_events:
            conn.execute("DELETE FROM events WHERE run_seq = ?", (seq,))
        if len(step_params) == 1:
            conn.execute(STEP_UPSERT, step_params[0])
        elif step_params:
            conn.executemany(STEP_UPSERT, step_params)

    return op


def insert_event(
    event_id: int, seq: int, event_type: str, payload: str
) -> Callable[[sqlite3.Connection], None]:
    """An operation keeping an event for run ``seq`` until one of its waits takes it."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO events (id, run_seq, event_type, payload) VALUES (?, ?, ?, ?)",
            (event_id, seq, event_type, payload),
        )

    return op


def delete_event(event_id: int) -> Callable[[sqlite3.Connection], None]:
    """An operation deleting an event a wait has taken."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM events WHERE id = ?", (event_id,))

    return op


def forget_from(seq: int, keep: int) -> Callable[[sqlite3.Connection], None]:
    """An operation deleting run ``seq``'s node results from index ``keep`` on, and its events."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM steps WHERE run_seq = ? AND idx >= ?", (seq, keep))
        conn.execute("DELETE FROM events WHERE run_seq = ?", (seq,))

    return op


# -- deleting finished runs ------------------------------------------------------------


def _delete_runs(conn: sqlite3.Connection, seqs: list[int]) -> None:
    marks = ",".join("?" * len(seqs))
    conn.execute(f"DELETE FROM steps WHERE run_seq IN ({marks})", seqs)
    conn.execute(f"DELETE FROM events WHERE run_seq IN ({marks})", seqs)
    conn.execute(f"DELETE FROM runs WHERE seq IN ({marks})", seqs)


def delete_finished(
    workflow_id: str, instance_id: str, terminal: list[str]
) -> Callable[[sqlite3.Connection], str | None]:
    """An operation deleting one run if its status is ``terminal``; returns its status.

    ``None`` when there is no such run; the run is deleted only if the status returned
    is one of ``terminal``.
    """

    def op(conn: sqlite3.Connection) -> str | None:
        row = conn.execute(
            "SELECT seq, status FROM runs WHERE workflow_id = ? AND instance_id = ?",
            (workflow_id, instance_id),
        ).fetchone()
        if row is None:
            return None
        if row[1] in terminal:
            _delete_runs(conn, [int(row[0])])
        return str(row[1])

    return op


def delete_expired(
    workflow_id: str, status: str, ended_before: float, limit: int
) -> Callable[[sqlite3.Connection], int]:
    """An operation deleting at most ``limit`` runs in ``status`` that ended before a time.

    Returns how many it deleted (fewer than ``limit``: none are left).
    """

    def op(conn: sqlite3.Connection) -> int:
        seqs = [
            int(row[0])
            for row in conn.execute(
                "SELECT seq FROM runs WHERE workflow_id = ? AND status = ? AND ended_at < ?"
                " ORDER BY ended_at LIMIT ?",
                (workflow_id, status, ended_before, limit),
            )
        ]
        if seqs:
            _delete_runs(conn, seqs)
        return len(seqs)

    return op
