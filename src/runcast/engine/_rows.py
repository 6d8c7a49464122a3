"""The rows of the engine's file as Python values (JSON columns kept encoded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EventRow", "RunRow", "StepRow", "row_to_run"]


@dataclass(frozen=True, slots=True)
class RunRow:
    """One row of ``runs``; JSON columns are kept encoded."""

    seq: int
    workflow_id: str
    instance_id: str
    status: str
    input: str | None
    output: str | None
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    pause_requested: bool
    queue_seq: int | None
    """The run's place in the slot queue, taken each time it (re)enters it (see Executor)."""
    version: str | None = None
    """The workflow version the run executes (``None`` only in files of older engines)."""


StepRow = tuple[
    int, int, str, str, str, int, str | None, str | None, float | None, float | None, float | None
]
"""One row of ``steps``, in column order: ``run_seq, idx, name, type, status, attempts,
output, error, started_at, ended_at, wake_at`` (``output`` is JSON text)."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """An accepted event not yet delivered to a wait (its payload stays in the file)."""

    id: int
    run_seq: int
    event_type: str


def row_to_run(row: tuple[Any, ...]) -> RunRow:
    """A ``RunRow`` from a ``SELECT {RUN_COLUMNS}`` row (``_schema.RUN_COLUMNS``)."""
    return RunRow(
        seq=row[0],
        workflow_id=row[1],
        instance_id=row[2],
        status=row[3],
        input=row[4],
        output=row[5],
        error=row[6],
        created_at=row[7],
        started_at=row[8],
        ended_at=row[9],
        pause_requested=bool(row[10]),
        queue_seq=row[11],
        version=row[12],
    )
