"""The layout of the engine's SQLite file, and how a file of an older engine is brought up to it."""

from __future__ import annotations

import sqlite3

__all__ = ["LATER_RUN_COLUMNS", "RUN_COLUMNS", "create_tables", "runs_table"]

_FIRST_RUN_COLUMNS = """\
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    pause_requested INTEGER NOT NULL DEFAULT 0,
"""
"""The columns of ``runs`` as the first engine wrote them."""

LATER_RUN_COLUMNS: tuple[tuple[str, str], ...] = (("queue_seq", "INTEGER"), ("version", "TEXT"))
"""The columns added to ``runs`` since, in order, with their SQL types (see ``_migrate``)."""


def runs_table(later: tuple[tuple[str, str], ...] = LATER_RUN_COLUMNS) -> str:
    """The ``CREATE TABLE runs`` statement with the first columns and the ``later`` ones."""
    added = "".join(f"    {name} {kind},\n" for name, kind in later)
    return (
        "CREATE TABLE IF NOT EXISTS runs (\n"
        f"{_FIRST_RUN_COLUMNS}{added}    UNIQUE (workflow_id, instance_id)\n);\n"
    )


_OTHER_TABLES = """
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow_id, seq);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_by_workflow_status ON runs (workflow_id, status, seq);
CREATE INDEX IF NOT EXISTS runs_by_end ON runs (workflow_id, status, ended_at);
CREATE TABLE IF NOT EXISTS workflow_versions (
    workflow_id TEXT NOT NULL,
    version TEXT NOT NULL,
    definition TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (workflow_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workflow_current (
    workflow_id TEXT PRIMARY KEY,
    version TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS steps (
    run_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    output TEXT,
    error TEXT,
    started_at REAL,
    ended_at REAL,
    wake_at REAL,
    PRIMARY KEY (run_seq, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_seq INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_seq, id);
"""

RUN_COLUMNS = (
    "seq, workflow_id, instance_id, status, input, output, error,"
    " created_at, started_at, ended_at, pause_requested, queue_seq, version"
)
"""The columns of ``runs`` in the order ``RunRow`` takes them."""

_QUEUED = "queued"
"""``RunStatus.QUEUED.value`` (the store does not import the models)."""


def create_tables(conn: sqlite3.Connection) -> None:
    """Create what is missing of the layout, and bring an older engine's ``runs`` up to it."""
    conn.executescript(runs_table() + _OTHER_TABLES)
    _migrate(conn)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older engine up to ``runs_table()`` (in one transaction).

    ``runs.queue_seq`` (added later): runs already queued keep their creation order.
    ``runs.version`` (added later): ``None`` until ``register_versions`` gives those runs
    the version of their workflow's definition as loaded then.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(runs)")}
        for name, kind in LATER_RUN_COLUMNS:
            if name in columns:
                continue
            conn.execute(f"ALTER TABLE runs ADD COLUMN {name} {kind}")
            if name == "queue_seq":
                conn.execute("UPDATE runs SET queue_seq = seq WHERE status = ?", (_QUEUED,))
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise
