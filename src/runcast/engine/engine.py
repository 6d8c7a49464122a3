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
import dataclasses
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, TracebackType

import httpx

from runcast._http_pool import pooled_client
from runcast.engine._arguments import (
    INSTANCE_ID_PATTERN,
    MAX_PAGE_SIZE,
    check_event_type,
    check_input,
    check_page_size,
    decode_cursor,
    encode_cursor,
    encode_limited,
    format_size,
    instance_id_or_new,
    wanted_statuses,
)
from runcast.engine._executor import TERMINAL_VALUES, Executor
from runcast.engine._finished_runs import FinishedRuns
from runcast.engine._lock import DatabaseLock, LockHeld
from runcast.engine._recorder import RunListener
from runcast.engine._retention import DEFAULT_RETENTION, RetentionSweeper
from runcast.engine._rows import RunRow, StepRow
from runcast.engine._run_reads import round_trip, select_page, select_run
from runcast.engine._run_writes import delete_finished
from runcast.engine._state import RunState, run_from_rows
from runcast.engine._storage_errors import DatabaseInUse, DatabaseUnusable, StorageUnavailable
from runcast.engine._store import MEMORY, Store, StoreClosed
from runcast.engine._version_registry import VersionRegistry
from runcast.engine._versions import VersionBook
from runcast.engine.definitions import Retention, WorkflowDefinition
from runcast.engine.observer import EngineEvents, EngineObserver
from runcast.engine.schedule import Clock, Scheduler, SystemClock
from runcast.errors import (
    BadUserInput,
    NotTriggerable,
    RunNotFinished,
    RunNotFound,
    WorkflowNotFound,
)
from runcast.limits import MIB
from runcast.models import JSON, Run, RunPage, RunStatus, Workflow, WorkflowKind

__all__ = [
    "INSTANCE_ID_PATTERN",
    "MAX_PAGE_SIZE",
    "DatabaseInUse",
    "DatabaseUnusable",
    "Engine",
    "StorageUnavailable",
    "format_size",
]

log = logging.getLogger("runcast.engine")


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
        self._lock = None if self._db_path == MEMORY else DatabaseLock(Path(db_path))
        self._versions = VersionBook(self._definitions)
        self._registry = VersionRegistry(self._store, self._versions)
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
        self._finished = FinishedRuns()
        self._executor.add_listener(self._finished.changed)
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
                await self._registry.register()
                await self._executor.recover()
                self._sweeper.start()
            except (sqlite3.Error, OSError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise DatabaseUnusable(self._db_path, reason) from exc
        except BaseException:
            await self._sweeper.close()
            await self._executor.close()
            await self._store.close()
            await self._release()
            self._state = "closed"
            raise
        self._state = "started"
        self._scheduler.start()

    async def _take_lock(self) -> None:
        if self._lock is None:
            return
        try:
            await asyncio.to_thread(self._lock.acquire)
        except LockHeld as exc:
            raise DatabaseInUse(self._db_path, exc.pid) from None

    async def aclose(self) -> None:
        """Stop every run task (their state stays in the file), commit, close the file."""
        if self._state == "closed":
            return
        self._state = "closed"
        await self._scheduler.close()
        await self._sweeper.close()
        await self._executor.close()
        await self._store.close()
        await self._release()

    async def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
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
        return self._executor.slots.queued

    @property
    def running_slots(self) -> int:
        """Slots taken by executing runs (at most ``max_running``)."""
        return self._executor.slots.running

    async def check_store(self, *, within: float = 2.0) -> str | None:
        """Why the store cannot be used right now, after a round trip; ``None`` if healthy."""
        if self._state != "started":
            return f"the engine is {self._state}"
        problem = self._store.health()
        if problem is not None:
            return problem
        try:
            async with asyncio.timeout(within):
                await self._store.run(round_trip)
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
        self._finished.forget_all()
        if self._state == "started":
            self._registry.register_soon()
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
        if workflow_id not in self._definitions and workflow_id not in self._registry.retired:
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
        instance_id = instance_id_or_new(instance_id)
        input_json = None if input is None else self._encode_limited(input, "run input")
        check_input(definition, input)
        return await self._executor.trigger(definition, instance_id, input, input_json)

    async def get_run(self, workflow_id: str, instance_id: str) -> Run:
        """The run with its steps; raises ``WorkflowNotFound`` or ``RunNotFound``."""
        self._check_started()
        self._check_workflow(workflow_id)
        active = self._executor.find(workflow_id, instance_id)
        if active is not None:
            return active.to_model()
        kept = self._finished.get(workflow_id, instance_id, swept=self._sweeper.deleted)
        if kept is not None:
            return kept
        generation = self._finished.generation
        found = await self._store.run(select_run(workflow_id, instance_id))
        if found is None:
            raise RunNotFound(workflow_id, instance_id)
        run = run_from_rows(workflow_id, *found, self._definitions.get(workflow_id))
        self._finished.keep(run, *found, generation=generation)
        return run

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
        check_page_size(limit)
        before = decode_cursor(cursor) if cursor is not None else None
        wanted = wanted_statuses(statuses)
        if wanted is not None and not wanted:
            return RunPage(runs=())
        values = None if wanted is None else sorted(s.value for s in wanted)
        rows = await self._store.run(select_page(workflow_id, values, before, limit + 1))
        return self._page(workflow_id, rows, wanted, limit)

    def _page(
        self,
        workflow_id: str,
        rows: list[tuple[RunRow, list[StepRow]]],
        wanted: set[RunStatus] | None,
        limit: int,
    ) -> RunPage:
        """The page of the first ``limit`` runs read; runs in memory are shown as they are now."""
        runs: list[Run] = []
        for row, steps in rows[:limit]:
            active = self._executor.find(workflow_id, row.instance_id)
            if active is None:
                runs.append(run_from_rows(workflow_id, row, steps))
            elif wanted is None or active.status in wanted:  # else: changed since the read
                runs.append(active.to_model())
        more = len(rows) > limit
        next_cursor = encode_cursor(rows[limit - 1][0].seq) if more else None
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
        check_event_type(event_type)
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
        return await self._command(workflow_id, instance_id, self._executor.terminate)

    async def pause(self, workflow_id: str, instance_id: str) -> Run:
        """Pause the run at its next node boundary (at once when sleeping or waiting).

        A running step finishes first (the run shows ``waitingForPause``); a sleep or
        wait keeps its deadline. Pausing a paused run changes nothing.

        Raises:
            RunFinished: the run has finished.
        """
        return await self._command(workflow_id, instance_id, self._executor.pause)

    async def resume(self, workflow_id: str, instance_id: str) -> Run:
        """Undo a pause. Resuming a run that was not paused by request returns it unchanged.

        Raises:
            RunFinished: the run has finished.
        """
        return await self._command(workflow_id, instance_id, self._executor.resume)

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
        run = await self._executor.take_back(workflow_id, instance_id)
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
        status = await self._store.run(delete_finished(workflow_id, instance_id, TERMINAL_VALUES))
        if status is None:
            raise RunNotFound(workflow_id, instance_id)
        if status not in TERMINAL_VALUES:
            raise RunNotFinished(workflow_id, instance_id, status)
        self._finished.forget(workflow_id, instance_id)
        return True

    def add_run_listener(self, listener: RunListener) -> Callable[[], None]:
        """Call ``listener(run)`` on the loop after every status, output or error change.

        Calls come in the order the changes happened, once each change is durable. A
        listener that raises is logged and stays subscribed. Returns the unsubscribe function.
        """
        return self._executor.add_listener(listener)

    # -- helpers -----------------------------------------------------------------------

    async def _command(
        self, workflow_id: str, instance_id: str, command: Callable[[RunState], Awaitable[None]]
    ) -> Run:
        """Apply ``command`` to the unfinished run; return the run as it is then."""
        self._check_started()
        run = await self._active_run(workflow_id, instance_id)
        await command(run)
        return run.to_model()

    async def _active_run(self, workflow_id: str, instance_id: str) -> RunState:
        self._check_workflow(workflow_id)
        definition = self._definitions.get(workflow_id)
        script = definition is not None and definition.kind is WorkflowKind.SCRIPT
        return await self._executor.unfinished(workflow_id, instance_id, script=script)

    def _encode_limited(self, value: JSON, what: str) -> str:
        return encode_limited(value, what, self._max_event_payload_bytes)
