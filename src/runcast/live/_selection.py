"""What a subscriber selected of a run, and whether a list item already carries it."""

from __future__ import annotations

from runcast.models import Run
from runcast.upstream import RunAPI

RunFields = frozenset[str] | None
"""The ``Run`` fields (GraphQL names) a subscriber selected; ``None``: unknown, read in full."""

ALWAYS_LISTED = frozenset(
    {"__typename", "id", "instanceId", "workflowId", "workflow"}
    | {"status", "rawStatus", "isTerminal"}
)
"""Fields every list item carries (or that come from outside the run, like ``workflow``)."""


def listed_fields(upstream: RunAPI) -> frozenset[str]:
    """The ``Run`` fields ``upstream``'s list items carry.

    An adapter says so with a ``listed_fields`` attribute (GraphQL names, beyond
    :data:`ALWAYS_LISTED`); one that does not is taken to list identity and status only.
    ``steps`` counts as carried by a list item that has them, whatever the adapter says.
    """
    declared: frozenset[str] = getattr(upstream, "listed_fields", frozenset())
    return ALWAYS_LISTED | declared


def covers(summary: Run, fields: RunFields, listed: frozenset[str]) -> bool:
    """Whether ``summary`` (a list item) holds everything of ``fields``."""
    if fields is None:
        return False
    missing = fields - listed
    if summary.steps is not None:
        missing = missing - {"steps"}
    return not missing
