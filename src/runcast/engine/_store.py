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
from pathlib import Path
from typing import Any, Generic, TypeVar

from runcast.engine._schema import create_tables

__all__ = ["MEMORY", "Store", "StoreClosed", "is_storage_fault"]

log = logging.getLogger("runcast.engine")

T = TypeVar("T")

MEMORY = ":memory:"
"""The ``db_path`` of a store that lives in memory only (for tests; nothing survives)."""

MAX_BATCH = 4096
"""The most operations one transaction holds; keeps a commit's latency bounded."""


class StoreClosed(RuntimeError):
    """The store was closed; no operation is accepted any more."""


_Outcome = tuple[asyncio.Future[Any] | None, Any, BaseException | None]
"""An operation's future, with its result or the error it raised."""


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
        create_tables(conn)
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

    def _commit(self, conn: sqlite3.Connection, batch: list[_Operation[Any]]) -> list[_Outcome]:
        """Run ``batch`` in one transaction; a storage fault in any operation aborts it all."""
        outcomes: list[_Outcome] = []
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


def _resolve(outcomes: list[_Outcome]) -> None:
    for future, value, error in outcomes:
        if future is None or future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
