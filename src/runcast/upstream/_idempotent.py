"""Controls a retry may repeat: terminate, pause and resume are idempotent from the caller's view.

When a control call went on the wire more than once (a retry after a dropped
connection, or the pooled transport's own resend) and the upstream refuses the
later attempt (409: the run has finished, or is already in that state), the
earlier attempt may have been applied. The adapter then reads the run back: if it
is where the control would have left it, the call succeeded.
"""

from __future__ import annotations

from typing import Literal

from runcast.models import Run, RunStatus

Control = Literal["terminate", "pause", "resume"]
"""The controls that are safe to send again."""

_PAUSED = frozenset({RunStatus.PAUSED, RunStatus.WAITING_FOR_PAUSE})


def already_applied(control: Control, run: Run) -> bool:
    """Whether ``run`` is in the state ``control`` leaves a run in."""
    if control == "terminate":
        return run.status is RunStatus.TERMINATED
    if control == "pause":
        return run.status in _PAUSED
    # A resume is refused only for a run that is not paused by request: alive, it was resumed
    # (a sleeping run reads PAUSED too, so the status alone cannot say more).
    return not run.is_terminal
