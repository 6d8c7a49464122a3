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
    UNIQUE (workflow_id, instance_id)
);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow_id, seq);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
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
    " created_at, started_at, ended_at, pause_requested, queue_seq"
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

    def submit_nowait(self, function: Callable[[sqlite3.Connection], object]) -> None:
        """Queue a write nobody waits for; it commits no later than any write queued after it."""
        if self._closed or self._loop is None:
            raise StoreClosed("the engine's store is closed")
        self._queue.put(_Operation(function, None))

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
        outcomes: list[tuple[asyncio.Future[Any] | None, Any, BaseException | None]] = []
        try:
            began = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                try:
                    outcomes.append((op.future, op.function(conn), None))
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
        except sqlite3.Error as exc:
            log.error("engine store: a commit failed: %s", exc)
            self._last_error = str(exc)
            if conn.in_transaction:
                conn.rollback()
            outcomes = [(op.future, None, exc) for op in batch]
        loop = self._loop
        assert loop is not None
        if any(future is not None for future, _, _ in outcomes):
            # A closed loop means nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, outcomes)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a file written by an older engine up to ``_SCHEMA`` (in one transaction).

    ``runs.queue_seq`` (added later): runs already queued keep their creation order.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(runs)")}
        if "queue_seq" not in columns:
            conn.execute("ALTER TABLE runs ADD COLUMN queue_seq INTEGER")
            conn.execute("UPDATE runs SET queue_seq = seq WHERE status = ?", (_QUEUED,))
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


def insert_run(
    workflow_id: str,
    instance_id: str,
    status: str,
    input_json: str | None,
    created_at: float,
    started_at: float | None,
    queue_seq: int | None,
) -> Callable[[sqlite3.Connection], int | None]:
    """An operation inserting a run; it returns its ``seq``, or ``None`` if the id is taken."""

    def op(conn: sqlite3.Connection) -> int | None:
        cursor = conn.execute(
            "INSERT INTO runs (workflow_id, instance_id, status, input, created_at, started_at,"
            " queue_seq) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (workflow_id, instance_id) DO NOTHING",
            (workflow_id, instance_id, status, input_json, created_at, started_at, queue_seq),
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
        sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE workflow_id = ?"
        params: list[Any] = [workflow_id]
        if before_seq is not None:
            sql += " AND seq < ?"
            params.append(before_seq)
        if statuses is not None:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params.extend(statuses)
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit)
        runs = [row_to_run(row) for row in conn.execute(sql, params)]
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
