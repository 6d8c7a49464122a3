"""The engine's SQLite store: one file, WAL mode, one writer thread with group commit.

Every statement runs on a dedicated thread, never on the event loop. Callers
submit *operations* (a function of the connection); the thread takes every
operation queued so far, runs them in ONE transaction, commits, and then
resolves each caller's future on the loop. Many runs' writes therefore share
one commit, while each caller that awaits its future knows its write is durable.

Operations run in submission order, so a read submitted after a write sees it,
and the last write of a run submitted is the one that stays.

The operation queue has no fixed size but is bounded by its producers: a run
task has at most a few unawaited writes before it awaits one, and every API call
awaits its own, so the queue never holds more than a few operations per
running run and per call in flight. ``synchronous=FULL`` makes each commit
survive a power cut; group commit pays that fsync once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = ["MEMORY", "EventRow", "RunRow", "StepRow", "Store", "StoreClosed"]

log = logging.getLogger("runcast.engine")

T = TypeVar("T")

MEMORY = ":memory:"
"""The ``db_path`` of a store that lives in memory only (for tests; nothing survives)."""

MAX_BATCH = 4096
"""The most operations one transaction holds; keeps a commit's latency bounded."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
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
    queue_seq INTEGER,
    version TEXT,
    UNIQUE (workflow_id, instance_id)
);
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

_RUN_COLUMNS = (
    "seq, workflow_id, instance_id, status, input, output, error,"
    " created_at, started_at, ended_at, pause_requested, queue_seq, version"
)

_QUEUED = "queued"
"""``RunStatus.QUEUED.value`` (the store does not import the models)."""


class StoreClosed(RuntimeError):
    """The store was closed; no operation is accepted any more."""


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


@dataclass(frozen=True, slots=True)
class StepRow:
    """One row of ``steps``: node ``idx`` of run ``run_seq``."""

    run_seq: int
    idx: int
    name: str
    type: str
    status: str
    attempts: int
    output: str | None
    error: str | None
    started_at: float | None
    ended_at: float | None
    wake_at: float | None


@dataclass(frozen=True, slots=True)
class EventRow:
    """An accepted event not yet delivered to a wait (its payload stays in the file)."""

    id: int
    run_seq: int
    event_type: str


class _Operation(Generic[T]):
    __slots__ = ("function", "future")

    def __init__(
        self, function: Callable[[sqlite3.Connection], T], future: asyncio.Future[T] | None
    ) -> None:
        self.function = function
        self.future = future


_STOP = object()


