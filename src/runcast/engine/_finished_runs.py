"""Finished runs kept in memory, so that reading one needs no trip to the SQLite thread.

A run that has ended (errored, terminated, complete) changes only when it is
restarted, deleted (by request or by retention), or when the workflow
definitions are replaced (the run's ``wait`` is described from them). The
engine tells :class:`FinishedRuns` of each: a restart through the run listener
(a restarted run's status changes), a delete through :meth:`FinishedRuns.forget`,
a sweep by retention through the sweeper's count of deleted runs, a reload
through :meth:`FinishedRuns.forget_all`.

A read that went to the file while one of those happened does not keep what it
read (the generation moved on). Only small runs are kept, and only
``MAX_RUNS`` of them, least recently read out first.
"""

from __future__ import annotations

from collections import OrderedDict

from runcast.engine._rows import RunRow, StepRow
from runcast.models import Run

MAX_RUNS = 256
"""Finished runs kept at most."""
MAX_ENCODED_CHARS = 16 * 1024
"""The largest run kept, in characters of its encoded JSON columns (input, output, steps)."""

_Key = tuple[str, str]


def encoded_chars(row: RunRow, steps: list[StepRow]) -> int:
    """Characters of the stored run's encoded JSON and error columns, steps included."""
    total = len(row.input or "") + len(row.output or "") + len(row.error or "")
    for step in steps:
        output, error = step[6], step[7]
        total += len(output or "") + len(error or "")
    return total


class FinishedRuns:
    """A bounded map of finished runs by (workflow id, instance id), with a generation.

    Args:
        max_runs: runs kept at most.
        max_encoded_chars: the largest run kept (see :func:`encoded_chars`).
    """

    def __init__(
        self, *, max_runs: int = MAX_RUNS, max_encoded_chars: int = MAX_ENCODED_CHARS
    ) -> None:
        self.max_runs = max_runs
        self.max_encoded_chars = max_encoded_chars
        self.generation = 0
        """Moves on at every change; a read from the file keeps its run only if it did not."""
        self._runs: OrderedDict[_Key, Run] = OrderedDict()
        self._swept = 0

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, workflow_id: str, instance_id: str, *, swept: int) -> Run | None:
        """The kept run, or ``None``; ``swept`` is the retention sweeper's count of deletions."""
        if swept != self._swept:
            self._swept = swept
            self.forget_all()
            return None
        key = (workflow_id, instance_id)
        run = self._runs.get(key)
        if run is not None:
            self._runs.move_to_end(key)
        return run

    def keep(self, run: Run, row: RunRow, steps: list[StepRow], *, generation: int) -> None:
        """Keep ``run``, read from ``row`` and ``steps`` at ``generation``, if it may be kept."""
        if generation != self.generation or not run.is_terminal:
            return
        if encoded_chars(row, steps) > self.max_encoded_chars:
            return
        self._runs[(run.workflow_id, run.instance_id)] = run
        if len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)

    def forget(self, workflow_id: str, instance_id: str) -> None:
        """Drop the run (deleted, restarted) and let no read in flight keep it."""
        self.generation += 1
        self._runs.pop((workflow_id, instance_id), None)

    def forget_all(self) -> None:
        """Drop every run (definitions replaced, runs swept)."""
        self.generation += 1
        self._runs.clear()

    def changed(self, run: Run) -> None:
        """A run listener: a run whose status, output or error changed is dropped."""
        self.forget(run.workflow_id, run.instance_id)
