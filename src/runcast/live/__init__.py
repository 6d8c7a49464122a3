"""The live layer: the shared, budgeted poller behind ``runStatus`` and ``workflowRuns``.

One :class:`LiveHub` per gateway keeps one watch per (credentials, run) or
(credentials, workflow), polls each within a request budget for the upstream (or
listens to the upstream's pushes), and fans every observed change out to the
subscribers' bounded buffers as :class:`RunChange` values.
"""

from __future__ import annotations

from runcast.live._budget import DEFAULT_BUDGETS, RequestBudget, budget_for
from runcast.live._change import RunChange
from runcast.live._hub import LiveHub

__all__ = ["DEFAULT_BUDGETS", "LiveHub", "RequestBudget", "RunChange", "budget_for"]