class Store:
    """The SQLite file of one engine, written by one thread with group commit.

    Args:
        path: the database file (created with its folder if missing).
        synchronous: SQLite's ``synchronous`` pragma; ``FULL`` makes every commit
            survive a power cut, ``NORMAL`` only a process crash.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        synchronous: str = "FULL",
        on_commit: Callable[[float, int], None] | None = None,
    ) -> None:
        self._path = Path(path)
        self._on_commit = on_commit
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[_Operation[Any] | object] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._ready = threading.Event()
        self._open_error: BaseException | None = None
        self._last_error: str | None = None
        self.failure: str | None = None
        """Why commits fail right now (a full disk, an I/O error); ``None`` when they work.

        Set and cleared by the writer thread, which retries the failing commit meanwhile."""
        self._failing_since = 0.0
        self.commits = 0
        """How many transactions were committed (for measurements)."""
        self.operations = 0
        """How many operations ran (for measurements)."""

    async def open(self) -> None:
        """Open the file and start the writer thread."""
        if self._thread is not None or self._closed:
            raise RuntimeError("a Store is opened once")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(
            target=self._writer, name=f"runcast-store:{self._path.name}", daemon=True
        )
        self._thread.start()
        await asyncio.to_thread(self._ready.wait)
        if self._open_error is not None:
            raise self._open_error

    async def close(self) -> None:
        """Run what is queued, commit, close the file and join the thread."""
        if self._closed:
            return
        self._closed = True
        if self._thread is None:
            return
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def submit(self, function: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``function`` to run in the next transaction; the future resolves after commit."""
        if self._closed or self._loop is None:
            raise StoreClosed("the engine's store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Operation(function, future))
        return future

    def health(self) -> str | None:
        """Why writes cannot go through now (closed, writer stopped, last commit failed)."""
        if self._closed:
            return "the store is closed"
        if self._thread is None or not self._thread.is_alive():
            return "the store's writer thread is not running"
        if self._last_error is not None:
            return f"the last commit failed: {self._last_error}"
        return None

    async def run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function`` in the writer thread (after everything queued before) and return."""
        return await self.submit(function)

    # -- the writer thread -------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        target: Path | str = self._path
        if str(self._path) == MEMORY:
            target = MEMORY
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA temp_store=MEMORY")
        conn.execute("PRAGMA cache_size=-16000")
        conn.executescript(_SCHEMA)
        _migrate(conn)
        return conn

    def _writer(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:
            self._open_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        try:
            while not stopping:
                batch: list[_Operation[Any]] = []
                item = self._queue.get()
                while True:
                    if item is _STOP:
                        stopping = True
                    else:
                        assert isinstance(item, _Operation)
                        batch.append(item)
                    if len(batch) >= MAX_BATCH:
                        break
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._run_batch(conn, batch)
        finally:
            conn.close()

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Operation[Any]]) -> None:
        """Commit ``batch``; while the file cannot be written, keep trying (nothing is lost)."""
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                outcomes = self._commit(conn, batch)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                if not is_storage_fault(exc) or self._closed:
                    log.error("engine store: a commit failed: %s", exc)
                    self._last_error = str(exc)
                    outcomes = [(op.future, None, exc) for op in batch]
                    break
                self._enter_failing(exc)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
                continue
            self._leave_failing(len(batch))
            break
        loop = self._loop
        assert loop is not None
        if any(future is not None for future, _, _ in outcomes):
            # A closed loop means nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, outcomes)

    def _commit(
        self, conn: sqlite3.Connection, batch: list[_Operation[Any]]
    ) -> list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]]:
        """Run ``batch`` in one transaction; a storage fault in any operation aborts it all."""
        outcomes: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]] = []
        began = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for op in batch:
            try:
                outcomes.append((op.future, op.function(conn), None))
            except sqlite3.Error as exc:
                if is_storage_fault(exc):
                    raise
                outcomes.append((op.future, None, exc))
            except Exception as exc:
                if op.future is None:
                    log.error("engine store: a write failed: %s", exc)
                outcomes.append((op.future, None, exc))
        conn.execute("COMMIT")
        self.commits += 1
        self.operations += len(batch)
        self._last_error = None
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - began, len(batch))
        return outcomes

    def _enter_failing(self, exc: sqlite3.Error) -> None:
        if self.failure is None:
            self._failing_since = time.monotonic()
            log.error(
                "engine store: commits fail (%s); new calls are refused and the commit is"
                " retried until it succeeds",
                exc,
            )
        self.failure = str(exc)
        self._last_error = str(exc)

    def _leave_failing(self, operations: int) -> None:
        if self.failure is None:
            return
        self.failure = None
        log.warning(
            "engine store: commits succeed again after %.1fs; %d waiting operations committed",
            time.monotonic() - self._failing_since,
            operations,
        )


_FAULT_CODES = frozenset({5, 6, 8, 10, 13, 14})
"""SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN:
the file cannot be written now, but may be soon (space freed, disk back)."""

RETRY_FIRST_DELAY = 0.05
RETRY_MAX_DELAY = 1.0
"""Seconds between two tries of a commit that failed for a storage fault (doubling)."""


def is_storage_fault(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the file cannot be written now (full disk, I/O error, ...)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _FAULT_CODES
    return isinstance(exc, sqlite3.OperationalError) and "disk" in str(exc).lower()


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older engine up to ``_SCHEMA`` (in one transaction).

    ``runs.queue_seq`` (added later): runs already queued keep their creation order.
    ``runs.version`` (added later): ``None`` until ``register_versions`` gives those runs
    the version of their workflow's definition as loaded then.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(runs)")}
        if "queue_seq" not in columns:
            conn.execute("ALTER TABLE runs ADD COLUMN queue_seq INTEGER")
            conn.execute("UPDATE runs SET queue_seq = seq WHERE status = ?", (_QUEUED,))
        if "version" not in columns:
            conn.execute("ALTER TABLE runs ADD COLUMN version TEXT")
        conn.execute("COMMIT")
    except BaseException:
        conn.rollback()
        raise


def _resolve(outcomes: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]]) -> None:
    for future, value, error in outcomes:
        if future is None or future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


# -- statements (each runs in the writer thread) ---------------------------------------


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


def row_to_run(row: tuple[Any, ...]) -> RunRow:
    """A ``RunRow`` from a ``SELECT {_RUN_COLUMNS}`` row."""
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
            found[row[0]].append(StepRow(*row))
    return found


def select_run(
    workflow_id: str, instance_id: str
) -> Callable[[sqlite3.Connection], tuple[RunRow, list[StepRow]] | None]:
    """An operation reading one run and its steps."""

    def op(conn: sqlite3.Connection) -> tuple[RunRow, list[StepRow]] | None:
        row = conn.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE workflow_id = ? AND instance_id = ?",
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
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE workflow_id = ?"
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


def select_unfinished(
    terminal: list[str],
) -> Callable[[sqlite3.Connection], tuple[list[RunRow], dict[int, list[StepRow]], list[EventRow]]]:
    """An operation reading every run not in a ``terminal`` status, its steps and events."""

    def op(
        conn: sqlite3.Connection,
    ) -> tuple[list[RunRow], dict[int, list[StepRow]], list[EventRow]]:
        marks = ",".join("?" * len(terminal))
        runs = [
            row_to_run(row)
            for row in conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE status NOT IN ({marks}) ORDER BY seq",
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


# -- workflow versions -------------------------------------------------------------------


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


def select_workflow_ids(conn: sqlite3.Connection) -> list[str]:
    """Every workflow the file has recorded a version of."""
    return [str(row[0]) for row in conn.execute("SELECT workflow_id FROM workflow_current")]


# -- recording runs, steps and events (the executor's writes) ----------------------------


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


def max_event_id(conn: sqlite3.Connection) -> int:
    """The highest event id ever given in the file (0 if none): the counter resumes above."""
    row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
    return int(row[0])


def round_trip(conn: sqlite3.Connection) -> None:
    """An operation that only reads: proves the writer thread and the file answer."""
    conn.execute("SELECT 1").fetchone()
