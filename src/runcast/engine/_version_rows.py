"""The store operations on workflow versions: which is current, and each one's definition."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "Registered",
    "VersionChange",
    "register_versions",
    "select_version",
    "select_workflow_ids",
]


@dataclass(frozen=True, slots=True)
class VersionChange:
    """A workflow whose loaded definition is not the one the file last had."""

    workflow_id: str
    old: str
    new: str
    runs_on_old: int
    """Unfinished runs that stay on ``old``."""


Registered = tuple[list[VersionChange], list[str]]
"""What ``register_versions`` found: the changed workflows, the ids no longer loaded."""


def register_versions(
    loaded: list[tuple[str, str, str]], terminal: list[str], now: float
) -> Callable[[sqlite3.Connection], Registered]:
    """An operation recording the loaded ``(workflow_id, version, definition_json)`` as current.

    Each new version's definition is kept; runs of older engines get the current
    version. Returns the workflows whose version changed, and the ids of workflows
    the file knows that are not loaded any more.
    """

    def op(conn: sqlite3.Connection) -> tuple[list[VersionChange], list[str]]:
        changes: list[VersionChange] = []
        marks = ",".join("?" * len(terminal))
        for workflow_id, version, text in loaded:
            conn.execute(
                "INSERT OR IGNORE INTO workflow_versions VALUES (?, ?, ?, ?)",
                (workflow_id, version, text, now),
            )
            row = conn.execute(
                "SELECT version FROM workflow_current WHERE workflow_id = ?", (workflow_id,)
            ).fetchone()
            conn.execute(
                "UPDATE runs SET version = ? WHERE workflow_id = ? AND version IS NULL",
                (version if row is None else row[0], workflow_id),
            )
            if row is not None and row[0] != version:
                count = conn.execute(
                    "SELECT COUNT(*) FROM runs WHERE workflow_id = ? AND version = ?"
                    f" AND status NOT IN ({marks})",
                    (workflow_id, row[0], *terminal),
                ).fetchone()[0]
                changes.append(VersionChange(workflow_id, row[0], version, int(count)))
            conn.execute(
                "INSERT OR REPLACE INTO workflow_current VALUES (?, ?)", (workflow_id, version)
            )
        ids = {workflow_id for workflow_id, _, _ in loaded}
        known = [str(r[0]) for r in conn.execute("SELECT workflow_id FROM workflow_current")]
        return changes, sorted(set(known) - ids)

    return op


def select_version(workflow_id: str, version: str) -> Callable[[sqlite3.Connection], str | None]:
    """An operation reading the stored definition JSON of one workflow version."""

    def op(conn: sqlite3.Connection) -> str | None:
        row = conn.execute(
            "SELECT definition FROM workflow_versions WHERE workflow_id = ? AND version = ?",
            (workflow_id, version),
        ).fetchone()
        return None if row is None else str(row[0])

    return op


def select_workflow_ids(conn: sqlite3.Connection) -> list[str]:
    """Every workflow the file has recorded a version of."""
    return [str(row[0]) for row in conn.execute("SELECT workflow_id FROM workflow_current")]
