"""The value a subscriber receives: one observed state of a run."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from runcast.models import JSON, Run, RunStatus

Observable = tuple[RunStatus, str, JSON, str | None]
"""What ``Run.observable()`` returns: the part of a run whose changes are delivered."""


@dataclass(frozen=True, slots=True)
class RunChange:
    """A run as observed, and the status this subscriber saw before it.

    Args:
        run: the run as observed (by a poll, a push, or the first GET).
        previous_status: the status of the last state this subscriber was given for
            the same run; ``None`` on the first message about that run.
        observed_at: when runcast observed this state (UTC).
    """

    run: Run
    previous_status: RunStatus | None
    observed_at: datetime
