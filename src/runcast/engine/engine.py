"""The embedded run engine: durable workflow runs on asyncio and one SQLite file.

::

    definitions = load_workflows(Path("workflows")).definitions
    async with Engine(definitions, db_path="runs.db") as engine:
        run = await engine.trigger("order-approval", input={"orderId": 7})
        await engine.send_event("order-approval", run.instance_id,
                                event_type="user-approval", payload={"approved": True})

Every accepted call is durable when it returns; a step's result is committed
before the run's next node starts, so after a crash (even ``kill -9``) a new
engine on the same file continues every run without running a completed step
again. Calls raise only ``runcast.errors``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType

import httpx
from ulid import ULID

from runcast._http_pool import pooled_client
from runcast.engine import _store
from runcast.engine._checks import input_problem
from runcast.engine._executor import Executor
from runcast.engine._lock import DatabaseLock, LockHeld
from runcast.engine._retention import DEFAULT_RETENTION, RetentionSweeper
from runcast.engine._state import RunState, encode, run_from_rows
from runcast.engine._store import Store, StoreClosed
from runcast.engine._versions import VersionBook
from runcast.engine.definitions import Retention, WorkflowDefinition
from runcast.engine.observer import EngineEvents, EngineObserver
from runcast.engine.schedule import Clock, Scheduler, SystemClock
from runcast.errors import (
    BadUserInput,
    NotTriggerable,
    PayloadTooLarge,
    RuncastError,
    RunFinished,
    RunNotFinished,
    RunNotFound,
    UpstreamUnavailable,
    WorkflowNotFound,
)
from runcast.limits import ID_PATTERN, MAX_EVENT_TYPE_LENGTH
from runcast.models import (
    JSON,
    TERMINAL_STATUSES,
    Run,
    RunPage,
    RunStatus,
    Workflow,
    WorkflowKind,
)

__all__ = [
    "INSTANCE_ID_PATTERN",
    "MAX_PAGE_SIZE",
    "DatabaseInUse",
    "DatabaseUnusable",
    "Engine",
    "StorageUnavailable",
]

log = logging.getLogger("runcast.engine")

MIB = 1024 * 1024
MAX_PAGE_SIZE = 1000
"""The largest ``limit`` of ``list_runs``."""
INSTANCE_ID_PATTERN = ID_PATTERN
"""What a caller-given instance id must look like (otherwise a ULID is made)."""

RunListener = Callable[[Run], None]


class DatabaseUnusable(RuncastError):
    """The engine's SQLite file cannot be opened or read: not a database, corrupt, unwritable.

    Raised by ``Engine.start``; the message is one line naming the file and the reason.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot open the database {path!r}: {reason}")
        self.path = path


class DatabaseInUse(DatabaseUnusable):
    """Another process (``pid``) already runs an engine on this database file.

    Two engines on one file would both execute its runs, so the second refuses to start.
    """

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            path,
            f"it is in use by {holder} (lock file {path}.lock); stop that process,"
            " or give this one its own file with --db",
        )
        self.pid = pid


class StorageUnavailable(UpstreamUnavailable):
    """The engine's database cannot be written right now (a full disk, an I/O error).

    New calls are refused while it lasts; calls already accepted wait, and the engine
    retries their commit until it succeeds, then continues every run by itself.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"the engine cannot write its database right now ({reason}); it retries by"
            " itself, try again in a few seconds",
            status_code=503,
        )
        self.reason = reason


class Engine:
    """Runs workflows durably; the in-process upstream of runcast and of ``runcast engine``.

    Args:
        definitions: the loaded workflows by id (``load_workflows(...).definitions``).
        db_path: the SQLite file (created with its folder if missing; WAL mode), or
            ``":memory:"`` for a throwaway engine whose runs die with it.
        max_running: how many runs execute at once; more stay ``queued``, first in
            first out by the moment each entered the queue (a restarted, resumed or
            woken run enters at the back). Runs that sleep, wait or wait to retry
            hold no slot.
        max_event_payload_bytes: the largest JSON-encoded event payload (and run input).
        http_client: the pooled client for ``http`` actions (the caller closes it);
            ``None``: the engine's own, one for its lifetime, closed by :meth:`aclose`.
        retention: how long finished runs are kept, by status (a workflow's own
            ``retention:`` overrides it); expired runs are deleted in the background.
        retention_interval: seconds between two sweeps for expired runs.
        observers: told every run, step and commit event (metrics, traces).
        clock: the time schedules (``schedule:``) run by; the real one by default.
    """

    def __init__(
        self,
        definitions: Mapping[str, WorkflowDefinition],
        *,
        db_path: Path | str,
        max_running: int = 1000,
        max_event_payload_bytes: int = MIB,
        http_client: httpx.AsyncClient | None = None,
        retention: Retention = DEFAULT_RETENTION,
        retention_interval: float = 60.0,
        observers: Sequence[EngineObserver] = (),
        clock: Clock | None = None,
    ) -> None:
        if max_running < 1:
            raise ValueError("max_running must be at least 1")
        self._definitions = dict(definitions)
        self._db_path = str(db_path)
        self._max_event_payload_bytes = max_event_payload_bytes
        events = EngineEvents(observers)
        self._store = Store(db_path, on_commit=events.committed if observers else None)
        self._lock = None if self._db_path == _store.MEMORY else DatabaseLock(Path(db_path))
        self._versions = VersionBook(self._definitions)
        self._retired: frozenset[str] = frozenset()
        """Workflows the file has runs or versions of that are not loaded any more."""
        # http steps call any URL a workflow names: httpx's own pool, which honours HTTP(S)_PROXY.
        self._own_http = http_client is None
        self._http = http_client or pooled_client(timeout=None)
        self._executor = Executor(
            self._store,
            self._versions,
            max_running=max_running,
            http_client=self._http,
            events=events,
        )
        self._scheduler = Scheduler(self, lambda: self._definitions, clock=clock or SystemClock())
        self._sweeper = RetentionSweeper(
            self._store, self._definitions, default=retention, interval=retention_interval
        )
        self._state = "new"

    # -- lifetime ----------------------------------------------------------------------

    async def start(self) -> None:
        """Open the file and continue every unfinished run in it.

        Raises:
            DatabaseUnusable: the file is not a database of this engine, is corrupt,
                or cannot be created or written.
        """
        if self._state != "new":
            raise RuntimeError(f"an Engine is started once (this one is {self._state})")
        self._state = "starting"
        try:
            try:
                await self._take_lock()
                await self._store.open()
                await self._register_versions()
                await self._executor.recover()
                self._sweeper.start()
            except (sqlite3.Error, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise DatabaseUnusable(self._db_path, reason) from exc
        except BaseException:
            await self._sweeper.close()
            await self._executor.close()
            await self._store.close()
            self._release_lock()
            if self._own_http:
                await self._http.aclose()
            self._state = "closed"
            raise
        self._state = "started"
        self._scheduler.start()

    def _register_op(self) -> Callable[[sqlite3.Connection], _store.Registered]:
        terminal = [status.value for status in TERMINAL_STATUSES]
        return _store.register_versions(self._versions.loaded(), terminal, time.time())

    async def _register_versions(self) -> None:
        self._log_versions(await self._store.run(self._register_op()))

    def _versions_registered(self, future: asyncio.Future[_store.Registered]) -> None:
        if future.cancelled() or future.exception() is not None:
            log.error("engine: the new workflow versions could not be recorded")
            return
        self._log_versions(future.result())

    def _log_versions(self, registered: _store.Registered) -> None:
        changes, retired = registered
        for change in changes:
            log.info(
                "workflow %r changed: version %s -> %s; %d unfinished runs stay on %s",
                change.workflow_id,
                change.old,
                change.new,
                change.runs_on_old,
                change.old,
            )
        self._retired = frozenset(retired)

    async def _take_lock(self) -> None:
        if self._lock is None:
            return
        try:
            await asyncio.to_thread(self._lock.acquire)
        except LockHeld as exc:
            raise DatabaseInUse(self._db_path, exc.pid) from None

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.release()

    async def aclose(self) -> None:
        """Stop every run task (their state stays in the file), commit, close the file."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._scheduler.close()
        await self._sweeper.close()
        await self._executor.close()
        await self._store.close()
        self._release_lock()
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def queue_depth(self) -> int:
        """Runs waiting for a free slot."""
        return self._executor.queue_depth

    @property
    def running_slots(self) -> int:
        """Slots taken by executing runs (at most ``max_running``)."""
        return self._executor.running_slots

    async def check_store(self, *, within: float = 2.0) -> str | None:
        """Why the store cannot be used right now, after a round trip; ``None`` if healthy."""
        if self._state != "started":
            return f"the engine is {self._state}"
        problem = self._store.health()
        if problem is not None:
            return problem
        try:
            async with asyncio.timeout(within):
                await self._store.run(_store.round_trip)
        except TimeoutError:
            return f"the store did not answer within {within:g}s"
        except (sqlite3.Error, StoreClosed) as exc:
            return str(exc)
        return None

    def _check_started(self) -> None:
        """Raise unless started; ``StorageUnavailable`` while commits fail."""
        if self._state != "started":
            raise RuntimeError(f"the engine is not started (it is {self._state})")
        failure = self._store.failure
        if failure is not None:
            raise StorageUnavailable(failure)

    @property
    def storage_failure(self) -> str | None:
        """Why the database cannot be written right now; ``None`` when it can."""
        return self._store.failure

    # -- workflows ---------------------------------------------------------------------

    @property
    def max_event_payload_bytes(self) -> int:
        """The largest JSON-encoded event payload or run input, in bytes."""
        return self._max_event_payload_bytes

    @property
    def definitions(self) -> Mapping[str, WorkflowDefinition]:
        """The loaded workflow definitions, by id (read-only)."""
        return MappingProxyType(self._definitions)

    def replace_definitions(self, definitions: Mapping[str, WorkflowDefinition]) -> None:
        """Use ``definitions`` from now on (a reload); runs in flight keep the one they run on.

        New versions are recorded in the database (and logged) in the background.
        """
        self._definitions.clear()
        self._definitions.update(definitions)
        self._versions.load(self._definitions)
        if self._state == "started":
            self._store.submit(self._register_op()).add_done_callback(self._versions_registered)
            self._scheduler.start()  # the new schedules, from now

    def list_workflows(self) -> list[Workflow]:
        """Every loaded workflow and script, by id."""
        return [self.get_workflow(key) for key in sorted(self._definitions)]

    def get_workflow(self, workflow_id: str) -> Workflow:
        """The workflow ``workflow_id`` with its current version; raises ``WorkflowNotFound``."""
        definition = self._definition(workflow_id)
        return dataclasses.replace(
            definition.describe(),
            version=self._versions.current(workflow_id),
            next_scheduled_at=self._scheduler.next_run_at(definition),
        )

    def _check_workflow(self, workflow_id: str) -> None:
        """Raise ``WorkflowNotFound`` unless the workflow is loaded or its file was removed."""
        if workflow_id not in self._definitions and workflow_id not in self._retired:
            raise WorkflowNotFound(workflow_id)

    def _definition(self, workflow_id: str) -> WorkflowDefinition:
        definition = self._definitions.get(workflow_id)
        if definition is None:
            raise WorkflowNotFound(workflow_id)
        return definition

    # -- runs --------------------------------------------------------------------------

    async def trigger(
        self, workflow_id: str, *, input: JSON = None, instance_id: str | None = None
    ) -> Run:
        """Create a run and start it (or queue it over the cap); it is durable on return.

        Raises:
            WorkflowNotFound: no such workflow.
            NotTriggerable: the workflow is a script (the message names its URL).
            BadUserInput: ``instance_id`` is malformed, ``input`` is not JSON or does not
                match the workflow's ``input_schema`` (the message names the JSON path).
            PayloadTooLarge: ``input`` is over ``max_event_payload_bytes``.
            AlreadyExists: the workflow already has a run called ``instance_id``.
        """
        self._check_started()
        definition = self._definition(workflow_id)
        if definition.kind is WorkflowKind.SCRIPT:
            raise NotTriggerable(workflow_id, definition.url)
        if instance_id is None:
            instance_id = str(ULID())
        elif not isinstance(instance_id, str) or not INSTANCE_ID_PATTERN.fullmatch(instance_id):
            raise BadUserInput(
                f"instance id {instance_id!r} is not valid: use 1 to 100 letters, digits,"
                " '_' or '-', not starting with '-'"
            )
        input_json = None if input is None else self._encode_limited(input, "run input")
        if definition.input_schema is not None:
            problem = input_problem(definition.input_schema, input)
            if problem is not None:
                raise BadUserInput(
                    f"input does not match the input_schema of {workflow_id!r}: {problem}"
                )
        return await self._executor.trigger(definition, instance_id, input, input_json)

    async def get_run(self, workflow_id: str, instance_id: str) -> Run:
        """The run with its steps; raises ``WorkflowNotFound`` or ``RunNotFound``."""
        self._check_started()
        self._check_workflow(workflow_id)
        active = self._executor.find(workflow_id, instance_id)
        if active is not None:
            return active.to_model()
        found = await self._store.run(_store.select_run(workflow_id, instance_id))
        if found is None:
            raise RunNotFound(workflow_id, instance_id)
        return run_from_rows(workflow_id, *found, self._definitions.get(workflow_id))

    async def list_runs(
        self,
        workflow_id: str,
        *,
        statuses: Collection[RunStatus] | None = None,
        cursor: str | None = None,
        limit: int = 50,
    ) -> RunPage:
        """One page of the workflow's runs, newest first; pass ``next_cursor`` for the next.

        Raises:
            WorkflowNotFound: no such workflow.
            BadUserInput: ``cursor`` is not one this engine gave, or ``limit`` is not 1..1000.
        """
        self._check_started()
        self._check_workflow(workflow_id)
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise BadUserInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")
        before = _decode_cursor(cursor) if cursor is not None else None
        try:
            wanted = None if statuses is None else {RunStatus(s) for s in statuses}
        except ValueError as exc:
            raise BadUserInput(f"unknown run status in {statuses!r}") from exc
        if wanted is not None and not wanted:
            return RunPage(runs=())
        rows = await self._store.run(
            _store.select_page(
                workflow_id,
                None if wanted is None else sorted(s.value for s in wanted),
                before,
                limit + 1,
            )
        )
        more = len(rows) > limit
        rows = rows[:limit]
        runs: list[Run] = []
        for row, steps in rows:
            active = self._executor.find(workflow_id, row.instance_id)
            if active is not None:
                if wanted is not None and active.status not in wanted:
                    continue  # changed since the read
                runs.append(active.to_model())
            else:
                runs.append(run_from_rows(workflow_id, row, steps))
        next_cursor = _encode_cursor(rows[-1][0].seq) if more and rows else None
        return RunPage(runs=tuple(runs), next_cursor=next_cursor)

    async def send_event(
        self, workflow_id: str, instance_id: str, *, event_type: str, payload: JSON = None
    ) -> Run:
        """Give the run an event; its first wait for ``event_type`` gets it (FIFO per type).

        Raises:
            BadUserInput: ``event_type`` is empty or no wait of the run's workflow waits
                for it (the message lists those that do), or ``payload`` is not JSON.
            PayloadTooLarge: the JSON-encoded payload is over ``max_event_payload_bytes``.
            RunFinished: the run has finished.
        """
        self._check_started()
        if not isinstance(event_type, str) or not event_type.strip():
            raise BadUserInput("event type must be a non-empty string")
        if len(event_type) > MAX_EVENT_TYPE_LENGTH:
            raise BadUserInput(f"event type is longer than {MAX_EVENT_TYPE_LENGTH} characters")
        text = self._encode_limited(payload, "event payload")
        run = await self._active_run(workflow_id, instance_id)
        accepted = run.definition.event_types
        if event_type not in accepted:
            listed = ", ".join(repr(name) for name in accepted) or "none (it waits for no event)"
            raise BadUserInput(
                f"run {instance_id!r} of {workflow_id!r} waits for no event {event_type!r};"
                f" event types it accepts: {listed}"
            )
        await self._executor.send_event(run, event_type, text)
        return run.to_model()

    async def terminate(self, workflow_id: str, instance_id: str) -> Run:
        """End the run at once (even mid-step); raises ``RunFinished`` if it had ended."""
        self._check_started()
        run = await self._active_run(workflow_id, instance_id)
        await self._executor.terminate(run)
        return run.to_model()

    async def pause(self, workflow_id: str, instance_id: str) -> Run:
        """Pause the run at its next node boundary (at once when sleeping or waiting).

        A running step finishes first (the run shows ``waitingForPause``); a sleep or
        wait keeps its deadline. Pausing a paused run changes nothing.

        Raises:
            RunFinished: the run has finished.
        """
        self._check_started()
        run = await self._active_run(workflow_id, instance_id)
        await self._executor.pause(run)
        return run.to_model()

    async def resume(self, workflow_id: str, instance_id: str) -> Run:
        """Undo a pause. Resuming a run that was not paused by request returns it unchanged.

        Raises:
            RunFinished: the run has finished.
        """
        self._check_started()
        run = await self._active_run(workflow_id, instance_id)
        await self._executor.resume(run)
        return run.to_model()

    async def restart(
        self, workflow_id: str, instance_id: str, *, from_step: str | None = None
    ) -> Run:
        """Run it again, same instance id and version, whatever its status.

        From the first node, or from node ``from_step``: the results of the nodes
        before it stay and they do not run again. Later results and pending events
        are discarded.

        Raises:
            BadUserInput: the run's version has no node ``from_step`` (the message
                names the nodes it has), or the run did not complete the nodes before it.
        """
        self._check_started()
        self._check_workflow(workflow_id)
        run = self._executor.find(workflow_id, instance_id)
        if run is None:
            found = await self._store.run(_store.select_run(workflow_id, instance_id))
            if found is None:
                raise RunNotFound(workflow_id, instance_id)
            definition = await self._executor.definition_of(workflow_id, found[0].version)
            if definition is None:
                raise RunNotFound(
                    workflow_id,
                    instance_id,
                    f"run {instance_id!r} of workflow {workflow_id!r} cannot restart:"
                    f" its version {found[0].version} is not in the database",
                )
            # Restarted by someone else meanwhile?
            run = self._executor.find(workflow_id, instance_id)
            if run is None:
                run = RunState.from_rows(definition, *found)
        await self._executor.restart(run, from_step)
        return run.to_model()

    async def delete_run(self, workflow_id: str, instance_id: str) -> bool:
        """Delete a finished run with its steps and events; returns ``True``.

        Raises:
            RunNotFound: no such run.
            RunNotFinished: the run has not finished (terminate it first).
        """
        self._check_started()
        self._check_workflow(workflow_id)
        active = self._executor.find(workflow_id, instance_id)
        if active is not None:
            raise RunNotFinished(workflow_id, instance_id, active.status.value)
        terminal = [status.value for status in TERMINAL_STATUSES]
        status = await self._store.run(_store.delete_finished(workflow_id, instance_id, terminal))
        if status is None:
            raise RunNotFound(workflow_id, instance_id)
        if status not in terminal:
            raise RunNotFinished(workflow_id, instance_id, status)
        return True

    async def sweep_expired(self) -> int:
        """Delete every finished run past its retention now; returns how many."""
        self._check_started()
        return await self._sweeper.sweep()

    def add_run_listener(self, listener: RunListener) -> Callable[[], None]:
        """Call ``listener(run)`` on the loop after every status, output or error change.

        Calls come in the order the changes happened, once each change is durable. A
        listener that raises is logged and stays subscribed. Returns the unsubscribe function.
        """
        return self._executor.add_listener(listener)

    # -- helpers -----------------------------------------------------------------------

    async def _active_run(self, workflow_id: str, instance_id: str) -> RunState:
        self._check_workflow(workflow_id)
        run = self._executor.find(workflow_id, instance_id)
        if run is not None:
            return run
        definition = self._definitions.get(workflow_id)
        if definition is not None and definition.kind is WorkflowKind.SCRIPT:
            raise RunNotFound(workflow_id, instance_id)
        found = await self._store.run(_store.select_run(workflow_id, instance_id))
        run = self._executor.find(workflow_id, instance_id)
        if run is not None:
            return run
        if found is None:
            raise RunNotFound(workflow_id, instance_id)
        raise RunFinished(workflow_id, instance_id, found[0].status)

    def _encode_limited(self, value: JSON, what: str) -> str:
        try:
            text = encode(value)
        except (TypeError, ValueError) as exc:
            raise BadUserInput(f"{what} is not JSON: {exc}") from exc
        size = len(text.encode())
        limit = self._max_event_payload_bytes
        if size > limit:
            raise PayloadTooLarge(
                f"{what} is {size} bytes, over the limit of {limit} bytes ({format_size(limit)})",
                limit=limit,
            )
        return text


def format_size(limit: int) -> str:
    """``1 MiB``, ``64 KiB``, ``1000 B``: a byte count the way limits are written."""
    if limit % MIB == 0:
        return f"{limit // MIB} MiB"
    if limit % 1024 == 0:
        return f"{limit // 1024} KiB"
    return f"{limit} B"


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"r1:{seq}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
        prefix, _, number = text.partition(":")
        if prefix != "r1":
            raise ValueError(cursor)
        return int(number)
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise BadUserInput(f"cursor {cursor!r} is not valid") from exc
